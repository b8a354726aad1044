"""The weights diff (bilstm_ref.convert.diff / .files): every seeded layout fault is named, an unrelated
change is not passed off as one, and files of every kind are read into the Keras layout safely.

Weights come from the matrix (per-gate scales and offsets, distinct units), never constants.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import itertools
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.conformance import matrix
from bilstm_ref.convert import (diff_weights, keras_to_onnx, keras_to_tflite_gates, keras_to_torch, permute_gates,
                                read_weight_set, read_weights, weights_diff_main)
from bilstm_ref.convert.diff import KNOWN_GATE_ORDERS
from bilstm_ref.loaders import limits

BIDI = matrix.by_id()["bidi-concat-seq-state-mask_none"]
A = BIDI.weights  # forward kernel (3, 16), recurrent (4, 16), bias (16,); then the backward layer's
N, D = BIDI.units, BIDI.features
NAMES = ["forward_layer/kernel", "forward_layer/recurrent_kernel", "forward_layer/bias",
         "backward_layer/kernel", "backward_layer/recurrent_kernel", "backward_layer/bias"]
KERAS_H5 = Path(__file__).parent / "data" / "keras2" / "keras-2.15" / "bidi_return_state_ave.h5"
PERMUTATIONS = [p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)]


def _with(weights: list[np.ndarray], **changes: np.ndarray) -> list[np.ndarray]:
    """``weights`` with tensors replaced by index: ``_with(A, w1=...)``."""
    out = list(weights)
    for key, value in changes.items():
        out[int(key[1:])] = value
    return out


def _kinds(result) -> list[tuple[str, str]]:
    return [(f.kind, f.tensor.split(" ")[0]) for f in result.faults]


def _blocks_transposed(r: np.ndarray, gates: tuple[int, ...]) -> np.ndarray:
    blocks = np.split(r, 4, axis=1)
    return np.concatenate([b.T if g in gates else b for g, b in enumerate(blocks)], axis=1)


# --- equal --------------------------------------------------------------------------------------------
def test_equal_weights(rng) -> None:
    result = diff_weights(A, [w.copy() for w in A])
    assert result.equal and result.identical and not result.faults
    assert result.describe() == "equal: all 6 tensors bit-identical"
    widened = diff_weights(A, [w.astype(np.float64) for w in A])
    assert widened.equal and not widened.identical and "dtypes differ (A float32; B float64)" in widened.describe()
    noisy = [w + rng.uniform(-1e-6, 1e-6, w.shape).astype(w.dtype) for w in A]
    assert not diff_weights(A, noisy).equal
    assert diff_weights(A, noisy, atol=1e-5).equal


# --- gate permutations --------------------------------------------------------------------------------
@pytest.mark.parametrize("order", PERMUTATIONS, ids=lambda p: "".join("ifco"[k] for k in p))
def test_every_gate_permutation_of_every_tensor_is_named(order: tuple[int, ...]) -> None:
    names = ", ".join("ifco"[k] for k in order)
    for index, name in enumerate(NAMES):
        result = diff_weights(A, _with(A, **{f"w{index}": permute_gates(A[index], order)}))
        assert _kinds(result) == [("gate_permutation", name)], (order, name, result.describe())
        message = result.faults[0].message
        assert message.startswith(f"gate blocks in order {names}") and message.endswith("where Keras expects i, f, c, o")
        assert (KNOWN_GATE_ORDERS.get(order, "") in message) and result.explained


def test_onnx_order_in_every_tensor_is_named_as_such() -> None:
    result = diff_weights(A, [permute_gates(w, (0, 3, 1, 2)) for w in A])
    assert _kinds(result) == [("gate_permutation", name) for name in NAMES]
    assert ("gate blocks in order i, o, f, c (ONNX order) where Keras expects i, f, c, o" in result.describe())


# --- transposes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("index, make, message", [
    (0, lambda a: a.T.copy(), "kernel transposed: B holds A.T, shape (16, 3)"),
    (0, lambda a: a.T.reshape(a.shape), "kernel transposed, then read back with reshape instead of transpose"),
    (1, lambda a: a.T.copy(), "recurrent_kernel transposed: B holds A.T, shape (16, 4)"),
    (4, lambda a: a.T.reshape(a.shape), "B = A.T.reshape(4, 16)"),
])
def test_transposed_matrices_are_named(index: int, make, message: str) -> None:
    result = diff_weights(A, _with(A, **{f"w{index}": make(A[index])}))
    assert _kinds(result) == [("transposed", NAMES[index])] and message in result.faults[0].message


def test_square_kernel_transposed_is_named() -> None:
    case = dataclasses.replace(BIDI, features=4 * N, group="pairwise")  # kernel (16, 16)
    a = case.weights
    result = diff_weights(a, _with(a, w3=a[3].T.copy()))
    assert _kinds(result) == [("transposed", "backward_layer/kernel")]
    assert "kernel transposed (square)" in result.faults[0].message


@pytest.mark.parametrize("gates", [g for k in range(1, 5) for g in itertools.combinations(range(4), k)],
                         ids=lambda g: "".join("ifco"[k] for k in g))
def test_each_set_of_transposed_recurrent_blocks_is_named(gates: tuple[int, ...]) -> None:
    result = diff_weights(A, _with(A, w1=_blocks_transposed(A[1], gates)))
    assert _kinds(result) == [("blocks_transposed", "forward_layer/recurrent_kernel")], result.describe()
    named = ", ".join("ifco"[g] for g in gates)
    assert ("every gate's" if len(gates) == 4 else named) in result.faults[0].message


def test_permutation_and_block_transposes_together() -> None:
    b = _with(A, w4=_blocks_transposed(permute_gates(A[4], (0, 3, 1, 2)), (0, 1, 2, 3)))
    result = diff_weights(A, b)
    assert _kinds(result) == [("gate_permutation", "backward_layer/recurrent_kernel"),
                              ("blocks_transposed", "backward_layer/recurrent_kernel")]
    stored_transposed = _with(A, w0=permute_gates(A[0], (1, 0, 2, 3)).T.copy())
    assert _kinds(diff_weights(A, stored_transposed)) == [("transposed", "forward_layer/kernel"),
                                                          ("gate_permutation", "forward_layer/kernel")]


# --- biases -------------------------------------------------------------------------------------------
def test_bias_doubled_halved_and_lost() -> None:
    cases = {
        "bias_doubled": A[2] * 2,
        "bias_split_lost": A[2] / 2,
        "bias_lost": np.zeros_like(A[2]),
    }
    for kind, bias in cases.items():
        result = diff_weights(A, _with(A, w2=bias))
        assert _kinds(result) == [(kind, "forward_layer/bias")], result.describe()
    onnx_doubled = diff_weights(A, _with(A, w5=permute_gates(A[5] * 2, (0, 3, 1, 2))))
    assert [f.kind for f in onnx_doubled.faults] == ["bias_doubled", "gate_permutation"]


def test_lost_half_of_a_split_bias_is_named_with_the_parts(rng) -> None:
    hh = [rng.normal(scale=0.5, size=4 * N).astype(np.float32) for _ in range(2)]
    parts = [(A[2] - hh[0], hh[0]), (A[5] - hh[1], hh[1])]  # a torch state_dict with both biases in use
    a = _with(A, w2=parts[0][0] + parts[0][1], w5=parts[1][0] + parts[1][1])
    result = diff_weights(a, _with(a, w2=parts[0][0], w5=parts[1][1]), a_bias_parts=parts)
    assert _kinds(result) == [("bias_split_lost", "forward_layer/bias"), ("bias_split_lost", "backward_layer/bias")]
    assert "B's bias is A's bias_ih / Wb alone (bias_hh / Rb dropped)" in result.faults[0].message
    assert "(bias_ih / Wb dropped)" in result.faults[1].message
    reverse = diff_weights(_with(a, w2=parts[0][0]), a, b_bias_parts=parts)  # the lost half on A's side
    assert _kinds(reverse) == [("bias_split_lost", "forward_layer/bias")]
    assert "A's bias is B's bias_ih / Wb alone" in reverse.faults[0].message
    without_parts = diff_weights(a, _with(a, w2=parts[0][0]))
    assert _kinds(without_parts) == [("not_a_layout_fault", "forward_layer/bias")]


# --- directions and units -----------------------------------------------------------------------------
def test_directions_swapped() -> None:
    result = diff_weights(A, A[3:] + A[:3])
    assert _kinds(result) == [("directions_swapped", "forward_layer,")]
    swapped_and_onnx = diff_weights(A, A[3:] + [permute_gates(w, (0, 3, 1, 2)) for w in A[:3]])
    assert [f.kind for f in swapped_and_onnx.faults] == ["directions_swapped"] + ["gate_permutation"] * 3
    assert all(f.tensor.startswith("backward_layer/") for f in swapped_and_onnx.faults[1:])


@pytest.mark.parametrize("units", [2, 4, 7])
def test_units_permuted_consistently(rng, units: int) -> None:
    case = dataclasses.replace(matrix.by_id()["lstm-seq-state-mask_none"], units=units, group="pairwise")
    a = case.weights
    perm = rng.permutation(units)
    while np.array_equal(perm, np.arange(units)):
        perm = rng.permutation(units)
    cols = (np.arange(4)[:, None] * units + perm[None, :]).reshape(-1)
    result = diff_weights(a, [a[0][:, cols], a[1][perm][:, cols], a[2][cols]])
    assert _kinds(result) == [("units_permuted", "layer")], result.describe()
    assert f"perm = [{', '.join(map(str, perm))}]" in result.faults[0].message
    inconsistent = diff_weights(a, [a[0][:, cols], a[1][:, cols], a[2][cols]])  # recurrent rows left in place
    assert "units_permuted" not in [f.kind for f in inconsistent.faults] and not inconsistent.explained


# --- not a layout fault -------------------------------------------------------------------------------
def test_unrelated_change_is_not_a_layout_fault(rng) -> None:
    b = [w.copy() for w in A]
    b[4][1, 5] += 0.25
    result = diff_weights(A, b)
    assert _kinds(result) == [("not_a_layout_fault", "backward_layer/recurrent_kernel")]
    assert result.faults[0].max_abs_diff == pytest.approx(0.25, rel=1e-6) and not result.explained
    assert "max |A - B| = 0.25 at index (1, 5); 1 of 64 elements differ" in result.describe()
    noise = [w + rng.normal(scale=0.1, size=w.shape).astype(w.dtype) for w in A]
    assert {f.kind for f in diff_weights(A, noise).faults} == {"not_a_layout_fault"}
    mixed = diff_weights(A, _with(b, w0=permute_gates(A[0], (0, 3, 1, 2))))
    assert [f.kind for f in mixed.faults] == ["gate_permutation", "not_a_layout_fault"]
    assert mixed.describe().startswith("differ: 1 layout fault(s) found, and differences no layout fault explains")


def test_structure_mismatch_and_bad_reference() -> None:
    result = diff_weights(A, A[:3])
    assert _kinds(result) == [("shape_mismatch", "layer")] and "different structure" in result.describe()
    with pytest.raises(br.ShapeMismatchError, match=r"weights\[1\] \(recurrent_kernel, units=4\)"):
        diff_weights([A[0], A[1].T], A[:2])


# --- files --------------------------------------------------------------------------------------------
def _onnx_file(path: Path, weights: list[np.ndarray], bidirectional: bool, **save: object) -> Path:
    onnx = pytest.importorskip("onnx", reason="writing .onnx files needs the onnx package")
    from onnx import TensorProto, helper, numpy_helper

    io = keras_to_onnx(weights, bidirectional)
    node = helper.make_node("LSTM", ["X", "w_init", "r_init", "b_init"], ["Y"], name="encoder",
                            hidden_size=N, direction="bidirectional" if bidirectional else "forward")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, (5, 1, D))],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(io[k], f"{k.lower()}_init") for k in "WRB"])
    onnx.save(helper.make_model(graph), str(path), **save)
    return path


#: The kind each file of the ``files`` fixture holds.
KINDS = {"torch.npz": "torch", "onnx.npz": "onnx", "tflite.npz": "tflite", "model.onnx": "onnx", "sd.pt": "torch"}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A's weights written in every kind the diff reads (.onnx / .pt only where onnx / torch are installed)."""
    sd = keras_to_torch(A, True)
    np.savez(tmp_path / "torch.npz", **{f"lstm.{k}": v for k, v in sd.items()}, **{"head.weight": np.ones((2, 8))})
    np.savez(tmp_path / "onnx.npz", **keras_to_onnx(A, True))
    np.savez(tmp_path / "tflite.npz", **keras_to_tflite_gates(A, True))
    if importlib.util.find_spec("onnx") is not None:
        _onnx_file(tmp_path / "model.onnx", A, True)
    if importlib.util.find_spec("torch") is not None:
        import torch

        lstm = torch.nn.LSTM(D, N, bidirectional=True)
        lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        torch.save({"model": {f"rnn.{k}": v for k, v in lstm.state_dict().items()}, "epoch": 3}, tmp_path / "sd.pt")
    return {name: tmp_path / name for name in KINDS if (tmp_path / name).exists()}


