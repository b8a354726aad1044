"""Gate-level traces of the reference: every pre-activation, gate, cell and hidden state, step by step.

:func:`trace` runs a reference :class:`~bilstm_ref.LSTM` or :class:`~bilstm_ref.Bidirectional` (or a
:class:`~bilstm_ref.reference.spec.LayerSpec`) through a readable per-step loop written for the trace, which
records, per direction and per step::

    z   = (x_t @ W + b) + h @ U          (B, 4n)   split as z_i, z_f, z_c, z_o   (B, n) each
    i, f, o = σ(z_i), σ(z_f), σ(z_o);   g = φ(z_c)
    c_new = f * c + i * g;   h_new = o * φ(c_new)             the cell's result at this step
    c, h  = (c_new, h_new) where the step is valid, else the previous (c, h)       (state frozen)
    y     = h_new where valid, else (0 if zero_output_for_mask else the previous y)

in the layer's compute dtype, with the same operations in the same order as the reference's readable
specification (:func:`bilstm_ref.reference.lstm.scan`), so the traced outputs are bit-identical to what the layer
returns: :meth:`Trace.check` proves it for a call (the reference's fast path is proven bit-identical to
that specification across the matrix, tests/test_fast_path.py). Every array is available in
**processing order** (step ``k`` is the ``k``-th step the direction ran) and in **input order** (index
``t`` is input time step ``t``); ``order[k]`` is the input time step of processing step ``k``.

A trace does not change the layer: a stateful layer's stored states are the starting states, and they
are not advanced (:func:`trace_case` advances them by calling the layer itself, between calls).
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..reference import activations as _act
from ..reference.bidirectional import Bidirectional, merge
from ..reference.dtypes import cast_output
from ..errors import BilstmRefError, ConfigError, ShapeMismatchError, UnsupportedModelError
from ..reference.lstm import LSTM
from ..reference.sequence import as_input
from ..reference.spec import LayerSpec, build

__all__ = [
    "Trace", "DirectionTrace", "TraceMismatchError", "STEP_KEYS", "trace", "check_trace", "trace_case",
    "save_traces", "trace_main",
]

Array = np.ndarray
Layer = Union[LSTM, Bidirectional]

#: The per-step arrays of a direction: ``valid`` is ``(B, T)`` bool, ``z`` ``(B, T, 4n)``, every other
#: one ``(B, T, n)``. ``c_new``/``h_new`` are the cell's result at the step (computed, then discarded
#: at a masked step); ``c``/``h`` the states after the masking rule; ``y`` the layer's output at the step.
STEP_KEYS = ("valid", "z", "z_i", "z_f", "z_c", "z_o", "i", "f", "g", "o", "c_new", "h_new", "c", "h", "y")
_GATE_COLUMNS = ("i", "f", "g", "o", "c", "h")

#: Traces at most this many values (``B * T * units`` over the directions) print as a table in
#: :func:`trace_main`; larger ones print a summary and go to an ``.npz`` file.
TABLE_LIMIT = 256


class TraceMismatchError(BilstmRefError):
    """A trace does not reproduce the layer's outputs (or its own recorded steps do not add up)."""


