"""``scoreboard --from``: check results recorded in different environments, combined. No Keras."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilstm_ref.cli import main
from bilstm_ref.errors import ConfigError
from bilstm_ref.suites.backends import environment_label, from_files


def _report(versions: dict, cases: list[tuple[str, str, float]]) -> dict:
    recs = [{"id": cid, "status": status, "deviation": None, "message": "", "failing_outputs": [],
             "flags": {"dtype_policy": "float32"}, "outputs": [{"name": "output", "max_abs": worst}]}
            for cid, status, worst in cases]
    counts = {k: sum(r["status"] == k for r in recs) for k in ("pass", "fail", "error", "known-deviation")}
    counts["total"] = len(recs)
    return {"versions": versions, "counts": counts, "cases": recs, "wall_seconds": 12.5}


def _write(tmp_path: Path, name: str, data: dict) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return str(p)


def test_status_and_answer_changes_between_environments_are_listed(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.json", _report({"keras": "3.15.1", "backend": "tensorflow", "tensorflow": "2.21.0"},
                                           [("c1", "pass", 1e-7), ("c2", "pass", 2e-7), ("c3", "pass", 3e-7)]))
    b = _write(tmp_path, "b.json", _report({"keras": "3.16.0", "backend": "jax", "jax": "0.10.2"},
                                           [("c1", "pass", 1e-7), ("c2", "fail", 0.4), ("c3", "pass", 5e-4)]))
    board = from_files([a, b], str(tmp_path / "out"))
    assert [d["id"] for d in board["disagreements"]] == ["c2"]
    assert [d["id"] for d in board["answers"]] == ["c3"]  # both pass, 1,600x apart
    text = (tmp_path / "out" / "scoreboard.md").read_text()
    assert "keras 3.15.1 / tensorflow 2.21.0" in text and "keras 3.16.0 / jax 0.10.2" in text
    assert "12.5" in text


def test_labels_name_keras2_and_repeat_environments(tmp_path: Path) -> None:
    k2 = {"keras": "2.21.0", "backend": "tf_keras", "tensorflow": "2.21.0"}
    assert environment_label({"versions": k2}) == "tf_keras 2.21.0 / tensorflow 2.21.0"
    same = _report(k2, [("c1", "pass", 1e-7)])
    board = from_files([_write(tmp_path, "x.json", same), _write(tmp_path, "y.json", same)])
    assert len(board["backends"]) == 2 and any(k.endswith("#2") for k in board["backends"])


def test_a_file_that_is_not_a_check_result_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "bad.json", {"kind": "verify"})
    with pytest.raises(ConfigError, match="not a 'bilstm-ref check --json' result"):
        from_files([bad])
    assert main(["scoreboard", "--from", bad, "--out", str(tmp_path / "o")]) == 2
    assert "bad.json" in capsys.readouterr().err
