"""The Keras 2 -> Keras 3 migration table: its causes, pinned on cases run through both versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def both():
    pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) and Keras 3 are both needed (pip install 'bilstm_ref[keras]')")
    from bilstm_ref.suites import migration

    migration._init()
    return migration._run_case


def _ids(pred, n: int = 4) -> list[str]:
    return [c.id for c in matrix.cases() if pred(c) and not matrix.keras_errors_for(c, "tf_keras")][:n]


def test_hard_sigmoid_is_the_cause_where_the_answers_differ(both) -> None:
    ids = _ids(lambda c: c.recurrent_activation == "hard_sigmoid" and c.dtype_policy in ("float32", "float64")
               and c.family == "lstm", 6)
    records = [both(i) for i in ids]
    assert any(r["status"] == "different" for r in records)
    assert all(r["cause"] == "hard_sigmoid" for r in records if r["status"] == "different")


def test_core_cases_give_the_same_answer_bit_for_bit(both) -> None:
    for cid in _ids(lambda c: c.group == "core", 12)[::3]:
        r = both(cid)
        assert r["status"] == "same" and r["bitwise"], r


def test_a_wrapper_policy_unlike_the_inner_layers_rounds_differently_within_tolerance(both) -> None:
    policy = [c for c in matrix.cases() if c.group == "policies" and c.inner_policy and not c.backward_policy]
    for case in [c for c in policy if c.merge_mode in ("sum", "ave")][:2] + [
            next(c for c in policy if c.merge_mode == "concat" and c.dtype_policy == "mixed_float16")]:
        r = both(case.id)
        assert r["status"] == "same" and not r["bitwise"] and r["near_cause"] == "policy", r
    # a float32 wrapper concatenating half-precision directions: no arithmetic, no cast
    concat = next(c for c in policy if c.merge_mode == "concat" and c.dtype_policy == "float32")
    assert both(concat.id)["bitwise"]


def test_cases_keras2_cannot_run_are_named(both) -> None:
    missing = next(c.id for c in matrix.cases() if c.activation in matrix.KERAS2_MISSING_ACTIVATIONS)
    r = both(missing)
    assert r["status"] == "keras2 cannot run it" and r["reason"] == "tf_keras-missing-activations"


def test_the_command_writes_the_table(tmp_path: Path) -> None:
    pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) and Keras 3 are both needed")
    assert main(["report", "--migration", "--out", str(tmp_path), "-k", "lstm-seq-mask_right", "--jobs", "1"]) == 0
    board = json.loads((tmp_path / "migration.json").read_text())
    assert board["cases"] == len(matrix.select(matrix.cases(), ["lstm-seq-mask_right"]))
    assert "# Keras 2 -> Keras 3" in (tmp_path / "migration.md").read_text()
