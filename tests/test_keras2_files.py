"""Model files written by real Keras 2.12 and 2.15 (tests/data/keras2, made by its generate.py),
loaded without Keras and compared with what that Keras computed.

These run everywhere, Keras installed or not: the files and Keras's outputs are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.conformance.compare import TOLERANCES, compare

DATA = Path(__file__).parent / "data" / "keras2"


def _cases() -> list:
    out = []
    for manifest in sorted(DATA.glob("keras-*/manifest.json")):
        folder = manifest.parent
        files = json.loads(manifest.read_text())["files"]
        for _stem, info in sorted(files.items()):
            variants = [(info["h5"], None)]
            if info.get("weights_only_h5"):
                variants.append((info["weights_only_h5"], info["json"]))
            for path, config in variants:
                for layer in info["checked_layers"]:
                    out.append(pytest.param(
                        folder, path, config, info["expected"], layer,
                        id=f"{folder.name}-{path}-{layer['name']}",
                    ))
    return out


CASES = _cases()


def test_the_committed_keras2_files_are_there() -> None:
    versions = {p.parent.name for p in DATA.glob("keras-*/manifest.json")}
    assert {"keras-2.12", "keras-2.15"} <= versions
    assert len(CASES) >= 14


@pytest.mark.parametrize("folder, path, config, expected, layer", CASES)
def test_real_keras2_file_reproduces_keras(folder: Path, path: str, config, expected: str, layer: dict) -> None:
    spec = br.load_spec(folder / path, layer=layer["name"], config=None if config is None else folder / config)
    version = folder.name.removeprefix("keras-")
    assert spec.provenance["keras_version"].startswith(version)
    assert spec.provenance["semantics"] == "keras2"
    ref = br.build(spec)
    arrays = np.load(folder / expected)
    name = layer["name"]
    mask = arrays[f"{name}__mask"] if f"{name}__mask" in arrays.files else None
    out = ref(arrays[f"{name}__input"], mask=mask)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    assert len(outs) == layer["n_outputs"]
    for j, got in enumerate(outs):
        result = compare(f"out{j}", arrays[f"{name}__out{j}"], got, TOLERANCES["float32"])
        assert result.ok, f"{path} {name} output {j}: {result.describe()}"


def test_cudnn_weights_convert_exactly_as_keras_2_15_did() -> None:
    """tf.keras 2.15 converted the CuDNNLSTM weights on load; ours must be those arrays exactly."""
    folder = DATA / "keras-2.15"
    for stem, layer in (("cudnn_lstm", "cudnn_lstm"), ("cudnn_bidi", "bidi")):
        spec = br.load_spec(folder / f"{stem}.h5", layer=layer)
        assert spec.provenance["converted_from"] == "CuDNNLSTM"
        converted = np.load(folder / f"{stem}.converted-weights.npz")
        keras_weights = [converted[k] for k in converted.files]
        assert len(keras_weights) == len(spec.weights)
        for mine, theirs in zip(spec.weights, keras_weights, strict=True):
            np.testing.assert_array_equal(mine, theirs.astype(np.float64))


def test_hard_sigmoid_under_the_wrong_profile_drifts() -> None:
    """The Keras 2 -> 3 hard_sigmoid change is real in these files: forcing keras3 semantics breaks them."""
    folder = DATA / "keras-2.15"
    arrays = np.load(folder / "bidi_hard_sigmoid_concat.expected.npz")
    x, want = arrays["bidirectional__input"], arrays["bidirectional__out0"]
    right = br.load(folder / "bidi_hard_sigmoid_concat.h5")
    wrong = br.load(folder / "bidi_hard_sigmoid_concat.h5", semantics="keras3")
    assert np.abs(right(x) - want).max() < 1e-5
    assert np.abs(wrong(x) - want).max() > 1e-3
    spec = br.load_spec(folder / "bidi_hard_sigmoid_concat.h5", semantics="keras3")
    assert spec.provenance["semantics"] == "keras3"
    assert "requested" in spec.provenance["semantics_reason"]


def test_inspect_warns_about_hard_sigmoid_drift_and_lists_every_layer() -> None:
    info = br.inspect_file(DATA / "keras-2.15" / "embedding_mask_sum_stacked.h5")
    assert info["semantics"] == "keras2" and info["keras_version"] == "2.15.0"
    by_name = {row["name"]: row for row in info["layers"]}
    assert by_name["bi1"]["supported"] and by_name["bi2"]["supported"]
    assert not by_name["embedding"]["supported"] and not by_name["dense"]["supported"]
    assert [w["shape"] for w in by_name["bi2"]["weights"]] == [[4, 12], [3, 12], [12], [4, 12], [3, 12], [12]]
    drift = [w for w in info["warnings"] if "hard_sigmoid" in w]
    assert drift and drift[0].startswith("bi1:") and "Keras 3 silently changes" in drift[0]
    assert not any(w.startswith("bi2:") for w in drift)  # bi2 uses sigmoid


def test_several_candidates_need_a_layer_name() -> None:
    with pytest.raises(br.UnsupportedModelError, match=r"2 LSTM/Bidirectional layers; choose one with layer=: \['bi1', 'bi2'\]"):
        br.load_spec(DATA / "keras-2.15" / "embedding_mask_sum_stacked.h5")
    with pytest.raises(br.UnsupportedModelError, match=r"no layer named 'bi3'"):
        br.load_spec(DATA / "keras-2.15" / "embedding_mask_sum_stacked.h5", layer="bi3")
    with pytest.raises(br.UnsupportedModelError, match=r"'dense' is a Dense"):
        br.load_spec(DATA / "keras-2.15" / "embedding_mask_sum_stacked.h5", layer="dense")


def test_weights_only_file_needs_its_architecture() -> None:
    with pytest.raises(br.UnsupportedModelError, match=r"weights-only file .* needs the architecture: pass config="):
        br.load_spec(DATA / "keras-2.15" / "bidi_custom_backward_mul.weights-only.h5")


def test_list_style_sequential_config_of_keras_2_2(tmp_path: Path) -> None:
    """Keras <= 2.2.4 saved a Sequential's config as the bare list of layers; such files still load."""
    import h5py

    src = DATA / "keras-2.15" / "sequential_lstm_stack.h5"
    dst = tmp_path / "old_style.h5"
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        model = json.loads(f.attrs["model_config"])
        assert model["class_name"] == "Sequential"
        model["config"] = model["config"]["layers"]
        f.attrs["model_config"] = json.dumps(model).encode()
        f.attrs["keras_version"] = b"2.1.6"
    arrays = np.load(DATA / "keras-2.15" / "sequential_lstm_stack.expected.npz")
    for name in ("lstm", "bidirectional"):
        ref = br.load(dst, layer=name)
        assert br.load_spec(dst, layer=name).provenance["keras_version"] == "2.1.6"
        mask = arrays[f"{name}__mask"] if f"{name}__mask" in arrays.files else None
        got = ref(arrays[f"{name}__input"], mask=mask)
        assert compare("out0", arrays[f"{name}__out0"], got, TOLERANCES["float32"]).ok