# --- the trace ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DirectionTrace:
    """One direction's steps.

    Attributes:
        name: ``"forward"`` or ``"backward"`` (a plain LSTM has one ``"forward"`` direction, also
            when it reads backwards).
        go_backwards: whether this direction's layer reads ``x[:, T-1]`` first.
        units: ``n``.
        activation, recurrent_activation, semantics: the cell's ``φ``, ``σ`` and semantics profile.
        policy: the direction's layer's Keras dtype policy (its outputs are cast to it).
        zero_output_for_mask: the masking rule in effect (after any quirk).
        order: ``(T,)`` int, ``order[k]`` = input time step of processing step ``k``.
        processing_order: :data:`STEP_KEYS` -> arrays indexed by processing step on axis 1.
        input_order: the same arrays indexed by input time step on axis 1.
        h0, c0: ``(B, n)`` the starting states.
        h_final, c_final: ``(B, n)`` the states after the last valid step (what ``return_state`` gives).
        y_last: ``(B, n)`` the last output (what ``return_sequences=False`` gives).
        y_sequence: ``(B, T, n)`` the sequence the layer returns, processing order (``y``, except under
            the ``unroll_mask_reversed_zeroing`` quirk, which zeroes it with the un-reversed mask).
        states_after: ``(h, c)`` the layer stores after the call when stateful (zeros under the
            ``stateful_state_not_stored`` quirk), else None.
    """

    name: str
    go_backwards: bool
    units: int
    activation: str
    recurrent_activation: str
    semantics: str
    policy: str
    zero_output_for_mask: bool
    order: Array
    processing_order: Mapping[str, Array]
    input_order: Mapping[str, Array]
    h0: Array
    c0: Array
    h_final: Array
    c_final: Array
    y_last: Array
    y_sequence: Array
    states_after: Optional[tuple[Array, Array]]

    def step_of(self, t: int) -> int:
        """The processing step at which this direction read input time step ``t``."""
        return int(np.flatnonzero(self.order == t)[0])

    def consistency_errors(self) -> list[str]:
        """Re-derive every recorded step from the recorded gates and previous states (same operations,
        so exactly): catches a trace whose arrays were edited or mislabelled (e.g. ``i`` and ``f`` swapped)."""
        p = self.processing_order
        sigma = _act.get(self.recurrent_activation, self.semantics)  # type: ignore[arg-type]
        phi = _act.get(self.activation, self.semantics)  # type: ignore[arg-type]
        errors = []
        with np.errstate(all="ignore"):
            checks = {
                "z blocks": np.concatenate([p["z_i"], p["z_f"], p["z_c"], p["z_o"]], axis=-1),
                "i = σ(z_i)": sigma(p["z_i"]), "f = σ(z_f)": sigma(p["z_f"]), "g = φ(z_c)": phi(p["z_c"]),
                "o = σ(z_o)": sigma(p["z_o"]),
            }
            recorded = {"z blocks": p["z"], "i = σ(z_i)": p["i"], "f = σ(z_f)": p["f"], "g = φ(z_c)": p["g"],
                        "o = σ(z_o)": p["o"]}
            c_prev = np.concatenate([self.c0[:, None], p["c"][:, :-1]], axis=1)
            c_new = p["f"] * c_prev + p["i"] * p["g"]
            checks["c_new = f*c + i*g"], recorded["c_new = f*c + i*g"] = c_new, p["c_new"]
            checks["h_new = o*φ(c_new)"], recorded["h_new = o*φ(c_new)"] = p["o"] * phi(p["c_new"]), p["h_new"]
            h_prev = np.concatenate([self.h0[:, None], p["h"][:, :-1]], axis=1)
            m = p["valid"][:, :, None]
            checks["c (masking rule)"], recorded["c (masking rule)"] = np.where(m, p["c_new"], c_prev), p["c"]
            checks["h (masking rule)"], recorded["h (masking rule)"] = np.where(m, p["h_new"], h_prev), p["h"]
        for what, want in checks.items():
            if not _identical(want, recorded[what]):
                errors.append(f"{self.name}: recorded steps do not satisfy {what}")
        return errors


