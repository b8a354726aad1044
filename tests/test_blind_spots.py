"""Tests for what mutation testing found unguarded: each one fails on a small broken variant of the
reference (named in its docstring) and passes on the reference. Keras-free: the expected values
come from the documented rule (docs/semantics.md, docs/deviations.md), computed independently."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.reference import activations, dtypes
from bilstm_ref.fixtures import read_fixture, scan, verify_fixture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _weights(rng: np.random.Generator, d: int, n: int, bias: bool = True) -> list[np.ndarray]:
    """Random weights that tell gates apart: per-gate scales, a saturated forget gate."""
    scale = np.repeat([0.7, 1.1, 0.5, 0.9], n)
    out = [rng.normal(size=(d, 4 * n)) * scale, rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n)]
    if bias:
        b = rng.normal(scale=0.5, size=4 * n)
        b[n:2 * n] += 1.0
        out.append(b)
    return out


def _lstm(rng: np.random.Generator, d: int = 3, n: int = 4, **kw) -> br.LSTM:
    layer = br.LSTM(n, **kw)
    layer.set_weights(_weights(rng, d, n, kw.get("use_bias", True)))
    return layer


# --- 1 and 2: half-precision rounding ------------------------------------------------------------
def _bfloat16_bits_ok(a: np.ndarray) -> bool:
    f32 = np.asarray(a, np.float32)
    return bool(np.all((f32.view(np.uint32) & 0xFFFF == 0) | ~np.isfinite(f32)))


@pytest.mark.parametrize("value, rounded", [
    (1 + 2**-8, 1.0),                      # a tie: to even (mantissa ...0)
    (1 + 3 * 2**-8, 1 + 2**-6),            # a tie: to even (mantissa ...10), not down
    (1 + 2**-8 + 2**-20, 1 + 2**-7),       # just above the tie: up
    (-(1 + 3 * 2**-8), -(1 + 2**-6)),      # sign kept
    (3.4e38, np.inf),                      # past half a unit above bfloat16's largest finite value 3.3895e38
    (2**-130, 2**-130),                    # a subnormal representable exactly
])
def test_bfloat16_rounds_half_to_even(value: float, rounded: float) -> None:
    """Broken variants: ties up instead of to even; ``+``/``-`` or ``<<``/``>>`` swapped in the bit trick."""
    got = dtypes._round_bfloat16(np.array([value], np.float32))
    assert got[0] == np.float32(rounded)
    assert _bfloat16_bits_ok(got)


def test_bfloat16_rounding_of_many_values_matches_the_bit_rule(rng: np.random.Generator) -> None:
    x = (rng.normal(size=4096) * 10.0 ** rng.integers(-6, 6, size=4096)).astype(np.float32)
    got = dtypes._round_bfloat16(x)
    assert _bfloat16_bits_ok(got)
    # the nearest of the two bfloat16 neighbours, ties to even, computed with integer arithmetic
    bits = x.view(np.uint32).astype(np.uint64)
    low, base = bits & 0xFFFF, bits & 0xFFFF0000
    up = (low > 0x8000) | ((low == 0x8000) & ((base >> 16) & 1 == 1))
    expected = (base + np.where(up, 0x10000, 0)).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(got, expected)


def test_a_bfloat16_answer_is_judged_by_its_bits_not_by_the_rounding_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken variant: ``_round_bfloat16`` stops rounding. The fixture check must not ask it."""
    bf16 = [read_fixture(p) for p in scan(FIXTURES).manifests if "mixed_bfloat16" in p.name]
    assert bf16, "the committed suite has bfloat16 fixtures"
    assert all(verify_fixture(f).status in ("pass", "known-deviation") for f in bf16)
    monkeypatch.setattr(dtypes, "_round_bfloat16", lambda a: np.asarray(a, np.float32))
    verdicts = [verify_fixture(f) for f in bf16]
    assert any(v.status == "fail" and any("not rounded to bfloat16" in o.note for o in v.outputs) for v in verdicts)


