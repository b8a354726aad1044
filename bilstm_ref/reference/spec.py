"""The layer spec: config + weights + provenance, what every loader produces and every consumer takes."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

import numpy as np

from .bidirectional import Bidirectional
from .dtypes import policy_name
from ..errors import BilstmRefError, ConfigError, UnsupportedModelError
from .lstm import LSTM

__all__ = ["LayerSpec", "build", "reference_factory", "resolve_factory", "output_names", "returned_outputs", "direction_units", "state_units", "layer_policy",
           "SUPPORTED_CLASSES"]

SUPPORTED_CLASSES = ("LSTM", "Bidirectional")
Layer = Union[LSTM, Bidirectional]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A layer as data.

    Attributes:
        class_name: ``"LSTM"`` or ``"Bidirectional"``.
        config: the layer's Keras config dict, as ``layer.get_config()`` gives it.
        weights: NumPy arrays in Keras ``get_weights()`` order.
        provenance: where it came from: ``source``, ``keras_version``, ``backend``,
            ``semantics`` (``"keras3"`` or ``"keras2"``), ...
        states: the live states of a stateful layer (``[h, c]`` or ``[h_fw, c_fw, h_bw, c_bw]``,
            each ``(B, units)``), or None.

    Frozen: ``dataclasses.replace(spec, weights=...)`` makes a variant.
    """

    class_name: str
    config: dict[str, Any]
    weights: tuple[np.ndarray, ...]
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    states: Optional[tuple[np.ndarray, ...]] = None

    @property
    def semantics(self) -> str:
        return str(self.provenance.get("semantics", "keras3"))


def output_names(spec: LayerSpec, n: int) -> tuple[str, ...]:
    """The names of the first ``n`` outputs the layer returns: ``output, h, c`` for an LSTM;
    ``output, h1, c1, h2, c2`` for a Bidirectional (``output_fw, output_bw, ...`` when ``merge_mode=None``)."""
    if spec.class_name == "LSTM":
        return ("output", "h", "c")[:n]
    merge = spec.config.get("merge_mode", "concat")
    first = ("output_fw", "output_bw") if merge is None else ("output",)
    return (first + ("h1", "c1", "h2", "c2"))[:n]


def direction_units(spec: LayerSpec) -> list[int]:
    """The units of each direction: ``[n]`` for an LSTM, ``[forward, backward]`` for a Bidirectional."""
    if spec.class_name == "LSTM":
        return [int(spec.config["units"])]
    fw = int(spec.config["layer"]["config"]["units"])
    bw = spec.config.get("backward_layer")
    return [fw, fw if bw is None else int(bw["config"]["units"])]


def state_units(spec: LayerSpec) -> list[int]:
    """The units of each state the layer returns, in Keras's order: ``[h, c]`` or ``[h1, c1, h2, c2]``."""
    return [n for n in direction_units(spec) for _ in ("h", "c")]


def returned_outputs(spec: LayerSpec) -> tuple[str, ...]:
    """The names of every output the layer's config makes it return: the sequence (two with
    ``merge_mode=None``) and, with ``return_state``, the states. A ``return_state`` that is not a
    boolean counts as false (building the layer refuses it)."""
    inner = spec.config if spec.class_name == "LSTM" else spec.config["layer"]["config"]
    return_state = inner.get("return_state")
    states = (2 if spec.class_name == "LSTM" else 4) if isinstance(return_state, (bool, np.bool_)) and return_state \
        else 0
    sequences = 2 if spec.class_name == "Bidirectional" and spec.config.get("merge_mode", "concat") is None else 1
    return output_names(spec, sequences + states)


def layer_policy(spec: LayerSpec) -> str:
    """The layer's Keras dtype policy (``float32`` when the config names none or an unknown one)."""
    try:
        return policy_name(spec.config.get("dtype"))
    except BilstmRefError:
        return "float32"


def build(spec: LayerSpec, dtype: Any = None, quirks: tuple[str, ...] = ()) -> Layer:
    """The reference layer for ``spec``: config, weights and states applied.

    Args:
        dtype: compute dtype, ``"float64"`` (default) or ``"float32"``.
        quirks: backend-compatibility switches (see :data:`bilstm_ref.reference.lstm.QUIRKS`).
    """
    opts = dict(dtype=dtype, semantics=spec.semantics, quirks=quirks)
    layer: Layer
    if spec.class_name == "LSTM":
        layer = LSTM.from_config(spec.config, **opts)
    elif spec.class_name == "Bidirectional":
        layer = Bidirectional.from_config(spec.config, **opts)
    else:
        raise UnsupportedModelError(
            f"layer class {spec.class_name!r} is not supported; expected one of {SUPPORTED_CLASSES}"
        )
    layer.set_weights(spec.weights)
    if spec.states is not None:
        if isinstance(layer, LSTM):
            layer.set_states(spec.states)
        else:
            layer.forward_layer.set_states(spec.states[:2])
            layer.backward_layer.set_states(spec.states[2:])
    return layer


def reference_factory(spec: LayerSpec, dtype: Any = None) -> Callable[..., Any]:
    """The reference as an implementation factory: ``impl = reference_factory(spec)``.

    The returned object is called as ``impl(x, mask=None, initial_state=None)`` and has
    ``reset_state()`` when the layer is stateful; the same contract any ``--impl`` factory meets.
    """
    return build(spec, dtype=dtype)


def resolve_factory(target: str) -> Callable[..., Any]:
    """The implementation factory named ``package.module:factory`` (``--impl`` on the command line).

    This imports the named module (the working directory is searched, as ``python -m`` does): it
    is the user's own code, named by the user, never a string read from a model or fixture file.
    """
    import importlib

    import os
    import sys

    module_name, sep, attr = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the working directory are found
    if not sep or not module_name or not attr:
        raise ConfigError(f"--impl {target!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--impl {target!r}: cannot import {module_name!r} ({e})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--impl {target!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"--impl {target!r}: {attr!r} is not callable")
    return obj  # type: ignore[no-any-return]