@dataclasses.dataclass(frozen=True)
class Trace:
    """A traced call of an LSTM or Bidirectional layer.

    Attributes:
        class_name: ``"LSTM"`` or ``"Bidirectional"``.
        directions: one :class:`DirectionTrace` (LSTM) or two (forward, backward).
        return_sequences, return_state: the layer's flags.
        merge_mode: a Bidirectional's merge mode (None for an LSTM, or ``merge_mode=None``).
        policy: the layer's Keras dtype policy (a Bidirectional's wrapper policy).
        dtype: the compute dtype name, ``"float64"`` or ``"float32"``.
        label: what was traced (a case id and call), for humans.
    """

    class_name: str
    directions: tuple[DirectionTrace, ...]
    return_sequences: bool
    return_state: bool
    merge_mode: Optional[str]
    policy: str
    dtype: str
    label: str = ""

    @property
    def batch(self) -> int:
        return int(self.directions[0].h0.shape[0])

    @property
    def time(self) -> int:
        return int(self.directions[0].order.shape[0])

    def direction(self, name: str) -> DirectionTrace:
        """The direction named ``"forward"`` or ``"backward"``."""
        for d in self.directions:
            if d.name == name:
                return d
        raise ConfigError(f"trace: no direction {name!r}; this trace has {[d.name for d in self.directions]}")

    # --- the layer's outputs, rebuilt from the steps ------------------------------------------
    def output_names(self) -> tuple[str, ...]:
        """Names of what the layer's call returns (as :func:`bilstm_ref.reference.spec.output_names`)."""
        if self.class_name == "LSTM":
            return ("output", "h", "c") if self.return_state else ("output",)
        first = ("output_fw", "output_bw") if self.merge_mode is None else ("output",)
        return first + (("h1", "c1", "h2", "c2") if self.return_state else ())

    def outputs(self) -> tuple[Array, ...]:
        """What the layer's call returns, rebuilt from the traced steps, as a tuple (one array without
        ``return_state``), cast to the dtype policies exactly as the reference casts them."""
        dt = np.dtype(self.dtype)
        if self.class_name == "LSTM":
            d = self.directions[0]
            out = d.y_sequence if self.return_sequences else d.y_last
            cast = tuple(cast_output(a, d.policy, dt) for a in (out, d.h_final, d.c_final))
            return cast if self.return_state else cast[:1]
        fw, bw = self.directions
        if self.return_sequences:  # Keras flips the backward layer's sequence, whichever way it read
            y_f, y_b = fw.y_sequence, bw.y_sequence[:, ::-1]
        else:
            y_f, y_b = fw.y_last, bw.y_last
        y_f = cast_output(cast_output(y_f, fw.policy, dt), self.policy, dt)
        y_b = cast_output(cast_output(y_b, bw.policy, dt), self.policy, dt)
        merged = merge(y_f, y_b, self.merge_mode)
        outs = merged if isinstance(merged, tuple) else (merged,)
        outs = tuple(cast_output(o, self.policy, dt) for o in outs)
        if self.return_state:
            outs += tuple(cast_output(a, d.policy, dt) for d in (fw, bw) for a in (d.h_final, d.c_final))
        return outs

    def states_after(self) -> Optional[tuple[Array, ...]]:
        """The states a stateful layer holds after this call (``(h, c)`` or ``(h_fw, c_fw, h_bw, c_bw)``),
        None for a layer that is not stateful."""
        if any(d.states_after is None for d in self.directions):
            return None
        return tuple(a for d in self.directions for a in d.states_after)  # type: ignore[union-attr]

    # --- proof ----------------------------------------------------------------------------------
    def differences(self, layer_outputs: Any, states: Optional[Sequence[Any]] = None, rtol: float = 0.0) -> list[str]:
        """How the traced outputs differ from ``layer_outputs`` (what the layer's call returned); empty
        when they agree. ``rtol=0`` asks for bit-identical arrays (dtype, NaN positions and signed zeros
        included); ``rtol > 0`` for ``|a - b| <= rtol * |b|``. ``states``: the layer's stored states
        after the call (a stateful layer's ``.states``), compared with :meth:`states_after`. The
        recorded steps are also checked against each other (:meth:`DirectionTrace.consistency_errors`)."""
        errors = [e for d in self.directions for e in d.consistency_errors()]
        theirs = tuple(layer_outputs) if isinstance(layer_outputs, (tuple, list)) else (layer_outputs,)
        mine = self.outputs()
        names = self.output_names()
        if len(theirs) != len(mine):
            return errors + [f"the layer returned {len(theirs)} arrays, the trace rebuilds {len(mine)} {names}"]
        pairs = list(zip(names, mine, theirs))
        if states is not None:
            after = self.states_after()
            if after is None or len(after) != len(states):
                errors.append(f"states: the layer holds {len(states)} states, the trace expects "
                              f"{'none' if after is None else len(after)}")
            else:
                labels = ("h", "c") if len(after) == 2 else ("h1", "c1", "h2", "c2")
                pairs += [(f"stored state {lab}", a, s) for lab, a, s in zip(labels, after, states)]
        for name, a, b in pairs:
            msg = _difference(np.asarray(a), np.asarray(b), rtol)
            if msg:
                errors.append(f"{name}: {msg}")
        return errors

    def check(self, layer_outputs: Any, states: Optional[Sequence[Any]] = None, rtol: float = 0.0) -> None:
        """Raise :class:`TraceMismatchError` unless the trace reproduces ``layer_outputs`` (see
        :meth:`differences`; exact by default)."""
        errors = self.differences(layer_outputs, states=states, rtol=rtol)
        if errors:
            head = f"trace{' of ' + self.label if self.label else ''} differs from the layer"
            raise TraceMismatchError(head + ":\n  " + "\n  ".join(errors))

    # --- files and text -------------------------------------------------------------------------
    def arrays(self, prefix: str = "") -> dict[str, Array]:
        """Every array by npz key: ``<dir>/input_order/<key>``, ``<dir>/processing_order/<key>``,
        ``<dir>/order``, ``<dir>/h0`` ..., plus ``meta`` (the flags as a JSON string)."""
        out: dict[str, Array] = {f"{prefix}meta": np.array(json.dumps(self._meta(), sort_keys=True))}
        for d in self.directions:
            base = f"{prefix}{d.name}/"
            for key in STEP_KEYS:
                out[f"{base}processing_order/{key}"] = d.processing_order[key]
                out[f"{base}input_order/{key}"] = d.input_order[key]
            out[f"{base}order"] = d.order
            for key in ("h0", "c0", "h_final", "c_final", "y_last", "y_sequence"):
                out[base + key] = getattr(d, key)
            if d.states_after is not None:
                out[base + "states_after/h"], out[base + "states_after/c"] = d.states_after
        return out

    def _meta(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name, "return_sequences": self.return_sequences,
            "return_state": self.return_state, "merge_mode": self.merge_mode, "policy": self.policy,
            "dtype": self.dtype, "label": self.label,
            "directions": [
                {"name": d.name, "go_backwards": d.go_backwards, "units": d.units, "activation": d.activation,
                 "recurrent_activation": d.recurrent_activation, "semantics": d.semantics, "policy": d.policy,
                 "zero_output_for_mask": d.zero_output_for_mask}
                for d in self.directions
            ],
        }

    def to_npz(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Write :meth:`arrays` to ``path`` atomically (a temporary file, then ``os.replace``); returns
        the path. Read it back with :meth:`from_npz` (or ``np.load``: no pickles)."""
        return save_traces(path, [self])

    @classmethod
    def from_npz(cls, path: Union[str, "os.PathLike[str]"], prefix: str = "") -> "Trace":
        """The trace :meth:`to_npz` wrote (``prefix``: ``call1/`` ... in a file of :func:`save_traces`)."""
        with np.load(path, allow_pickle=False) as z:
            return cls._from_arrays({k: z[k] for k in z.files if k.startswith(prefix)}, prefix)

    @classmethod
    def _from_arrays(cls, a: Mapping[str, Array], prefix: str) -> "Trace":
        try:
            meta = json.loads(str(a[f"{prefix}meta"]))
            dirs = []
            for dm in meta["directions"]:
                base = f"{prefix}{dm['name']}/"
                after = None
                if base + "states_after/h" in a:
                    after = (a[base + "states_after/h"], a[base + "states_after/c"])
                dirs.append(DirectionTrace(
                    name=dm["name"], go_backwards=dm["go_backwards"], units=dm["units"], activation=dm["activation"],
                    recurrent_activation=dm["recurrent_activation"], semantics=dm["semantics"], policy=dm["policy"],
                    zero_output_for_mask=dm["zero_output_for_mask"], order=a[base + "order"],
                    processing_order={k: a[f"{base}processing_order/{k}"] for k in STEP_KEYS},
                    input_order={k: a[f"{base}input_order/{k}"] for k in STEP_KEYS},
                    h0=a[base + "h0"], c0=a[base + "c0"], h_final=a[base + "h_final"], c_final=a[base + "c_final"],
                    y_last=a[base + "y_last"], y_sequence=a[base + "y_sequence"], states_after=after,
                ))
            return cls(meta["class_name"], tuple(dirs), meta["return_sequences"], meta["return_state"],
                       meta["merge_mode"], meta["policy"], meta["dtype"], meta.get("label", ""))
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"not a trace file written by Trace.to_npz (prefix {prefix!r}): {e!r}") from None

    def table(self, max_rows: Optional[int] = 40, *, around: Optional[int] = None, direction: Optional[str] = None,
              sample: Optional[int] = None, units: Optional[Sequence[int]] = None) -> str:
        """A fixed-width table: one line per (direction, sample, processing step, unit) with the step's
        input time ``t``, whether it counted, and the unit's ``i f g o c h`` to 4 significant digits.

        Args:
            max_rows: at most this many steps per direction and sample (None: all); elided steps are
                marked ``...``.
            around: an input time step: show the steps around the one that read it (else the first ones).
            direction: only this direction (``"forward"``/``"backward"``).
            sample: only this batch row (default: every row).
            units: only these units (default: all).
        """
        dirs = [self.direction(direction)] if direction else list(self.directions)
        samples = range(self.batch) if sample is None else [sample]
        head = f"{'direction':<9} {'b':>3} {'k':>4} {'t':>4} {'valid':>5} {'unit':>4}" + "".join(
            f"{c:>11}" for c in _GATE_COLUMNS)
        title = f"{self.class_name} trace" + (f" of {self.label}" if self.label else "") + (
            f": B={self.batch} T={self.time} {self.dtype}; k = processing step, t = input time step")
        lines = [title, head, "-" * len(head)]
        for d in dirs:
            ks = list(range(self.time))
            if max_rows is not None and len(ks) > max_rows:
                centre = d.step_of(around) if around is not None and 0 <= around < self.time else 0
                lo = max(0, min(centre - max_rows // 2, self.time - max_rows))
                ks = ks[lo:lo + max(max_rows, 1)]
            p = d.processing_order
            for b in samples:
                if ks and ks[0] > 0:
                    lines.append(f"{d.name:<9} {b:>3} {'...':>4}")
                for k in ks:
                    for j, u in enumerate(units if units is not None else range(d.units)):
                        if u >= d.units:
                            continue
                        lead = (f"{d.name:<9} {b:>3} {k:>4} {int(d.order[k]):>4} "
                                f"{'yes' if p['valid'][b, k] else 'no':>5}") if j == 0 else " " * 29
                        vals = "".join(f"{float(p[c][b, k, u]):>11.4g}" for c in _GATE_COLUMNS)
                        lines.append(f"{lead} {u:>4}{vals}")
                if ks and ks[-1] < self.time - 1:
                    lines.append(f"{d.name:<9} {b:>3} {'...':>4}")
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines: shapes, flags and per direction the gate ranges and how many steps counted."""
        lines = [f"{self.class_name} trace" + (f" of {self.label}" if self.label else "")
                 + f": B={self.batch} T={self.time}, compute dtype {self.dtype}, policy {self.policy}"]
        for d in self.directions:
            p = d.processing_order
            lines.append(f"  {d.name}: units={d.units} go_backwards={d.go_backwards} "
                         f"{d.recurrent_activation}/{d.activation}, {int(p['valid'].sum())} of {p['valid'].size} "
                         f"steps valid, order {_order_text(d.order)}")
            with np.errstate(all="ignore"):
                ranges = ", ".join(f"{g} [{np.nanmin(p[g]):.4g}, {np.nanmax(p[g]):.4g}]" for g in ("i", "f", "g", "o", "c", "h"))
            lines.append(f"    {ranges}")
        return "\n".join(lines)


def _order_text(order: Array) -> str:
    T = len(order)
    return f"t = {', '.join(str(int(t)) for t in order)}" if T <= 6 else (
        f"t = {int(order[0])}, {int(order[1])}, ..., {int(order[-1])}")


def _identical(a: Array, b: Array) -> bool:
    return (a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a), np.signbit(b)))


