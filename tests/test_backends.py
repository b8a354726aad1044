"""Backend findings as data (measured on Keras 3.15.1 with JAX 0.10.2 and torch 2.13.0): the torch
stateful mixed-precision quirk, the documented torch crash, backend tolerances, and how the harness
scores a Keras crash. Keras-free: the oracle is replaced where a Keras result is needed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bilstm_ref import LSTM, Bidirectional
from bilstm_ref.suites import harness
from bilstm_ref.conformance import matrix
from bilstm_ref.conformance.compare import TOLERANCES, tolerance_for


def _lstm(**kw):
    rng = np.random.default_rng(0)
    layer = LSTM(3, stateful=True, return_sequences=True, **kw)
    layer.set_weights([rng.normal(size=(2, 12)), rng.normal(size=(3, 12)), rng.normal(size=12)])
    return layer


def test_state_not_stored_quirk_starts_every_call_from_zero() -> None:
    x = np.random.default_rng(1).normal(size=(2, 4, 2))
    quirky, normal, fresh = _lstm(quirks=("stateful_state_not_stored",)), _lstm(), _lstm()
    first = quirky(x)
    np.testing.assert_array_equal(first, normal(x))
    second_quirky, second_normal = quirky(x), normal(x)
    np.testing.assert_array_equal(second_quirky, fresh(x))  # as if never called before
    assert np.abs(second_quirky - second_normal).max() > 1e-3  # the quirk changes something
    assert all(np.all(s == 0) for s in quirky.states)


def test_bidirectional_passes_the_quirk_to_both_directions() -> None:
    layer = Bidirectional(LSTM(3, stateful=True, quirks=("stateful_state_not_stored",)))
    rng = np.random.default_rng(2)
    layer.set_weights([rng.normal(size=s) for s in [(2, 12), (3, 12), (12,)] * 2])
    layer(rng.normal(size=(2, 4, 2)))
    assert all(np.all(s == 0) for s in layer.forward_layer.states + layer.backward_layer.states)


def test_torch_deviations_apply_where_measured() -> None:
    by_id = matrix.by_id()
    crash = [c for c in by_id.values() if matrix.keras_errors_for(c, "torch")]
    assert len(crash) == 56  # measured: every unroll + mask + backwards-reading case raises in Keras
    assert all(c.unroll and c.mask != "none" for c in crash)
    assert not any(matrix.keras_errors_for(c, b) for c in by_id.values() for b in ("tensorflow", "jax"))
    stateful_half = [c for c in by_id.values()
                     if any(d.name == "torch-mixed-stateful-state-not-stored" for d in matrix.deviations_for(c, "torch"))]
    assert stateful_half and all(c.stateful and c.dtype_policy.startswith("mixed_") for c in stateful_half)
    assert not any(d.raises for c in by_id.values() for d in matrix.deviations_for(c, "torch"))


def test_float64_tolerance_is_relaxed_only_on_backends_that_compute_float32() -> None:
    assert tolerance_for("float64") == TOLERANCES["float64"] == tolerance_for("float64", "tensorflow")
    assert tolerance_for("float64", "jax").atol == tolerance_for("float64", "torch").atol == 1e-6
    assert tolerance_for("float32", "jax") == TOLERANCES["float32"]


class _CrashingOracle:
    backend = "torch"

    def run(self, case):
        raise AttributeError("'tuple' object has no attribute 'shape'")


@pytest.mark.parametrize("documented", [True, False])
def test_a_keras_crash_is_a_known_deviation_only_where_documented(monkeypatch: pytest.MonkeyPatch,
                                                                   documented: bool) -> None:
    cases = [c for c in matrix.cases() if bool(matrix.keras_errors_for(c, "torch")) == documented]
    monkeypatch.setattr(harness, "_ORACLE", _CrashingOracle())
    monkeypatch.setattr(harness, "_OPTIONS", harness.RunOptions(backend="torch"))
    monkeypatch.setattr(harness, "_FACTORY", None)
    (result,) = harness.run_chunk([cases[0].id])
    if documented:
        assert result.status == "known-deviation" and result.deviation == "torch-unroll-backward-mask-crash"
    else:
        assert result.status == "error" and "Keras raised AttributeError" in result.message


@pytest.mark.keras
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch backend not installed "
                    "(pip install torch==2.13.0)")
def test_torch_backend_reproduces_the_measured_deviations(capsys: pytest.CaptureFixture[str]) -> None:
    """Live: the torch backend in its own process, on the cases of both torch deviations."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bilstm_ref", "check", "--backend", "torch", "--jobs", "1",
                           "-k", "unroll", "-k", "mask_holes"], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "torch-unroll-backward-mask-crash" in done.stdout and "failed: 0" in done.stdout


def _report(cases: list[tuple[str, str, str | None]]) -> dict:
    return {"counts": {"total": len(cases), "pass": sum(s == "pass" for _, s, _ in cases), "fail": 0, "error": 0,
                       "known-deviation": sum(s == "known-deviation" for _, s, _ in cases)},
            "versions": {"keras": "3"},
            "cases": [{"id": i, "status": s, "deviation": d, "failing_outputs": [], "message": "why" if d else "",
                       "flags": {"dtype_policy": "float32"}, "outputs": []} for i, s, d in cases]}


def test_scoreboard_finds_disagreements_in_status_and_in_which_deviation() -> None:
    from bilstm_ref.suites.backends import combine, render_markdown

    runs = {
        "tensorflow": {"status": "ran", "wall": 1.0, "report": _report(
            [("a", "pass", None), ("b", "known-deviation", "tf-bug"), ("c", "pass", None)])},
        "jax": {"status": "ran", "wall": 2.0, "report": _report(
            [("a", "pass", None), ("b", "known-deviation", "jax-bug"), ("c", "known-deviation", "jax-bug")])},
        "torch": {"status": "not installed", "reason": "pip install torch==2.13.0"},
    }
    board = combine(runs)
    assert [d["id"] for d in board["disagreements"]] == ["b", "c"]
    assert board["backends"]["jax"]["deviations"]["jax-bug"]["cases"] == 2
    text = render_markdown(board)
    assert "| torch | not installed" in text and "deviation: tf-bug" in text and "Where backends disagree (2 of 3" in text
