"""``verify_converted``: a converted model (``.onnx``, ``.tflite``) against Keras and the reference, on a
battery of inputs that conversions get wrong.

Keras runs the original model (the oracle for the model's outputs); the reference computes the
recurrent layer from the input and mask Keras passes it; the converted file runs in its runtime
(:mod:`bilstm_ref.adapters`). Each battery item is judged on its own:

* the converted model's outputs against Keras's, output by output;
* the recurrent layer's output, where the converted graph exposes it, against the reference;
* for ``rows permuted`` and ``repeat call``, the converted model against itself: rows must be
  independent, and a model without state must give the same answer twice.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..conformance.compare import Tolerance, TolerancePolicy, tolerance_for
from ..errors import BilstmRefError, ConfigError, ShapeMismatchError
from ..conformance.judge import crash_report
from ..reference.spec import layer_policy, output_names, reference_factory
from .inputs import InputSpec, make_arrays, read_inputs
from .model import mask_sources_of, select_layers
from .stats import ErrorStats, OutputStats

__all__ = ["verify_converted", "ConversionResult", "BatteryItem", "BATTERY"]

#: The battery: item name -> what it catches.
BATTERY = {
    "inputs": "your data (--inputs)",
    "no padding": "the baseline: a batch of full-length rows",
    "right padding": "rows padded at the end (the mask Keras builds for them)",
    "left padding": "rows padded at the start: a converted graph that reads the mask as lengths gets them wrong",
    "holes": "padding in the middle of a row: converters that turn the mask into sequence lengths lose it",
    "fully masked row": "a row with no valid step: its outputs must be Keras's (zeros with a bias, not bias values)",
    "batch 1": "a batch of one row",
    "rows permuted": "the same rows in another order: each row's answer must not depend on the others",
    "repeat call": "the same batch twice: a model without state must answer the same (no state leaks between calls)",
    "long sequence": "four times as many steps",
    "large magnitude": "inputs eight times larger (token ids at the top of the vocabulary): saturating gates",
}
_MASK_ITEMS = {"right padding": "right", "left padding": "left", "holes": "holes", "fully masked row": "full"}


@dataclasses.dataclass
class BatteryItem:
    """One battery item's verdict: ``pass``, ``fail``, ``skipped`` (``reason`` says why) or ``error``.

    ``outputs``: the converted model's outputs against Keras's; ``layer``: the recurrent layer's
    output in the converted graph against the reference (empty when the graph does not expose it);
    ``self_check``: the converted model against itself (rows permuted, repeat call).
    """

    name: str
    what: str
    status: str = "pass"
    reason: str = ""
    batch: int = 0
    time: int = 0
    outputs: list[OutputStats] = dataclasses.field(default_factory=list)
    layer: list[OutputStats] = dataclasses.field(default_factory=list)
    self_check: list[OutputStats] = dataclasses.field(default_factory=list)

    def judged(self) -> list[OutputStats]:
        return self.outputs + self.layer + self.self_check

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "what": self.what, "status": self.status, "reason": self.reason,
                "batch": self.batch, "time": self.time, "outputs": [o.as_dict() for o in self.outputs],
                "layer": [o.as_dict() for o in self.layer], "self_check": [o.as_dict() for o in self.self_check]}


@dataclasses.dataclass
class ConversionResult:
    """What :func:`verify_converted` found: one :class:`BatteryItem` per battery item, and provenance."""

    model: str
    converted: str
    runtime: str
    op_form: str
    layer: Optional[str]
    exposed: Optional[str]  # the converted graph's tensor judged as the layer's output, if any
    versions: dict[str, str]
    items: list[BatteryItem]
    wall: float

    @property
    def ok(self) -> bool:
        return any(i.status == "pass" for i in self.items) and not any(
            i.status in ("fail", "error") for i in self.items)

    def as_dict(self) -> dict[str, Any]:
        from .._version import __version__

        return {"schema_version": 1, "kind": "verify-converted", "bilstm_ref": __version__, "ok": self.ok,
                "model": self.model, "converted": self.converted, "runtime": self.runtime, "op_form": self.op_form,
                "layer": self.layer, "exposed": self.exposed, "versions": self.versions, "wall_s": self.wall,
                "items": [i.as_dict() for i in self.items]}

    def describe(self) -> str:
        """One line per battery item, and its failing figures."""
        lines = []
        for i in self.items:
            lines.append(f"{i.name}: {i.status}" + (f" ({i.reason})" if i.reason else ""))
            lines += ["  " + o.describe() for o in i.judged() if not o.ok]
        return "\n".join(lines)


def _fixed(dim: Any) -> Optional[int]:
    return int(dim) if isinstance(dim, (int, np.integer)) and int(dim) > 0 else None


class _Converted:
    """The converted model fed by the Keras model's input order, outputs in the Keras model's order."""

    def __init__(self, cm: Any, specs: Sequence[InputSpec], n_outputs: int, where: str) -> None:
        self.cm, self.where = cm, where
        if len(cm.inputs) != len(specs):
            raise ShapeMismatchError(f"{where}: the converted model has {len(cm.inputs)} inputs "
                                     f"({[t.name for t in cm.inputs]}), the Keras model {len(specs)} "
                                     f"({[s.name for s in specs]})")
        if len(cm.outputs) < n_outputs:
            raise ShapeMismatchError(f"{where}: the converted model has {len(cm.outputs)} outputs, "
                                     f"the Keras model {n_outputs}")
        by_name = {t.name.split(":")[0]: t for t in cm.inputs}
        named = all(s.name in by_name for s in specs)
        self.inputs = [by_name[s.name] if named else t for s, t in zip(specs, cm.inputs)]
        self.output_names = [t.name for t in cm.outputs[:n_outputs]]
        for s, t in zip(specs, self.inputs):
            if len(t.shape) != len(s.shape) + 1:
                raise ShapeMismatchError(f"{where}: input {t.name!r} has rank {len(t.shape)}, the Keras model's "
                                         f"{s.name!r} rank {len(s.shape) + 1}")
        self.batch = _fixed(self.inputs[0].shape[0])
        self.time = _fixed(self.inputs[0].shape[1]) if len(self.inputs[0].shape) > 1 else None
        self.extra: list[str] = []
        self.extra_time_major = False

    def run(self, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(model outputs, exposed intermediates) for one batch."""
        feeds = {t.name: np.ascontiguousarray(a, dtype=t.dtype) for t, a in zip(self.inputs, arrays)}
        got = self.cm.run(feeds)
        extra = [got[n] for n in self.extra]
        if self.extra_time_major:
            extra = [np.swapaxes(a, 0, 1) for a in extra]
        return [got[n] for n in self.output_names], extra