def _difference(a: Array, b: Array, rtol: float) -> str:
    if a.shape != b.shape:
        return f"shape {b.shape}, the trace has {a.shape}"
    if rtol == 0.0:
        if a.dtype != b.dtype:
            return f"dtype {b.dtype}, the trace has {a.dtype}"
        if _identical(a, b):
            return ""
        bad = ~((a == b) | (np.isnan(a) & np.isnan(b))) | (np.signbit(a) != np.signbit(b))
    else:
        with np.errstate(all="ignore"):
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            bad = ~(np.isclose(a64, b64, rtol=rtol, atol=0.0, equal_nan=True) & (np.isnan(a64) == np.isnan(b64)))
        if not bad.any():
            return ""
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    with np.errstate(all="ignore"):
        worst = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    return (f"{int(bad.sum())} of {a.size} values differ (first at {where}: layer {b[where]!r}, trace {a[where]!r}; "
            f"max |diff| {worst:.3g})")


# --- tracing ---------------------------------------------------------------------------------------
def _trace_direction(name: str, layer: LSTM, x: Any, mask: Any, initial_state: Optional[Sequence[Any]]) -> DirectionTrace:
    """One direction, stepped by the loop below."""
    w = layer._require_weights()
    # The layer's own preparation validates x, mask and initial_state, picks the starting states (given,
    # stored or zeros) and the masking rule any quirk changes; it computes nothing of the recurrence.
    prep = layer._prepare(x, mask, initial_state, w)
    xa = as_input(x, w.kernel.shape[0], layer.dtype)  # (B, T, D) input order, compute dtype
    B, T, D = xa.shape
    n = layer.units
    dt = layer.dtype
    order = np.arange(T)[::-1].copy() if layer.go_backwards else np.arange(T)  # processing step k -> input t
    xp = xa[:, order]
    valid = np.ones((B, T), dtype=bool) if prep.mask_original is None else prep.mask_original[:, order]
    sigma, phi = layer._sigma, layer._phi

    # Every step's x_t @ W + b in one GEMM over rows (t, b), as the reference makes it: the same
    # products summed in the same order, so z below is bit-identical to the reference's.
    xw = (xp.transpose(1, 0, 2).reshape(T * B, D) @ w.kernel).reshape(T, B, 4 * n)
    if w.bias is not None:
        xw += w.bias
    rec = {key: np.empty((B, T, 4 * n if key == "z" else n), dtype=dt) for key in STEP_KEYS if key != "valid"}
    zero = np.zeros((), dtype=dt)
    h, c = prep.h0, prep.c0
    y = np.zeros_like(prep.h0) if prep.prev0 is None else prep.prev0  # the output carried over masked steps
    with np.errstate(all="ignore"):  # overflow and NaN are results here, as in the layer
        for k in range(T):
            z = xw[k] + h @ w.recurrent_kernel
            z_i, z_f, z_c, z_o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
            i, f, g, o = sigma(z_i), sigma(z_f), phi(z_c), sigma(z_o)
            c_new = f * c + i * g
            h_new = o * phi(c_new)
            m = valid[:, k, None]  # (B, 1): which rows count at this step
            h = np.where(m, h_new, h)  # a masked step keeps the state
            c = np.where(m, c_new, c)
            y = np.where(m, h_new, zero if prep.zofm else y)
            for key, value in (("z", z), ("z_i", z_i), ("z_f", z_f), ("z_c", z_c), ("z_o", z_o), ("i", i), ("f", f),
                               ("g", g), ("o", o), ("c_new", c_new), ("h_new", h_new), ("c", c), ("h", h), ("y", y)):
                rec[key][:, k] = value
    y_sequence = rec["y"]
    if prep.d_quirk and prep.mask_original is not None:  # the TF / Keras 2 unroll bug: the un-reversed mask
        y_sequence = np.where(prep.mask_original[:, :, None], y_sequence, zero)
    proc: dict[str, Array] = {"valid": valid, **rec}
    inverse = np.argsort(order)  # input time t -> processing step
    inp = {key: np.ascontiguousarray(a[:, inverse]) for key, a in proc.items()}
    after = None
    if layer.stateful:
        after = (np.zeros_like(h), np.zeros_like(h)) if "stateful_state_not_stored" in layer.quirks else (h, c)
    return DirectionTrace(
        name=name, go_backwards=layer.go_backwards, units=n, activation=layer.activation,
        recurrent_activation=layer.recurrent_activation, semantics=layer.semantics, policy=layer.dtype_policy,
        zero_output_for_mask=prep.zofm, order=order, processing_order=proc, input_order=inp,
        h0=np.array(prep.h0), c0=np.array(prep.c0), h_final=h, c_final=c, y_last=y, y_sequence=y_sequence,
        states_after=after,
    )


