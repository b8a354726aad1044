"""The user's model in live Keras: loaded as Keras loads it, its inputs and recurrent layers listed,
and one forward pass per batch that captures what each selected layer really receives and returns.

This module (with :mod:`bilstm_ref.conformance.oracle` and :mod:`bilstm_ref.loaders.live`) imports Keras, lazily.
Keras 2 files run on ``tf_keras`` and Keras 3 files on ``keras``, as the Keras-free loaders decide
from the Keras version the file records.

Capturing: each selected layer's ``call`` is wrapped for the duration of a pass. Keras's own
``__call__`` decides the arguments (the input, the mask it propagated from ``Embedding(mask_zero=True)``,
``Masking`` or an explicit mask input, the initial states wired in the graph), so the wrapper
records exactly what Keras passes, and the layer's return value. On TensorFlow the pass is
compiled once (``tf.function``) and runs at ``model.predict`` speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import re
import sys
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ..errors import BilstmRefError, KerasModelError, KerasUnavailableError
from ..loaders import inspect_file
from .inputs import InputSpec

__all__ = ["KerasModel", "RecurrentLayer", "Captured", "NOOP_CLASSES"]

#: Layers that are the identity at inference: a recurrent layer fed through them is still fed
#: directly by the layer before them (the "chained" comparison follows them).
NOOP_CLASSES = frozenset({"Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                          "ActivityRegularization", "Identity"})
_RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "CuDNNLSTM",
                        "CuDNNGRU", "LSTMV1", "GRUV1"})
_OP_MODULE = re.compile(r"^keras\.src\.ops(\.[a-z_]+)+$")


@dataclasses.dataclass(frozen=True)
class RecurrentLayer:
    """A recurrent layer of the model.

    Attributes:
        path: its name in the model (``outer/inner`` inside nested models), as ``load_spec`` takes it.
        class_name: ``LSTM``, ``Bidirectional(LSTM)``, ``GRU``, ``TimeDistributed(LSTM)``, ...
        candidate: an LSTM or Bidirectional(LSTM) (what the reference computes).
        reason: why a non-candidate is not verified.
        upstream: the recurrent layer whose first output feeds this one, directly or through
            inference no-ops (:data:`NOOP_CLASSES`), or None.
        via: the no-op layers in between.
    """

    path: str
    class_name: str
    candidate: bool
    reason: str
    upstream: Optional[str] = None
    via: tuple[str, ...] = ()


@dataclasses.dataclass
class Captured:
    """One call of a layer as Keras made it: input ``x (b, T, D)``, ``mask (b, T)`` or None, initial
    states (each ``(b, units)``) or None, and the outputs in the order the layer returns them."""

    x: np.ndarray
    mask: Optional[np.ndarray]
    initial_state: Optional[list[np.ndarray]]
    outputs: list[np.ndarray]


class Captures(dict):  # type: ignore[type-arg]
    """``{path: Captured}`` of one forward pass, and the model's outputs in order (``model_outputs``)."""

    def __init__(self, model_outputs: list[np.ndarray]) -> None:
        super().__init__()
        self.model_outputs = model_outputs


def _numpy(v: Any) -> np.ndarray:
    if hasattr(v, "numpy"):
        return np.asarray(v.numpy())
    if hasattr(v, "detach"):  # torch
        return np.asarray(v.detach().cpu().numpy())
    return np.asarray(v)


def _layer_class(layer: Any) -> str:
    cls = type(layer).__name__
    inner = getattr(layer, "forward_layer", None) or getattr(layer, "layer", None)
    if cls in ("Bidirectional", "TimeDistributed") and inner is not None:
        return f"{cls}({type(inner).__name__})"
    return cls


