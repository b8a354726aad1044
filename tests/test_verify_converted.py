"""``verify --against``: converted models judged against Keras and the reference, item by item.

The conversions are made by the real converters (Keras's ONNX export, the TFLite converter) in
tests/converted_zoo.py; the faulty ones are those conversions with one seeded fault each. Keras runs
the original model: it is the oracle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bilstm_ref.cli import main
from bilstm_ref.errors import ShapeMismatchError, UnsupportedModelError
from bilstm_ref.verify import verify_converted
from bilstm_ref.verify.converted import BATTERY

pytestmark = pytest.mark.keras


def _items(result) -> dict[str, object]:
    return {i.name: i for i in result.items}


@pytest.mark.parametrize("converted", ["text.onnx", "text.tflite", "states.onnx", "states.tflite"])
def test_correct_conversions_pass_every_item_they_can_run(czoo, converted: str) -> None:
    model = czoo / (converted.split(".")[0] + ".keras")
    result = verify_converted(str(model), str(czoo / converted))
    items = _items(result)
    assert result.ok, result.describe()
    assert set(items) == set(BATTERY) - {"inputs"}
    judged = [i for i in result.items if i.status == "pass"]
    assert all(i.outputs for i in judged)  # every item compared the model's outputs with Keras's
    if converted.endswith(".tflite"):  # the TFLite converter needs a static batch: these cannot run
        assert items["batch 1"].status == "skipped" and "fixes batch 4" in items["batch 1"].reason
        assert items["long sequence"].status == "skipped"
    else:
        assert items["batch 1"].status == "pass" and items["long sequence"].status == "pass"
        assert items["long sequence"].time == 4 * items["no padding"].time
    masked = converted.startswith("text")
    for name in ("right padding", "left padding", "holes", "fully masked row"):
        assert items[name].status == ("pass" if masked else "skipped"), items[name].reason
    assert items["repeat call"].self_check and all(o.max_abs == 0 for o in items["repeat call"].self_check)
    assert items["rows permuted"].self_check
    if result.exposed:  # the layer's own output, judged against the reference
        assert all(i.layer for i in judged)
    worst = max(o.max_abs for i in judged for o in i.outputs)
    assert worst < 1e-5


@pytest.mark.parametrize("converted", ["stacked.onnx", "stacked.tflite"])
@pytest.mark.parametrize("layer", ["bilstm1", None])
def test_the_stacked_text_model_passes_judged_at_either_layer(czoo, converted: str, layer) -> None:
    result = verify_converted(str(czoo / "stacked.keras"), str(czoo / converted), layer=layer)
    assert result.ok, result.describe()
    assert result.layer == (layer or "bilstm2")  # the default: the model's last recurrent layer


@pytest.mark.parametrize("faulty, caught_by", [
    ("text-bw-reversed.onnx", {"no padding", "right padding", "left padding", "holes", "batch 1", "long sequence"}),
    ("text-dirs-swapped.onnx", {"no padding", "right padding", "left padding", "holes", "batch 1"}),
    ("text-no-activation.onnx", {"no padding", "right padding", "large magnitude"}),
])
def test_faulty_onnx_conversions_fail_naming_the_items(czoo, faulty: str, caught_by: set[str]) -> None:
    result = verify_converted(str(czoo / "text.keras"), str(czoo / faulty))
    items = _items(result)
    assert not result.ok
    failed = {name for name, i in items.items() if i.status == "fail"}
    assert caught_by <= failed, result.describe()
    for name in failed:
        assert items[name].reason and "worst" in items[name].reason


def test_swapped_directions_in_the_fused_op_fail_every_item(czoo) -> None:
    result = verify_converted(str(czoo / "states.keras"), str(czoo / "states-dirs-swapped.onnx"))
    assert result.op_form == "fused LSTM op"
    assert all(i.status in ("fail", "skipped") for i in result.items), result.describe()
    assert {i.name for i in result.items if i.status == "fail"} >= {"no padding", "batch 1", "long sequence"}


def test_weights_diff_reads_the_converters_weights_and_names_the_fault(czoo, capsys) -> None:
    assert main(["weights", "diff", str(czoo / "states.keras"), str(czoo / "states.onnx"), "--layer", "bilstm"]) == 0
    assert "bit-identical" in capsys.readouterr().out  # tf2onnx reorders the gates exactly
    assert main(["weights", "diff", str(czoo / "states.keras"), str(czoo / "states-dirs-swapped.onnx"),
                 "--layer", "bilstm"]) == 1
    assert "directions swapped" in capsys.readouterr().out.lower()
    assert main(["weights", "diff", str(czoo / "text.keras"), str(czoo / "text.onnx"), "--layer", "bilstm"]) == 2
    assert "LSTM nodes: []" in capsys.readouterr().err  # the Loop form holds no LSTM op to read weights from


def test_state_carried_between_calls_fails_the_repeat_call(czoo) -> None:
    result = verify_converted(str(czoo / "text.keras"), str(czoo / "text-state-leak.tflite"))
    items = _items(result)
    assert not result.ok
    repeat = items["repeat call"]
    assert repeat.status == "fail"
    assert any(not o.ok and "second call vs first" in o.name for o in repeat.self_check), result.describe()


def test_the_users_inputs_are_an_item(czoo, tmp_path, rng) -> None:
    tokens = rng.integers(1, 20, size=(8, 16)).astype("int32")
    tokens[::2, 11:] = 0
    np.save(tmp_path / "tokens.npy", tokens)
    result = verify_converted(str(czoo / "text.keras"), str(czoo / "text.tflite"), inputs=str(tmp_path / "tokens.npy"),
                              battery=False)
    assert [i.name for i in result.items] == ["inputs"]
    assert result.ok and result.items[0].outputs[0].count == 8 * 16 * 3


def test_a_conversion_of_another_model_is_a_clear_error(czoo) -> None:
    with pytest.raises(ShapeMismatchError, match="converted model"):
        verify_converted(str(czoo / "states.keras"), str(czoo / "text.onnx"))


def test_an_unknown_kind_of_file_is_refused(czoo, tmp_path) -> None:
    other = tmp_path / "model.pb"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(UnsupportedModelError, match="suffix"):
        verify_converted(str(czoo / "text.keras"), str(other))


def test_the_command_prints_the_battery_and_writes_json(czoo, tmp_path, capsys) -> None:
    out = tmp_path / "run.json"
    code = main(["verify", str(czoo / "text.keras"), "--against", str(czoo / "text-bw-reversed.onnx"),
                 "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert "left padding" in text and "FAIL" in text
    data = json.loads(out.read_text())
    assert data["kind"] == "verify-converted" and not data["ok"]
    assert {i["name"] for i in data["items"] if i["status"] == "fail"} >= {"no padding", "left padding"}
    code = main(["verify", str(czoo / "text.keras"), "--against", str(czoo / "text.onnx")])
    assert code == 0
    assert "battery item(s) pass" in capsys.readouterr().out