def _layer_of(layer_or_spec: Union[Layer, LayerSpec], dtype: Any) -> Layer:
    if isinstance(layer_or_spec, LayerSpec):
        return build(layer_or_spec, dtype=dtype)
    if isinstance(layer_or_spec, (LSTM, Bidirectional)):
        return layer_or_spec
    raise ConfigError(f"trace: expected a bilstm_ref LSTM, Bidirectional or LayerSpec, got {type(layer_or_spec).__name__}")


def trace(layer_or_spec: Union[Layer, LayerSpec], x: Any, mask: Any = None,
          initial_state: Optional[Sequence[Any]] = None, *, training: Optional[bool] = None,
          dtype: Any = None, label: str = "") -> Trace:
    """Trace one call of a reference layer.

    Args:
        layer_or_spec: a reference :class:`~bilstm_ref.LSTM` or :class:`~bilstm_ref.Bidirectional` with
            weights set (a stateful one starts from its stored states, which are left as they are), or
            a :class:`~bilstm_ref.reference.spec.LayerSpec` (built with compute ``dtype``, default float64).
        x: ``(B, T, D)`` input, as for the layer's call.
        mask: ``(B, T)`` bool (True = valid), or None.
        initial_state: ``[h, c]`` (LSTM) or ``[h_fw, c_fw, h_bw, c_bw]`` (Bidirectional), each ``(B, n)``.
        training: as for the layer: training-mode dropout cannot be traced.
        label: a name for what is traced, shown by :meth:`Trace.table`.
    Returns:
        The :class:`Trace`; ``trace.outputs()`` equals what the layer's call returns, bit for bit.
    Raises:
        UnsupportedModelError: training-mode dropout. Shape, dtype and state errors as the layer's call.
    """
    layer = _layer_of(layer_or_spec, dtype)
    lstms = [layer] if isinstance(layer, LSTM) else [layer.forward_layer, layer.backward_layer]
    if training and any(lay.dropout > 0 or lay.recurrent_dropout > 0 for lay in lstms):
        raise UnsupportedModelError(
            f"{layer.name}: training-mode dropout draws random masks and cannot be traced; trace with training=False "
            "(inference, where dropout has no effect)")
    if isinstance(layer, LSTM):
        dirs: tuple[DirectionTrace, ...] = (_trace_direction("forward", layer, x, mask, initial_state),)
        merge_mode = None
    else:
        fw_state = bw_state = None
        if initial_state is not None:
            states = list(initial_state)
            if len(states) != 4:
                raise ShapeMismatchError(
                    f"{layer.name} initial_state: expected 4 states [h_fw, c_fw, h_bw, c_bw], got {len(states)}")
            fw_state, bw_state = states[:2], states[2:]
        dirs = (_trace_direction("forward", layer.forward_layer, x, mask, fw_state),
                _trace_direction("backward", layer.backward_layer, x, mask, bw_state))
        merge_mode = layer.merge_mode
    return Trace("LSTM" if isinstance(layer, LSTM) else "Bidirectional", dirs, layer.return_sequences,
                 layer.return_state, merge_mode, layer.dtype_policy, np.dtype(layer.dtype).name, label)


