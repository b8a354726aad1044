"""The converter scoreboard: the converter suite covers every pair of flag values, and a run through a
real converter counts passes, refusals (with the converter's message) and op forms."""

from __future__ import annotations

import itertools
import json

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main


def test_the_converter_suite_covers_every_pair_of_flag_values_the_matrix_has() -> None:
    suite = matrix.converter_suite()
    everything = [c for c in matrix.cases() if not c.dropout]
    flags = matrix.CONVERTER_FLAGS

    def pairs(cases):
        return {(a, getattr(c, a), b, getattr(c, b)) for c in cases for a, b in itertools.combinations(flags, 2)}

    assert pairs(everything) == pairs(suite)
    assert len(suite) <= 150 and len({c.id for c in suite}) == len(suite)
    assert not any(c.dropout for c in suite)  # a converted graph runs inference only


def test_an_unknown_converter_is_refused_by_name(tmp_path, capsys) -> None:
    assert main(["scoreboard", "--converters", "onnx,coreml", "--out", str(tmp_path)]) == 2
    assert "coreml" in capsys.readouterr().err


@pytest.mark.keras
def test_a_run_through_onnx_counts_passes_refusals_and_op_forms(tmp_path, monkeypatch, capsys) -> None:
    for module in ("keras", "tf2onnx", "onnxruntime"):
        pytest.importorskip(module, reason=f"{module} converts or runs the layers (pip install 'bilstm_ref[convert]')")
    monkeypatch.setenv("BILSTM_REF_CACHE", str(tmp_path / "cache"))
    plain = next(c for c in matrix.converter_suite() if not c.stateful and c.dtype_policy == "float32"
                 and c.activation == "tanh" and c.recurrent_activation == "sigmoid")
    stateful = next(c for c in matrix.converter_suite() if c.stateful)
    out = tmp_path / "board"
    code = main(["scoreboard", "--converters", "onnx", "--out", str(out), "-k", plain.id, "--jobs", "1"])
    board = json.loads((out / "converters.json").read_text())
    onnx = board["converters"]["onnx"]
    record = next(r for r in onnx["cases"] if r["id"] == plain.id)
    assert record["status"] == "pass" and code == 0, onnx["cases"]
    assert record["op_form"] in ("fused LSTM op", "loop", "unrolled")
    assert onnx["worst_by_policy"]["float32"] < 1e-5
    main(["scoreboard", "--converters", "onnx", "--out", str(out), "-k", stateful.id, "--jobs", "1"])
    onnx = json.loads((out / "converters.json").read_text())["converters"]["onnx"]
    record = next(r for r in onnx["cases"] if r["id"] == stateful.id)
    assert record["status"] == "refused" and "stateful" in record["message"]
    text = (out / "converters.md").read_text()
    assert "refused at conversion" in text and "| onnx |" in text


def test_report_messages_keep_no_local_paths_and_group_by_cause() -> None:
    from bilstm_ref.suites.converters import _clean

    one = _clean("the converted model raised CorruptFileError: /home/u/.cache/bilstm_ref/conversions/onnx-"
                 + "a" * 40 + ".onnx: onnxruntime refused the model: node 'functional_12_1/lstm_3/Erfc' "
                 "at /home/u/src/bilstm_ref/adapters/onnx.py:151 in _session")
    two = _clean("the converted model raised CorruptFileError: /tmp/c/onnx-" + "b" * 40 + ".onnx: onnxruntime "
                 "refused the model: node 'functional_2_1/lstm_1/Erfc'")
    assert one == two == ("the converted model raised CorruptFileError: the converted .onnx: onnxruntime refused "
                          "the model: node 'functional/lstm/Erfc'")