@pytest.mark.parametrize("policy, merge_mode", [("mixed_float16", "sum"), ("mixed_float16", "ave"),
                                                ("mixed_bfloat16", "ave"), ("mixed_bfloat16", "mul")])
def test_merged_half_precision_outputs_are_rounded_once_after_the_merge(rng, policy, merge_mode) -> None:
    """Broken variant: each direction rounded again (or not at all) before the merge. The merged value
    is the merge of the two half-precision direction outputs, rounded once to the half format."""
    fw = br.LSTM(4, return_sequences=True, dtype_policy=policy)
    bi = br.Bidirectional(fw, merge_mode=merge_mode, dtype_policy=policy)
    bi.set_weights(_weights(rng, 3, 4) + _weights(rng, 3, 4))
    x = rng.normal(size=(2, 6, 3))
    both = br.Bidirectional(br.LSTM(4, return_sequences=True, dtype_policy=policy), merge_mode=None,
                            dtype_policy=policy)
    both.set_weights(bi.get_weights())
    y_f, y_b = (np.asarray(v, np.float64) for v in both(x))
    exact = {"sum": y_f + y_b, "ave": (y_f + y_b) / 2, "mul": y_f * y_b}[merge_mode]
    half = np.float16 if policy == "mixed_float16" else None
    expected = exact.astype(half).astype(np.float64) if half else dtypes._round_bfloat16(exact).astype(np.float64)
    got = np.asarray(bi(x), np.float64)
    np.testing.assert_array_equal(got, expected)  # 0 units of the half format apart


# --- 4: training-mode dropout ----------------------------------------------------------------------
@pytest.mark.parametrize("fw_kw, bw_kw", [
    ({"recurrent_dropout": 0.2}, {}), ({}, {"dropout": 0.3}), ({"dropout": 0.1}, {"recurrent_dropout": 0.1}),
])
def test_training_mode_dropout_raises_on_either_direction_of_a_custom_pair(rng, fw_kw, bw_kw) -> None:
    """Broken variant: the paired fast path's guard checks only the forward layer, or only dropout."""
    bi = br.Bidirectional(br.LSTM(2, **fw_kw), backward_layer=br.LSTM(2, go_backwards=True, **bw_kw))
    bi.set_weights(_weights(rng, 3, 2) + _weights(rng, 3, 2))
    x = rng.normal(size=(1, 4, 3))
    with pytest.raises(br.UnsupportedModelError, match="training-mode dropout"):
        bi(x, training=True)
    np.testing.assert_array_equal(bi(x, training=False), bi(x))  # inference: dropout has no effect


def test_training_mode_without_dropout_computes_as_inference(rng) -> None:
    bi = br.Bidirectional(br.LSTM(2), backward_layer=br.LSTM(2, go_backwards=True))
    bi.set_weights(_weights(rng, 3, 2) + _weights(rng, 3, 2))
    x = rng.normal(size=(2, 4, 3))
    np.testing.assert_array_equal(bi(x, training=True), bi(x))


# --- 5 and 11: every quirk does what its deviation says --------------------------------------------
def test_quirk_masked_prefix_outputs_h0(rng) -> None:
    """JAX, rolled loop, non-zero initial state: masked steps before the first valid one output h0."""
    kw = dict(return_sequences=True)
    plain, quirky = _lstm(rng, **kw), br.LSTM(4, quirks=("masked_prefix_outputs_h0",), **kw)
    quirky.set_weights(plain.get_weights())
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    h0, c0 = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    a = plain(x, mask=mask, initial_state=[h0, c0])
    b = quirky(x, mask=mask, initial_state=[h0, c0])
    np.testing.assert_array_equal(a[:, :2], 0.0)
    np.testing.assert_array_equal(b[0, :2], np.stack([h0[0]] * 2))
    np.testing.assert_array_equal(b[1], np.stack([h0[1]] * 5))  # a fully masked row outputs h0
    np.testing.assert_array_equal(a[0, 2:], b[0, 2:])  # from the first valid step on, nothing differs