def _expose(conv: _Converted, layer_name: str, keras_shape: tuple[int, ...], arrays: list[np.ndarray]) -> Optional[str]:
    """Make the converted graph return the layer's output: the last tensor in graph order named after the
    layer with the shape of Keras's layer output, or that shape time-major (converters often keep the
    loop's ``(T, B, units)``; it is transposed back). None when the graph names no such tensor."""
    original = conv.cm
    short = layer_name.rsplit("/", 1)[-1]
    names = [n for n in original.tensor_names() if short in n and n not in conv.output_names]
    want = tuple(keras_shape)
    time_major = (want[1], want[0]) + want[2:] if len(want) == 3 and want[0] != want[1] else None

    def shapes(candidates: list[str]) -> list[tuple[int, ...]]:
        conv.cm, conv.extra = original.with_outputs(candidates), candidates
        return [tuple(np.shape(a)) for a in conv.run(arrays)[1]]

    try:
        found = list(zip(names, shapes(names))) if names else []
    except BilstmRefError:  # a runtime that holds no data for some intermediates: one at a time, last first
        found = []
        for name in reversed(names):
            try:
                shape = shapes([name])[0]
            except BilstmRefError:
                continue
            if shape in (want, time_major):
                found = [(name, shape)]
                break
    fits = [(n, shape == time_major) for n, shape in found if shape in (want, time_major)]
    chosen = fits[-1:]
    conv.cm = original.with_outputs([n for n, _ in chosen]) if chosen else original
    conv.extra = [n for n, _ in chosen]
    conv.extra_time_major = bool(chosen and chosen[0][1])
    if not chosen:
        return None
    return chosen[0][0] + (" (time-major, transposed)" if conv.extra_time_major else "")


