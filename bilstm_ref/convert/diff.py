"""Two sets of LSTM weights compared, and the layout fault that explains their difference named.

Both sides are Keras ``get_weights()`` order (convert other layouts first: :mod:`.layouts`, or read
files with :func:`bilstm_ref.convert.files.read_weight_set`). ``A`` is the reference, ``B`` is read
against it. When they differ, each direction is searched for a layout move that makes B equal to A
exactly (or within the tolerance): a consistent permutation of the hidden units, then per tensor a
gate-block permutation (all 24 orders, combined with per-block transposes of the recurrent
kernel), a transposed matrix (stored transposed, or transposed data read back with ``reshape``),
a bias doubled, halved or reduced to one of torch's / ONNX's two parts, and for a Bidirectional the
two directions exchanged. What none of these explains is reported with its largest ``|A - B|``.
docs/weights.md shows the report.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from .layouts import KERAS_GATES, Direction, direction_names, group_directions, split_directions

__all__ = ["Finding", "WeightsDiff", "diff_weights", "KNOWN_GATE_ORDERS", "LAYOUT_FAULTS"]

#: Gate orders other frameworks use, as Keras gate indices per block (block k holds gate order[k]).
KNOWN_GATE_ORDERS = {
    (0, 3, 1, 2): "ONNX order",
    (0, 2, 1, 3): "TF1 LSTMCell / LSTMBlockCell order",
    (0, 1, 3, 2): "Caffe order",
    (1, 0, 2, 3): "OpenVINO order",
}
#: The finding kinds that name a layout fault (the others say no layout move explains the difference).
LAYOUT_FAULTS = ("units_permuted", "gate_permutation", "blocks_transposed", "transposed", "bias_doubled",
                 "bias_split_lost", "bias_lost", "directions_swapped")
_KERAS_ORDER = ", ".join(KERAS_GATES)

#: A bias parts pair per direction: (first, second) that the cell adds, in Keras gate order
#: (torch ``bias_ih``, ``bias_hh``; ONNX ``Wb``, ``Rb``).
BiasParts = Optional[Sequence[Optional[tuple[np.ndarray, np.ndarray]]]]


@dataclasses.dataclass(frozen=True)
class Finding:
    """One named finding about one tensor (or one direction, or the whole layer).

    Attributes:
        kind: one of :data:`LAYOUT_FAULTS`, ``"not_a_layout_fault"`` or ``"shape_mismatch"``.
        tensor: e.g. ``"forward_layer/kernel (weights[0])"``, ``"backward_layer"``.
        message: what was found, in words.
        max_abs_diff: the largest ``|A - B|`` (``not_a_layout_fault`` only).
    """

    kind: str
    tensor: str
    message: str
    max_abs_diff: Optional[float] = None

    @property
    def is_layout_fault(self) -> bool:
        return self.kind in LAYOUT_FAULTS


@dataclasses.dataclass(frozen=True)
class WeightsDiff:
    """The result of :func:`diff_weights`.

    Attributes:
        equal: every tensor of B equals A's (bit for bit, or within ``atol``/``rtol`` when given).
        identical: equal, with the same dtypes and the same bits.
        faults: the findings explaining the difference (empty when equal).
        tensors: A's tensor names in Keras order (``kernel``, ``forward_layer/bias``, ...).
        notes: remarks that do not make the weights differ (dtypes, tolerance used).
    """

    equal: bool
    identical: bool
    faults: tuple[Finding, ...]
    tensors: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def explained(self) -> bool:
        """The weights differ and every difference is a named layout fault."""
        return not self.equal and all(f.is_layout_fault for f in self.faults)

    def describe(self) -> str:
        """A few lines for people: the verdict, then each finding (tensors sharing one finding grouped)."""
        if self.equal:
            head = (f"equal: all {len(self.tensors)} tensors bit-identical" if self.identical
                    else f"equal: all {len(self.tensors)} tensors equal in value")
            return "\n".join([head] + [f"  note: {n}" for n in self.notes])
        layout = sum(f.is_layout_fault for f in self.faults)
        if self.explained:
            head = f"differ: {layout} layout fault(s) explain every difference (B read against A):"
        elif layout:
            head = f"differ: {layout} layout fault(s) found, and differences no layout fault explains:"
        else:
            head = "differ: not a layout fault (no layout move makes B equal to A):"
        grouped: dict[str, list[str]] = {}
        for f in self.faults:
            grouped.setdefault(f.message, []).append(f.tensor)
        lines = [head]
        for message, tensors in grouped.items():
            where = f"all {len(tensors)} tensors" if len(tensors) == len(self.tensors) > 1 else ", ".join(tensors)
            lines.append(f"  {where}: {message}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


# --- comparison -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Compare:
    """Equality of two arrays: exact (NaN equal to NaN), or ``|a - b| <= atol + rtol * |a|``."""

    atol: float = 0.0
    rtol: float = 0.0

    def __call__(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape:
            return False
        if self.atol == 0 and self.rtol == 0:
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.allclose(b.astype(np.float64), a.astype(np.float64), atol=self.atol, rtol=self.rtol,
                                equal_nan=True))


def _blocks(a: np.ndarray) -> list[np.ndarray]:
    return np.split(a, 4, axis=-1)


def _gate_names(indices: Sequence[int]) -> str:
    return ", ".join(KERAS_GATES[k] for k in indices)


def _match_blocks(view: np.ndarray, target: np.ndarray, same: _Compare, block_transposes: bool
                  ) -> Optional[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(order, transposed)``: B's block k is A's block ``order[k]`` (transposed for k in ``transposed``).

    The simplest match wins: fewest transposed blocks, then the identity order. None when no
    permutation of the four gate blocks (with square blocks optionally transposed) matches.
    """
    if view.shape != target.shape or view.shape[-1] % 4:
        return None
    vb, tb = _blocks(view), _blocks(target)
    square = block_transposes and vb[0].ndim == 2 and vb[0].shape[0] == vb[0].shape[1]
    plain = [[same(tb[j], vb[k]) for j in range(4)] for k in range(4)]
    flipped = [[square and same(tb[j].T, vb[k]) for j in range(4)] for k in range(4)]
    best: Optional[tuple[tuple[int, ...], tuple[int, ...]]] = None
    for order in itertools.permutations(range(4)):  # the identity first
        if not all(plain[k][j] or flipped[k][j] for k, j in enumerate(order)):
            continue
        transposed = tuple(k for k, j in enumerate(order) if not plain[k][j])
        if best is None or len(transposed) < len(best[1]):
            best = (order, transposed)
    return best


