"""``explain``: broken ports are diagnosed with their true fault, first divergences are placed right, and
``--shrink`` reduces a failing case to a small repro that still fails and runs standalone. No Keras."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import broken_impls
import broken_ports
from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.diagnose.explain import explain, subject_of
from bilstm_ref.diagnose.faults import FAULTS
from bilstm_ref.diagnose.shrink import shrink, write_repro
from bilstm_ref.fixtures import read_fixture, scan

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TESTS = Path(__file__).resolve().parent

#: Each broken implementation and the words of the fault that must be ranked first.
TRUE_FAULT = {
    "swapped_gates": "gate blocks read in the order f, i, c, o",
    "forget_bias_off_by_one": "forget gate bias offset by +1",
    "permuted_units": "hidden units in another order",
    "ignored_mask": "mask ignored",
    "reversed_mask": "mask reversed in time",
    "ignored_initial_state": "initial state ignored",
    "swapped_h_c": "h and c swapped",
    "swapped_directions": "forward and backward states swapped",
    "states_not_carried": "states not carried between stateful calls",
    "no_half_rounding": "half-precision rounding missing",
    "half_everywhere": "outputs rounded to float16",
}
#: Ports written in broken_ports.py (independent of the fault library), and where they can show.
PORTS = {
    "onnx_gate_order": ("gate blocks read in the order i, o, f, c", lambda c: True),
    "kernel_read_transposed": ("kernel read transposed", lambda c: True),
    "recurrent_blocks_transposed": ("each gate's n x n block of the recurrent kernel transposed", lambda c: c.units > 1),
    "backward_not_realigned": ("backward sequence not re-aligned",
                               lambda c: c.family == "bidi" and c.return_sequences and c.merge_mode == "concat"),
    "go_backwards_ignored": ("go_backwards ignored", lambda c: c.family == "lstm" and c.go_backwards),
    "keras2_hard_sigmoid": ("hard_sigmoid of the other Keras version", lambda c: "hard_sigmoid" in c.id),
    "float32_port": ("float32 arithmetic", lambda c: c.dtype_policy == "float64"),
    "initial_state_c_h": ("initial state passed as (c, h)", lambda c: c.initial_state),
    "always_concat": ("merge_mode 'sum'", lambda c: c.family == "bidi" and c.merge_mode == "ave"),
    "mask_zeroes_state": ("masked steps reset the state to zero",
                          lambda c: c.family == "lstm" and c.mask in ("holes", "left") and not c.stateful),
}


@functools.lru_cache(maxsize=1)
def _fixtures() -> tuple:
    return tuple(f for f in (read_fixture(p) for p in scan(FIXTURES).manifests) if not f.deviation)


def _failing(factory, limit: int = 6) -> list:
    """Up to ``limit`` committed fixtures the implementation fails, spread over the suite."""
    out = []
    for fx in _fixtures()[::3] + _fixtures()[1::3] + _fixtures()[2::3]:
        e = explain(fx, factory)
        if e.status != "pass":
            out.append((fx, e))
        if len(out) == limit:
            break
    return out


@pytest.mark.parametrize("name", sorted(TRUE_FAULT))
def test_each_broken_implementation_is_diagnosed_with_its_fault(name: str) -> None:
    found = _failing(getattr(broken_impls, name))
    assert found, f"{name} fails no committed fixture"
    for fx, e in found:
        assert e.status == "explained" and TRUE_FAULT[name] in e.best.name, (fx.id, e.describe())


@pytest.mark.parametrize("name", sorted(PORTS))
def test_layout_and_semantics_mistakes_are_diagnosed(name: str) -> None:
    want, where = PORTS[name]
    cases = [c for c in matrix.fixture_suite() if where(c) and c.dtype_policy in ("float32", "float64")][:4]
    assert cases
    diagnosed = 0
    for case in cases:
        e = explain(case, getattr(broken_ports, name))
        if e.status == "pass":  # the fault cannot show on this case (e.g. a saturated gate hides it)
            continue
        assert e.status == "explained" and want in e.best.name, (case.id, e.describe())
        diagnosed += 1
    assert diagnosed, f"{name} failed none of {[c.id for c in cases]}"


def test_a_fault_outside_the_library_is_said_to_be_unexplained() -> None:
    for factory in (broken_impls.off_by_a_tenth_percent, broken_ports.sign_flipped_output):
        for fx, e in _failing(factory, limit=4):
            assert e.status == "unexplained", (fx.id, e.describe())
            assert e.headline().startswith("no known fault explains it")
            assert e.divergence is not None


def test_the_first_divergence_of_an_ignored_mask_is_the_first_padded_step() -> None:
    case = next(c for c in matrix.cases() if c.family == "lstm" and c.mask == "right" and c.return_sequences
                and not c.go_backwards and not c.stateful and not c.initial_state and c.dtype_policy == "float32")
    e = explain(case, broken_impls.ignored_mask)
    mask = case.calls[0].mask
    first_padded = int(np.argwhere(~mask.all(axis=0))[0][0])
    d = e.divergence
    assert d.output == "output" and d.t == first_padded and d.k == first_padded and d.direction == "forward"
    assert not mask[d.sample, d.t]  # the sample that diverges is padded there
    assert d.growth[0] == pytest.approx(d.size)


def test_the_first_divergence_of_the_backward_direction_counts_its_processing_steps() -> None:
    case = next(c for c in matrix.fixture_suite() if c.family == "bidi" and c.merge_mode == "concat"
                and c.return_sequences and c.mask == "none" and c.dtype_policy == "float32")
    e = explain(case, broken_ports.backward_not_realigned)
    d = e.divergence
    steps = case.calls[0].x.shape[1]
    assert d.direction == "backward" and d.k == steps - 1 - d.t


def test_every_fault_of_the_library_is_named_and_distinct() -> None:
    names = [f.name for f in FAULTS]
    assert len(names) == len(set(names)) >= 50
    assert sum("gate blocks read in the order" in n for n in names) == 23


def test_shrink_reduces_a_stateful_masked_three_call_case_to_a_few_steps(tmp_path: Path) -> None:
    case = next(c for c in matrix.cases() if c.stateful and c.mask != "none" and len(c.calls) >= 3
                and c.dtype_policy == "float32")
    subject = subject_of(case)
    shrunk = shrink(subject, broken_impls.states_not_carried)
    assert shrunk.steps <= 4 and len(shrunk.subject.calls) >= 2  # a state not carried needs two calls
    assert shrunk.subject.calls[0].x.shape[0] == 1
    written = write_repro(shrunk, "broken_impls:states_not_carried", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    done = subprocess.run([sys.executable, written["snippet"]], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1 and "FAILS" in done.stdout, done.stdout + done.stderr
    code = Path(written["snippet"]).read_text()
    assert not [ln for ln in code.splitlines() if ln.startswith(("import bilstm_ref", "from bilstm_ref"))]
    fixture = read_fixture(written["fixture"])
    assert len(fixture.calls) == len(shrunk.subject.calls)
    assert main(["fixtures", "verify", str(tmp_path / "fixtures")]) == 0  # the reference passes the repro


def test_the_snippet_passes_once_the_fault_is_gone(tmp_path: Path) -> None:
    case = next(c for c in matrix.fixture_suite() if c.mask != "none" and c.dtype_policy == "float32")
    shrunk = shrink(subject_of(case), broken_impls.ignored_mask)
    written = write_repro(shrunk, "broken_impls:ignored_mask", tmp_path)
    done = subprocess.run([sys.executable, written["snippet"], "bilstm_ref:reference_factory"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0 and "passes" in done.stdout, done.stdout + done.stderr


def test_the_command_explains_and_shrinks(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    fixture = next(p for p in scan(FIXTURES).manifests if "concat-seq-mask_right" in p.name)
    code = main(["explain", str(fixture), "--impl", "broken_impls:reversed_mask", "--shrink", "--out",
                 str(tmp_path / "repro"), "--json", str(tmp_path / "e.json")])
    out = capsys.readouterr().out
    assert code == 1 and "most likely: mask reversed in time" in out and "shrunk from" in out
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["status"] == "explained" and data["ranking"][0]["name"].startswith("mask reversed")
    assert (tmp_path / "repro" / "repro.py").exists()
    assert main(["explain", str(fixture), "--impl", "bilstm_ref:reference_factory"]) == 0


def test_fixtures_verify_prints_a_diagnosis_per_failing_fixture(capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["fixtures", "verify", str(FIXTURES), "--impl", "broken_impls:swapped_h_c", "-k", "lstm-seq-state"]) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("diagnosis:")]
    assert lines and all("h and c swapped" in ln for ln in lines)
