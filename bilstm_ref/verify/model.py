"""``verify_model``: every LSTM / Bidirectional(LSTM) of a saved model, on the user's data, against the
Keras that runs the model.

For each batch, Keras runs the whole model once and the verifier captures each selected layer's
real input, the mask Keras passes it and its outputs (:mod:`.keras_model`). The layer under test
is read from the file by the Keras-free loaders (the path a port takes) and judged two ways:

* **isolated**: fed exactly Keras's input, mask and initial states;
* **chained**: fed its own output of the upstream recurrent layer (connected directly or through
  inference no-ops such as Dropout), so error growth through a stack shows.

Statistics accumulate batch by batch (:mod:`.stats`), so memory does not grow with the data.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..conformance.compare import Tolerance, TolerancePolicy, tolerance_for
from ..errors import BilstmRefError, ConfigError, UnsupportedModelError, a_or_an
from ..conformance.judge import crash_report
from ..reference.spec import LayerSpec, layer_policy, output_names, reference_factory, resolve_factory
from .inputs import InputSource, generated_inputs, read_inputs
from .stats import ErrorStats, OutputStats

__all__ = ["verify_model", "VerifyResult", "LayerVerdict", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
Factory = Callable[[LayerSpec], Any]
Progress = Callable[[int, int], None]


@dataclasses.dataclass
class LayerVerdict:
    """The verdict on one recurrent layer.

    ``status``: ``pass`` (every output within tolerance, isolated), ``fail``, ``unsupported`` (the
    reference cannot load it: the reason says why), ``error`` (the implementation raised), or
    ``not-verified`` (not an LSTM / Bidirectional(LSTM): GRU, ConvLSTM, TimeDistributed, ...).
    ``chained`` is None when nothing recurrent feeds the layer (chained equals isolated).
    """

    path: str
    class_name: str
    status: str
    reason: str = ""
    mask_source: str = ""
    upstream: Optional[str] = None
    via: tuple[str, ...] = ()
    isolated: list[OutputStats] = dataclasses.field(default_factory=list)
    chained: Optional[list[OutputStats]] = None
    samples_masked: int = 0  # samples whose mask (as Keras passed it) hides at least one step
    initial_states: bool = False  # Keras passed initial states wired in the model (fed to the implementation too)

    def failures(self) -> list[OutputStats]:
        return [o for o in self.isolated if not o.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "class_name": self.class_name, "status": self.status, "reason": self.reason,
                "mask_source": self.mask_source, "upstream": self.upstream, "via": list(self.via),
                "samples_masked": self.samples_masked, "initial_states": self.initial_states,
                "isolated": [o.as_dict() for o in self.isolated],
                "chained": None if self.chained is None else [o.as_dict() for o in self.chained]}


@dataclasses.dataclass
class VerifyResult:
    """What ``verify_model`` found: one :class:`LayerVerdict` per recurrent layer, and provenance.

    ``ok`` is True when every selected layer passes.
    """

    model: str
    format: str
    semantics: str
    versions: dict[str, str]
    impl: str
    inputs: dict[str, Any]
    batch_size: int
    layers: list[LayerVerdict]
    wall: float
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds: keras, implementation, statistics

    @property
    def selected(self) -> list[LayerVerdict]:
        return [v for v in self.layers if v.status != "not-verified"]

    @property
    def ok(self) -> bool:
        return bool(self.selected) and all(v.status == "pass" for v in self.selected)

    def as_dict(self) -> dict[str, Any]:
        from .._version import __version__

        return {"schema_version": SCHEMA_VERSION, "kind": "verify", "bilstm_ref": __version__, "ok": self.ok,
                "model": self.model, "format": self.format, "semantics": self.semantics, "versions": self.versions,
                "impl": self.impl, "inputs": self.inputs, "batch_size": self.batch_size, "wall_s": self.wall,
                "timings_s": self.timings,
                "layers": [v.as_dict() for v in self.layers]}

    def describe(self) -> str:
        """Per layer, one line and the failing outputs (what a test assertion shows)."""
        lines = []
        for v in self.layers:
            lines.append(f"{v.path} [{v.class_name}]: {v.status}" + (f" ({v.reason})" if v.reason else ""))
            lines += ["  isolated " + o.describe() for o in v.failures()]
        return "\n".join(lines)


def input_source(km: Any, inputs: Optional[str], samples: int, time_steps: int, seed: int) -> InputSource:
    """The user's data file read against the model's inputs, or inputs generated from their spec."""
    if inputs is not None:
        return read_inputs(inputs, km.input_specs())
    return generated_inputs(km.input_specs(), samples=samples, time=time_steps, seed=seed)


def _tolerance(spec: LayerSpec, backend: str, override: Union[None, Tolerance, TolerancePolicy]) -> Any:
    base = tolerance_for(layer_policy(spec), backend)
    if override is None:
        return TolerancePolicy(base)
    if isinstance(override, Tolerance):
        return TolerancePolicy(override)
    return override.with_base(base)


def select_layers(km: Any, wanted: Optional[Sequence[str]], model: str) -> tuple[list[Any], list[Any]]:
    """(the chosen LSTM / Bidirectional(LSTM) layers in model order, the other recurrent layers) of a
    :class:`~bilstm_ref.verify.keras_model.KerasModel`; every name in ``wanted`` must match one."""
    recurrent = km.recurrent_layers()
    candidates = [r for r in recurrent if r.candidate]
    others = [r for r in recurrent if not r.candidate]
    return _select(candidates, others, wanted, km.all_layers(), model), others


def _select(candidates: list[Any], others: list[Any], wanted: Optional[Sequence[str]], everything: list[str],
            model: str) -> list[Any]:
    if not candidates and not wanted:
        raise UnsupportedModelError(f"{model!r}: no LSTM or Bidirectional(LSTM) layer to verify; the model's "
                                    f"layers: {everything}")
    if not wanted:
        return candidates
    chosen: list[Any] = []
    for name in wanted:
        hits = [c for c in candidates if name in (c.path, c.path.rsplit("/", 1)[-1])]
        exact = [c for c in hits if c.path == name]
        hits = exact or hits
        if len(hits) == 1:
            if hits[0] not in chosen:
                chosen.append(hits[0])
            continue
        other = [o for o in others if name in (o.path, o.path.rsplit("/", 1)[-1])]
        if other:
            raise UnsupportedModelError(f"{model!r}: layer {name!r} is {a_or_an(other[0].class_name)}: {other[0].reason}")
        if len(hits) > 1:
            raise UnsupportedModelError(f"{model!r}: layer name {name!r} is ambiguous: {[h.path for h in hits]}")
        raise UnsupportedModelError(f"{model!r}: no LSTM / Bidirectional(LSTM) layer named {name!r}; candidates: "
                                    f"{[c.path for c in candidates]}")
    return sorted(chosen, key=candidates.index)  # model order: an upstream layer runs before its consumers


def mask_sources_of(path: str, config: Optional[str]) -> dict[str, str]:
    from ..loaders.files import mask_sources

    try:
        return mask_sources(path, config=config)
    except BilstmRefError:
        return {}


def verify_model(
    model: str,
    inputs: Optional[str] = None,
    layers: Optional[Sequence[str]] = None,
    *,
    config: Optional[str] = None,
    batch_size: int = 64,
    impl: Union[None, str, Factory] = None,
    tolerance: Union[None, Tolerance, TolerancePolicy] = None,
    samples: int = 12,
    time_steps: int = 16,
    seed: int = 0,
    dtype: Optional[str] = None,
    progress: Optional[Progress] = None,
) -> VerifyResult:
    """Verify every LSTM / Bidirectional(LSTM) of a saved model on the user's data.

    Args:
        model: a ``.keras``, a legacy ``.h5`` (Keras 2 files run on tf_keras, Keras 3 files on Keras
            3), or a ``.weights.h5`` with ``config``.
        inputs: an ``.npz`` with one array per model input (named after the inputs, or ``arr_0...``
            by position) or an ``.npy`` for a one-input model; each ``(samples, ...)``. None: inputs
            generated from the model's input spec (``samples`` x ``time_steps``, padding patterns
            where the model masks).
        layers: layer names (``outer/inner`` in nested models); None: every LSTM and
            Bidirectional(LSTM).
        config: the architecture of a weights-only ``model``.
        batch_size: samples per forward pass (memory is bounded by it, not by the data).
        impl: the implementation under test: a factory ``spec -> callable`` or
            ``"package.module:factory"``; None: the reference.
        tolerance: overrides of the per-dtype-policy default (a :class:`Tolerance` or
            :class:`TolerancePolicy`).
        dtype: the reference's compute dtype, ``"float64"`` (default: the truth a float32 Keras is
            judged against) or ``"float32"`` (about twice as fast; judged at the same tolerance).
        progress: called as ``progress(samples_done, samples_total)`` after each batch.

    Returns:
        A :class:`VerifyResult`; ``result.ok`` is True when every selected layer passes.
    """
    from ..loaders import load_spec
    from .keras_model import KerasModel

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    t0 = time.perf_counter()
    if impl is None:
        def factory(spec: LayerSpec) -> Any:
            return reference_factory(spec, dtype=dtype)
    else:
        factory = resolve_factory(impl) if isinstance(impl, str) else impl
    impl_name = f"the reference ({dtype or 'float64'})" if impl is None else (impl if isinstance(impl, str) else getattr(impl, "__name__", repr(impl)))
    km = KerasModel(model, config=config)
    chosen, others = select_layers(km, layers, model)
    source = input_source(km, inputs, samples, time_steps, seed)
    masks = mask_sources_of(model, config)
    backend = km.versions["backend"]
    verdicts: dict[str, LayerVerdict] = {}
    runners: dict[str, tuple[Any, Any, LayerSpec, Any]] = {}
    for r in chosen:
        v = LayerVerdict(r.path, r.class_name, "pass", mask_source=masks.get(r.path, ""),
                         upstream=r.upstream if any(c.path == r.upstream for c in chosen) else None, via=r.via)
        verdicts[r.path] = v
        try:
            spec = load_spec(model, layer=r.path, config=config)
        except BilstmRefError as e:
            v.status, v.reason = "unsupported", str(e)
            continue
        try:
            runners[r.path] = (factory(spec), factory(spec) if v.upstream else None, spec,
                               _tolerance(spec, backend, tolerance))
        except BilstmRefError as e:
            v.status, v.reason = "error", f"the implementation factory raised: {e}"
    live = [p for p in verdicts if p in runners]
    stats: dict[tuple[str, str], list[ErrorStats]] = {}
    done = 0
    clock = {"keras": 0.0, "implementation": 0.0, "statistics": 0.0}
    if live:
        with km.capture(live) as run:
            for offset, arrays in source.batches(batch_size):
                t_keras = time.perf_counter()
                captured = run(arrays)
                clock["keras"] += time.perf_counter() - t_keras
                chained_out: dict[str, np.ndarray] = {}
                for path in live:
                    v = verdicts[path]
                    if v.status == "error":
                        continue
                    iso_impl, chain_impl, spec, tol = runners[path]
                    cap = captured[path]
                    names = output_names(spec, len(cap.outputs))
                    if cap.mask is not None:
                        v.samples_masked += int(np.count_nonzero(~cap.mask.all(axis=1)))
                    v.initial_states = v.initial_states or cap.initial_state is not None
                    try:
                        iso = _call(iso_impl, cap.x, cap.mask, cap.initial_state, len(names), clock)
                        _update(stats, (path, "isolated"), names, tol, cap, iso, offset, clock)
                        chained_out[path] = iso[0]
                        if chain_impl is not None and v.upstream in chained_out:
                            chain = _call(chain_impl, chained_out[v.upstream], cap.mask, cap.initial_state, len(names),
                                          clock)
                            _update(stats, (path, "chained"), names, tol, cap, chain, offset, clock)
                            chained_out[path] = chain[0]
                    except Exception as e:  # the implementation under test raised: its error, named
                        v.status = "error"
                        v.reason = crash_report(e, f"{impl_name} raised ")[0]
                done += arrays[0].shape[0]
                if progress is not None:
                    progress(done, source.samples)
    for path, v in verdicts.items():
        v.isolated = [s.result() for s in stats.get((path, "isolated"), [])]
        chained = stats.get((path, "chained"))
        v.chained = None if chained is None else [s.result() for s in chained]
        if v.status == "pass" and not all(o.ok for o in v.isolated):
            v.status = "fail"
            worst = max(v.failures(), key=lambda o: o.tol_used)
            v.reason = f"{len(v.failures())} of {len(v.isolated)} outputs off; worst: {worst.describe()}"
            if all(o.off_padded_only for o in v.failures()):
                v.reason += ("; every element off belongs to a sample with padding: check that the implementation "
                             "receives and applies the mask Keras passes (" + (v.mask_source or "see inspect") + ")")
    out = list(verdicts.values()) + [LayerVerdict(o.path, o.class_name, "not-verified", o.reason) for o in others]
    order = {r.path: i for i, r in enumerate(km.recurrent_layers())}
    out.sort(key=lambda v: order.get(v.path, 0))
    return VerifyResult(model=str(model), format=km.info["format"], semantics=km.semantics, versions=km.versions,
                        impl=impl_name, inputs=source.as_dict(), batch_size=batch_size, layers=out,
                        wall=time.perf_counter() - t0, timings=clock)


def _call(impl: Any, x: np.ndarray, mask: Optional[np.ndarray], init: Optional[list[np.ndarray]], n: int,
          clock: dict[str, float]) -> list[np.ndarray]:
    t0 = time.perf_counter()
    out = impl(x, mask=mask, initial_state=init)
    clock["implementation"] += time.perf_counter() - t0
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(outs) != n:
        raise BilstmRefError(f"returned {len(outs)} outputs, Keras returns {n}")
    return [np.asarray(o) for o in outs]


def _update(stats: dict[tuple[str, str], list[ErrorStats]], key: tuple[str, str], names: Sequence[str], tol: Any,
            cap: Any, actual: list[np.ndarray], offset: int, clock: dict[str, float]) -> None:
    t0 = time.perf_counter()
    acc = stats.setdefault(key, [ErrorStats(n, tol.for_output(n)) for n in names])
    for s, expected, got in zip(acc, cap.outputs, actual, strict=True):
        s.update(expected, got, offset, cap.mask)
    clock["statistics"] += time.perf_counter() - t0
