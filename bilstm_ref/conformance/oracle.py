"""Runs matrix cases through live Keras (imported lazily, inside functions).

Building a Keras layer costs ~40-75 ms and a call ~20 ms, so built layers are reused across the
cases that only differ in the call (mask, initial state, weights): weights are set per case and
stateful layers are reset before each case.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import OrderedDict
from typing import Any, Optional

import numpy as np

from ..errors import KerasUnavailableError
from .matrix import Case, workarounds_for

__all__ = ["KerasOracle", "keras_available"]

_CACHE_SIZE = 96
_CLEAR_SESSION_EVERY = 300  # builds; keeps the process from growing over the whole matrix


def keras_available() -> bool:
    """Whether Keras can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("keras") is not None


class KerasOracle:
    """Keras as the oracle for matrix cases.

    Args:
        backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``; sets ``KERAS_BACKEND`` before Keras
            is first imported (after that, the loaded backend is used and a different request
            raises). ``"tf_keras"``: Keras 2 (the ``tf_keras`` package on TensorFlow) instead of
            Keras 3; cases are then judged by the reference under Keras 2 semantics.
    """

    def __init__(self, backend: Optional[str] = None) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if backend == "tf_keras":
            try:
                import tf_keras as keras
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise KerasUnavailableError(
                    f"tf_keras is not importable ({exc}); install it with: pip install 'bilstm_ref[keras]'") from exc
            self.keras, self.backend = keras, "tf_keras"
        else:
            if backend and "keras" not in sys.modules:
                os.environ["KERAS_BACKEND"] = backend
            try:
                import keras
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise KerasUnavailableError(
                    f"Keras is not importable ({exc}); install the oracle with: pip install 'bilstm_ref[keras]'"
                ) from exc
            self.keras = keras
            self.backend = keras.backend.backend()
            if backend and backend != self.backend:
                raise KerasUnavailableError(
                    f"Keras backend {backend!r} requested, but Keras is already loaded with {self.backend!r}"
                )
        self._layers: "OrderedDict[tuple[Any, ...], Any]" = OrderedDict()
        self._builds = 0

    @property
    def versions(self) -> dict[str, str]:
        out = {"keras": self.keras.__version__, "backend": self.backend}
        mod = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "tf_keras": "tensorflow"}.get(self.backend)
        if mod and mod in sys.modules:
            out[mod] = getattr(sys.modules[mod], "__version__", "?")
        return out

    def _key(self, case: Case) -> tuple[Any, ...]:
        fields = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}
        for per_call in ("mask", "initial_state", "group"):
            fields.pop(per_call)
        if not (case.stateful or case.unroll):
            fields.pop("batch")
            fields.pop("time")
        return tuple(sorted(fields.items()))

    def layer(self, case: Case) -> Any:
        """A built Keras layer for ``case`` (reused when the construction is the same), weights set."""
        key = self._key(case)
        layer = self._layers.get(key)
        if layer is None:
            if self._builds and self._builds % _CLEAR_SESSION_EVERY == 0:
                self._layers.clear()
                self.keras.backend.clear_session()
            layer = self._build(case)
            self._builds += 1
            self._layers[key] = layer
            while len(self._layers) > _CACHE_SIZE:
                self._layers.popitem(last=False)
        else:
            self._layers.move_to_end(key)
        layer.set_weights(case.weights)
        if case.stateful:
            self._reset(layer)
        return layer

    def _reset(self, layer: Any) -> None:
        (layer.reset_states if self.backend == "tf_keras" else layer.reset_state)()

    def _build(self, case: Case) -> Any:
        L = self.keras.layers
        pol = case.dtype_policy
        if case.family == "lstm":
            layer = L.LSTM(**case.lstm_kwargs(), dtype=pol)
        else:
            bw = (L.LSTM(**case.lstm_kwargs(backward=True), dtype=case.bw_policy) if case.backward != "default"
                  else None)
            layer = L.Bidirectional(L.LSTM(**case.lstm_kwargs(), dtype=case.fw_policy),
                                    merge_mode=case.keras_merge_mode, backward_layer=bw, dtype=pol)
        shape = (case.batch, case.time, case.features)
        if workarounds_for(case) and self.backend != "tf_keras":
            layer.build(shape)
        else:
            layer(np.zeros(shape, np.float32))
        return layer

    def run(self, case: Case) -> list[dict[str, np.ndarray]]:
        """Keras's outputs for every call of ``case``, by output name (float64 copies)."""
        layer = self.layer(case)
        keras2 = self.backend == "tf_keras"
        ops = None if keras2 else self.keras.ops
        convert = np.asarray if keras2 else ops.convert_to_numpy
        direct = bool(workarounds_for(case)) and not keras2  # a Keras 3.15 bug; tf_keras runs layer(...)
        results = []
        for call in case.calls:
            if call.reset_before:
                self._reset(layer)
            kwargs: dict[str, Any] = {}
            if call.mask is not None:
                kwargs["mask"] = call.mask
            if call.initial_state is not None:
                kwargs["initial_state"] = list(call.initial_state)
                if keras2:  # tf_keras takes states as tensors of the layer's compute dtype (it casts none)
                    import tensorflow as tf

                    kwargs["initial_state"] = [tf.convert_to_tensor(v, dtype=layer.compute_dtype)
                                               for v in call.initial_state]
            if direct:  # see matrix.KERAS_WORKAROUNDS
                dt = layer.compute_dtype
                kwargs = {k: (ops.convert_to_tensor(v) if k == "mask" else [ops.convert_to_tensor(s, dt) for s in v])
                          for k, v in kwargs.items()}
                out = layer.call(ops.convert_to_tensor(call.x, dt), **kwargs)
            else:
                out = layer(call.x, **kwargs)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            if len(outs) != len(case.output_names):
                raise AssertionError(
                    f"{case.id}: Keras returned {len(outs)} outputs, the matrix expects {case.output_names}"
                )
            results.append({n: np.asarray(convert(o)).astype(np.float64) for n, o in zip(case.output_names, outs, strict=True)})
        return results