def test_every_kind_reads_back_to_the_same_weights(files: dict[str, Path]) -> None:
    for name, path in files.items():
        weights, kind, bidi = read_weights(path)
        assert bidi and kind == KINDS[name], name
        assert diff_weights(A, weights).identical, name


def test_keras_file_kind() -> None:
    ws = read_weight_set(KERAS_H5)
    assert ws.kind == "keras" and ws.bidirectional and all(w.dtype == np.float32 for w in ws.weights)
    assert "Keras legacy .h5 (full model), layer 'bidirectional'" in ws.describe()


def test_weights_diff_main(files: dict[str, Path], tmp_path: Path, rng) -> None:
    code, text = weights_diff_main(files["torch.npz"], files["tflite.npz"])
    assert code == 0 and text.splitlines()[2] == "equal: all 6 tensors bit-identical"
    assert text.splitlines()[0].endswith("torch.nn.LSTM state_dict (.npz, keys 'lstm.*'): Bidirectional, units 4 | 4, "
                                         "input dim 3, float32")
    np.savez(tmp_path / "bug.npz", **keras_to_onnx([permute_gates(w, (0, 3, 1, 2)) for w in A], True))
    code, text = weights_diff_main(files["tflite.npz"], tmp_path / "bug.npz")
    assert code == 1 and "(ONNX order) where Keras expects i, f, c, o" in text
    ws = read_weight_set(KERAS_H5)
    sd = keras_to_torch(ws.weights, True)
    sd["bias_hh_l0"] = rng.normal(size=ws.weights[2].shape).astype(np.float32)  # a torch export with both biases in use ...
    sd["bias_ih_l0"] = ws.weights[2] - sd["bias_hh_l0"]
    np.savez(tmp_path / "split.npz", **sd)
    np.savez(tmp_path / "dropped.npz", **{**sd, "bias_hh_l0": np.zeros_like(sd["bias_hh_l0"])})  # ... one lost
    code, text = weights_diff_main(tmp_path / "split.npz", tmp_path / "dropped.npz")
    assert code == 1 and "forward_layer/bias (weights[2]): bias split lost: B's bias is A's bias_ih / Wb alone" in text
    code, text = weights_diff_main(KERAS_H5, tmp_path / "split.npz")
    assert code == 1 and "not a layout fault" in text  # bias_ih + bias_hh rounds: not bit-exact, ...
    assert weights_diff_main(KERAS_H5, tmp_path / "split.npz", atol=1e-6)[0] == 0  # ... but within 1 ulp-ish


