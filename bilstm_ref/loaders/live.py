"""Live Keras layers to layer specs, and layer specs to live Keras layers. Keras is imported here only (and in
:mod:`bilstm_ref.conformance.oracle`), and only when called."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KerasUnavailableError, UnsupportedModelError, a_or_an
from ..reference.spec import SUPPORTED_CLASSES, Layer, LayerSpec, build

__all__ = ["spec_from_keras", "from_keras", "keras_layer"]


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "numpy"):
        return np.asarray(v.numpy())
    from keras import ops  # a non-TF backend variable

    return np.asarray(ops.convert_to_numpy(v))


def spec_from_keras(layer: Any) -> LayerSpec:
    """The :class:`LayerSpec` of a live Keras 3 or tf_keras (Keras 2) ``LSTM`` or ``Bidirectional(LSTM)`` layer.

    Copies the config, the weights (``get_weights()`` order) and, for a built stateful layer,
    its current states.
    """
    cls = type(layer).__name__
    name = getattr(layer, "name", "?")
    if cls not in SUPPORTED_CLASSES and hasattr(layer, "layers") and hasattr(layer, "get_layer"):
        found = [f"{path} ({kind})" for path, kind in _recurrent_paths(layer)]
        raise UnsupportedModelError(
            f"from_keras takes one layer, and {name!r} is a model ({cls}): pass model.get_layer(name); its LSTM and "
            f"Bidirectional layers: {found or 'none'} (for a nested model, model.get_layer(outer).get_layer(inner))"
        )
    if cls not in SUPPORTED_CLASSES:
        raise UnsupportedModelError(f"from_keras: layer {name!r} is {a_or_an(cls)}; expected one of {SUPPORTED_CLASSES}")
    if not getattr(layer, "built", True) or not layer.get_weights():
        raise UnsupportedModelError(
            f"from_keras: layer {name!r} is not built, so it has no weights yet: call it once on an input of its "
            "shape, e.g. layer(np.zeros((1, T, D), 'float32')), or build it with layer.build((None, T, D))"
        )
    module = type(layer).__module__
    if module.startswith("tf_keras"):
        return _spec_from_tf_keras(layer, cls)
    import keras

    states = None
    if getattr(layer, "stateful", False) and getattr(layer, "built", False):
        live = layer.states
        if live is not None and all(s is not None for s in live):
            states = tuple(_to_numpy(s) for s in live)
    provenance = {
        "source": f"live keras layer {layer.name!r}",
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "semantics": "keras3",
        "semantics_reason": "live Keras 3 layer",
    }
    weights = tuple(np.asarray(w) for w in layer.get_weights())
    return LayerSpec(cls, layer.get_config(), weights, provenance, states)


def _spec_from_tf_keras(layer: Any, cls: str) -> LayerSpec:
    """A live tf_keras (Keras 2) layer: its config normalized as for a Keras 2 file, Keras 2 semantics."""
    import tf_keras

    from .model_config import LayerEntry, normalize

    where = f"live tf_keras layer {layer.name!r}"
    entry = LayerEntry(layer.name, cls, layer.get_config(), "$", (), None, None)
    norm = normalize(entry, where)
    states = None
    if getattr(layer, "stateful", False) and getattr(layer, "built", False):
        if cls == "Bidirectional":
            live = list(layer.forward_layer.states) + list(layer.backward_layer.states)
        else:
            live = list(layer.states)
        if live and all(s is not None for s in live):
            states = tuple(_to_numpy(s) for s in live)
    provenance = {
        "source": where,
        "keras_version": tf_keras.__version__,
        "backend": "tensorflow",
        "semantics": "keras2",
        "semantics_reason": "live tf_keras (Keras 2) layer",
    }
    weights = tuple(np.asarray(w) for w in layer.get_weights())
    return LayerSpec(norm.class_name, norm.config, weights, provenance, states)


def _recurrent_paths(model: Any, scope: str = "") -> list[tuple[str, str]]:
    out = []
    for layer in getattr(model, "layers", []):
        path = f"{scope}{layer.name}"
        if type(layer).__name__ in SUPPORTED_CLASSES:
            out.append((path, type(layer).__name__))
        elif hasattr(layer, "layers") and hasattr(layer, "get_layer"):
            out += _recurrent_paths(layer, path + "/")
    return out


def from_keras(layer: Any, dtype: Any = None) -> Layer:
    """The reference for a live Keras layer: ``br.from_keras(keras_bidirectional_layer)``.

    Args:
        layer: a built Keras 3 or tf_keras ``LSTM``, or ``Bidirectional`` wrapping an ``LSTM``
            (tf_keras layers run under Keras 2 semantics).
        dtype: compute dtype of the reference, ``"float64"`` (default) or ``"float32"``.
    """
    return build(spec_from_keras(layer), dtype=dtype)


# --- specs to live Keras layers -----------------------------------------------------------------
_FORWARD_KEYS = ("name", "units", "activation", "recurrent_activation", "use_bias", "return_sequences",
                 "return_state", "go_backwards", "stateful", "unroll", "dropout", "recurrent_dropout",
                 "zero_output_for_mask")


def _lstm_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """Only the options that shape the forward pass: nothing from the file is deserialized by Keras."""
    kw = {k: cfg[k] for k in _FORWARD_KEYS if k in cfg}
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if isinstance(dtype, str):
        kw["dtype"] = dtype
    return kw


def keras_layer(spec: LayerSpec) -> tuple[Any, dict[str, str]]:
    """A live Keras layer equal to ``spec`` (tf_keras for Keras 2 semantics), and its versions."""
    try:
        if spec.semantics == "keras2":
            import tf_keras as k
        else:
            import keras as k
    except ImportError:
        need = "tf_keras (Keras 2 answers for a Keras 2 file)" if spec.semantics == "keras2" else "keras"
        raise KerasUnavailableError(f"building a live Keras layer needs {need}; pip install 'bilstm_ref[keras]'") from None
    L = k.layers
    cfg = spec.config
    if spec.class_name == "LSTM":
        layer = L.LSTM(**_lstm_kwargs(cfg))
    else:
        fw = L.LSTM(**_lstm_kwargs(cfg["layer"]["config"]))
        bw_cfg = cfg.get("backward_layer")
        bw = None if bw_cfg is None else L.LSTM(**_lstm_kwargs(bw_cfg["config"]))
        pol = cfg.get("dtype")
        extra = {"dtype": pol} if isinstance(pol, str) else {}
        layer = L.Bidirectional(fw, merge_mode=cfg.get("merge_mode", "concat"), backward_layer=bw, **extra)
    versions = {"keras": k.__version__, "backend": "tensorflow"}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:  # a Keras 3 backend other than TensorFlow
        versions["backend"] = k.backend.backend()
    return layer, versions
