"""LSTM weights of any supported file, in Keras layout; and ``bilstm-ref weights diff A B``.

Kinds (by extension):

* ``.keras``, ``.h5``, ``.weights.h5``: Keras files, through :func:`bilstm_ref.loaders.load_spec`
  (``config=`` for weights-only files);
* ``.npz``: a ``torch.nn.LSTM`` state_dict (``weight_ih_l0``, ...), the ONNX ``LSTM`` inputs
  ``W``, ``R``, ``B`` or TFLite per-gate tensors, optionally under a prefix (``lstm.weight_ih_l0``:
  ``layer="lstm"``); members are parsed from their ``.npy`` headers, never unpickled;
* ``.onnx``: the ``W``/``R``/``B`` initializers of the model's ``LSTM`` node (``layer=`` its name when
  there are several), with the ``onnx`` package; external data only from the model's own folder;
* ``.pt`` / ``.pth``: a torch state_dict, read with ``torch.load(weights_only=True)``.

Every error is a :class:`~bilstm_ref.errors.BilstmRefError` naming the file, the key, initializer
or member, and expected vs actual. docs/weights.md describes the report.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import math
import os
import pickle
import re
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any, Optional

import numpy as np

from ..errors import (BilstmRefError, CorruptFileError, DTypeMismatchError, FileAccessError, ResourceLimitError,
                      UnsafeModelError, UnsupportedModelError)
from ..loaders import limits, load_spec
from ..loaders._io import ZIP_MAGIC, PathLike, SafeZip, open_local_file, read_head, read_npy_header
from .diff import diff_weights
from .layouts import (KERAS_FROM_ONNX, onnx_to_keras, permute_gates, split_directions, tflite_gates_to_keras,
                      torch_to_keras)

__all__ = ["WeightSet", "read_weight_set", "read_weights", "weights_diff_main", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "bilstm_ref[convert]"'
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_SEPARATORS = (".", "/")
#: A key ending in one of these names (after a prefix ending in "." or "/") marks a group of weights.
_MARKERS = (("torch", "weight_ih_l0"), ("onnx", "W"), ("tflite", "input_to_forget_weights"),
            ("tflite", "fw_input_to_forget_weights"))
_ONNX_DTYPES = {1: np.dtype("<f4"), 10: np.dtype("<f2"), 11: np.dtype("<f8")}  # TensorProto FLOAT, FLOAT16, DOUBLE
_BiasParts = Optional[list[tuple[np.ndarray, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class WeightSet:
    """One layer's weights read from a file, in Keras ``get_weights()`` order.

    Attributes:
        path: the file.
        weights: ``[kernel (D, 4n), recurrent_kernel (n, 4n)[, bias (4n,)]]`` per direction, each in
            the dtype the file stores (exact).
        kind: ``"keras"``, ``"torch"``, ``"onnx"`` or ``"tflite"``: the layout the file holds.
        bidirectional: two directions (forward, backward).
        source: where in the file the weights came from, in words.
        bias_parts: per direction, the two biases the file's cell adds (torch ``bias_ih``,
            ``bias_hh``; ONNX ``Wb``, ``Rb``) in Keras gate order, or None.
    """

    path: str
    weights: list[np.ndarray]
    kind: str
    bidirectional: bool
    source: str
    bias_parts: _BiasParts = None

    def describe(self) -> str:
        """``path: source: Bidirectional, units 4 | 5, input dim 3, float32``."""
        dirs = split_directions(self.weights)
        units = " | ".join(str(d.units) for d in dirs)
        dtypes = ", ".join(sorted({str(w.dtype) for w in self.weights}))
        bias = "" if all(d.bias is not None for d in dirs) else ", no bias"
        layer = "Bidirectional" if self.bidirectional else "LSTM"
        return f"{self.path}: {self.source}: {layer}, units {units}, input dim {dirs[0].input_dim}, {dtypes}{bias}"


def _import(module: str, what: str) -> Any:
    """An optional dependency, imported when first needed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnsupportedModelError(f"{what} needs the {module!r} package: {INSTALL_HINT}") from None


