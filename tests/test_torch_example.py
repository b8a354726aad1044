"""The torch example adapter (examples/torch_adapter.py): an ``--impl`` plug-in running torch.nn.LSTM.

Checks it against every committed fixture (pass, or a refusal its xfail list explains), checks that
it really computes with torch, and that a wrong weight conversion is caught by the fixtures.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the example adapter runs torch.nn.LSTM (pip install torch==2.13.0, a local CPU wheel)"
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bilstm_ref as br
from bilstm_ref.conformance import matrix
from bilstm_ref.fixtures import Fixture, read_fixture, scan, verify_fixture

EXAMPLES = ROOT / "examples"


def _load_adapter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("torch_adapter_example", EXAMPLES / "torch_adapter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _xfail_patterns() -> dict[str, str]:
    patterns = {}
    for line in (EXAMPLES / "torch_adapter_xfail.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, _, reason = line.strip().partition(" ")
            assert reason.strip(), f"xfail line without a reason: {line!r}"
            patterns[pattern] = reason.strip()
    return patterns


@pytest.fixture(scope="module")
def adapter() -> ModuleType:
    return _load_adapter()


@pytest.fixture(scope="module")
def fixtures() -> list[Fixture]:
    found = scan(ROOT / "fixtures")
    assert found.manifests, "no committed fixtures found"
    return [read_fixture(p) for p in found.manifests]


def _outputs(y: Any) -> list[np.ndarray]:
    return [np.asarray(v) for v in (y if isinstance(y, tuple) else (y,))]


def test_every_fixture_passes_or_is_an_expected_refusal(adapter: ModuleType, fixtures: list[Fixture]) -> None:
    xfail = _xfail_patterns()
    used: set[str] = set()
    passed, problems = 0, []
    for fixture in fixtures:
        result = verify_fixture(fixture, factory=adapter.factory)
        matched = [p for p in xfail if p in fixture.id]
        if result.status in ("pass", "known-deviation"):
            passed += 1
        elif result.status == "error" and result.message.startswith("NotImplementedError") and matched:
            used.update(matched)
        else:
            why = "not matched by any xfail line" if result.status == "error" and not matched else result.status
            problems.append(f"{result.describe()}\n  ({why})")
    assert not problems, f"{len(problems)} unexplained fixture results:\n" + "\n".join(problems)
    assert passed >= 40, f"only {passed} fixtures pass"
    assert used == set(xfail), f"xfail lines that explain no fixture: {sorted(set(xfail) - used)}"


def test_adapter_computes_with_torch_and_matches_the_reference(
    adapter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = torch.nn.LSTM.forward

    def counting_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.LSTM, "forward", counting_forward)
    case = matrix.Case("bidi", return_sequences=True, return_state=True, mask="right", initial_state=True)
    spec = case.spec()
    call = case.calls[0]
    got = _outputs(adapter.factory(spec)(call.x, mask=call.mask, initial_state=list(call.initial_state)))
    want = _outputs(br.reference_factory(spec)(call.x, mask=call.mask, initial_state=list(call.initial_state)))
    assert calls == ["LSTM", "LSTM"], "each direction must run through torch.nn.LSTM"
    assert [g.dtype for g in got] == [np.float32] * 5
    for name, g, w in zip(case.output_names, got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5, err_msg=name)


def test_swapped_gates_in_the_weight_conversion_fail_the_fixtures(
    adapter: ModuleType, fixtures: list[Fixture], monkeypatch: pytest.MonkeyPatch
) -> None:
    supported = [f for f in fixtures if verify_fixture(f, factory=adapter.factory).status == "pass"]
    monkeypatch.setattr(adapter, "KERAS_GATE_FOR_TORCH_GATE", (1, 0, 2, 3))  # Keras i, f read as f, i
    statuses = {f.id: verify_fixture(f, factory=adapter.factory).status for f in supported}
    assert supported and set(statuses.values()) == {"fail"}, statuses


def _bidi_spec(units_bw: int, merge_mode: str | None, policy: str = "float32", use_bias: bool = True) -> br.LayerSpec:
    """A Bidirectional with a custom backward layer of the default (tanh/sigmoid) cell."""
    opts = dict(return_sequences=True, return_state=True, stateful=True, use_bias=use_bias, dtype_policy=policy)
    layer = br.Bidirectional(
        br.LSTM(4, **opts), merge_mode=merge_mode,
        backward_layer=br.LSTM(units_bw, go_backwards=True, name="custom_backward", **opts), dtype_policy=policy,
    )
    rng = np.random.default_rng(units_bw)
    weights = [rng.normal(scale=0.7, size=w.shape).astype(np.float32) for w in _shapes(units_bw, use_bias)]
    return br.LayerSpec("Bidirectional", layer.get_config(), tuple(weights), {"source": "test"})


def _shapes(units_bw: int, use_bias: bool) -> list[np.ndarray]:
    out = []
    for n in (4, units_bw):
        out += [np.empty((3, 4 * n)), np.empty((n, 4 * n))] + ([np.empty(4 * n)] if use_bias else [])
    return out


@pytest.mark.parametrize(("units_bw", "merge_mode", "policy", "use_bias"), [
    (5, "concat", "float32", True), (5, None, "float64", False), (4, "ave", "float32", True),
])
def test_custom_backward_right_padding_and_stateful_calls(
    adapter: ModuleType, units_bw: int, merge_mode: str | None, policy: str, use_bias: bool
) -> None:
    """What the matrix cannot reach with this adapter (its custom backward layers use other cells):
    a custom backward layer with the default cell, fully masked rows, states carried and reset."""
    spec = _bidi_spec(units_bw, merge_mode, policy, use_bias)
    impl, ref = adapter.factory(spec), br.reference_factory(spec)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    mask = np.arange(6)[None, :] < np.array([6, 3, 1, 0])[:, None]
    init = [rng.normal(size=(4, n)).astype(np.float32) for n in (4, 4, units_bw, units_bw)]
    tol = 1e-5 if policy == "float32" else 1e-10
    for kwargs in (dict(mask=mask, initial_state=init), dict(mask=None), "reset", dict(mask=mask)):
        if kwargs == "reset":
            impl.reset_state()
            ref.reset_state()
            continue
        assert isinstance(kwargs, dict)
        for g, w in zip(_outputs(impl(x, **kwargs)), _outputs(ref(x, **kwargs)), strict=True):
            np.testing.assert_allclose(g, w, atol=tol, rtol=tol)


def test_refusals_name_their_reason(adapter: ModuleType) -> None:
    spec = matrix.Case("lstm", return_sequences=True, return_state=False).spec()
    impl = adapter.factory(spec)
    x = np.zeros((2, 4, 3), np.float32)
    for mask in ([[0, 1, 1, 1], [1, 1, 1, 1]], [[1, 0, 1, 1], [1, 1, 1, 1]]):
        with pytest.raises(NotImplementedError, match="not right-padded"):
            impl(x, mask=np.array(mask, bool))
    relu = dataclasses.replace(spec, config=dict(spec.config, activation="relu"))
    with pytest.raises(NotImplementedError, match="fixed to tanh / sigmoid"):
        adapter.factory(relu)
