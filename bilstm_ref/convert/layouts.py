"""Exact weight-layout moves between Keras ``LSTM`` / ``Bidirectional(LSTM)`` and torch, ONNX, TFLite.

Keras keeps, per direction, ``[kernel (D, 4n), recurrent_kernel (n, 4n), bias (4n,)]`` (the bias
absent with ``use_bias=False``), gate blocks ``i, f, c, o`` along the last axis; a Bidirectional
lists the forward layer's tensors, then the backward layer's. The functions here only transpose,
slice, reorder and stack: every value keeps its dtype and its bits. The one exception is reading a
layout with two biases per direction (torch ``bias_ih`` + ``bias_hh``, ONNX ``Wb`` + ``Rb``) into
Keras's single bias, which must add them (see :func:`merge_biases`). docs/weights.md has the tables.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from ..errors import DTypeMismatchError, ShapeMismatchError, UnsupportedModelError

__all__ = [
    "KERAS_GATES",
    "ONNX_FROM_KERAS",
    "KERAS_FROM_ONNX",
    "TFLITE_GATES",
    "Direction",
    "split_directions",
    "join_directions",
    "group_directions",
    "direction_names",
    "permute_gates",
    "inverse_order",
    "merge_biases",
    "as_float_array",
    "keras_to_torch",
    "torch_to_keras",
    "keras_to_onnx",
    "onnx_to_keras",
    "keras_to_tflite_gates",
    "tflite_gates_to_keras",
]

#: Keras's gate blocks along the last axis of kernel, recurrent_kernel and bias.
KERAS_GATES = ("i", "f", "c", "o")
#: ONNX's gate block k holds Keras's gate ``ONNX_FROM_KERAS[k]`` (ONNX order i, o, f, c).
ONNX_FROM_KERAS = (0, 3, 1, 2)
#: TFLite's per-gate tensor names, in Keras's gate order (input = i, forget = f, cell = c, output = o).
TFLITE_GATES = ("input", "forget", "cell", "output")


def inverse_order(order: Sequence[int]) -> tuple[int, ...]:
    """The permutation undoing ``order``: ``permute_gates(permute_gates(a, p), inverse_order(p)) == a``."""
    inv = [0] * len(order)
    for k, src in enumerate(order):
        inv[src] = k
    return tuple(inv)


#: Keras's gate block k is ONNX's block ``KERAS_FROM_ONNX[k]``.
KERAS_FROM_ONNX = inverse_order(ONNX_FROM_KERAS)


# --- arrays ---------------------------------------------------------------------------------------
def as_float_array(value: Any, where: str) -> np.ndarray:
    """``value`` (a NumPy array, a CPU torch tensor, nested lists) as a float16/32/64 array, not copied.

    Raises DTypeMismatchError naming ``where`` for integer, complex, object, bfloat16 or extended
    precision data: converting those could not keep every bit.
    """
    if type(value).__module__.startswith("torch"):
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            raise DTypeMismatchError(f"{where}: dtype torch.bfloat16 has no NumPy equivalent; pass "
                                     "tensor.float() (exact) to convert it")
        value = value.detach().cpu()
    a = np.asarray(value)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        raise DTypeMismatchError(f"{where}: dtype {a.dtype}; expected float16, float32 or float64")
    return a


def _shape_check(a: np.ndarray, expected: tuple[int, ...], where: str) -> None:
    if a.shape != expected:
        raise ShapeMismatchError(f"{where}: expected shape {expected}, got {a.shape}")


def _t(a: np.ndarray) -> np.ndarray:
    """A C-contiguous transpose (a copy: callers never alias the caller's arrays)."""
    return np.ascontiguousarray(a.T)


def permute_gates(a: np.ndarray, order: Sequence[int], axis: int = -1) -> np.ndarray:
    """``a`` with its 4 gate blocks along ``axis`` reordered: block k of the result is block ``order[k]``.

    Args:
        a: any array whose ``axis`` has length 4n (e.g. a kernel ``(D, 4n)`` or a bias ``(4n,)``).
        order: a permutation of ``(0, 1, 2, 3)``.
    Returns:
        A new array of the same shape and dtype (the same bits, moved).
    """
    blocks = np.split(np.asarray(a), 4, axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


def merge_biases(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One bias from two that the cell adds (torch ``bias_ih + bias_hh``, ONNX ``Wb + Rb``), ``(4n,)``.

    The only arithmetic in this module. Where ``second`` is zero the result is ``first`` itself (not
    ``first + 0``, which would turn a ``-0.0`` into ``+0.0``), so the all-zero second bias that
    :func:`keras_to_torch` / :func:`keras_to_onnx` write reads back bit for bit. Two nonzero biases
    are rounded once when added: such a state dict cannot round-trip exactly through Keras's single
    bias.
    """
    with np.errstate(invalid="ignore"):  # a signalling NaN from a damaged file is quietly NaN
        return np.where(second == 0, first, first + second)


# --- Keras directions -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Direction:
    """One Keras LSTM's weights: ``kernel (D, 4n)``, ``recurrent_kernel (n, 4n)``, ``bias (4n,)`` or None."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: Optional[np.ndarray]

    @property
    def units(self) -> int:
        return int(self.recurrent_kernel.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def tensors(self) -> list[np.ndarray]:
        """The direction's tensors in Keras ``get_weights()`` order."""
        return [self.kernel, self.recurrent_kernel] + ([] if self.bias is None else [self.bias])


def direction_names(count: int) -> tuple[str, ...]:
    """How messages name the directions of a layer with ``count`` of them."""
    return ("",) if count == 1 else ("forward_layer/", "backward_layer/")


def group_directions(weights: Sequence[Any]) -> list[list[np.ndarray]]:
    """Keras-order tensors grouped by direction by rank alone: 2-D kernel, 2-D recurrent kernel, then
    a 1-D bias if one follows. Checks dtypes, not shapes (see :func:`split_directions`)."""
    arrays = [as_float_array(w, f"weights[{i}]") for i, w in enumerate(weights)]
    groups: list[list[np.ndarray]] = []
    i = 0
    while i < len(arrays):
        for j, role in ((i, "kernel"), (i + 1, "recurrent_kernel")):
            if j >= len(arrays) or arrays[j].ndim != 2:
                got = "nothing" if j >= len(arrays) else f"shape {arrays[j].shape}"
                raise ShapeMismatchError(f"weights[{j}]: expected a 2-D {role} (Keras order kernel, "
                                         f"recurrent_kernel[, bias] per direction), got {got}")
        end = i + 3 if i + 2 < len(arrays) and arrays[i + 2].ndim == 1 else i + 2
        groups.append(arrays[i:end])
        i = end
    return groups


def split_directions(weights: Sequence[Any], bidirectional: Optional[bool] = None) -> list[Direction]:
    """Keras ``get_weights()`` order -> one :class:`Direction` per direction, shapes checked.

    Args:
        weights: ``[kernel (D, 4n), recurrent_kernel (n, 4n)[, bias (4n,)]]`` once per direction.
        bidirectional: expect 2 directions (True), 1 (False) or whichever the list holds (None).
    Raises:
        ShapeMismatchError naming ``weights[i]``, the tensor's role and expected vs actual shape;
        DTypeMismatchError for non-float data.
    """
    groups = group_directions(weights)
    want = {True: 2, False: 1, None: len(groups)}[bidirectional]
    if len(groups) != want or want not in (1, 2):
        shapes = [tuple(np.shape(w)) for w in weights]
        raise ShapeMismatchError(
            f"weights: expected {want if want in (1, 2) else '1 or 2'} direction(s) of [kernel, recurrent_kernel"
            f"[, bias]] ({'Bidirectional' if want == 2 else 'LSTM'}), got {len(groups)}: shapes {shapes}")
    out: list[Direction] = []
    index = 0
    for group, prefix in zip(groups, direction_names(len(groups))):
        kernel, recurrent = group[0], group[1]
        where = f"weights[{index}] ({prefix}kernel)"
        if kernel.shape[1] % 4 or kernel.shape[1] == 0:
            raise ShapeMismatchError(f"{where}: expected shape (D, 4*units), got {kernel.shape} "
                                     f"({kernel.shape[1]} columns is not a positive multiple of 4)")
        n = kernel.shape[1] // 4
        _shape_check(recurrent, (n, 4 * n), f"weights[{index + 1}] ({prefix}recurrent_kernel, units={n})")
        bias = group[2] if len(group) == 3 else None
        if bias is not None:
            _shape_check(bias, (4 * n,), f"weights[{index + 2}] ({prefix}bias, units={n})")
        out.append(Direction(kernel, recurrent, bias))
        index += len(group)
    return out


def join_directions(directions: Sequence[Direction]) -> list[np.ndarray]:
    """The inverse of :func:`split_directions`: Keras ``get_weights()`` order."""
    return [t for d in directions for t in d.tensors]


def _same_structure(directions: Sequence[Direction], target: str) -> None:
    """Both directions of a Bidirectional share units, input dim and use_bias (``target`` needs it)."""
    if len(directions) < 2:
        return
    fw, bw = directions
    if fw.units != bw.units:
        raise UnsupportedModelError(
            f"{target} holds both directions with one hidden size: the forward layer has units={fw.units}, "
            f"the backward layer units={bw.units} (a custom backward_layer); convert each direction as its own LSTM")
    if (fw.bias is None) != (bw.bias is None):
        raise UnsupportedModelError(
            f"{target} has one bias flag for both directions: the forward layer has use_bias={fw.bias is not None}, "
            f"the backward layer use_bias={bw.bias is not None}")


# --- torch.nn.LSTM --------------------------------------------------------------------------------
_TORCH_SUFFIXES = ("_l0", "_l0_reverse")
_TORCH_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")


def keras_to_torch(weights: Sequence[Any], bidirectional: bool) -> dict[str, np.ndarray]:
    """Keras weights -> a ``torch.nn.LSTM(D, n, bidirectional=...)`` state_dict of NumPy arrays.

    Args:
        weights: Keras ``get_weights()`` order (see :func:`split_directions`).
        bidirectional: whether ``weights`` hold a Bidirectional's two directions.
    Returns:
        ``weight_ih_l0 (4n, D) = kernel.T``, ``weight_hh_l0 (4n, n) = recurrent_kernel.T``,
        ``bias_ih_l0 (4n,) = bias``, ``bias_hh_l0 (4n,) = 0`` (no biases with use_bias=False), and the
        same with ``_l0_reverse`` for the backward layer. torch's gate order i, f, g, o is Keras's
        i, f, c, o, so blocks stay in place. Each array keeps its dtype and bits; the whole bias goes
        to ``bias_ih`` so that :func:`torch_to_keras` gives the same bits back.
    Raises:
        UnsupportedModelError when the directions differ in units or use_bias (nn.LSTM cannot hold
        that); ShapeMismatchError / DTypeMismatchError for malformed weights.
    """
    directions = split_directions(weights, bidirectional)
    _same_structure(directions, "torch.nn.LSTM")
    out: dict[str, np.ndarray] = {}
    for d, suffix in zip(directions, _TORCH_SUFFIXES):
        out["weight_ih" + suffix] = _t(d.kernel)
        out["weight_hh" + suffix] = _t(d.recurrent_kernel)
        if d.bias is not None:
            out["bias_ih" + suffix] = d.bias.copy()
            out["bias_hh" + suffix] = np.zeros_like(d.bias)
    return out


def _check_torch_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """The direction suffixes a state_dict's keys hold; anything nn.LSTM(num_layers=1) lacks is refused."""
    for key in keys:
        m = _TORCH_KEY.match(key)
        if m is None:
            raise UnsupportedModelError(
                f"state_dict key {key!r}: not a torch.nn.LSTM parameter; expected weight_ih_l0, weight_hh_l0, "
                "bias_ih_l0, bias_hh_l0 (and *_l0_reverse for bidirectional=True)")
        if m.group(2) == "hr":
            raise UnsupportedModelError(
                f"state_dict key {key!r}: an LSTM with projections (proj_size > 0) has no Keras equivalent")
        if m.group(3) != "0":
            raise UnsupportedModelError(
                f"state_dict key {key!r}: a multi-layer nn.LSTM (num_layers > 1); Keras's LSTM is one layer: "
                "convert each layer's *_l<k> parameters as its own layer")
    if "weight_ih_l0" not in keys:
        raise ShapeMismatchError(f"state_dict: missing key 'weight_ih_l0'; found {sorted(keys)}")
    suffixes = _TORCH_SUFFIXES if any(k.endswith("_reverse") for k in keys) else _TORCH_SUFFIXES[:1]
    for s in suffixes:
        needed = [f"weight_ih{s}", f"weight_hh{s}"]
        if f"bias_ih{s}" in keys or f"bias_hh{s}" in keys:
            needed += [f"bias_ih{s}", f"bias_hh{s}"]
        missing = [k for k in needed if k not in keys]
        if missing:
            raise ShapeMismatchError(f"state_dict: missing key(s) {missing}; found {sorted(keys)}")
    return suffixes


def torch_to_keras(state_dict: Mapping[str, Any]) -> list[np.ndarray]:
    """A ``torch.nn.LSTM`` state_dict (NumPy arrays or CPU tensors) -> Keras ``get_weights()`` order.

    Args:
        state_dict: ``weight_ih_l0 (4n, D)``, ``weight_hh_l0 (4n, n)``, optionally ``bias_ih_l0`` and
            ``bias_hh_l0`` (``(4n,)`` each), and the ``_l0_reverse`` set for bidirectional=True.
    Returns:
        ``[kernel (D, 4n), recurrent_kernel (n, 4n)[, bias (4n,)]]``, then the reverse direction's.
        ``bias = bias_ih + bias_hh`` (:func:`merge_biases`): bit-exact when ``bias_hh`` is zero, as
        :func:`keras_to_torch` writes it; a nonzero ``bias_hh`` is added once, so that state_dict does
        not come back bit for bit through Keras's single bias. Other values keep dtype and bits.
    Raises:
        UnsupportedModelError for multi-layer (``*_l1``) or projected (``weight_hr_l0``) LSTMs and
        unknown keys; ShapeMismatchError naming the key with expected vs actual shape.
    """
    suffixes = _check_torch_keys(list(state_dict))
    arrays = {k: as_float_array(v, f"state_dict[{k!r}]") for k, v in state_dict.items()}
    ih = arrays["weight_ih_l0"]
    if ih.ndim != 2 or ih.shape[0] % 4 or ih.shape[0] == 0:
        raise ShapeMismatchError(f"state_dict['weight_ih_l0']: expected shape (4*hidden_size, input_size), "
                                 f"got {ih.shape}")
    n, dim = ih.shape[0] // 4, ih.shape[1]
    out: list[np.ndarray] = []
    for s in suffixes:
        expected = {f"weight_ih{s}": (4 * n, dim), f"weight_hh{s}": (4 * n, n), f"bias_ih{s}": (4 * n,),
                    f"bias_hh{s}": (4 * n,)}
        for key, shape in expected.items():
            if key in arrays:
                _shape_check(arrays[key], shape, f"state_dict[{key!r}] (hidden_size={n}, input_size={dim})")
        out += [_t(arrays[f"weight_ih{s}"]), _t(arrays[f"weight_hh{s}"])]
        if f"bias_ih{s}" in arrays:
            out.append(merge_biases(arrays[f"bias_ih{s}"], arrays[f"bias_hh{s}"]))
    return out


# --- ONNX LSTM ------------------------------------------------------------------------------------
def _one_dtype(parts: Sequence[np.ndarray], what: str) -> None:
    """Refuse to join arrays of different dtypes into one tensor (NumPy would cast them silently)."""
    dtypes = [str(p.dtype) for p in parts]
    if len(set(dtypes)) > 1:
        raise DTypeMismatchError(f"{what}, but their dtypes differ ({', '.join(dtypes)}); cast them to one dtype first")


def _stack(parts: list[np.ndarray], name: str) -> np.ndarray:
    """One ONNX tensor ``[num_directions, ...]`` from the directions' parts."""
    _one_dtype(parts, f"ONNX {name} holds both directions (forward, backward) in one tensor")
    return np.stack(parts)


def keras_to_onnx(weights: Sequence[Any], bidirectional: bool) -> dict[str, np.ndarray]:
    """Keras weights -> the ONNX ``LSTM`` operator's ``W``, ``R`` and ``B`` inputs.

    Args:
        weights: Keras ``get_weights()`` order (see :func:`split_directions`).
        bidirectional: whether ``weights`` hold a Bidirectional's two directions
            (ONNX ``direction="bidirectional"``; the backward layer is ONNX's reverse direction).
    Returns:
        ``W [num_directions, 4n, D]``, ``R [num_directions, 4n, n]`` and, with a bias,
        ``B [num_directions, 8n]`` = ``Wb`` (the Keras bias) then ``Rb`` (zeros). Gate blocks are in
        ONNX's order i, o, f, c. Values keep dtype and bits.
    Raises:
        UnsupportedModelError when the directions differ in units or use_bias; DTypeMismatchError
        when they differ in dtype.
    """
    directions = split_directions(weights, bidirectional)
    _same_structure(directions, "the ONNX LSTM operator")
    out = {
        "W": _stack([_t(permute_gates(d.kernel, ONNX_FROM_KERAS)) for d in directions], "W"),
        "R": _stack([_t(permute_gates(d.recurrent_kernel, ONNX_FROM_KERAS)) for d in directions], "R"),
    }
    biases = [d.bias for d in directions if d.bias is not None]
    if biases:
        out["B"] = _stack([np.concatenate([permute_gates(b, ONNX_FROM_KERAS), np.zeros_like(b)]) for b in biases], "B")
    return out


def onnx_to_keras(W: Any, R: Any, B: Any = None) -> list[np.ndarray]:
    """The ONNX ``LSTM`` operator's ``W``, ``R`` and optional ``B`` -> Keras ``get_weights()`` order.

    Args:
        W: ``[num_directions, 4n, D]``; R: ``[num_directions, 4n, n]``; B: ``[num_directions, 8n]``
            (``Wb`` then ``Rb``) or None (no bias: Keras use_bias=False). Gate order i, o, f, c.
    Returns:
        One ``[kernel (D, 4n), recurrent_kernel (n, 4n)[, bias (4n,)]]`` per direction (two for
        ``num_directions=2``: forward, then reverse as Keras's backward layer). ``bias = Wb + Rb``
        (:func:`merge_biases`): bit-exact when ``Rb`` is zero, as :func:`keras_to_onnx` writes it.
    Raises:
        ShapeMismatchError naming ``W``, ``R`` or ``B`` with expected vs actual shape.
    """
    w = as_float_array(W, "W")
    r = as_float_array(R, "R")
    b = None if B is None else as_float_array(B, "B")
    if w.ndim != 3 or w.shape[0] not in (1, 2) or w.shape[1] % 4 or w.shape[1] == 0:
        raise ShapeMismatchError(f"W: expected shape [num_directions (1 or 2), 4*hidden_size, input_size], "
                                 f"got {w.shape}")
    dirs, n = w.shape[0], w.shape[1] // 4
    _shape_check(r, (dirs, 4 * n, n), f"R (num_directions={dirs}, hidden_size={n})")
    if b is not None:
        _shape_check(b, (dirs, 8 * n), f"B (num_directions={dirs}, hidden_size={n})")
    out: list[np.ndarray] = []
    for k in range(dirs):
        out += [permute_gates(_t(w[k]), KERAS_FROM_ONNX), permute_gates(_t(r[k]), KERAS_FROM_ONNX)]
        if b is not None:
            out.append(merge_biases(permute_gates(b[k, :4 * n], KERAS_FROM_ONNX),
                                    permute_gates(b[k, 4 * n:], KERAS_FROM_ONNX)))
    return out


# --- TFLite per-gate tensors ----------------------------------------------------------------------
_TFLITE_PREFIXES = ("fw_", "bw_")
_TFLITE_UNSUPPORTED = {
    "cell_to_": "peephole connections (cell_to_*_weights)",
    "projection_": "a projection layer (projection_weights / projection_bias)",
    "layer_norm": "layer normalization coefficients",
}


def _tflite_names(prefix: str) -> dict[str, tuple[int, str]]:
    """Every per-gate tensor name of one direction -> (gate index, role)."""
    names: dict[str, tuple[int, str]] = {}
    for g, gate in enumerate(TFLITE_GATES):
        names[f"{prefix}input_to_{gate}_weights"] = (g, "kernel")
        names[f"{prefix}recurrent_to_{gate}_weights"] = (g, "recurrent")
        names[f"{prefix}{gate}_gate_bias"] = (g, "bias")
    return names


def _concat(parts: list[np.ndarray], name: str, axis: int) -> np.ndarray:
    """One Keras tensor from the four gates' parts (input, forget, cell, output)."""
    _one_dtype(parts, f"Keras holds the four gates of tensors {name!r} in one tensor")
    return np.concatenate(parts, axis=axis)


def keras_to_tflite_gates(weights: Sequence[Any], bidirectional: bool) -> dict[str, np.ndarray]:
    """Keras weights -> TFLite's per-gate tensors (``UNIDIRECTIONAL_SEQUENCE_LSTM`` /
    ``BIDIRECTIONAL_SEQUENCE_LSTM`` input names).

    Args:
        weights: Keras ``get_weights()`` order (see :func:`split_directions`).
        bidirectional: whether ``weights`` hold a Bidirectional's two directions.
    Returns:
        For each gate g in input, forget, cell, output: ``input_to_<g>_weights (n, D)``,
        ``recurrent_to_<g>_weights (n, n)`` and (with a bias) ``<g>_gate_bias (n,)``; names prefixed
        ``fw_`` / ``bw_`` for a Bidirectional, whose directions may differ in units. Values keep dtype
        and bits.
    """
    out: dict[str, np.ndarray] = {}
    directions = split_directions(weights, bidirectional)
    prefixes = _TFLITE_PREFIXES if bidirectional else ("",)
    for d, prefix in zip(directions, prefixes):
        n = d.units
        for name, (g, role) in _tflite_names(prefix).items():
            block = slice(g * n, (g + 1) * n)
            if role == "kernel":
                out[name] = _t(d.kernel[:, block])
            elif role == "recurrent":
                out[name] = _t(d.recurrent_kernel[:, block])
            elif d.bias is not None:
                out[name] = d.bias[block].copy()
    return out


def tflite_gates_to_keras(tensors: Mapping[str, Any]) -> list[np.ndarray]:
    """TFLite's per-gate tensors -> Keras ``get_weights()`` order.

    Args:
        tensors: the names :func:`keras_to_tflite_gates` writes (``fw_`` / ``bw_`` prefixed: a
            Bidirectional); ``input_to_<g>_weights (n, D)``, ``recurrent_to_<g>_weights (n, n)``,
            optionally all four ``<g>_gate_bias (n,)``.
    Returns:
        ``[kernel (D, 4n), recurrent_kernel (n, 4n)[, bias (4n,)]]`` per direction, bits kept.
    Raises:
        UnsupportedModelError for peepholes, projections, layer norm, CIFG (no input gate) or unknown
        names; ShapeMismatchError naming the tensor with expected vs actual shape.
    """
    keys = list(tensors)
    prefixes = _TFLITE_PREFIXES if any(k.startswith(_TFLITE_PREFIXES) for k in keys) else ("",)
    known: dict[str, tuple[int, str]] = {}
    for p in prefixes:
        known.update(_tflite_names(p))
    for key in keys:
        if key not in known:
            what = next((why for part, why in _TFLITE_UNSUPPORTED.items() if part in key), None)
            raise UnsupportedModelError(
                f"tensor {key!r}: " + (f"{what} has no Keras LSTM equivalent" if what else
                                       f"not a TFLite LSTM gate tensor; expected {sorted(known)}"))
    out: list[np.ndarray] = []
    for prefix in prefixes:
        names = _tflite_names(prefix)
        required = [k for k, (_, role) in names.items() if role != "bias"]
        biases = [k for k, (_, role) in names.items() if role == "bias"]
        missing = [k for k in required + (biases if any(b in tensors for b in biases) else []) if k not in tensors]
        if missing:
            cifg = f"{prefix}input_to_input_weights" in missing
            raise (UnsupportedModelError if cifg else ShapeMismatchError)(
                f"tensors: missing {missing}" + ("; a CIFG LSTM (no input gate) has no Keras equivalent" if cifg else ""))
        arrays = {k: as_float_array(tensors[k], f"tensor {k!r}") for k in names if k in tensors}
        first = arrays[f"{prefix}input_to_input_weights"]
        if first.ndim != 2:
            raise ShapeMismatchError(f"tensor {prefix + 'input_to_input_weights'!r}: expected shape (units, input_size), "
                                     f"got {first.shape}")
        n, dim = first.shape
        parts: dict[str, list[np.ndarray]] = {"kernel": [], "recurrent": [], "bias": []}
        for name, (_, role) in names.items():
            if name in arrays:
                shape = {"kernel": (n, dim), "recurrent": (n, n), "bias": (n,)}[role]
                _shape_check(arrays[name], shape, f"tensor {name!r} (units={n}, input_size={dim})")
                parts[role].append(arrays[name] if role == "bias" else arrays[name].T)
        out += [_concat(parts["kernel"], f"{prefix}input_to_*_weights", 1),
                _concat(parts["recurrent"], f"{prefix}recurrent_to_*_weights", 1)]
        if parts["bias"]:
            out.append(_concat(parts["bias"], f"{prefix}*_gate_bias", 0))
    return out
