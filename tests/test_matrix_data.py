"""The conformance matrix as data: ids, the core product, pairwise coverage, weights, mask patterns."""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any

import numpy as np
import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.conformance.matrix import Case, mask_pattern
from bilstm_ref.conformance.pairwise import all_pairs

B2 = (False, True)


@pytest.fixture(scope="module")
def pairwise() -> list[Case]:
    return matrix.pairwise_cases()


@pytest.fixture(scope="module")
def all_cases() -> list[Case]:
    return matrix.cases()


# --- ids ----------------------------------------------------------------------------------------


def test_ids_are_unique_and_no_case_is_silently_dropped(pairwise):
    core = matrix.core_cases()
    ids = [c.id for c in core + pairwise + matrix.policy_cases()]
    assert len(ids) == len(set(ids))
    assert sorted(c.id for c in matrix.cases()) == sorted(ids)


def test_ids_are_readable(all_cases):
    for c in all_cases:
        assert re.fullmatch(r"(bidi|lstm)(-[A-Za-z0-9_]+)+", c.id), c.id
        assert f"mask_{c.mask}" in c.id.split("-")
        assert ("seq" if c.return_sequences else "last") in c.id.split("-")


def test_id_examples_read_as_documented():
    assert Case("bidi", True, True, mask="right", initial_state=True).id == "bidi-concat-seq-state-mask_right-init"
    assert Case("lstm", False, False, go_backwards=True, zero_output_for_mask=True, stateful=True).id == (
        "lstm-last-backwards-zofm-mask_none-stateful"
    )


def test_seed_is_derived_from_the_id_and_differs_between_cases(all_cases):
    seeds = [c.seed for c in all_cases]
    assert len(set(seeds)) == len(seeds)
    c = all_cases[0]
    assert Case(**{f.name: getattr(c, f.name) for f in c.__dataclass_fields__.values()}).seed == c.seed


# --- the core product ----------------------------------------------------------------------------


def _core_key(c: Case) -> tuple:
    return (c.family, c.return_sequences, c.return_state, c.merge_mode, c.mask, c.initial_state, c.stateful,
            c.go_backwards, c.zero_output_for_mask)


def test_core_is_exactly_the_full_product():
    masks = ("none", "right", "left", "holes", "fullrow")
    merges = ("concat", "sum", "mul", "ave", "none")
    bidi = {
        ("bidi", rs, st, mm, m, i, sf, False, False)
        for rs, st, mm, m, i, sf in itertools.product(B2, B2, merges, masks, B2, B2)
    }
    lstm = {
        ("lstm", rs, st, "concat", m, i, sf, gb, z)
        for rs, st, gb, m, i, sf, z in itertools.product(B2, B2, B2, masks, B2, B2, B2)
    }
    core = matrix.core_cases()
    keys = [_core_key(c) for c in core]
    assert len(keys) == len(set(keys))
    assert set(keys) == bidi | lstm
    assert (len(bidi), len(lstm), len(core)) == (400, 320, 720)


def test_core_cases_use_the_default_secondary_options():
    for c in matrix.core_cases():
        assert c.group == "core"
        assert (c.activation, c.recurrent_activation, c.use_bias, c.unroll, c.dropout, c.dtype_policy) == (
            "tanh", "sigmoid", True, False, False, "float32")
        assert (c.batch, c.time, c.units, c.backward) == (3, 5, 4, "default")


def test_no_case_in_the_matrix_is_excluded_by_a_rule(all_cases):
    bad = [(c.id, matrix.excluded(c).name) for c in all_cases if matrix.excluded(c) is not None]
    assert bad == []


@pytest.mark.parametrize(
    "case, rule",
    [
        (Case("bidi", True, False, merge_mode="sum", backward="custom", group="pairwise"), "custom-backward-units-merge"),
        (Case("lstm", True, False, merge_mode="sum", group="pairwise"), "lstm-has-no-wrapper-options"),
        (Case("lstm", True, False, backward="custom", group="pairwise"), "lstm-has-no-wrapper-options"),
        (Case("bidi", True, False, go_backwards=True, group="pairwise"), "bidi-wrapped-go-backwards"),
        (Case("bidi", True, False, zero_output_for_mask=True, group="pairwise"), "bidi-zero-output-overwritten"),
        (Case("lstm", True, False, activation="relu", dtype_policy="mixed_float16", group="pairwise"),
         "half-precision-non-contractive"),
    ],
    ids=["units_merge", "lstm_merge", "lstm_backward", "bidi_backwards", "bidi_zofm", "half_relu"],
)
def test_exclusion_rules_name_the_combinations_they_remove(case, rule):
    assert matrix.excluded(case).name == rule
    assert matrix.keras_rejects(case) == matrix.excluded(case).reason