def _order_message(order: Sequence[int]) -> str:
    known = KNOWN_GATE_ORDERS.get(tuple(order))
    return (f"gate blocks in order {_gate_names(order)}" + (f" ({known})" if known else "")
            + f" where Keras expects {_KERAS_ORDER}")


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    nan = np.isnan(d) & ~(np.isnan(a) & np.isnan(b))
    d = np.where(nan, np.inf, np.nan_to_num(d, nan=0.0))
    idx = np.unravel_index(int(np.argmax(d)), d.shape) if d.size else ()
    count = int(np.count_nonzero(d))
    return float(d[idx]) if d.size else 0.0, f"at index {tuple(int(i) for i in idx)}; {count} of {d.size} elements differ"


# --- one tensor -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A way B may relate to A: compare ``view`` (from B) with ``target`` (from A); findings if it matches."""

    view: np.ndarray
    target: np.ndarray
    findings: tuple[tuple[str, str], ...]  # (kind, message)


def _matrix_candidates(a: np.ndarray, b: np.ndarray, role: str) -> list[_Candidate]:
    """B as stored, B stored transposed, and B holding A's transposed data reshaped to A's shape."""
    out = [_Candidate(b, a, ())] if b.shape == a.shape else []
    if b.shape == a.shape[::-1]:
        what = "transposed" if a.shape[0] != a.shape[1] else "transposed (square)"
        out.append(_Candidate(b.T, a, (("transposed", f"{role} {what}: B holds A.T, shape {b.shape}"),)))
    if b.shape == a.shape and a.shape[0] != a.shape[1]:
        out.append(_Candidate(b.reshape(a.shape[::-1]).T, a, (("transposed", (
            f"{role} transposed, then read back with reshape instead of transpose: "
            f"B = A.T.reshape{a.shape}")),)))
    return out