class _Tally:
    """An item's comparisons, accumulated over its batches: ``kind`` is outputs, layer or self_check."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], ErrorStats] = {}
        self.rows = 0

    def add(self, kind: str, name: str, tol: Tolerance, expected: np.ndarray, actual: np.ndarray,
            mask: Optional[np.ndarray], offset: int) -> None:
        """One batch whose first sample is the item's ``offset``-th."""
        self.stats.setdefault((kind, name), ErrorStats(name, tol)).update(expected, actual, offset, mask)

    def fill(self, item: BatteryItem) -> None:
        for (kind, _), s in self.stats.items():
            getattr(item, kind).append(s.result())


def verify_converted(
    model: str,
    converted: str,
    inputs: Optional[str] = None,
    layer: Optional[str] = None,
    *,
    config: Optional[str] = None,
    battery: bool = True,
    batch_size: int = 4,
    time_steps: int = 16,
    seed: int = 0,
    tolerance: Union[None, Tolerance] = None,
) -> ConversionResult:
    """Verify a converted model against the Keras model it came from, item by item of a battery.

    Args:
        model: the original ``.keras`` / ``.h5`` (Keras runs it; the reference reads its recurrent layer).
        converted: its conversion, ``.onnx`` (onnxruntime) or ``.tflite`` (ai-edge-litert).
        inputs: an ``.npz`` / ``.npy`` of the model's inputs, each ``(samples, ...)``: the ``inputs`` item.
        layer: the recurrent layer whose output is judged inside the converted graph (default: the
            last LSTM / Bidirectional(LSTM) of the model).
        battery: run the battery (:data:`BATTERY`); False: only ``inputs`` (which then must be given).
        batch_size, time_steps: the battery's batch and sequence length (a converted model with a
            fixed batch or length uses its own).
        tolerance: overrides the default of the layer's dtype policy (float32 runtimes are judged as
            float32 Keras is).

    Returns:
        A :class:`ConversionResult`; ``result.ok`` when no item fails or errs.
    """
    from ..adapters import open_converted
    from ..loaders import load_spec
    from .keras_model import KerasModel

    if not battery and inputs is None:
        raise ConfigError("verify --against: with the battery off, give --inputs")
    t0 = time.perf_counter()
    km = KerasModel(model, config=config)
    chosen, _ = select_layers(km, None if layer is None else [layer], model)
    target = chosen[-1]
    spec = load_spec(model, layer=target.path, config=config)
    ref = reference_factory(spec)
    tol = tolerance or tolerance_for(layer_policy(spec), km.versions["backend"])
    policy = TolerancePolicy(tol)
    specs = km.input_specs()
    cm = open_converted(converted)
    masks = mask_sources_of(model, config)
    masked = any(s.mask_zero or s.mask_value is not None for s in specs) or masks.get(target.path, "").startswith("mask")
    rng = np.random.default_rng(seed)

    with km.capture([target.path]) as keras_run:
        probe = make_arrays(specs, 1, time_steps, rng)
        first = keras_run(probe)
        conv = _Converted(cm, specs, len(first.model_outputs), converted)
        batch = conv.batch or batch_size
        steps = conv.time or time_steps
        if conv.batch or conv.time:
            first = keras_run(make_arrays(specs, batch, steps, rng))
        names = output_names(spec, len(first[target.path].outputs))
        base = make_arrays(specs, batch, steps, rng)
        exposed = _expose(conv, target.path, (batch,) + first[target.path].outputs[0].shape[1:], base)
        model_names = [f"model output {k}" for k in range(len(first.model_outputs))]

        tally = _Tally()

        def judge(item: BatteryItem, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], Any, int]:
            """Keras, the converted model and (for the exposed layer output) the reference on one batch;
            returns the converted outputs, the mask and the batch's offset among the item's samples."""
            offset = tally.rows
            cap = keras_run(arrays)
            got, inner = conv.run(arrays)
            c = cap[target.path]
            item.batch, item.time = int(arrays[0].shape[0]), int(arrays[0].shape[1]) if arrays[0].ndim > 1 else 0
            for n, e, a in zip(model_names, cap.model_outputs, got):
                tally.add("outputs", n, tol, e, a, c.mask, offset)
            if exposed is not None and inner:
                want = ref(c.x, mask=c.mask, initial_state=c.initial_state)
                want0 = want[0] if isinstance(want, (tuple, list)) else want
                tally.add("layer", f"layer {target.path} {names[0]}", policy.for_output(names[0]), want0, inner[0],
                          c.mask, offset)
            tally.rows += item.batch
            return got, c.mask, offset

        items: list[tuple[str, Callable[[BatteryItem], None]]] = []
        if inputs is not None:
            source = read_inputs(inputs, specs)

            def user(item: BatteryItem) -> None:
                for _, arrays in source.batches(batch):
                    if arrays[0].shape[0] != batch and conv.batch:
                        item.reason = f"the last {arrays[0].shape[0]} samples left out: the converted model fixes batch {batch}"
                        break
                    judge(item, arrays)
            items.append(("inputs", user))
        if battery:
            items.append(("no padding", lambda item: judge(item, base)))
            for name, pattern in _MASK_ITEMS.items():
                def padded(item: BatteryItem, pattern: str = pattern) -> None:
                    if not masked:
                        item.status, item.reason = "skipped", "the model does not mask its input"
                        return
                    judge(item, make_arrays(specs, batch, steps, rng, (pattern, "none")))
                items.append((name, padded))

            def batch1(item: BatteryItem) -> None:
                if conv.batch not in (None, 1):
                    item.status, item.reason = "skipped", f"the converted model fixes batch {conv.batch}"
                    return
                judge(item, make_arrays(specs, 1, steps, rng, ("right",)))
            items.append(("batch 1", batch1))

            def permuted(item: BatteryItem) -> None:
                arrays = make_arrays(specs, batch, steps, rng, ("right", "left", "none", "full") if masked else ("none",))
                if batch < 2:
                    item.status, item.reason = "skipped", "the converted model fixes batch 1"
                    return
                got, _ = conv.run(arrays)
                perm = np.roll(np.arange(batch), 1)
                moved, mask, offset = judge(item, [a[perm] for a in arrays])
                for n, g, m in zip(model_names, got, moved):
                    tally.add("self_check", f"{n} vs unpermuted, permuted", tol, g[perm], m, mask, offset)
            items.append(("rows permuted", permuted))

            def repeat(item: BatteryItem) -> None:
                once, mask, offset = judge(item, base)
                twice, _ = conv.run(base)
                for n, a, b in zip(model_names, once, twice):
                    tally.add("self_check", f"{n}, second call vs first", tol, a, b, mask, offset)
            items.append(("repeat call", repeat))

            def long(item: BatteryItem) -> None:
                if conv.time is not None:
                    item.status, item.reason = "skipped", f"the converted model fixes {conv.time} steps"
                    return
                judge(item, make_arrays(specs, batch, 4 * steps, rng, ("right", "none") if masked else ("none",)))
            items.append(("long sequence", long))

            def large(item: BatteryItem) -> None:
                arrays = make_arrays(specs, batch, steps, rng, ("right", "none") if masked else ("none",), scale=8.0)
                for s, a in zip(specs, arrays):
                    if s.vocab is not None:
                        a[a > 0] = np.maximum(a[a > 0], s.vocab - 1 - a[a > 0] % 4)  # the top of the vocabulary
                judge(item, arrays)
            items.append(("large magnitude", large))

        results = []
        for name, run in items:
            item = BatteryItem(name, BATTERY[name])
            tally.stats, tally.rows = {}, 0
            try:
                run(item)
            except BilstmRefError as e:
                item.status, item.reason = "error", str(e)
            except Exception as e:  # the runtime failed on this item: its error, named
                item.status, item.reason = "error", crash_report(e, "the converted model raised ")[0]
            tally.fill(item)
            if item.status == "pass" and not all(o.ok for o in item.judged()):
                bad = [o for o in item.judged() if not o.ok]
                worst = max(bad, key=lambda o: o.tol_used)
                item.status = "fail"
                item.reason = f"{len(bad)} of {len(item.judged())} comparisons off; worst: {worst.describe()}"
            results.append(item)
    versions = dict(km.versions, runtime=cm.runtime)
    return ConversionResult(model=str(model), converted=str(converted), runtime=cm.runtime, op_form=cm.op_form(),
                            layer=target.path, exposed=exposed, versions=versions, items=results,
                            wall=time.perf_counter() - t0)