def _producer(tensor: Any) -> tuple[Any, int]:
    """(the layer or op that made ``tensor``, which of its outputs it is)."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, 0
    return history[0], int(history[2])


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value


class KerasModel:
    """A model file loaded by Keras (``keras`` for Keras 3 files, ``tf_keras`` for Keras 2 files).

    Args:
        path: ``.keras``, legacy ``.h5`` or ``.weights.h5`` (with ``config``).
        config: the architecture of a weights-only file: a ``model.to_json()`` file or a ``.keras`` /
            full-model ``.h5``.
    """

    def __init__(self, path: str, config: Optional[str] = None) -> None:
        self.path, self.config = os.fspath(path), None if config is None else os.fspath(config)
        info = inspect_file(self.path, config=self.config)  # the Keras-free parse decides the semantics
        self.info = info
        self.semantics: str = info["semantics"]
        self.k = self._import()
        self.model = self._load(info)
        self.layers = dict(self._walk(self.model, ()))
        self._recurrent: Optional[list[RecurrentLayer]] = None

    # --- loading ---------------------------------------------------------------------------------
    def _import(self) -> Any:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        name = "tf_keras" if self.semantics == "keras2" else "keras"
        try:
            return importlib.import_module(name)
        except ImportError:
            need = ("tf_keras (this file was written by Keras 2 and runs under Keras 2)" if name == "tf_keras"
                    else "keras")
            raise KerasUnavailableError(f"verifying a model needs {need}: pip install 'bilstm_ref[keras]'") from None

    @property
    def versions(self) -> dict[str, str]:
        out = {"keras": self.k.__version__}
        backend = "tensorflow" if self.semantics == "keras2" else self.k.backend.backend()
        out["backend"] = backend
        mod = sys.modules.get(backend)
        if mod is not None:
            out[backend] = getattr(mod, "__version__", "?")
        if self.semantics == "keras2":
            out["keras_package"] = "tf_keras"
        return out

    def _op_objects(self, info: dict[str, Any]) -> dict[str, Any]:
        """Keras 3's own op classes (``NotEqual``, ``Any``: the mask computations a functional model
        records as op nodes), which ``load_model`` does not find by itself in a legacy ``.h5``."""
        out: dict[str, Any] = {}
        if self.semantics == "keras2":
            return out
        from keras.src.ops.operation import Operation

        for row in info.get("layers", []):
            module = row.get("op_module")
            if not module or not _OP_MODULE.match(module):
                continue
            cls = getattr(importlib.import_module(module), row["class_name"], None)
            if isinstance(cls, type) and issubclass(cls, Operation):
                out[row["class_name"]] = cls
        return out

    def _load(self, info: dict[str, Any]) -> Any:
        k = self.k
        custom = self._op_objects(info)
        weights_only = self.config is not None
        try:
            if not weights_only:
                kwargs: dict[str, Any] = {"compile": False, "custom_objects": custom}
                if self.path.lower().endswith(".keras"):
                    kwargs["safe_mode"] = True
                return k.models.load_model(self.path, **kwargs)
            cfg = self.config
            assert cfg is not None
            if cfg.lower().endswith((".keras", ".h5", ".hdf5")):
                model = k.models.load_model(cfg, compile=False, custom_objects=custom)
            else:
                with open(cfg, encoding="utf-8") as f:
                    model = k.models.model_from_json(f.read(), custom_objects=custom)
            model.load_weights(self.path)
            return model
        except BilstmRefError:
            raise
        except Exception as e:  # Keras's own errors: many types, all reported the same way
            what = f"{self.path!r}" + (f" with config {self.config!r}" if self.config else "")
            hint = ""
            if "Unknown layer" in str(e) or "custom_object" in str(e):
                hint = ("; the model uses a class Keras does not know by name (a custom layer): verify needs "
                        "Keras to run the model, so load it in your own code and pass its layers' inputs with "
                        "--inputs, or register the class before calling bilstm_ref.verify_model")
            raise KerasModelError(f"{what}: {self.k.__name__} {k.__version__} cannot load the model: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{hint}") from None

    # --- structure -------------------------------------------------------------------------------
    def _is_model(self, layer: Any) -> bool:
        return isinstance(layer, self.k.Model)

    def _walk(self, model: Any, scope: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        for layer in model.layers:
            path = "/".join(scope + (layer.name,))
            yield path, layer
            if self._is_model(layer):
                yield from self._walk(layer, scope + (layer.name,))

    def recurrent_layers(self) -> list[RecurrentLayer]:
        """Every recurrent layer in model order: LSTM and Bidirectional(LSTM) as candidates, others
        (GRU, SimpleRNN, ConvLSTM, TimeDistributed(LSTM), Bidirectional(GRU), ...) with the reason."""
        if self._recurrent is None:
            self._recurrent = self._find_recurrent()
        return self._recurrent

    def _find_recurrent(self) -> list[RecurrentLayer]:
        out = []
        by_obj = {id(layer): path for path, layer in self.layers.items()}
        for path, layer in self.layers.items():
            cls = _layer_class(layer)
            base = type(layer).__name__
            inner = cls[cls.find("(") + 1:-1] if "(" in cls else ""
            if cls in ("LSTM", "Bidirectional(LSTM)"):
                out.append(RecurrentLayer(path, cls, True, "", *self._upstream(layer, by_obj)))
            elif base in _RECURRENT or inner in _RECURRENT:
                if base == "TimeDistributed":
                    reason = "TimeDistributed applies the layer to every step of an outer time axis; not verified"
                elif base == "Bidirectional":
                    reason = f"the reference computes Bidirectional(LSTM) only, this wraps a {inner}"
                elif base.startswith("ConvLSTM"):
                    reason = "convolutional LSTM: different equations (convolutions for matmuls); not verified"
                else:
                    reason = f"the reference computes LSTM only, not {base}"
                out.append(RecurrentLayer(path, cls, False, reason))
        return out

    def _upstream(self, layer: Any, by_obj: dict[int, str]) -> tuple[Optional[str], tuple[str, ...]]:
        try:
            tensor = _first(layer.input)
        except Exception:  # not connected, or called more than once (a shared layer): no chain
            return None, ()
        via: list[str] = []
        for _ in range(64):
            producer, index = _producer(tensor)
            if producer is None:
                return None, ()
            name = type(producer).__name__
            if name in NOOP_CLASSES:
                via.append(by_obj.get(id(producer), getattr(producer, "name", name)))
                try:
                    tensor = _first(producer.input)
                except Exception:
                    return None, ()
                continue
            if _layer_class(producer) in ("LSTM", "Bidirectional(LSTM)") and index == 0 and id(producer) in by_obj:
                merge = getattr(producer, "merge_mode", "concat")
                if merge is None:
                    return None, ()
                return by_obj[id(producer)], tuple(via)
            return None, ()
        return None, ()

    def all_layers(self) -> list[str]:
        return [f"{p} ({_layer_class(layer)})" for p, layer in self.layers.items()]

    # --- inputs ----------------------------------------------------------------------------------
    def input_specs(self) -> tuple[InputSpec, ...]:
        """The model's inputs in order, with the vocabulary of the Embedding (and the ``mask_value`` of
        the Masking layer) that each feeds."""
        model = self.model
        tensors = list(getattr(model, "inputs", None) or [])
        if not tensors:
            raise KerasModelError(f"{self.path!r}: the model has no defined inputs (build it with keras.Input)")
        names = list(getattr(model, "input_names", None) or [])
        specs = []
        for i, t in enumerate(tensors):
            name = names[i] if i < len(names) else (getattr(t, "name", None) or f"input_{i}")
            name = str(name).split(":")[0]
            shape = tuple(None if d is None else int(d) for d in list(t.shape)[1:])
            dtype = getattr(t.dtype, "name", t.dtype)
            vocab, mask_zero, mask_value = self._consumer_info(model, t)
            specs.append(InputSpec(name, shape, str(dtype), vocab, mask_zero, mask_value))
        return tuple(specs)

    def _consumer_info(self, model: Any, tensor: Any, depth: int = 0) -> tuple[Optional[int], bool, Optional[float]]:
        source, _ = _producer(tensor)
        for layer in model.layers:
            try:
                fed = _first(layer.input)
            except Exception:
                continue
            if fed is not tensor and (source is None or _producer(fed)[0] is not source):
                continue
            cls = type(layer).__name__
            if cls == "Embedding":
                return int(layer.input_dim), bool(getattr(layer, "mask_zero", False)), None
            if cls == "Masking":
                return None, False, float(layer.mask_value)
            if self._is_model(layer) and depth < 8 and getattr(layer, "inputs", None):
                return self._consumer_info(layer, layer.inputs[0], depth + 1)
        return None, False, None

    # --- the capturing pass ----------------------------------------------------------------------
    @contextlib.contextmanager
    def capture(self, paths: Sequence[str]) -> Iterator[Callable[[list[np.ndarray]], Captures]]:
        """A function ``run(arrays) -> {path: Captured}``: one forward pass of the model on a batch
        (``training=False``), recording what each layer in ``paths`` receives and returns, and the
        model's own outputs (``.model_outputs``)."""
        record: dict[str, list[dict[str, Any]]] = {}
        patched = []
        for path in paths:
            layer = self.layers[path]
            original = layer.call
            signature = inspect.signature(original)
            wrapper = _recorder(path, original, signature, record)
            object.__setattr__(layer, "call", wrapper)
            patched.append(layer)
        try:
            yield self._runner(paths, record)
        finally:
            for layer in patched:
                with contextlib.suppress(AttributeError):
                    object.__delattr__(layer, "call")

    def _runner(self, paths: Sequence[str], record: dict[str, list[dict[str, Any]]]
                ) -> Callable[[list[np.ndarray]], Captures]:
        model = self.model
        single = len(getattr(model, "inputs", None) or []) == 1

        def forward(*arrays: Any) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
            record.clear()
            outputs = model(arrays[0] if single else list(arrays), training=False)
            return outputs, {p: [dict(call) for call in record.get(p, [])] for p in paths}

        compiled: Any = forward
        if self.versions["backend"] == "tensorflow":
            import tensorflow as tf

            compiled = tf.function(forward, reduce_retracing=True)

        def run(arrays: list[np.ndarray]) -> Captures:
            try:
                model_outputs, got = compiled(*arrays)
            except BilstmRefError:
                raise
            except Exception as e:
                raise KerasModelError(f"{self.path!r}: Keras failed running the model on the inputs: "
                                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
            outs = list(model_outputs) if isinstance(model_outputs, (list, tuple)) else [model_outputs]
            out = Captures(model_outputs=[_numpy(o) for o in outs])
            for p in paths:
                calls = got.get(p, [])
                if len(calls) != 1:
                    raise KerasModelError(
                        f"{self.path!r}: layer {p!r} was called {len(calls)} times in one forward pass; "
                        "only layers called once per pass (not shared) can be verified")
                call = calls[0]
                init = call.get("initial_state")
                out[p] = Captured(
                    _numpy(call["x"]),
                    None if call.get("mask") is None else _numpy(call["mask"]).astype(bool),
                    None if not init else [_numpy(s) for s in init],
                    [_numpy(o) for o in call["outputs"]],
                )
            return out

        return run


def _recorder(path: str, original: Callable[..., Any], signature: inspect.Signature,
              record: dict[str, list[dict[str, Any]]]) -> Callable[..., Any]:
    params = list(signature.parameters)
    first = params[0] if params else "inputs"

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        x = bound.arguments.get(first)
        init = bound.arguments.get("initial_state")
        if isinstance(x, (list, tuple)):  # tf_keras passes states wired as tensors inside the input list
            x, rest = x[0], list(x[1:])
            if rest and init is None:
                init = rest
        mask = _first(bound.arguments.get("mask"))
        outputs = original(*args, **kwargs)
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        entry: dict[str, Any] = {"x": x, "outputs": outs}
        if mask is not None:
            entry["mask"] = mask
        if init is not None:
            entry["initial_state"] = list(init)
        record.setdefault(path, []).append(entry)
        return outputs

    return call