def test_layer_selects_a_prefix(files: dict[str, Path], tmp_path: Path) -> None:
    sd = keras_to_torch(A, True)
    np.savez(tmp_path / "two.npz", **{f"enc.{k}": v for k, v in sd.items()}, **{f"dec/{k}": v for k, v in sd.items()})
    with pytest.raises(br.UnsupportedModelError, match=r"several LSTM weight groups \['dec', 'enc'\]; pass layer="):
        read_weights(tmp_path / "two.npz")
    assert read_weight_set(tmp_path / "two.npz", layer="dec").source.endswith("keys 'dec/*')")
    with pytest.raises(br.UnsupportedModelError, match=r"no LSTM weights under 'lstm'; found \['dec', 'enc'\]"):
        read_weights(tmp_path / "two.npz", layer="lstm")
    _, text = weights_diff_main(files["torch.npz"], tmp_path / "two.npz", layer="lstm", b_layer="enc")
    assert "equal" in text.splitlines()[2]


@pytest.mark.parametrize("arrays, error, message", [
    ({"weight_ih_l0": np.zeros((16, 3)), "weight_hh_l0": np.zeros((16, 5))}, br.ShapeMismatchError,
     "'{f}': keys: state_dict['weight_hh_l0'] (hidden_size=4, input_size=3): expected shape (16, 4), got (16, 5)"),
    ({"lstm.weight_ih_l0": np.zeros((16, 3)), "lstm.weight_hh_l0": np.zeros((16, 4)), "lstm.weight_ih_l1": np.zeros(3)},
     br.UnsupportedModelError, "keys 'lstm.*': state_dict key 'weight_ih_l1': a multi-layer nn.LSTM"),
    ({"W": np.zeros((1, 16, 3)), "R": np.zeros((1, 16, 4)), "P": np.zeros((1, 12))}, br.UnsupportedModelError,
     "unexpected array(s) ['P'] beside the ONNX LSTM inputs W, R, B (P: peephole"),
    ({"weights": np.zeros(3)}, br.CorruptFileError, "no LSTM weights found"),
    ({"weight_ih_l0": np.array([object()] * 3)}, br.DTypeMismatchError, "dtype object: only numeric arrays are read"),
])
def test_npz_errors_name_file_key_expected_and_actual(tmp_path: Path, arrays, error, message: str) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    with pytest.raises(error) as e:
        read_weights(path)
    assert message.format(f=path) in str(e.value)