# --- pairwise coverage ---------------------------------------------------------------------------

PAIRWISE_PARAMS: dict[str, tuple[Any, ...]] = dict(
    matrix._SECONDARY,
    family=("bidi", "lstm"),
    merge_mode=matrix.MERGE_MODES,
    backward=("default", "custom", "custom_same_units"),
    go_backwards=B2,
    zero_output_for_mask=B2,
)
SHAPE_OF = {(s["batch"], s["time"], s["units"]): name for name, s in matrix._SHAPES.items()}


def _case(values: dict[str, Any]) -> Case:
    kw = {k: v for k, v in values.items() if k not in ("family", "shape")}
    kw.setdefault("return_sequences", False)
    kw.setdefault("return_state", False)
    if "shape" in values:
        kw.update(matrix._SHAPES[values["shape"]])
    return Case(values.get("family", "lstm"), group="pairwise", **kw)


def _params_of(c: Case) -> dict[str, Any]:
    out = {k: getattr(c, k) for k in PAIRWISE_PARAMS if k != "shape"}
    out["shape"] = SHAPE_OF[(c.batch, c.time, c.units)]
    return out


def _random_combos(seed: int, count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{k: vals[rng.integers(len(vals))] for k, vals in PAIRWISE_PARAMS.items()} for _ in range(count)]


def _valid(values: dict[str, Any]) -> bool:
    return matrix.excluded(_case(values)) is None


@pytest.fixture(scope="module")
def value_classes() -> dict[str, dict[Any, Any]]:
    """For each parameter, each value mapped to a representative that the exclusion rules treat
    the same way (found by probing: the rules are opaque lambdas). A parameter no rule reads has
    one class. Enumerating representatives keeps the feasibility computation small."""
    bases = _random_combos(0, 800)
    classes = {}
    for k, vals in PAIRWISE_PARAMS.items():
        sig = {v: tuple(_valid({**b, k: v}) for b in bases) for v in vals}
        classes[k] = {v: next(w for w in vals if sig[w] == sig[v]) for v in vals}
    assert len(set(classes["family"].values())) == 2  # wrapper-only options: family matters
    return classes


@pytest.fixture(scope="module")
def valid_representatives(value_classes) -> list[dict[str, Any]]:
    """Every valid combination of representatives: the feasible space up to equivalent values."""
    names = list(PAIRWISE_PARAMS)
    reps = [sorted(set(value_classes[k].values()), key=repr) for k in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*reps) if _valid(dict(zip(names, combo, strict=True)))]


def test_equivalent_values_never_change_exclusion(value_classes):
    # Guard for the feasibility computation below, on combinations not used to build the classes.
    for combo in _random_combos(1, 1500):
        expect = _valid(combo)
        assert _valid({k: value_classes[k][v] for k, v in combo.items()}) == expect, combo
        for k, v in combo.items():
            assert _valid({**combo, k: value_classes[k][v]}) == expect, (combo, k)


def test_pairwise_covers_every_feasible_pair(pairwise, value_classes, valid_representatives):
    rep_pairs = set()
    for t in valid_representatives:
        rep_pairs |= {(a, t[a], b, t[b]) for a, b in itertools.combinations(PAIRWISE_PARAMS, 2)}
    feasible = {
        (a, va, b, vb)
        for a, b in itertools.combinations(PAIRWISE_PARAMS, 2)
        for va in PAIRWISE_PARAMS[a]
        for vb in PAIRWISE_PARAMS[b]
        if (a, value_classes[a][va], b, value_classes[b][vb]) in rep_pairs
    }
    covered = set()
    for c in pairwise:
        p = _params_of(c)
        covered |= {(a, p[a], b, p[b]) for a, b in itertools.combinations(PAIRWISE_PARAMS, 2)}
    missing = feasible - covered
    assert not missing, sorted(missing, key=repr)[:20]
    assert covered <= feasible
    # sanity of the feasibility computation: pairs Keras rejects are infeasible, ordinary ones are not
    assert ("family", "lstm", "backward", "custom") not in feasible
    assert ("family", "bidi", "go_backwards", True) not in feasible
    assert ("merge_mode", "sum", "backward", "custom") not in feasible
    assert ("family", "bidi", "merge_mode", "mul") in feasible
    assert ("use_bias", False, "unroll", True) in feasible


