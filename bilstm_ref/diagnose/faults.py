"""A library of known porting faults, each a variant of the reference that computes the fault.

A :class:`Fault` turns a :class:`Subject` (a layer spec and the calls it is judged on) into the
outputs a port with that fault would give, or None where the fault cannot arise (a mask fault on a
case without a mask). Faults are one of three kinds:

* **weights read wrongly** (gate blocks permuted, forget bias offset, kernels read transposed,
  gate blocks of the recurrent kernel transposed): the reference on transformed weights;
* **inputs or states handled wrongly** (mask ignored or reversed, initial states ignored or in the
  wrong order, states not carried between stateful calls, go_backwards ignored, Keras 2 against
  Keras 3 hard_sigmoid, another merge mode, half-precision rounding missing or extra, float32
  arithmetic in a float64 port): the reference on transformed inputs or configs;
* **outputs arranged wrongly** (h and c swapped, the directions' states swapped, the backward
  sequence left in processing order, hidden units in another order): the reference's outputs,
  rearranged. Units in another order are fitted: the permutation is read off the outputs.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..reference.bidirectional import merge
from ..reference.spec import LayerSpec, build, direction_units

__all__ = ["Subject", "Fault", "FAULTS", "Outputs", "run_spec"]

Outputs = list[dict[str, np.ndarray]]
GATES = "ifco"  # Keras's gate block order: input, forget, cell candidate, output


@dataclasses.dataclass(frozen=True)
class Subject:
    """What a diagnosis runs on: the layer, its calls (``x``, ``mask``, ``initial_state``,
    ``reset_before``), the names of what one call returns, and the tolerance it is judged at."""

    id: str
    spec: LayerSpec
    calls: tuple[Any, ...]
    output_names: tuple[str, ...]
    tolerance: Any


@dataclasses.dataclass(frozen=True)
class Fault:
    """A known porting fault: ``outputs(subject, actual)`` gives what a port with it returns (None
    where it cannot arise); ``actual`` (the implementation's outputs) is read only by fitted faults."""

    name: str
    family: str
    outputs: Callable[[Subject, Outputs], Optional[Outputs]]


# --- running the reference ------------------------------------------------------------------------
def run_spec(spec: LayerSpec, calls: Sequence[Any], output_names: Sequence[str], *, dtype: Any = None,
             call_map: Optional[Callable[[Any], tuple[Any, Any, Any]]] = None, reset_each: bool = False) -> Outputs:
    """The reference built from ``spec`` on ``calls``, outputs by name; ``call_map(call) -> (x, mask,
    initial_state)`` changes what each call passes; ``reset_each`` drops states between calls."""
    layer = build(spec, dtype=dtype)
    out = []
    for k, call in enumerate(calls):
        if call.reset_before or (reset_each and k):
            layer.reset_state()
        x, mask, init = call_map(call) if call_map else (call.x, call.mask, call.initial_state)
        y = layer(x, mask=mask, initial_state=None if init is None else list(init))
        ys = y if isinstance(y, tuple) else (y,)
        out.append(dict(zip(output_names, (np.asarray(v) for v in ys), strict=True)))
    return out


def _reference(s: Subject, **kw: Any) -> Outputs:
    return run_spec(s.spec, s.calls, s.output_names, **kw)


def _lstm_configs(cfg: dict[str, Any], class_name: str) -> list[dict[str, Any]]:
    if class_name == "LSTM":
        return [cfg]
    out = [cfg["layer"]["config"]]
    if cfg.get("backward_layer"):
        out.append(cfg["backward_layer"]["config"])
    return out


def _with_config(spec: LayerSpec, change: Callable[[dict[str, Any]], None], wrapper: bool = False) -> LayerSpec:
    """A copy of ``spec`` whose LSTM configs (and the wrapper's, with ``wrapper``) ``change`` edits in place."""
    cfg = copy.deepcopy(spec.config)
    for c in _lstm_configs(cfg, spec.class_name):
        change(c)
    if wrapper and spec.class_name == "Bidirectional":
        change(cfg)
    return dataclasses.replace(spec, config=cfg)


def _with_weights(spec: LayerSpec, fn: Callable[[np.ndarray, int, str], np.ndarray]) -> LayerSpec:
    """A copy of ``spec`` with ``fn(array, units, kind)`` applied to each weight (kernel, recurrent, bias)."""
    weights, out, i = list(spec.weights), [], 0
    for cfg, n in zip(_lstm_configs(spec.config, spec.class_name) * 2, direction_units(spec)):
        kinds = ("kernel", "recurrent", "bias") if cfg.get("use_bias", True) else ("kernel", "recurrent")
        for kind in kinds:
            out.append(fn(np.array(weights[i], dtype=np.float64), n, kind))
            i += 1
    return dataclasses.replace(spec, weights=tuple(out))


def _weights_fault(fn: Callable[[np.ndarray, int, str], Optional[np.ndarray]]) -> Callable[[Subject, Outputs], Optional[Outputs]]:
    def outputs(s: Subject, actual: Outputs) -> Optional[Outputs]:
        changed = [False]

        def apply(a: np.ndarray, n: int, kind: str) -> np.ndarray:
            b = fn(a, n, kind)
            if b is None:
                return a
            changed[0] = changed[0] or not np.array_equal(a, b)
            return b

        variant = _with_weights(s.spec, apply)
        return _reference(dataclasses.replace(s, spec=variant)) if changed[0] else None
    return outputs


# --- weights read wrongly -------------------------------------------------------------------------
def _gate_order(order: tuple[int, ...]) -> Fault:
    def fn(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        return np.concatenate([a[..., g * n:(g + 1) * n] for g in order], axis=-1)
    names = ", ".join(GATES[g] for g in order)
    return Fault(f"gate blocks read in the order {names} (Keras stores i, f, c, o)", "gate order", _weights_fault(fn))


def _forget_bias(offset: float) -> Fault:
    def fn(a: np.ndarray, n: int, kind: str) -> Optional[np.ndarray]:
        if kind != "bias":
            return None
        a = a.copy()
        a[n:2 * n] += offset
        return a
    return Fault(f"forget gate bias offset by {offset:+g} (unit_forget_bias applied at inference)", "forget bias",
                 _weights_fault(fn))


def _transposed(which: str) -> Fault:
    def fn(a: np.ndarray, n: int, kind: str) -> Optional[np.ndarray]:
        if kind != which:
            return None
        return np.ascontiguousarray(a.T).reshape(a.shape)  # a (4n, rows) buffer read as (rows, 4n)
    what = "kernel" if which == "kernel" else "recurrent kernel"
    return Fault(f"{what} read transposed (a (4n, {'D' if which == 'kernel' else 'n'}) buffer taken as Keras's "
                 f"({'D' if which == 'kernel' else 'n'}, 4n))", "transposed", _weights_fault(fn))


def _blocks_transposed(a: np.ndarray, n: int, kind: str) -> Optional[np.ndarray]:
    if kind != "recurrent":
        return None
    return np.concatenate([a[:, g * n:(g + 1) * n].T for g in range(4)], axis=-1)


# --- inputs, states and configs handled wrongly ---------------------------------------------------
def _mask_fault(name: str, change: Callable[[np.ndarray], Optional[np.ndarray]]) -> Fault:
    def outputs(s: Subject, actual: Outputs) -> Optional[Outputs]:
        if all(c.mask is None for c in s.calls):
            return None
        return _reference(s, call_map=lambda c: (c.x, None if c.mask is None else change(np.asarray(c.mask)),
                                                   c.initial_state))
    return Fault(name, "mask", outputs)


def _initial_fault(name: str, change: Callable[[list[Any], list[int]], Optional[list[Any]]]) -> Fault:
    def outputs(s: Subject, actual: Outputs) -> Optional[Outputs]:
        if all(c.initial_state is None for c in s.calls):
            return None
        units = direction_units(s.spec)

        def changed(c: Any) -> Any:
            if c.initial_state is None:
                return None
            return change(list(c.initial_state), units)

        if any(c.initial_state is not None and changed(c) is None for c in s.calls):
            return None
        return _reference(s, call_map=lambda c: (c.x, c.mask, changed(c)))
    return Fault(name, "initial state", outputs)


def _initial_ignored(s: Subject, actual: Outputs) -> Optional[Outputs]:
    if all(c.initial_state is None for c in s.calls):
        return None
    return _reference(s, call_map=lambda c: (c.x, c.mask, None))


def _h_c_swapped_in(init: list[Any], units: list[int]) -> Optional[list[Any]]:
    pairs = [init[i:i + 2] for i in range(0, len(init), 2)]
    if any(np.shape(h) != np.shape(c) for h, c in pairs):
        return None
    return [v for h, c in pairs for v in (c, h)]


def _directions_swapped_in(init: list[Any], units: list[int]) -> Optional[list[Any]]:
    if len(init) != 4 or units[0] != units[1]:
        return None
    return init[2:] + init[:2]


def _states_not_carried(s: Subject, actual: Outputs) -> Optional[Outputs]:
    stateful = any(c.get("stateful") for c in _lstm_configs(s.spec.config, s.spec.class_name))
    if not stateful or len(s.calls) < 2 or all(c.reset_before for c in s.calls[1:]):
        return None
    return _reference(s, reset_each=True)


def _go_backwards_ignored(s: Subject, actual: Outputs) -> Optional[Outputs]:
    if s.spec.class_name != "LSTM" or not s.spec.config.get("go_backwards"):
        return None
    return _reference(dataclasses.replace(s, spec=_with_config(s.spec, lambda c: c.update(go_backwards=False))))


def _hard_sigmoid_semantics(s: Subject, actual: Outputs) -> Optional[Outputs]:
    uses = any("hard_sigmoid" in str(c.get(k)) for c in _lstm_configs(s.spec.config, s.spec.class_name)
               for k in ("activation", "recurrent_activation"))
    if not uses:
        return None
    other = "keras2" if s.spec.semantics == "keras3" else "keras3"
    prov = dict(s.spec.provenance, semantics=other)
    return _reference(dataclasses.replace(s, spec=dataclasses.replace(s.spec, provenance=prov)))


def _merge_mode(mode: str) -> Fault:
    def outputs(s: Subject, actual: Outputs) -> Optional[Outputs]:
        current = s.spec.config.get("merge_mode", "concat") if s.spec.class_name == "Bidirectional" else None
        if current not in ("sum", "mul", "ave") or current == mode:
            return None
        return _reference(dataclasses.replace(s, spec=dataclasses.replace(
            s.spec, config={**s.spec.config, "merge_mode": mode})))
    return Fault(f"merge_mode {mode!r} computed instead of the layer's", "merge mode", outputs)


_HALF = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def _policies(spec: LayerSpec) -> set[str]:
    from ..reference.dtypes import policy_name

    cfgs = _lstm_configs(spec.config, spec.class_name) + ([spec.config] if spec.class_name == "Bidirectional" else [])
    return {policy_name(c.get("dtype")) for c in cfgs}


def _policy_fault(name: str, applies: Callable[[set[str]], bool], policy: str) -> Fault:
    def outputs(s: Subject, actual: Outputs) -> Optional[Outputs]:
        if not applies(_policies(s.spec)):
            return None
        return _reference(dataclasses.replace(s, spec=_with_config(s.spec, lambda c: c.update(dtype=policy),
                                                                   wrapper=True)))
    return Fault(name, "precision", outputs)


def _float32_arithmetic(s: Subject, actual: Outputs) -> Optional[Outputs]:
    return _reference(s, dtype="float32")


def _outputs_rounded_to(kind: str) -> Callable[[Subject, Outputs], Optional[Outputs]]:
    def outputs(s: Subject, actual: Outputs) -> Optional[Outputs]:
        if _policies(s.spec) & set(_HALF):
            return None
        from ..reference.dtypes import cast_output

        ref = _reference(s)
        return [{k: cast_output(v, kind, np.dtype(np.float64)) for k, v in o.items()} for o in ref]
    return outputs


def _mask_zeroes_state(s: Subject, actual: Outputs) -> Optional[Outputs]:
    """Masked steps reset h and c to zero (and output zeros) instead of carrying them: the recurrence run
    one step at a time with the reference's own cell (full-precision, non-stateful layers)."""
    if all(c.mask is None for c in s.calls) or any(
            c.get("stateful") for c in _lstm_configs(s.spec.config, s.spec.class_name)) or _policies(s.spec) & set(_HALF):
        return None
    from ..reference.lstm import LSTM

    layer = build(s.spec)
    dirs = [layer] if s.spec.class_name == "LSTM" else [layer.forward_layer, layer.backward_layer]
    steppers = []
    for d in dirs:
        cfg = {**d.get_config(), "return_sequences": False, "return_state": True, "go_backwards": False,
               "stateful": False, "dtype": "float32"}
        step = LSTM.from_config(cfg, semantics=s.spec.semantics)
        step.set_weights(d.get_weights())
        steppers.append((step, d.go_backwards, d.units))
    out = []
    for call in s.calls:
        x, mask = np.asarray(call.x, dtype=np.float64), call.mask
        steps = x.shape[1]
        valid = np.ones(x.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        init = None if call.initial_state is None else list(call.initial_state)
        per_dir = []
        for k, (step, backwards, n) in enumerate(steppers):
            h = np.zeros((x.shape[0], n)) if init is None else np.asarray(init[2 * k], dtype=np.float64)
            c = np.zeros((x.shape[0], n)) if init is None else np.asarray(init[2 * k + 1], dtype=np.float64)
            ys = []
            for t in (range(steps - 1, -1, -1) if backwards else range(steps)):
                _, h_new, c_new = step(x[:, t:t + 1], initial_state=[h, c])
                v = valid[:, t:t + 1]
                h, c = np.where(v, h_new, 0.0), np.where(v, c_new, 0.0)
                ys.append(np.where(v, h_new, 0.0))
            per_dir.append((np.stack(ys, axis=1), h, c))  # sequence in processing order
        out.append(_assemble(s, layer, per_dir))
    return out


def _assemble(s: Subject, layer: Any, per_dir: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """A call's outputs, by name, from each direction's (sequence in processing order, h, c)."""
    if s.spec.class_name == "LSTM":
        seq, h, c = per_dir[0]
        values = [seq if layer.return_sequences else seq[:, -1], h, c]
    else:
        (y_f, h1, c1), (y_b, h2, c2) = per_dir
        if layer.return_sequences:
            y_f, y_b = y_f, y_b[:, ::-1]  # the backward sequence re-aligned to input time
        else:
            y_f, y_b = y_f[:, -1], y_b[:, -1]
        merged = merge(y_f, y_b, layer.merge_mode)
        values = (list(merged) if layer.merge_mode is None else [merged]) + [h1, c1, h2, c2]
    return dict(zip(s.output_names, values))


# --- outputs arranged wrongly ---------------------------------------------------------------------
def _state_names(names: Sequence[str]) -> list[tuple[str, str]]:
    if "h" in names:
        return [("h", "c")]
    return [(h, c) for h, c in (("h1", "c1"), ("h2", "c2")) if h in names]


def _h_c_swapped(s: Subject, actual: Outputs) -> Optional[Outputs]:
    pairs = _state_names(s.output_names)
    if not pairs:
        return None
    out = []
    for o in _reference(s):
        o = dict(o)
        for h, c in pairs:
            o[h], o[c] = o[c], o[h]
        out.append(o)
    return out


def _directions_swapped(s: Subject, actual: Outputs) -> Optional[Outputs]:
    if not {"h1", "h2"} <= set(s.output_names):
        return None
    return [{**o, "h1": o["h2"], "c1": o["c2"], "h2": o["h1"], "c2": o["c1"]} for o in _reference(s)]


def _backward_not_realigned(s: Subject, actual: Outputs) -> Optional[Outputs]:
    """The backward direction's sequence left in processing order (or re-aligned twice: the same)."""
    cfg = s.spec.config
    if s.spec.class_name != "Bidirectional" or not cfg["layer"]["config"].get("return_sequences"):
        return None
    mode = cfg.get("merge_mode", "concat")
    split = dataclasses.replace(s.spec, config={**cfg, "merge_mode": None})
    names = ("output_fw", "output_bw") + tuple(n for n in s.output_names if n in ("h1", "c1", "h2", "c2"))
    out = []
    for o in run_spec(split, s.calls, names):
        y_bw = o["output_bw"][:, ::-1]
        merged = merge(o["output_fw"], y_bw, mode)
        row = dict(zip(("output_fw", "output_bw"), merged)) if mode is None else {"output": merged}
        row.update({k: o[k] for k in names[2:]})
        out.append(row)
    return out


def _units_permuted(s: Subject, actual: Outputs) -> Optional[Outputs]:
    """Hidden units relabelled in the weights (kernel and bias columns, recurrent rows and columns, per
    direction), as a port that stores units in another order computes; the states it is given stay in
    Keras's order. Each direction's permutation is searched on the outputs that direction alone makes
    (exhaustively up to 4 units, else read off the outputs); merged outputs take one shared permutation."""
    units = direction_units(s.spec)
    if max(units) < 2:
        return None
    spans = _unit_spans(s, units)
    own = {d: [(name, lo) for name, per_dir in spans.items() if not _merged(per_dir) for dd, lo in per_dir if dd == d]
           for d in range(len(units))}
    identity = [np.arange(n) for n in units]

    def error(perms: list[np.ndarray], d: Optional[int]) -> tuple[float, Outputs]:
        variant = _reference(dataclasses.replace(s, spec=_permuted_units_spec(s.spec, perms)))
        cols = [(name, lo, units[d]) for name, lo in own[d]] if d is not None else None
        if cols:
            err = max(_max_diff(v[name][..., lo:lo + n], a[name][..., lo:lo + n])
                      for v, a in zip(variant, actual) for name, lo, n in cols)
        else:
            err = max(_max_diff(v[n], a[n]) for v, a in zip(variant, actual) for n in s.output_names)
        return err, variant

    if all(own[d] for d in own):  # each direction judged on its own columns
        chosen = [_best(lambda p, d=d: error([p if k == d else identity[k] for k in range(len(units))], d)[0],
                        _candidates(s, actual, units, d)) for d in range(len(units))]
    elif len(set(units)) == 1:  # only merged outputs: one permutation for both directions
        shared = _best(lambda p: error([p] * len(units), None)[0], _candidates(s, actual, units, 0))
        chosen = [shared] * len(units)
    else:
        return None
    if all(np.array_equal(p, i) for p, i in zip(chosen, identity)):
        return None
    return error(chosen, None)[1]


def _best(score: Callable[[np.ndarray], float], candidates: list[np.ndarray]) -> np.ndarray:
    return min(candidates, key=score)


def _candidates(s: Subject, actual: Outputs, units: list[int], d: int) -> list[np.ndarray]:
    n = units[d]
    if n <= 4:
        return [np.asarray(p) for p in itertools.permutations(range(n))]
    fitted = _fitted_permutations(s, actual, units)
    return ([fitted[d]] if fitted else []) + [np.roll(np.arange(n), 1), np.roll(np.arange(n), -1), np.arange(n)[::-1]]


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return np.inf
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    return float(np.nanmax(d)) if d.size else 0.0


def _permuted_units_spec(spec: LayerSpec, perms: list[np.ndarray]) -> LayerSpec:
    direction = iter(range(10**6))
    current = {"d": -1}

    def permute(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        if kind == "kernel":
            current["d"] = next(direction)
        p = perms[current["d"]]
        cols = np.concatenate([g * n + p for g in range(4)])
        b = a[..., cols]
        return b[p] if kind == "recurrent" else b
    return _with_weights(spec, permute)


def _fitted_permutations(s: Subject, actual: Outputs, units: list[int]) -> Optional[list[np.ndarray]]:
    """Per direction, the permutation whose columns of the reference's outputs best match the implementation's."""
    ref = _reference(s)
    spans = _unit_spans(s, units)
    perms = []
    for d, n in enumerate(units):
        names = [(name, lo) for name, per_dir in spans.items() if not _merged(per_dir)
                 for dd, lo in per_dir if dd == d]
        perm = _fit_permutation(ref, actual, names, n)
        if perm is None:
            return None
        perms.append(perm)
    return perms


def _unit_spans(s: Subject, units: list[int]) -> dict[str, list[tuple[int, int]]]:
    """Per output, the (direction, first column) of each direction's units in it (merged outputs mix
    both directions and are left out unless the units line up, as in sum / mul / ave)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for name in s.output_names:
        if name in ("h", "c", "h1", "c1", "output_fw"):
            spans[name] = [(0, 0)]
        elif name in ("h2", "c2", "output_bw"):
            spans[name] = [(1, 0)]
        elif name == "output":
            if s.spec.class_name == "LSTM":
                spans[name] = [(0, 0)]
            elif s.spec.config.get("merge_mode", "concat") == "concat":
                spans[name] = [(0, 0), (1, units[0])]
            else:  # sum / mul / ave: unit j of both directions meet in column j
                spans[name] = [(0, 0), (1, 0)]
    return spans


def _merged(per_dir: list[tuple[int, int]]) -> bool:
    """Both directions in the same columns (a sum / mul / ave merged output)."""
    return len(per_dir) == 2 and per_dir[1][1] == 0


def _fit_permutation(ref: Outputs, actual: Outputs, names: list[tuple[str, int]], n: int) -> Optional[np.ndarray]:
    """The permutation p with actual[..., lo + j] == ref[..., lo + p[j]] (closest match per column)."""
    if not names:
        return None
    cols_ref = [np.concatenate([np.asarray(o[name], dtype=np.float64)[..., lo + j].ravel()
                                for o in ref for name, lo in names]) for j in range(n)]
    perm = []
    for j in range(n):
        try:
            got = np.concatenate([np.asarray(o[name], dtype=np.float64)[..., lo + j].ravel()
                                  for o in actual for name, lo in names])
        except (KeyError, IndexError, ValueError):
            return None
        dist = [float(np.nanmax(np.abs(got - r))) if got.shape == r.shape else np.inf for r in cols_ref]
        perm.append(int(np.argmin(dist)))
    if sorted(perm) != list(range(n)):
        return None
    return np.asarray(perm)


def _library() -> tuple[Fault, ...]:
    faults = [_gate_order(p) for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)]
    faults += [_forget_bias(1.0), _forget_bias(-1.0), _transposed("kernel"), _transposed("recurrent"),
               Fault("each gate's n x n block of the recurrent kernel transposed (Keras blocks copied into a "
                     "torch / ONNX layout without .T)", "transposed", _weights_fault(_blocks_transposed)),
               Fault("hidden units in another order", "units", _units_permuted),
               _mask_fault("mask ignored", lambda m: None),
               _mask_fault("mask reversed in time", lambda m: m[:, ::-1]),
               Fault("backward sequence not re-aligned to input time (or re-aligned twice)", "direction",
                     _backward_not_realigned),
               Fault("go_backwards ignored", "direction", _go_backwards_ignored),
               Fault("h and c swapped in the returned states", "states", _h_c_swapped),
               Fault("forward and backward states swapped", "states", _directions_swapped),
               Fault("initial state ignored", "initial state", _initial_ignored),
               _initial_fault("initial state passed as (c, h) instead of (h, c)", _h_c_swapped_in),
               _initial_fault("initial states of the two directions swapped", _directions_swapped_in),
               Fault("states not carried between stateful calls", "states", _states_not_carried),
               Fault("masked steps reset the state to zero instead of carrying it", "mask", _mask_zeroes_state),
               Fault("hard_sigmoid of the other Keras version (Keras 2: 0.2x + 0.5; Keras 3: relu6(x + 3) / 6)",
                     "activation", _hard_sigmoid_semantics)]
    faults += [_merge_mode(m) for m in ("sum", "mul", "ave")]
    faults += [
        _policy_fault("half-precision rounding missing (computed and returned in float32)",
                      lambda p: bool(p & set(_HALF)), "float32"),
        _policy_fault("float16 rounding where the layer's policy is bfloat16", lambda p: "mixed_bfloat16" in p,
                      "mixed_float16"),
        _policy_fault("bfloat16 rounding where the layer's policy is float16", lambda p: "mixed_float16" in p,
                      "mixed_bfloat16"),
        Fault("outputs rounded to float16 (extra half-precision rounding)", "precision", _outputs_rounded_to("float16")),
        Fault("outputs rounded to bfloat16 (extra half-precision rounding)", "precision",
              _outputs_rounded_to("bfloat16")),
        Fault("float32 arithmetic (a float64 port computing in float32)", "precision", _float32_arithmetic),
    ]
    return tuple(faults)


#: Every known fault, in a fixed order (ties in the ranking keep it).
FAULTS: tuple[Fault, ...] = _library()