def _bias_candidates(a: np.ndarray, b: np.ndarray, parts_a: Optional[tuple[np.ndarray, np.ndarray]],
                     parts_b: Optional[tuple[np.ndarray, np.ndarray]], same: _Compare) -> list[_Candidate]:
    """B's bias against A's, doubled, halved, zero, or one of the two biases either side adds."""
    if b.shape != a.shape:
        return []
    out = [
        _Candidate(b, a, ()),
        _Candidate(b, a * 2, (("bias_doubled", "bias doubled: B = 2 * A (the bias counted twice, e.g. the whole "
                                               "Keras bias put in both bias_ih and bias_hh)"),)),
        _Candidate(b * 2, a, (("bias_split_lost", "bias split lost: B = A / 2 (one of two equal halves dropped)"),)),
    ]
    names = ("bias_ih / Wb", "bias_hh / Rb")
    for side, parts, other in (("A", parts_a, "B"), ("B", parts_b, "A")):
        if parts is None or same(parts[1], np.zeros_like(parts[1])) or same(parts[0], np.zeros_like(parts[0])):
            continue  # with one part zero, keeping only the other changes nothing
        for k in (0, 1):
            kept, dropped = names[k], names[1 - k]
            message = f"bias split lost: {other}'s bias is {side}'s {kept} alone ({dropped} dropped)"
            view, target = (b, parts[k]) if side == "A" else (parts[k], a)
            out.append(_Candidate(view, target, (("bias_split_lost", message),)))
    if not same(a, np.zeros_like(a)):
        out.append(_Candidate(b, np.zeros_like(a), (("bias_lost", "bias lost: B's bias is all zeros, A's is not "
                                                                 "(a bias dropped on the way)"),)))
    if not same(b, np.zeros_like(b)):
        out.append(_Candidate(np.zeros_like(b), a, (("bias_lost", "bias lost: A's bias is all zeros, B's is not"),)))
    return out


def _explain_tensor(role: str, a: np.ndarray, b: np.ndarray, parts: tuple[Any, Any], same: _Compare
                    ) -> list[tuple[str, str]]:
    """(kind, message) pairs that make B's tensor equal to A's, or [] when nothing does."""
    candidates = (_bias_candidates(a, b, parts[0], parts[1], same) if role == "bias"
                  else _matrix_candidates(a, b, role))
    for cand in candidates:
        match = _match_blocks(cand.view, cand.target, same, block_transposes=role == "recurrent_kernel")
        if match is None:
            continue
        order, transposed = match
        found = list(cand.findings)
        if order != (0, 1, 2, 3):
            found.append(("gate_permutation", _order_message(order)))
        if transposed:
            which = ("every gate's" if len(transposed) == 4
                     else f"gate {_gate_names(transposed)}'s" if len(transposed) == 1
                     else f"gates {_gate_names(transposed)}'")
            found.append(("blocks_transposed", f"{which} n x n block of the recurrent kernel stored transposed"))
        if found:
            return found
    return []


# --- one direction --------------------------------------------------------------------------------
def _unit_signature(kernel: np.ndarray, bias: Optional[np.ndarray]) -> np.ndarray:
    """``(n, m)``: per hidden unit, a few kernel rows and the bias over the four gates (to pair units)."""
    n = kernel.shape[1] // 4
    rows = kernel[: min(8, kernel.shape[0])].reshape(-1, 4, n)
    parts = [rows.reshape(-1, n)] + ([] if bias is None else [bias.reshape(4, n)])
    return np.nan_to_num(np.concatenate(parts).T.astype(np.float64))