def test_quirk_unroll_ignores_zero_output(rng) -> None:
    """JAX, ``unroll=True``: zero_output_for_mask is ignored, masked steps repeat the last output."""
    kw = dict(return_sequences=True, unroll=True, zero_output_for_mask=True)
    plain, quirky = _lstm(rng, **kw), br.LSTM(4, quirks=("unroll_ignores_zero_output",), **kw)
    quirky.set_weights(plain.get_weights())
    x = rng.normal(size=(1, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0]], bool)
    a, b = plain(x, mask=mask), quirky(x, mask=mask)
    np.testing.assert_array_equal(a[:, 3:], 0.0)
    np.testing.assert_array_equal(b[0, 3], b[0, 2])
    np.testing.assert_array_equal(b[0, 4], b[0, 2])
    np.testing.assert_array_equal(a[:, :3], b[:, :3])


def test_quirk_unroll_mask_reversed_zeroing(rng) -> None:
    """TF / Keras 2: processing-order outputs zeroed with the un-reversed mask."""
    kw = dict(return_sequences=True, unroll=True, go_backwards=True)
    carry = _lstm(rng, zero_output_for_mask=False, **kw)
    quirky = br.LSTM(4, zero_output_for_mask=True, quirks=("unroll_mask_reversed_zeroing",), **kw)
    quirky.set_weights(carry.get_weights())
    x = rng.normal(size=(2, 6, 3))
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]], bool)
    expected = np.where(mask[:, :, None], carry(x, mask=mask), 0.0)
    np.testing.assert_array_equal(quirky(x, mask=mask), expected)


def test_quirk_stateful_state_not_stored(rng) -> None:
    """torch, mixed policy, stateful: Keras never stores the states, every call starts from zero."""
    plain = _lstm(rng, stateful=True)
    quirky = br.LSTM(4, stateful=True, quirks=("stateful_state_not_stored",))
    quirky.set_weights(plain.get_weights())
    x = rng.normal(size=(2, 5, 3))
    first, second = quirky(x), quirky(x)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(plain(x), plain(x))


# --- 6: activation edges and config forms ----------------------------------------------------------
def test_hard_shrink_is_zero_at_exactly_half() -> None:
    """Broken variant: ``>=`` for ``>``."""
    x = np.array([-0.5, 0.5, 0.5000001, -0.75, 0.0])
    np.testing.assert_array_equal(activations.hard_shrink(x), [0.0, 0.0, 0.5000001, -0.75, 0.0])


@pytest.mark.parametrize("spec", [
    "tanh", {"class_name": "function", "config": {"name": "tanh"}}, {"module": "keras.activations",
     "class_name": "function", "config": "tanh", "registered_name": "tanh"}, np.tanh,
])
def test_activation_config_forms(spec, rng) -> None:
    layer = br.LSTM(3, activation=spec, return_sequences=True)
    reference = br.LSTM(3, activation="tanh", return_sequences=True)
    w = _weights(rng, 2, 3)
    layer.set_weights(w)
    reference.set_weights(w)
    x = rng.normal(size=(1, 4, 2))
    np.testing.assert_array_equal(layer(x), reference(x))


def test_an_activation_given_as_a_function_is_used_by_its_name() -> None:
    def relu(x):  # a user's function named like a Keras activation: taken by its name
        return x

    assert activations.canonical_name(relu) == "relu"
    with pytest.raises(br.UnsupportedModelError, match="activation '<lambda>' is not a Keras activation"):
        br.LSTM(2, activation=lambda x: x)


# --- 7: the Bidirectional config rewriting ----------------------------------------------------------
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("custom_backward", [False, True])
def test_bidirectional_forces_zero_output_for_mask_to_return_sequences(return_sequences, custom_backward) -> None:
    """Broken variant: the wrapper keeps the wrapped layers' own zero_output_for_mask."""
    kw = dict(return_sequences=return_sequences, zero_output_for_mask=not return_sequences)
    backward = br.LSTM(2, go_backwards=True, **kw) if custom_backward else None
    bi = br.Bidirectional(br.LSTM(2, **kw), backward_layer=backward)
    assert bi.forward_layer.zero_output_for_mask is return_sequences
    assert bi.backward_layer.zero_output_for_mask is return_sequences
    cfg = bi.get_config()
    assert cfg["layer"]["config"]["zero_output_for_mask"] is return_sequences