def test_npz_header_must_match_its_data(tmp_path: Path) -> None:
    header = np.lib.format.header_data_from_array_1_0(np.zeros((16, 3)))
    header["shape"] = (10**6, 10**6)  # a 8 TB array declared over 384 bytes of data
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("weight_ih_l0.npy", buf.getvalue() + np.zeros((16, 3)).tobytes())
    with pytest.raises(br.CorruptFileError, match=r"member 'weight_ih_l0.npy': header declares shape \(1000000, 1000000\)"):
        read_weights(tmp_path / "bomb.npz")


def test_unknown_kind_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(br.UnsupportedModelError, match=r"unknown kind of weights file; expected .keras"):
        read_weights(tmp_path / "w.bin")
    with pytest.raises(br.FileAccessError, match="no such file"):
        read_weights(tmp_path / "absent.npz")


# --- .onnx --------------------------------------------------------------------------------------------
def test_onnx_node_selection_and_external_data(tmp_path: Path) -> None:
    path = _onnx_file(tmp_path / "ext.onnx", A, True, save_as_external_data=True, location="ext.bin",
                      size_threshold=0)
    ws = read_weight_set(path)
    assert ws.kind == "onnx" and ws.source == "ONNX LSTM node 'encoder' (bidirectional)" and diff_weights(A, ws.weights).identical
    assert read_weight_set(path, layer="encoder").weights[0].tobytes() == A[0].tobytes()
    with pytest.raises(br.UnsupportedModelError, match=r"expected one LSTM node named 'decoder', found 0 \(LSTM nodes: \['encoder'\]"):
        read_weights(path, layer="decoder")
    single = _onnx_file(tmp_path / "one.onnx", A[:3], False)
    weights, kind, bidi = read_weights(single)
    assert kind == "onnx" and not bidi and diff_weights(A[:3], weights).identical