def _unit_permutation(a: Direction, b: Sequence[np.ndarray], same: _Compare) -> Optional[np.ndarray]:
    """``perm`` with B's unit j = A's unit ``perm[j]`` in every gate block, recurrent row and bias, or None."""
    n = a.units
    if n < 2 or [t.shape for t in a.tensors] != [t.shape for t in b]:
        return None
    sig_a = _unit_signature(a.kernel, a.bias)
    sig_b = _unit_signature(b[0], b[2] if len(b) == 3 else None)
    perm = np.empty(n, dtype=np.int64)
    for start in range(0, n, 64):  # nearest A unit per B unit, in chunks (bounded memory)
        dist = np.abs(sig_b[start:start + 64, None, :] - sig_a[None, :, :]).max(axis=2)
        perm[start:start + 64] = dist.argmin(axis=1)
    if len(set(perm.tolist())) != n or np.array_equal(perm, np.arange(n)):
        return None
    cols = (np.arange(4)[:, None] * n + perm[None, :]).reshape(-1)
    moved = [a.kernel[:, cols], a.recurrent_kernel[perm][:, cols]] + ([] if a.bias is None else [a.bias[cols]])
    return perm if all(same(x, y) for x, y in zip(moved, b)) else None


def _explain_direction(a: Direction, b: Sequence[np.ndarray], prefix: str, first_index: int,
                       parts: tuple[Any, Any], same: _Compare) -> list[Finding]:
    """Findings for one direction: none when equal, units permuted, else per tensor."""
    roles = ("kernel", "recurrent_kernel", "bias")
    pairs = list(zip(roles, a.tensors, b))
    differing = [(i, role, x, y) for i, (role, x, y) in enumerate(pairs) if not same(x, y)]
    if not differing:
        return []
    perm = _unit_permutation(a, b, same)
    if perm is not None:
        shown = perm.tolist()[:16]
        more = ", ..." if a.units > 16 else ""
        return [Finding("units_permuted", prefix.rstrip("/") or "layer", (
            f"hidden units permuted consistently (kernel and bias columns in every gate block, recurrent "
            f"rows and columns): B's unit j is A's unit perm[j], perm = [{', '.join(map(str, shown))}{more}]"))]
    out: list[Finding] = []
    for i, role, x, y in differing:
        tensor = f"{prefix}{role} (weights[{first_index + i}])"
        found = _explain_tensor(role, x, y, parts, same)
        if found:
            out += [Finding(kind, tensor, message) for kind, message in found]
        elif x.shape != y.shape:
            out.append(Finding("shape_mismatch", tensor, f"shapes differ: A {x.shape}, B {y.shape}"))
        else:
            m, where = _max_abs_diff(x, y)
            out.append(Finding("not_a_layout_fault", tensor, f"not a layout fault: max |A - B| = {m:.6g} {where}",
                               max_abs_diff=m))
    return out


def _score(findings: Sequence[Finding]) -> tuple[int, int]:
    return sum(not f.is_layout_fault for f in findings), len(findings)


def _structure(a: Sequence[Direction], b: Sequence[Sequence[np.ndarray]]) -> Optional[str]:
    """Why B cannot be compared with A tensor by tensor (direction count, bias presence), or None."""
    shape_a = [[t.shape for t in d.tensors] for d in a]
    shape_b = [[t.shape for t in d] for d in b]
    if len(a) != len(b) or [len(d) for d in shape_a] != [len(d) for d in shape_b]:
        return f"different structure: A has tensor shapes {shape_a}, B {shape_b}"
    return None