def _wrapped(name: str, where: str, convert: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
    """``convert()``, its errors re-raised naming the file and the place in it."""
    try:
        return convert()
    except BilstmRefError as e:
        raise type(e)(f"{name!r}: {where}: {e}") from None


# --- name -> array mappings (.npz, .pt) -------------------------------------------------------------
def _groups(keys: list[str]) -> dict[str, str]:
    """Each prefix under which a group of LSTM weights sits -> its kind."""
    found: dict[str, str] = {}
    for key in keys:
        for kind, marker in _MARKERS:
            if key == marker or key.endswith(tuple(sep + marker for sep in _SEPARATORS)):
                found.setdefault(key[: len(key) - len(marker)], kind)
    return found


def _select(name: str, arrays: Mapping[str, Any], layer: Optional[str]) -> tuple[str, str, dict[str, Any]]:
    """(kind, prefix, the group's arrays under their unprefixed names) for ``layer`` (a prefix)."""
    groups = _groups(list(arrays))
    if not groups:
        shown = sorted(arrays)[:20]
        raise CorruptFileError(
            f"{name!r}: no LSTM weights found: expected a torch.nn.LSTM state_dict (weight_ih_l0, weight_hh_l0, ...), "
            f"ONNX LSTM inputs (W, R, B) or TFLite per-gate tensors (input_to_forget_weights, ...); found keys {shown}")
    if layer is not None:
        chosen = [p for p in groups if p == layer or p[:-1] == layer]
        if not chosen:
            raise UnsupportedModelError(f"{name!r}: no LSTM weights under {layer!r}; found "
                                        f"{sorted(p[:-1] or '(no prefix)' for p in groups)}")
    elif len(groups) > 1:
        raise UnsupportedModelError(f"{name!r}: holds several LSTM weight groups "
                                    f"{sorted(p[:-1] or '(no prefix)' for p in groups)}; pass layer= (the prefix)")
    else:
        chosen = list(groups)
    prefix = chosen[0]
    sub = {k[len(prefix):]: v for k, v in arrays.items()
           if k.startswith(prefix) and k != prefix and not any(s in k[len(prefix):] for s in _SEPARATORS)}
    return groups[prefix], prefix, sub


def _onnx_from_mapping(arrays: Mapping[str, Any]) -> list[np.ndarray]:
    unexpected = sorted(set(arrays) - {"W", "R", "B"})
    if unexpected:
        raise UnsupportedModelError(f"unexpected array(s) {unexpected} beside the ONNX LSTM inputs W, R, B"
                                    + (" (P: peephole weights have no Keras equivalent)" if "P" in unexpected else ""))
    if "R" not in arrays:
        raise CorruptFileError(f"missing the ONNX LSTM input R beside W; found {sorted(arrays)}")
    return onnx_to_keras(arrays["W"], arrays["R"], arrays.get("B"))


def _torch_parts(state: Mapping[str, Any]) -> _BiasParts:
    suffixes = [s for s in ("_l0", "_l0_reverse") if f"bias_ih{s}" in state]
    parts = [(np.asarray(state[f"bias_ih{s}"]), np.asarray(state[f"bias_hh{s}"])) for s in suffixes]
    return parts or None


def _onnx_parts(b: Optional[np.ndarray]) -> _BiasParts:
    if b is None:
        return None
    half = b.shape[1] // 2
    return [(permute_gates(row[:half], KERAS_FROM_ONNX), permute_gates(row[half:], KERAS_FROM_ONNX)) for row in b]


def _from_mapping(name: str, arrays: Mapping[str, Any], layer: Optional[str], container: str) -> WeightSet:
    """A WeightSet from a name -> array mapping (an .npz's members, a .pt's state_dict)."""
    kind, prefix, sub = _select(name, arrays, layer)
    where = f"keys {prefix + '*'!r}" if prefix else "keys"
    if kind == "torch":
        weights = _wrapped(name, where, lambda: torch_to_keras(sub))
        parts, what = _torch_parts(sub), "torch.nn.LSTM state_dict"
    elif kind == "onnx":
        weights = _wrapped(name, where, lambda: _onnx_from_mapping(sub))
        parts, what = _onnx_parts(sub.get("B")), "ONNX LSTM inputs W, R" + (", B" if "B" in sub else "")
    else:
        weights = _wrapped(name, where, lambda: tflite_gates_to_keras(sub))
        parts, what = None, "TFLite per-gate tensors"
    source = f"{what} ({container}" + (f", keys {prefix + '*'!r})" if prefix else ")")
    return WeightSet(name, weights, kind, len(split_directions(weights)) == 2, source, parts)


def _npy(data: bytes, where: str) -> np.ndarray:
    """One ``.npy`` member, its size checked against its header before any allocation."""
    f = io.BytesIO(data)
    shape, fortran, dtype = read_npy_header(f, where)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DTypeMismatchError(f"{where}: dtype {dtype}: only numeric arrays are read (objects and pickles never)")
    count = math.prod(shape)
    expected, actual = count * dtype.itemsize, len(data) - f.tell()
    if actual != expected:
        raise CorruptFileError(f"{where}: header declares shape {tuple(shape)} {dtype} ({expected} bytes); "
                               f"found {actual} bytes of data")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def _read_npz(path: PathLike) -> dict[str, np.ndarray]:
    name = str(os.fspath(path))
    with open_local_file(path) as f:
        z = SafeZip(f, name)
        out = {}
        for member in z.names:
            key = member[:-4] if member.endswith(".npy") else member
            out[key] = _npy(z.read(member, limits.MAX_DATASET_BYTES), f"{name!r} member {member!r}")
    if not out:
        raise CorruptFileError(f"{name!r}: empty .npz (no arrays)")
    return out


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    """Tensors of nested mappings under dotted keys (``{"model": {"lstm.weight_ih_l0": t}}``)."""
    for key, value in obj.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten(value, full + ".", out)
        elif type(value).__module__.startswith("torch") and hasattr(value, "dtype"):
            out[full] = value


def _read_torch(path: PathLike) -> dict[str, np.ndarray]:
    """A torch state_dict as NumPy arrays: ``torch.load(weights_only=True)``, nothing else unpickled."""
    name = str(os.fspath(path))
    torch = _import("torch", f"{name!r}: reading a .pt / .pth file")
    with open_local_file(path) as f:
        if read_head(f).startswith(ZIP_MAGIC):  # the zip format: bound every member before torch reads it
            z = SafeZip(f, name)
            for member in z.names:
                z.open(member, limits.MAX_DATASET_BYTES).close()
            f.seek(0)
        try:
            obj = torch.load(f, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
            wanted = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            if wanted:
                raise UnsafeModelError(
                    f"{name!r}: holds objects other than tensors (it asks for {wanted.group(1)}); only state_dicts "
                    "are read, with torch.load(weights_only=True), and nothing else is unpickled: save "
                    "model.state_dict() instead") from None
            why = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
            detail = why.group(1) if why else (text.strip().splitlines() or ["?"])[0]
            raise CorruptFileError(f"{name!r}: not a readable torch file ({detail[:200]})") from None
        except Exception as e:  # torch raises RuntimeError, EOFError, ... for damaged files
            raise CorruptFileError(f"{name!r}: not a readable torch file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, Mapping):
        raise CorruptFileError(f"{name!r}: expected a state_dict (a mapping of names to tensors), got "
                               f"{type(obj).__name__}")
    tensors: dict[str, Any] = {}
    _flatten(obj, "", tensors)
    # bfloat16 has no NumPy dtype: widened to float32, which holds every bfloat16 value exactly.
    return {k: (t.float() if str(t.dtype) == "torch.bfloat16" else t).detach().cpu().numpy()
            for k, t in tensors.items()}


# --- ONNX ------------------------------------------------------------------------------------------
def _onnx_array(onnx: Any, tensor: Any, name: str, where: str) -> np.ndarray:
    """An initializer or Constant tensor as a NumPy array: dtype and size checked before allocation."""
    dtype = _ONNX_DTYPES.get(tensor.data_type)
    if dtype is None:
        try:
            type_name = onnx.TensorProto.DataType.Name(tensor.data_type)
        except ValueError:  # a number no ONNX version defines
            type_name = str(tensor.data_type)
        raise DTypeMismatchError(f"{name!r}: {where}: element type {type_name}; expected FLOAT, FLOAT16 or DOUBLE")
    dims = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in dims):
        raise CorruptFileError(f"{name!r}: {where}: negative dimension in shape {dims}")
    nbytes = math.prod(dims) * dtype.itemsize
    if nbytes > limits.MAX_DATASET_BYTES:
        raise ResourceLimitError(f"{name!r}: {where}: shape {dims} {dtype.name} declares {nbytes} bytes, exceeds "
                                 f"the limit of {limits.MAX_DATASET_BYTES} (bilstm_ref.loaders.limits.MAX_DATASET_BYTES)")
    if tensor.HasField("raw_data"):  # external data was checked and read in by load_checked_model
        raw = tensor.raw_data
    else:
        try:
            array = onnx.numpy_helper.to_array(tensor)
        except Exception as e:  # a field count that does not fit the shape
            raise CorruptFileError(f"{name!r}: {where}: unreadable tensor data ({type(e).__name__}: {e})") from None
        return np.asarray(array, dtype=dtype.newbyteorder("="))
    if len(raw) != nbytes:
        raise CorruptFileError(f"{name!r}: {where}: shape {dims} {dtype.name} needs {nbytes} bytes; found {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _read_onnx(path: PathLike, layer: Optional[str]) -> WeightSet:
    from ..adapters.onnx import load_checked_model

    name = str(os.fspath(path))
    onnx = _import("onnx", f"{name!r}: reading an .onnx file")
    importlib.import_module("onnx.numpy_helper")
    model = load_checked_model(Path(os.fspath(path)))
    graph = model.graph
    lstms = [n for n in graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    if layer is not None:
        # the node's own name, else the Keras layer's scope in its tensors' names ("model_1/bilstm_1/...")
        scope = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?(/|:|$)")
        named = [n for n in lstms if n.name == layer]
        lstms = named or [n for n in lstms if any(scope.search(t) for t in list(n.input) + list(n.output))]
    names = [n.name for n in graph.node if n.op_type == "LSTM"]
    if len(lstms) != 1:
        which = f"named {layer!r}" if layer is not None else ""
        raise UnsupportedModelError(f"{name!r}: expected one LSTM node {which}, found {len(lstms)} (LSTM nodes: "
                                    f"{names}, ops: {sorted({str(n.op_type) for n in graph.node})})"
                                    + ("; pass layer= (the node name)" if len(lstms) > 1 else ""))
    node = lstms[0]
    label = f"LSTM node {node.name!r}"
    attrs = {a.name: a for a in node.attribute}
    if "input_forget" in attrs and attrs["input_forget"].i:
        raise UnsupportedModelError(f"{name!r}: {label}: input_forget=1 (coupled input and forget gates) has no "
                                    "Keras equivalent")
    tensors = {t.name: t for t in graph.initializer}
    for n in graph.node:
        value = next((a.t for a in n.attribute if a.name == "value"), None) if n.op_type == "Constant" else None
        if value is not None and n.output:
            tensors.setdefault(n.output[0], value)
    inputs = list(node.input) + [""] * 8

    def read(slot: int, role: str) -> Optional[np.ndarray]:
        source = inputs[slot]
        if not source:
            return None
        where = f"{label} input {role} ({source!r})"
        if source not in tensors:
            raise UnsupportedModelError(f"{name!r}: {where}: not an initializer or Constant (computed by the graph); "
                                        "only stored weights are read")
        return _onnx_array(onnx, tensors[source], name, where)

    w, r, b, p = read(1, "W"), read(2, "R"), read(3, "B"), read(7, "P")
    if w is None or r is None:
        raise CorruptFileError(f"{name!r}: {label}: missing its W or R input (inputs: {list(node.input)})")
    if p is not None and np.any(p != 0):
        raise UnsupportedModelError(f"{name!r}: {label}: nonzero peephole weights P ({inputs[7]!r}) have no Keras "
                                    "equivalent")
    where = f"{label} (W = {inputs[1]!r}, R = {inputs[2]!r}" + (f", B = {inputs[3]!r})" if b is not None else ")")
    weights = _wrapped(name, where, lambda: onnx_to_keras(w, r, b))
    hidden = attrs["hidden_size"].i if "hidden_size" in attrs else None
    if hidden is not None and hidden != r.shape[-1]:
        raise CorruptFileError(f"{name!r}: {label}: hidden_size={hidden} but R {inputs[2]!r} has shape {r.shape}")
    source = f"ONNX {label}" + (f" ({attrs['direction'].s.decode('utf-8', 'replace')})" if "direction" in attrs else "")
    return WeightSet(name, weights, "onnx", w.shape[0] == 2, source, _onnx_parts(b))


# --- public API ----------------------------------------------------------------------------------
def _keras(path: PathLike, layer: Optional[str], config: Optional[PathLike]) -> WeightSet:
    spec = load_spec(path, layer=layer, config=config)
    prov = spec.provenance
    stored = prov.get("weight_dtypes") or []
    weights = list(spec.weights)
    if len(stored) == 1 and stored[0] in ("float16", "float32", "float64"):
        weights = [w.astype(stored[0]) for w in weights]  # load_spec widened them to float64: back, exactly
    source = f"Keras {prov.get('format', 'file')}, layer {prov.get('layer')!r}"
    return WeightSet(str(os.fspath(path)), weights, "keras", spec.class_name == "Bidirectional", source)


def read_weight_set(path: PathLike, layer: Optional[str] = None, config: Optional[PathLike] = None) -> WeightSet:
    """One layer's weights from a file of any supported kind, in Keras layout (see the module docstring).

    Args:
        path: ``.keras`` / ``.h5`` / ``.weights.h5``, ``.npz``, ``.onnx``, ``.pt`` / ``.pth``.
        layer: the Keras layer name, the ``.npz`` / ``.pt`` key prefix (``"lstm"`` for
            ``lstm.weight_ih_l0``), or the ONNX node name; needed only when the file holds several.
        config: the architecture for a Keras weights-only file (not used by the other kinds).
    Raises:
        FileAccessError, CorruptFileError, UnsafeModelError, UnsupportedModelError, ShapeMismatchError,
        DTypeMismatchError, ResourceLimitError (all :class:`~bilstm_ref.errors.BilstmRefError`).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise FileAccessError(f"weights path: expected a str or os.PathLike, got {type(path).__name__}")
    name = str(os.fspath(path))
    lower = name.lower()
    if lower.endswith(_KERAS_SUFFIXES):
        return _keras(path, layer, config)
    if lower.endswith(".npz"):
        return _from_mapping(name, _read_npz(path), layer, ".npz")
    if lower.endswith(".onnx"):
        return _read_onnx(path, layer)
    if lower.endswith((".pt", ".pth")):
        return _from_mapping(name, _read_torch(path), layer, "torch.load(weights_only=True)")
    raise UnsupportedModelError(f"{name!r}: unknown kind of weights file; expected .keras, .h5, .weights.h5, .npz, "
                                ".onnx, .pt or .pth")


def read_weights(path: PathLike, layer: Optional[str] = None, config: Optional[PathLike] = None
                 ) -> tuple[list[np.ndarray], str, bool]:
    """``(weights in Keras get_weights() order, kind, bidirectional)`` for one layer of a file.

    ``kind`` is ``"keras"``, ``"torch"``, ``"onnx"`` or ``"tflite"``. Same arguments and errors as
    :func:`read_weight_set`.
    """
    ws = read_weight_set(path, layer, config)
    return ws.weights, ws.kind, ws.bidirectional


def weights_diff_main(a_path: PathLike, b_path: PathLike, layer: Optional[str] = None,
                      config: Optional[PathLike] = None, *, b_layer: Optional[str] = None,
                      b_config: Optional[PathLike] = None, atol: float = 0.0, rtol: float = 0.0) -> tuple[int, str]:
    """``bilstm-ref weights diff A B``: ``(exit code, text to print)``; 0 equal, 1 differ.

    Args:
        a_path, b_path: files of any kind :func:`read_weight_set` reads; A is the reference.
        layer, config: for A, and for B unless ``b_layer`` / ``b_config`` are given (a ``.keras``
            archive B holds its own config and is not handed A's).
        atol, rtol: compare within a tolerance (default: exactly).
    Raises:
        BilstmRefError subclasses when a file cannot be read (the CLI prints the message, exit 2).
    """
    a = read_weight_set(a_path, layer, config)
    if b_config is None and not str(os.fspath(b_path)).lower().endswith(".keras"):  # an archive has its own
        b_config = config
    b = read_weight_set(b_path, layer if b_layer is None else b_layer, b_config)
    result = diff_weights(a.weights, b.weights, atol=atol, rtol=rtol, a_bias_parts=a.bias_parts,
                          b_bias_parts=b.bias_parts)
    text = "\n".join([f"A: {a.describe()}", f"B: {b.describe()}", result.describe()])
    return (0 if result.equal else 1), text