def check_trace(layer_or_spec: Union[Layer, LayerSpec], x: Any, mask: Any = None,
                initial_state: Optional[Sequence[Any]] = None, *, dtype: Any = None, rtol: float = 0.0,
                label: str = "") -> Trace:
    """:func:`trace`, proven: the layer (a copy, so a stateful layer's states are not advanced) is called on
    the same inputs and the trace must reproduce its outputs and stored states (exactly, by default).

    Raises:
        TraceMismatchError: the trace differs from the layer.
    """
    import copy

    layer = _layer_of(layer_or_spec, dtype)
    tr = trace(layer, x, mask, initial_state, label=label)
    twin = copy.deepcopy(layer)
    out = twin(x, mask=mask, initial_state=None if initial_state is None else list(initial_state))
    tr.check(out, states=twin.states if twin.stateful else None, rtol=rtol)
    return tr


# --- cases and fixtures ----------------------------------------------------------------------------
def _resolve(target: Any) -> tuple[LayerSpec, tuple[Any, ...], str]:
    """(spec, calls, label) of a matrix case id, a fixture manifest path, a Case or a Fixture."""
    from ..conformance import matrix
    from ..fixtures.store import Fixture, read_fixture

    if isinstance(target, matrix.Case):
        return target.spec(), tuple(target.calls), target.id
    if isinstance(target, Fixture):
        return target.spec, tuple(target.calls), f"fixture {target.id}"
    if not isinstance(target, (str, os.PathLike)):
        raise ConfigError(f"trace: expected a matrix case id or a fixture manifest path, got {type(target).__name__}")
    text = os.fspath(target)
    cases = matrix.by_id()
    if text in cases:
        case = cases[text]
        return case.spec(), tuple(case.calls), case.id
    if text.endswith(".json") or os.sep in text or Path(text).exists():
        fx = read_fixture(text)
        return fx.spec, tuple(fx.calls), f"fixture {fx.id}"
    near = difflib.get_close_matches(text, list(cases), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else " (see `bilstm-ref matrix` for the ids)"
    raise ConfigError(f"trace: {text!r} is neither a matrix case id nor a fixture manifest (.json){hint}")


def trace_case(target: Any, *, all_calls: bool = False, dtype: Any = None,
               check: bool = True) -> Union[Trace, list[Trace]]:
    """Trace a matrix case (by id) or a fixture (by manifest path); a ``Case`` or ``Fixture`` works too.

    Args:
        all_calls: trace every call (a stateful case's chunks, states carried by the layer between
            calls, and the call after ``reset_state``) and return a list; else the first call's trace.
        dtype: compute dtype of the reference (default float64).
        check: prove each trace against the layer's own call (:meth:`Trace.check`, exact).
    """
    from ..conformance.judge import call_label

    spec, calls, label = _resolve(target)
    layer = build(spec, dtype=dtype)
    chosen = calls if all_calls else calls[:1]
    traces = []
    for k, call in enumerate(chosen):
        if call.reset_before:
            layer.reset_state()
        init = None if call.initial_state is None else list(call.initial_state)
        name = label if len(chosen) == 1 and len(calls) == 1 else f"{label} {call_label(calls, k, '').rstrip('/')}"
        tr = trace(layer, call.x, call.mask, init, label=name)
        out = layer(call.x, mask=call.mask, initial_state=init)  # advances a stateful layer's states
        if check:
            tr.check(out, states=layer.states if layer.stateful else None)
        traces.append(tr)
    return traces if all_calls else traces[0]


def save_traces(path: Union[str, "os.PathLike[str]"], traces: Sequence[Trace]) -> str:
    """Write one trace (keys as :meth:`Trace.arrays`) or several (keys prefixed ``call1/``, ``call2/``, ...)
    into one ``.npz``, atomically: a temporary file beside it, then ``os.replace``. Returns the path."""
    arrays: dict[str, Array] = {}
    for k, tr in enumerate(traces):
        arrays.update(tr.arrays("" if len(traces) == 1 else f"call{k + 1}/"))
    target = Path(path)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return str(target)


def _values(tr: Trace) -> int:
    return tr.batch * tr.time * sum(d.units for d in tr.directions)


def trace_main(target: str, out: Optional[str]) -> tuple[int, str]:
    """``bilstm-ref trace CASE_OR_FIXTURE [--out FILE]``: trace every call of a matrix case or fixture,
    proven against the reference layer. Small traces print as tables; larger ones print a summary and
    are written to ``--out`` (default ``trace-<id>.npz`` in the working directory). Returns (exit code,
    text to print): 0 traced, 1 the trace differs from the layer, 2 bad target or inputs."""
    try:
        traces = trace_case(target, all_calls=True)
    except TraceMismatchError as e:
        return 1, str(e)
    except BilstmRefError as e:
        return 2, f"error: {e}"
    assert isinstance(traces, list)
    small = all(_values(t) <= TABLE_LIMIT for t in traces)
    parts = [t.table(max_rows=None) if small else t.summary() for t in traces]
    parts.append(f"proven equal to the reference layer's outputs{' (every call)' if len(traces) > 1 else ''}: "
                 "bit-identical")
    path = out
    if path is None and not small:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(target).name.removesuffix(".json"))[:120]
        path = f"trace-{stem}.npz"
    if path is not None:
        try:
            save_traces(path, traces)
        except OSError as e:
            return 2, "\n\n".join(parts) + f"\nerror: cannot write {path}: {e.strerror or e}"
        keys = "call<k>/<direction>/input_order/<key>" if len(traces) > 1 else "<direction>/input_order/<key>"
        parts.append(f"wrote {path} (keys {keys}, also processing_order; Trace.from_npz reads it)")
    return 0, "\n\n".join(parts)