def diff_weights(a: Sequence[Any], b: Sequence[Any], *, atol: float = 0.0, rtol: float = 0.0,
                 a_bias_parts: BiasParts = None, b_bias_parts: BiasParts = None) -> WeightsDiff:
    """Compare two Keras-order weight lists and name the layout fault that explains any difference.

    Args:
        a: the reference: ``[kernel (D, 4n), recurrent_kernel (n, 4n)[, bias (4n,)]]`` per direction.
        b: the weights checked against it, same order (shapes may differ: a transposed matrix is a
            finding, not an error).
        atol, rtol: equal when ``|b - a| <= atol + rtol * |a|`` elementwise; both 0 (default): the
            same values exactly (NaN equal to NaN).
        a_bias_parts, b_bias_parts: per direction, the two biases a side's cell adds (torch
            ``(bias_ih, bias_hh)``, ONNX ``(Wb, Rb)``), ``(4n,)`` each in Keras gate order, or None;
            they let a lost half of a split bias be named.
    Returns:
        A :class:`WeightsDiff`; ``describe()`` prints it.
    Raises:
        ShapeMismatchError / DTypeMismatchError when ``a`` is not a valid Keras layout or ``b`` is not
        grouped as one (2-D, 2-D[, 1-D] per direction).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # 2 * a may overflow, inf - inf is NaN: both fine here
        return _diff(split_directions(a), group_directions(b), _Compare(float(atol), float(rtol)),
                     a_bias_parts, b_bias_parts)


def _diff(ref: list[Direction], other: list[list[np.ndarray]], same: _Compare, a_bias_parts: BiasParts,
          b_bias_parts: BiasParts) -> WeightsDiff:
    prefixes = direction_names(len(ref))
    tensors: list[str] = []
    starts: list[int] = []
    for d, prefix in zip(ref, prefixes):
        starts.append(len(tensors))
        tensors += [f"{prefix}{role}" for role in ("kernel", "recurrent_kernel", "bias")[:len(d.tensors)]]
    notes = _notes(ref, other, same)
    problem = _structure(ref, other)
    if problem:
        return WeightsDiff(False, False, (Finding("shape_mismatch", "layer", problem),), tuple(tensors), notes)
    pairs = list(zip(ref, other))
    if all(same(x, y) for d, o in pairs for x, y in zip(d.tensors, o)):
        identical = all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for d, o in pairs for x, y in zip(d.tensors, o))
        return WeightsDiff(True, identical, (), tuple(tensors), notes)

    def parts(k: int, j: int) -> tuple[Any, Any]:
        return _part(a_bias_parts, k), _part(b_bias_parts, j)

    straight = [f for k, (d, o) in enumerate(pairs)
                for f in _explain_direction(d, o, prefixes[k], starts[k], parts(k, k), same)]
    findings = straight
    if len(ref) == 2 and _score(straight) != (0, 0):
        swapped = [Finding("directions_swapped", "forward_layer, backward_layer",
                           "directions swapped: B's forward weights are A's backward layer's and vice versa")]
        swapped += [f for j in (0, 1)  # B's slot j against A's other direction, named by B's slot
                    for f in _explain_direction(ref[1 - j], other[j], prefixes[j], starts[j], parts(1 - j, j), same)]
        if _score(swapped) < _score(straight):
            findings = swapped
    return WeightsDiff(False, False, tuple(findings), tuple(tensors), notes)


def _part(parts: BiasParts, k: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    return None if parts is None or k >= len(parts) else parts[k]


def _notes(a: Sequence[Direction], b: Sequence[Sequence[np.ndarray]], same: _Compare) -> tuple[str, ...]:
    notes = []
    dtypes_a = sorted({str(t.dtype) for d in a for t in d.tensors})
    dtypes_b = sorted({str(t.dtype) for d in b for t in d})
    if dtypes_a != dtypes_b:
        notes.append(f"dtypes differ (A {', '.join(dtypes_a)}; B {', '.join(dtypes_b)}): values compared "
                     "after exact widening")
    if same.atol or same.rtol:
        notes.append(f"compared within atol={same.atol:g}, rtol={same.rtol:g}")
    return tuple(notes)