def _external_model(tmp_path: Path, location: str) -> Path:
    """A model whose W initializer points at ``location``."""
    onnx = pytest.importorskip("onnx", reason="writing .onnx files needs the onnx package")
    (tmp_path / "m").mkdir()
    path = _onnx_file(tmp_path / "m" / "model.onnx", A, True, save_as_external_data=True, location="data.bin",
                      size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "/etc/passwd", "..\\outside.bin"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    path = _external_model(tmp_path, location)
    with pytest.raises(br.UnsafeModelError) as e:
        read_weights(path)
    assert str(path) in str(e.value) and repr(location) in str(e.value) and "'w_init'" in str(e.value)


def test_onnx_external_data_symlink_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    path = _external_model(tmp_path, "link.bin")
    os.symlink(tmp_path / "outside.bin", tmp_path / "m" / "link.bin")
    with pytest.raises(br.UnsafeModelError, match=r"initializer 'w_init' stores its data at 'link.bin', outside the "
                                                   r"model's folder \(absolute, '..' or a symlink leading out\)"):
        read_weights(path)


def test_onnx_sizes_are_bounded_before_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _onnx_file(tmp_path / "m.onnx", A, True)
    monkeypatch.setattr(limits, "MAX_DATASET_BYTES", 100)
    with pytest.raises(br.ResourceLimitError, match=r"input W \('w_init'\): shape \(2, 16, 3\) float32 declares 384 bytes"):
        read_weights(path)


def test_onnx_and_torch_missing_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    (tmp_path / "m.pt").write_bytes(b"\x80\x02")
    for module, name in (("onnx", "m.onnx"), ("torch", "m.pt")):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
        with pytest.raises(br.UnsupportedModelError) as e:
            read_weights(tmp_path / name)
        assert str(e.value).endswith(f"needs the '{module}' package: pip install \"bilstm_ref[convert]\"")
        assert len(str(e.value).splitlines()) == 1


def test_corrupt_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="reading .onnx files needs the onnx package")
    (tmp_path / "bad.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(br.CorruptFileError, match=r"bad.onnx: not an ONNX model"):
        read_weights(tmp_path / "bad.onnx")


# --- .pt ----------------------------------------------------------------------------------------------
def test_pt_reads_state_dicts_only(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="reading .pt files needs torch (pip install torch)")
    lstm = torch.nn.LSTM(D, N)
    torch.save(lstm, tmp_path / "module.pt")  # a whole pickled module: never unpickled
    with pytest.raises(br.UnsafeModelError, match=r"module.pt'.*it asks for torch.nn.modules.rnn.LSTM.*state_dict"):
        read_weights(tmp_path / "module.pt")
    torch.save(lstm.state_dict(), tmp_path / "sd.pt")
    weights, kind, bidi = read_weights(tmp_path / "sd.pt")
    assert kind == "torch" and not bidi and [w.shape for w in weights] == [(D, 4 * N), (N, 4 * N), (4 * N,)]
    np.testing.assert_array_equal(weights[0], lstm.weight_ih_l0.detach().numpy().T)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(br.CorruptFileError, match=r"junk.pt': not a readable torch file"):
        read_weights(tmp_path / "junk.pt")