def test_bidirectional_masked_steps_are_exactly_zero(rng) -> None:
    bi = br.Bidirectional(br.LSTM(3, return_sequences=True), merge_mode="sum")
    bi.set_weights(_weights(rng, 2, 3) + _weights(rng, 2, 3))
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], bool)
    y = bi(rng.normal(size=(2, 5, 2)), mask=mask)
    np.testing.assert_array_equal(y[~mask], 0.0)
    assert np.all(y[mask] != 0.0)


# --- 11: states order and a custom backward layer's weights ------------------------------------------
def test_bidirectional_states_are_forward_then_backward_h_before_c(rng) -> None:
    """Broken variant: ``states`` returned as (h_bw, c_bw, h_fw, c_fw) or with h and c swapped."""
    bi = br.Bidirectional(br.LSTM(3, stateful=True, return_state=True), backward_layer=br.LSTM(
        2, stateful=True, return_state=True, go_backwards=True))
    bi.set_weights(_weights(rng, 2, 3) + _weights(rng, 2, 2))
    _, h_fw, c_fw, h_bw, c_bw = bi(rng.normal(size=(2, 4, 2)))
    states = bi.states
    assert [s.shape for s in states] == [(2, 3), (2, 3), (2, 2), (2, 2)]
    for got, expected in zip(states, (h_fw, c_fw, h_bw, c_bw), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_custom_backward_layers_weights_come_along(rng) -> None:
    """Broken variant: the wrapper rebuilds the custom backward layer without its weights."""
    backward = _lstm(rng, d=2, n=3, go_backwards=True, return_sequences=True)
    bi = br.Bidirectional(br.LSTM(3, return_sequences=True), backward_layer=backward, merge_mode=None)
    for got, expected in zip(bi.backward_layer.get_weights(), backward.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    bi.forward_layer.set_weights(_weights(rng, 2, 3))
    x = rng.normal(size=(1, 4, 2))
    np.testing.assert_array_equal(bi(x)[1], backward(x)[:, ::-1])


# --- 8 and 9: known deviations in fixtures ---------------------------------------------------------
def _deviation_fixture():
    path = next(p for p in scan(FIXTURES).manifests if json.loads(p.read_text())["deviation"])
    return read_fixture(path)


def test_a_reference_that_reproduces_the_keras_bug_is_reported_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken variant: a deviation's quirk switched on by default. The fixture recorded Keras's buggy
    answer; reproducing it is an unexpected pass, and ``fixtures verify`` fails on it."""
    fixture = _deviation_fixture()
    assert verify_fixture(fixture).status == "known-deviation"
    quirk = fixture.deviation["quirk"]
    real = br.LSTM.__init__

    def buggy(self, *args, quirks=(), **kw):
        real(self, *args, quirks=tuple(quirks) + (quirk,), **kw)

    monkeypatch.setattr(br.LSTM, "__init__", buggy)
    verdict = verify_fixture(fixture)
    assert verdict.status == "xpass" and verdict.deviation == fixture.deviation["name"]
    assert "computes the bug" in verdict.message


def test_a_crash_in_the_deviation_recheck_is_that_fixtures_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Broken variant: the quirk re-run outside the crash guard aborts the whole run."""
    import bilstm_ref.fixtures.store as fx

    fixture = _deviation_fixture()
    real = fx.build

    def crashing(spec, dtype=None, quirks=()):
        if quirks:
            raise RuntimeError("re-check crashed")
        return real(spec, dtype=dtype, quirks=quirks)

    monkeypatch.setattr(fx, "build", crashing)
    shifted = dataclasses.replace(fixture, calls=tuple(dataclasses.replace(c, expected={
        k: np.asarray(v) + 1.0 for k, v in c.expected.items()}) for c in fixture.calls))
    verdict = verify_fixture(shifted)
    assert verdict.status == "error" and "re-check crashed" in verdict.message


# --- 3: directions whose policies differ from each other and from the wrapper's -------------------
@pytest.mark.parametrize("wrapper, fw_policy, bw_policy", [
    ("float32", "mixed_float16", "float32"), ("float32", "float32", "mixed_bfloat16"),
    ("mixed_float16", "float32", "mixed_bfloat16"),
])
def test_each_direction_is_cast_to_its_own_policy_then_to_the_wrapper(rng, wrapper, fw_policy, bw_policy) -> None:
    """Broken variants: the two directions' policies swapped; a direction not cast to its own policy
    before the merge. Each half of a concat output is exactly its direction alone, cast to that
    direction's policy and then to the wrapper's."""
    fw = br.LSTM(3, return_sequences=True, dtype_policy=fw_policy)
    bw = br.LSTM(3, return_sequences=True, go_backwards=True, dtype_policy=bw_policy)
    bi = br.Bidirectional(fw, backward_layer=bw, dtype_policy=wrapper)
    w_fw, w_bw = _weights(rng, 2, 3), _weights(rng, 2, 3)
    bi.set_weights(w_fw + w_bw)
    x = rng.normal(size=(2, 5, 2))
    alone_fw = br.LSTM(3, return_sequences=True)
    alone_bw = br.LSTM(3, return_sequences=True, go_backwards=True)
    alone_fw.set_weights(w_fw)
    alone_bw.set_weights(w_bw)
    compute = bi.dtype
    expected_fw = dtypes.cast_output(dtypes.cast_output(alone_fw(x), fw_policy, compute), wrapper, compute)
    expected_bw = dtypes.cast_output(dtypes.cast_output(alone_bw(x)[:, ::-1], bw_policy, compute), wrapper, compute)
    y = np.asarray(bi(x), np.float64)
    np.testing.assert_array_equal(y[..., :3], np.asarray(expected_fw, np.float64))
    np.testing.assert_array_equal(y[..., 3:], np.asarray(expected_bw, np.float64))


# --- mutation survivors: guards, states and limits the suite did not pin ---------------------------
def test_bad_bidirectional_constructions_are_refused(rng) -> None:
    from bilstm_ref.reference.bidirectional import merge

    with pytest.raises(br.ConfigError, match="merge_mode"):
        merge(np.zeros((1, 2)), np.zeros((1, 2)), "max")
    with pytest.raises(br.UnsupportedModelError, match="weights"):
        br.Bidirectional(br.LSTM(2), weights=[np.zeros(1)])
    with pytest.raises(br.UnsupportedModelError, match="expected a bilstm_ref.LSTM"):
        br.Bidirectional("lstm")  # type: ignore[arg-type]
    with pytest.raises(br.UnsupportedModelError, match="backward_layer: expected a bilstm_ref.LSTM"):
        br.Bidirectional(br.LSTM(2), backward_layer="lstm")  # type: ignore[arg-type]
    with pytest.raises(br.UnsupportedModelError, match="missing 'layer'"):
        br.Bidirectional.from_config({"merge_mode": "concat"})
    for entry, fragment in ((["LSTM"], "expected a serialized LSTM layer"), ({"class_name": "GRU", "config": {}}, "only LSTM"),
                            ({"class_name": "LSTM", "config": []}, "expected a dict")):
        with pytest.raises(br.UnsupportedModelError, match=fragment):
            br.Bidirectional.from_config({"layer": entry})
    bare = br.Bidirectional.from_config({"layer": {"units": 2}})  # a bare LSTM config is taken as is
    assert bare.forward_layer.units == 2
    assert bare.get_config()["trainable"] is True and bare.name == "bidirectional"


def test_bidirectional_reset_state_needs_a_stateful_layer() -> None:
    with pytest.raises(br.StateError, match="^bidirectional: layer must be stateful"):
        br.Bidirectional(br.LSTM(2)).reset_state()


def test_a_custom_backward_layer_keeps_its_compute_dtype() -> None:
    bi = br.Bidirectional(br.LSTM(2), backward_layer=br.LSTM(2, go_backwards=True, dtype="float32"))
    assert bi.forward_layer.dtype == np.float64 and bi.backward_layer.dtype == np.float32


def test_dtype_policies_given_as_objects_and_unknown_ones() -> None:
    from types import SimpleNamespace

    assert br.LSTM(2, dtype_policy=SimpleNamespace(name="mixed_float16")).dtype_policy == "mixed_float16"
    with pytest.raises(br.UnsupportedModelError, match="dtype policy"):
        br.LSTM(2, dtype_policy="mixed_int8")


def test_non_element_wise_activations_are_refused_by_name() -> None:
    for name in ("softmax", "log_softmax"):
        with pytest.raises(br.UnsupportedModelError, match=f"activation '{name}' is not supported: normalizes"):
            br.LSTM(2, activation=name)


def test_set_states_loads_the_states_a_stateful_layer_starts_from(rng) -> None:
    layer = _lstm(rng, stateful=True, return_state=True)
    h0, c0 = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    layer.set_states([h0, c0])
    np.testing.assert_array_equal(layer.states[0], h0)
    x = rng.normal(size=(2, 5, 3))
    fresh = _lstm(np.random.default_rng(0), return_state=True)
    fresh.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(x)[0], fresh(x, initial_state=[h0, c0])[0])
    with pytest.raises(br.StateError, match="must be stateful"):
        _lstm(rng).set_states([h0, c0])
    with pytest.raises(br.StateError, match="must be stateful"):
        _lstm(rng).reset_state()


def test_a_stateful_layer_keeps_its_batch_size(rng) -> None:
    layer = _lstm(rng, n=3, stateful=True)  # batch 2 != units 3: the check compares the batch axis
    layer(rng.normal(size=(2, 4, 3)))
    layer(rng.normal(size=(2, 4, 3)))
    with pytest.raises(br.StateError, match="batch 2, now 3"):
        layer(rng.normal(size=(3, 4, 3)))


def test_training_mode_on_a_plain_lstm_without_dropout_computes_as_inference(rng) -> None:
    layer = _lstm(rng, return_sequences=True)
    x = rng.normal(size=(2, 4, 3))
    np.testing.assert_array_equal(layer(x, training=True), layer(x))


def test_the_work_limit_is_checked_before_anything_is_allocated(rng) -> None:
    from bilstm_ref.reference.lstm import MAX_WORK_ELEMENTS

    assert MAX_WORK_ELEMENTS == 2**28  # 2 GiB of float64, as documented
    layer = _lstm(rng, d=3, n=1)  # 3 + 5 = 8 elements per (sample, step)
    steps = 2**28 // 8 + 1
    x = np.broadcast_to(np.zeros(3), (1, steps, 3))  # a view: no memory behind it
    with pytest.raises(br.ResourceLimitError, match=rf"1\*{steps}\*\(3\+5\*1\)"):
        layer(x)


def test_weights_from_any_iterable_and_states_survive_new_weights(rng) -> None:
    layer = br.LSTM(4, stateful=True)
    layer.set_weights(iter(_weights(rng, 3, 4)))
    bi = br.Bidirectional(br.LSTM(2))
    bi.set_weights(w for w in _weights(rng, 3, 2) + _weights(rng, 3, 2))
    layer(rng.normal(size=(2, 5, 3)))
    before = layer.states
    layer.set_weights(layer.get_weights())  # as in Keras: new weights do not reset stored states
    np.testing.assert_array_equal(layer.states[0], before[0])


def test_repr_and_a_layer_object_inside_a_bidirectional_config() -> None:
    assert "return_sequences" in repr(br.LSTM(2, return_sequences=True))
    bi = br.Bidirectional.from_config({"layer": br.LSTM(3, return_sequences=True), "merge_mode": "sum"})
    assert bi.forward_layer.units == 3 and bi.return_sequences and bi.merge_mode == "sum"