def test_pairwise_cases_are_tagged_and_valid(pairwise):
    assert pairwise
    for c in pairwise:
        assert c.group == "pairwise"
        assert matrix.excluded(c) is None


# --- weights and calls ----------------------------------------------------------------------------


def _gate_blocks(w: np.ndarray) -> list[np.ndarray]:
    n4 = w.shape[-1]
    return [w[..., g * n4 // 4 : (g + 1) * n4 // 4] for g in range(4)]


def test_case_weights_have_keras_shapes_and_float32(all_cases):
    for c in all_cases:
        dirs = [c.units] if c.family == "lstm" else [c.units, c.backward_units]
        want = []
        for n in dirs:
            want += [(c.features, 4 * n), (n, 4 * n)] + ([(4 * n,)] if c.use_bias else [])
        assert [w.shape for w in c.weights] == want, c.id
        assert all(w.dtype == np.float32 for w in c.weights)


def test_case_weights_are_not_constant_and_differ_between_gates(all_cases):
    for c in all_cases:
        for w in c.weights:
            assert np.ptp(w) > 0.0, c.id
            blocks = _gate_blocks(w.astype(np.float64))
            stats = [(round(float(b.mean()), 9), round(float(b.std()), 9)) for b in blocks]
            assert len(set(stats)) == 4, (c.id, w.shape, stats)
            for b1, b2 in itertools.combinations(blocks, 2):
                assert not np.array_equal(b1, b2)


def test_case_weights_differ_between_cases(all_cases):
    digests = {}
    for c in all_cases:
        h = hashlib.sha256(b"".join(w.tobytes() for w in c.weights)).hexdigest()
        assert h not in digests, (c.id, digests.get(h))
        digests[h] = c.id


def test_case_numbers_are_reproducible(all_cases):
    c = all_cases[3]
    again = Case(**{f.name: getattr(c, f.name) for f in c.__dataclass_fields__.values()})
    for a, b in zip(c.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(c.calls, again.calls, strict=True):
        np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize(
    "case",
    [
        Case("lstm", True, False, mask="right", initial_state=True),
        Case("bidi", True, True, mask="holes", initial_state=True, stateful=True),
        Case("bidi", False, False, backward="custom", group="pairwise"),
    ],
    ids=lambda c: c.id,
)
def test_case_calls_have_documented_shapes(case):
    n_calls = 3 + 1 if case.stateful else 1
    assert len(case.calls) == n_calls
    first = case.calls[0]
    assert first.x.shape == (case.batch, case.time, case.features) and first.x.dtype == np.float32
    if case.mask == "none":
        assert first.mask is None
    else:
        np.testing.assert_array_equal(first.mask, mask_pattern(case.mask, case.batch, case.time))
    if case.initial_state:
        units = [case.units] * 2 + [case.backward_units] * 2
        assert [s.shape for s in first.initial_state] == [(case.batch, u) for u in units[: len(first.initial_state)]]
        assert len(first.initial_state) == (2 if case.family == "lstm" else 4)
    if case.stateful:
        assert case.calls[-1].reset_before and case.calls[-1].x is first.x


# --- mask patterns --------------------------------------------------------------------------------


def _m(rows):
    return np.array(rows, dtype=bool)


@pytest.mark.parametrize(
    "kind, batch, time, expected",
    [
        ("right", 4, 5, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]]),
        ("left", 4, 5, [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 1, 1, 1, 1]]),
        ("holes", 3, 5, [[1, 0, 1, 1, 1], [1, 1, 1, 0, 1], [1, 1, 0, 1, 1]]),
        ("fullrow", 3, 5, [[1, 1, 0, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]),
        ("right", 2, 1, [[1], [1]]),
        ("left", 3, 1, [[1], [1], [1]]),
        ("holes", 2, 1, [[1], [1]]),
        ("fullrow", 3, 1, [[1], [1], [0]]),
        ("right", 1, 4, [[1, 1, 1, 1]]),
        ("left", 1, 4, [[1, 1, 1, 1]]),
        ("holes", 1, 4, [[1, 0, 1, 1]]),
        ("fullrow", 1, 4, [[0, 0, 0, 0]]),
        ("right", 3, 2, [[1, 1], [1, 0], [1, 0]]),
    ],
    ids=lambda v: None if isinstance(v, list) else str(v),
)
def test_mask_pattern_documented_values(kind, batch, time, expected):
    got = mask_pattern(kind, batch, time)
    assert got.dtype == bool and got.shape == (batch, time)
    np.testing.assert_array_equal(got, _m(expected))


@pytest.mark.parametrize("batch, time", [(1, 1), (1, 7), (4, 1), (5, 9), (3, 2)])
def test_mask_pattern_shapes_of_each_kind(batch, time):
    t = np.arange(time)
    right, left = mask_pattern("right", batch, time), mask_pattern("left", batch, time)
    np.testing.assert_array_equal(left, right[:, ::-1])  # left is the mirror image of right
    for r in range(batch):
        n = right[r].sum()
        assert n >= 1  # every padded row keeps at least one step
        np.testing.assert_array_equal(right[r], t < n)  # a prefix
    holes = mask_pattern("holes", batch, time)
    assert holes[:, 0].all() and holes[:, -1].all()  # holes are interior
    full = mask_pattern("fullrow", batch, time)
    assert not full[-1].any()
    if batch > 1:
        assert full[:-1].any(axis=1).all()
    assert mask_pattern("none", batch, time) is None


def test_mask_pattern_shift_varies_the_pattern_between_chunks():
    np.testing.assert_array_equal(mask_pattern("right", 2, 5, shift=1), _m([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]))
    assert not np.array_equal(mask_pattern("holes", 3, 7, shift=1), mask_pattern("holes", 3, 7))


def test_mask_pattern_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown mask pattern 'diagonal'"):
        mask_pattern("diagonal", 2, 3)


# --- all_pairs on a toy parameter set ------------------------------------------------------------

TOY = {"a": (0, 1, 2), "b": ("x", "y"), "c": (True, False), "d": (None, 1.5), "e": ("ok", "never")}


def _toy_valid(combo: dict[str, Any]) -> bool:
    """Rejects a=2 with c=True, b='y' with d=None, and e='never' always; partial combos judged on what is set."""
    if combo.get("a") == 2 and combo.get("c") is True:
        return False
    if combo.get("b") == "y" and "d" in combo and combo["d"] is None:
        return False
    return combo.get("e") != "never"


def _toy_feasible_pairs() -> set[tuple]:
    full = [dict(zip(TOY, vals, strict=True)) for vals in itertools.product(*TOY.values())]
    valid = [c for c in full if _toy_valid(c)]
    return {(a, c[a], b, c[b]) for c in valid for a, b in itertools.combinations(TOY, 2)}


def test_all_pairs_covers_every_feasible_pair_on_a_toy_set():
    result = all_pairs(TOY, _toy_valid, seed=0)
    covered = {(a, c[a], b, c[b]) for c in result for a, b in itertools.combinations(TOY, 2)}
    assert _toy_feasible_pairs() <= covered
    total = int(np.prod([len(v) for v in TOY.values()]))
    assert len(result) < total  # fewer than the full product


def test_all_pairs_returns_only_complete_valid_combinations():
    for combo in all_pairs(TOY, _toy_valid, seed=0):
        assert set(combo) == set(TOY)
        assert all(combo[k] in TOY[k] for k in TOY)
        assert _toy_valid(combo)
        assert combo["e"] == "ok"
        assert not (combo["a"] == 2 and combo["c"] is True)
        assert not (combo["b"] == "y" and combo["d"] is None)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_all_pairs_is_deterministic_per_seed(seed):
    assert all_pairs(TOY, _toy_valid, seed=seed) == all_pairs(TOY, _toy_valid, seed=seed)


def test_all_pairs_without_constraints_covers_all_pairs_of_a_larger_set():
    params = {f"p{i}": tuple(range(3)) for i in range(6)}
    result = all_pairs(params, lambda combo: True, seed=3)
    covered = {(a, c[a], b, c[b]) for c in result for a, b in itertools.combinations(params, 2)}
    want = {(a, va, b, vb) for a, b in itertools.combinations(params, 2) for va in range(3) for vb in range(3)}
    assert covered == want
    assert 9 <= len(result) <= 30  # 3^6 = 729 combinations; all-pairs needs at least 9
