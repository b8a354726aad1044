"""Keras model configs read as plain data: the layers they list, which are safe and supported, and
the normalized config of an LSTM / Bidirectional layer ready for the reference.

Nothing here resolves a ``module`` or ``class_name`` string to code. Keras 3 configs (``module``
keys, ``Functional``/``Sequential``), Keras 2 configs (``Model``/``Functional``/``Sequential``,
including the list-style Sequential configs of Keras <= 2.2.4), nested models, and the op nodes
Keras 3 records for masks (``NotEqual``, ``Any``) are understood.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterator, Optional

from ..errors import (BilstmRefError, CorruptFileError, ResourceLimitError, UnsafeModelError, UnsupportedModelError,
                      a_or_an)
from . import limits

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
RECURRENT_CLASSES = frozenset({"LSTM", "CuDNNLSTM"})
SUPPORTED_CLASSES = frozenset({"LSTM", "CuDNNLSTM", "Bidirectional"})
#: Layers that carry code or reach outside the file; never loaded, whatever the request.
CODE_CLASSES = {
    "Lambda": "Lambda layers carry code (marshalled Python) and are not supported",
    "TFSMLayer": "TFSMLayer loads an external SavedModel and is not supported",
    "TorchModuleWrapper": "TorchModuleWrapper carries a pickled torch module and is not supported",
}
#: Keras 3 op classes a functional model may record as graph nodes (masks: ``NotEqual`` for
#: Embedding(mask_zero=True), ``NotEqual`` + ``Any`` for Masking), and the Keras module of each.
KERAS_OP_MODULES = {
    **{name: "keras.src.ops.numpy" for name in ("NotEqual", "Equal", "Any", "All", "LogicalAnd", "LogicalOr",
                                                 "LogicalNot", "ExpandDims", "Squeeze", "Sum", "Greater", "Less",
                                                 "Where")},
    "Cast": "keras.src.ops.core",
}
#: Modules a config may name (the loader never imports them; anything else is refused).
_SAFE_MODULE = re.compile(r"^(tf_)?keras(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MARSHAL_MARKERS = ("__lambda__", "function_type")


@dataclasses.dataclass(frozen=True)
class LayerEntry:
    """One layer (or op node) listed in a model config."""

    name: str
    class_name: str
    config: Any
    json_path: str
    scope: tuple[str, ...]  # names of the enclosing nested models, outermost first
    module: Optional[str]
    registered_name: Optional[str]
    inbound: Any = None  # the entry's inbound_nodes (functional models), as data

    @property
    def qualified_name(self) -> str:
        return "/".join(self.scope + (self.name,))

    @property
    def is_op(self) -> bool:
        """A Keras 3 functional op node (e.g. the NotEqual/Any computing a mask), not a layer. A
        ``.keras`` names its module; a legacy ``.h5`` records only the class name."""
        if self.module:
            return self.module.startswith("keras.src.ops")
        return self.class_name in KERAS_OP_MODULES and isinstance(self.inbound, list) and bool(self.inbound) \
            and isinstance(self.inbound[0], dict)

    @property
    def op_module(self) -> Optional[str]:
        """The Keras module defining an op node's class (named by the file, or known by class name)."""
        if not self.is_op:
            return None
        return self.module or KERAS_OP_MODULES.get(self.class_name)

    @property
    def is_model(self) -> bool:
        return self.class_name in MODEL_CLASSES


def _dict(value: Any, where: str, file_name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CorruptFileError(f"{file_name!r}: {where}: expected an object, got {type(value).__name__}")
    return value


def model_layers(model: Any, file_name: str, where: str = "$") -> list[LayerEntry]:
    """Every layer of a serialized model (``{"class_name": ..., "config": ...}``), nested models flattened.

    Nested models appear themselves and then their layers, with ``scope`` naming the path.
    """
    model = _dict(model, where, file_name)
    if "class_name" not in model:
        raise CorruptFileError(f"{file_name!r}: {where}: expected a serialized Keras model with 'class_name'")
    out: list[LayerEntry] = []
    _walk(model, where, (), file_name, out, depth=0)
    return out


def _walk(model: dict[str, Any], where: str, scope: tuple[str, ...], file_name: str, out: list[LayerEntry],
          depth: int) -> None:
    if depth > 32:
        raise CorruptFileError(f"{file_name!r}: {where}: models nested more than 32 deep")
    cls = model.get("class_name")
    if not isinstance(cls, str) or cls not in MODEL_CLASSES:
        raise UnsupportedModelError(
            f"{file_name!r}: {where}: model class {cls!r} is not supported; expected one of {sorted(MODEL_CLASSES)}"
        )
    cfg = model.get("config")
    if isinstance(cfg, list):  # Keras <= 2.2.4 Sequential: the config is the list of layers
        layers, lwhere = cfg, f"{where}.config"
    else:
        cfg = _dict(cfg, f"{where}.config", file_name)
        layers, lwhere = cfg.get("layers"), f"{where}.config.layers"
    if not isinstance(layers, list):
        raise CorruptFileError(f"{file_name!r}: {lwhere}: expected a list of layers")
    for i, entry in enumerate(layers):
        ewhere = f"{lwhere}[{i}]"
        entry = _dict(entry, ewhere, file_name)
        class_name = entry.get("class_name")
        config = entry.get("config")
        name = entry.get("name")
        if name is None and isinstance(config, dict):
            name = config.get("name")
        if not isinstance(class_name, str) or not isinstance(name, str):
            raise CorruptFileError(f"{file_name!r}: {ewhere}: expected 'class_name' and 'name' strings")
        module = entry.get("module")
        registered = entry.get("registered_name")
        layer = LayerEntry(
            name, class_name, config, ewhere, scope,
            module if isinstance(module, str) else None,
            registered if isinstance(registered, str) else None,
            entry.get("inbound_nodes"),
        )
        out.append(layer)
        if layer.is_model and isinstance(config, (dict, list)):
            _walk(entry, ewhere, scope + (name,), file_name, out, depth + 1)


def find_layer(entries: list[LayerEntry], layer: Optional[str], file_name: str) -> LayerEntry:
    """The requested layer (by name, or ``outer/inner`` for nested models), or the only candidate."""
    candidates = [e for e in entries if e.class_name in SUPPORTED_CLASSES]
    if layer is None:
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            classes = sorted({e.class_name for e in entries})
            raise UnsupportedModelError(
                f"{file_name!r}: no LSTM or Bidirectional layer in the model (layer classes: {classes})"
            )
        names = [e.qualified_name for e in candidates]
        raise UnsupportedModelError(
            f"{file_name!r}: {len(candidates)} LSTM/Bidirectional layers; choose one with layer=: {names}"
        )
    matches = [e for e in entries if layer in (e.qualified_name, e.name)]
    exact = [e for e in matches if e.qualified_name == layer]
    matches = exact or matches
    if not matches:
        raise UnsupportedModelError(
            f"{file_name!r}: no layer named {layer!r}; LSTM/Bidirectional layers: "
            f"{[e.qualified_name for e in candidates]}"
        )
    if len(matches) > 1:
        raise UnsupportedModelError(
            f"{file_name!r}: layer name {layer!r} is ambiguous: {[e.qualified_name for e in matches]}"
        )
    return matches[0]


def layer_status(entry: LayerEntry) -> tuple[bool, str]:
    """Whether ``entry`` can be loaded, and why not (for ``inspect``). Never raises."""
    if entry.class_name in CODE_CLASSES:
        return False, CODE_CLASSES[entry.class_name]
    if entry.is_op:
        return False, "op node (e.g. the mask computation of Masking); not a layer"
    if entry.is_model:
        return False, "nested model; its layers are listed after it"
    if entry.class_name not in SUPPORTED_CLASSES:
        return False, "not an LSTM or Bidirectional layer; listed only, never instantiated"
    try:
        check_safe(entry.config, f"{entry.json_path}.config", "<inspect>")
        normalize(entry, "<inspect>")
    except BilstmRefError as e:  # report, do not raise
        return False, str(e).replace("'<inspect>': ", "")
    return True, "supported"


def walk_objects(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict inside ``value`` with its JSON path (iterative: no recursion limit to trip)."""
    stack = [(where, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            yield path, node
            for key, child in node.items():
                if isinstance(child, (dict, list)):
                    stack.append((f"{path}.{key}", child))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                if isinstance(child, (dict, list)):
                    stack.append((f"{path}[{i}]", child))


def check_safe(config: Any, where: str, file_name: str) -> None:
    """Refuse a layer config that names a non-Keras module or embeds code, anywhere inside it."""
    for path, obj in walk_objects(config, where):
        module = obj.get("module")
        if module is not None and (not isinstance(module, str) or not _SAFE_MODULE.match(module)):
            raise UnsafeModelError(
                f"{file_name!r}: {path}: names module {module!r}; only Keras's own modules are accepted "
                "(nothing was imported)"
            )
        cls = obj.get("class_name")
        if cls is not None and not isinstance(cls, str):
            raise CorruptFileError(f"{file_name!r}: {path}: class_name: expected a string, got {type(cls).__name__}")
        if cls in CODE_CLASSES or cls == "__lambda__":
            raise UnsafeModelError(f"{file_name!r}: {path}: {CODE_CLASSES.get(cls, 'embedded code')}")
        registered = obj.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            raise UnsafeModelError(
                f"{file_name!r}: {path}: custom registered object {registered!r}; custom code is not loaded"
            )
        if obj.get("function_type") == "lambda":
            raise UnsafeModelError(f"{file_name!r}: {path}: embedded lambda code")


# --- normalization to the reference's configs ----------------------------------------------------
_CUDNN_KEYS = {
    "name", "trainable", "dtype", "units", "return_sequences", "return_state", "go_backwards", "stateful",
    "kernel_initializer", "recurrent_initializer", "bias_initializer", "unit_forget_bias",
    "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
    "kernel_constraint", "recurrent_constraint", "bias_constraint", "batch_input_shape", "input_shape",
    "batch_size", "time_major",
}


@dataclasses.dataclass(frozen=True)
class Normalized:
    """A layer ready for the reference: ``class_name`` ``"LSTM"`` or ``"Bidirectional"``."""

    class_name: str
    config: dict[str, Any]
    directions: tuple[dict[str, Any], ...]  # the LSTM config of each direction, weights order
    cudnn: tuple[bool, ...]  # per direction: weights stored in the CuDNNLSTM layout
    input_dim: Optional[int]  # from build information when the file records it


def _units(cfg: dict[str, Any], where: str, file_name: str) -> int:
    units = cfg.get("units")
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise UnsupportedModelError(f"{file_name!r}: {where}.units: expected a positive integer, got {units!r}")
    if 4 * units * units * 8 > limits.MAX_DATASET_BYTES:
        raise ResourceLimitError(
            f"{file_name!r}: {where}.units: {units} units would need a {units}x{4 * units} recurrent kernel, "
            f"over the limit of {limits.MAX_DATASET_BYTES} bytes (limits.MAX_DATASET_BYTES)"
        )
    return units


def _lstm(entry: Any, where: str, file_name: str) -> tuple[dict[str, Any], bool]:
    """(LSTM config for the reference, stored in the CuDNN layout) of a serialized LSTM/CuDNNLSTM."""
    entry = _dict(entry, where, file_name)
    cls = entry.get("class_name")
    if cls not in RECURRENT_CLASSES:
        raise UnsupportedModelError(
            f"{file_name!r}: {where}: only LSTM (or CuDNNLSTM) is supported inside Bidirectional, got {cls!r}"
        )
    cfg = dict(_dict(entry.get("config"), f"{where}.config", file_name))
    _units(cfg, f"{where}.config", file_name)
    if cfg.pop("time_major", False):
        raise UnsupportedModelError(f"{file_name!r}: {where}.config: option 'time_major=True' is not supported")
    if cls == "CuDNNLSTM":
        unknown = sorted(set(cfg) - _CUDNN_KEYS)
        if unknown:
            raise UnsupportedModelError(f"{file_name!r}: {where}.config: unknown CuDNNLSTM options {unknown}")
        cfg = {
            k: v for k, v in cfg.items()
            if k in ("name", "dtype", "units", "return_sequences", "return_state", "go_backwards", "stateful")
        }
        # cuDNN's fixed cell: tanh / sigmoid, with bias, no dropout (converted weights: docs/semantics.md#keras-2-and-keras-3-differences).
        cfg.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
        return cfg, True
    return cfg, False


def _input_dim(entry: dict[str, Any]) -> Optional[int]:
    for holder in (entry.get("build_config"), entry.get("config")):
        if isinstance(holder, dict):
            dim = _last_dim(holder.get("input_shape") or holder.get("batch_input_shape"))
            if dim is not None:
                return dim
    return None


def normalize(entry: LayerEntry, file_name: str) -> Normalized:
    """The reference's config for a supported layer entry; every unsupported option named."""
    where = entry.json_path
    raw = {"class_name": entry.class_name, "config": entry.config}
    if entry.class_name in RECURRENT_CLASSES:
        cfg, cudnn = _lstm(raw, where, file_name)
        dim = _input_dim(raw) or _input_dim({"config": entry.config})
        return Normalized("LSTM", cfg, (cfg,), (cudnn,), dim)
    if entry.class_name != "Bidirectional":
        raise UnsupportedModelError(
            f"{file_name!r}: {where}: layer {entry.name!r} is {a_or_an(entry.class_name)}; "
            f"expected one of {sorted(SUPPORTED_CLASSES)}"
        )
    cfg = dict(_dict(entry.config, f"{where}.config", file_name))
    num_constants = cfg.pop("num_constants", 0)
    if num_constants:
        raise UnsupportedModelError(f"{file_name!r}: {where}.config: option 'num_constants' is not supported")
    cfg.pop("trainable", None)
    inner = _dict(cfg.get("layer"), f"{where}.config.layer", file_name)
    fw, fw_cudnn = _lstm(inner, f"{where}.config.layer", file_name)
    if fw.get("go_backwards"):
        raise UnsupportedModelError(
            f"{file_name!r}: {where}.config.layer: a wrapped layer with go_backwards=True is not supported "
            "(Keras 2 accepted it with misaligned outputs; Keras 3 rejects it)"
        )
    bw_entry = cfg.get("backward_layer")
    dim = _input_dim(inner)
    cfg["layer"] = {"class_name": "LSTM", "config": fw}
    if bw_entry is None:
        bw = dict(fw, go_backwards=not fw.get("go_backwards", False))
        bw_cudnn = fw_cudnn
        cfg.pop("backward_layer", None)
    else:
        bw, bw_cudnn = _lstm(bw_entry, f"{where}.config.backward_layer", file_name)
        cfg["backward_layer"] = {"class_name": "LSTM", "config": bw}
    return Normalized("Bidirectional", cfg, (fw, bw), (fw_cudnn, bw_cudnn), dim)


def _last_dim(shape: Any) -> Optional[int]:
    if isinstance(shape, list) and shape and isinstance(shape[-1], int) and not isinstance(shape[-1], bool):
        return shape[-1]
    return None


def _input_layer_dim(entry: LayerEntry) -> Optional[int]:
    cfg = entry.config if isinstance(entry.config, dict) else {}
    return _last_dim(cfg.get("batch_shape")) or _last_dim(cfg.get("batch_input_shape"))


def input_dim_from_graph(entries: list[LayerEntry], target: LayerEntry) -> Optional[int]:
    """The feature count the model feeds ``target`` when the graph says it directly: a Keras 3
    inbound tensor's recorded shape, or an InputLayer right before it (Sequential) or named as its
    inbound layer (Keras 2 functional). None when it depends on other layers."""
    args, _ = _node_parts(target)  # the layer's input, not another tensor of the call (a mask, a state)
    first = args[0] if args else None
    if isinstance(first, dict) and first.get("class_name") == "__keras_tensor__" and isinstance(first.get("config"), dict):
        return _last_dim(first["config"].get("shape"))
    siblings = [e for e in entries if e.scope == target.scope]
    by_name = {e.name: e for e in siblings}
    if isinstance(target.inbound, list) and target.inbound:  # Keras 2: [[["input_1", 0, 0, {}]]]
        node = target.inbound[0]
        first = node[0] if isinstance(node, list) and node else None
        if isinstance(first, list) and first and isinstance(first[0], str):
            source = by_name.get(first[0])
            return _input_layer_dim(source) if source is not None and source.class_name == "InputLayer" else None
    if target.inbound is None or target.inbound == []:  # Sequential: the previous layer
        i = siblings.index(target)
        if i > 0 and siblings[i - 1].class_name == "InputLayer":
            return _input_layer_dim(siblings[i - 1])
    return None


# --- where a layer's mask comes from -------------------------------------------------------------
#: Layers that hand the mask they receive on to the next layer unchanged (Keras 2 and 3 alike).
MASK_PASSING = frozenset({"Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                          "ActivityRegularization", "Activation", "Dense", "LayerNormalization",
                          "BatchNormalization", "TimeDistributed", "Identity", "UnitNormalization", "Rescaling"})


def _history(tensor: Any) -> Optional[tuple[str, int]]:
    """(layer name, output index) a Keras 3 ``__keras_tensor__`` or a Keras 2 ``[name, node, index, kw]`` names."""
    if isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__":
        cfg = tensor.get("config")
        hist = cfg.get("keras_history") if isinstance(cfg, dict) else None
        if isinstance(hist, list) and hist and isinstance(hist[0], str):
            return hist[0], int(hist[2]) if len(hist) > 2 and isinstance(hist[2], int) else 0
    if isinstance(tensor, list) and tensor and isinstance(tensor[0], str):
        return tensor[0], int(tensor[2]) if len(tensor) > 2 and isinstance(tensor[2], int) else 0
    return None


def _node_parts(entry: LayerEntry) -> tuple[list[Any], dict[str, Any]]:
    """(positional inputs, keyword arguments) of the entry's first inbound node, Keras 2 or 3."""
    nodes = entry.inbound
    if not isinstance(nodes, list) or not nodes:
        return [], {}
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        args = node.get("args") if isinstance(node.get("args"), list) else []
        kwargs = node.get("kwargs") if isinstance(node.get("kwargs"), dict) else {}
        flat = []
        for a in args:
            flat.extend(a if isinstance(a, list) else [a])
        return flat, kwargs
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        args = [t for t in node if isinstance(t, list)]
        kwargs = args[0][3] if args and len(args[0]) > 3 and isinstance(args[0][3], dict) else {}
        return args, kwargs
    return [], {}


def _describe_producer(entry: LayerEntry) -> Optional[str]:
    cfg = entry.config if isinstance(entry.config, dict) else {}
    if entry.class_name == "Embedding" and cfg.get("mask_zero"):
        return f"mask from {entry.name}: Embedding(mask_zero=True)"
    if entry.class_name == "Masking":
        return f"mask from {entry.name}: Masking(mask_value={cfg.get('mask_value', 0.0)})"
    return None


def mask_source(entries: list[LayerEntry], target: LayerEntry) -> str:
    """Whether ``target`` receives a mask, and from where, read from the model config alone: e.g.
    ``"mask from emb: Embedding(mask_zero=True)"``, ``"mask from model input 'm' (explicit)"``,
    ``"no mask"``. Keras 3 records the mask tensor a layer is called with; Keras 2 and Sequential
    models propagate it implicitly through layers that pass masks on."""
    siblings = [e for e in entries if e.scope == target.scope]
    by_name = {e.name: e for e in siblings}

    def upstream(entry: LayerEntry) -> Optional[LayerEntry]:
        args, _ = _node_parts(entry)
        hist = _history(args[0]) if args else None
        if hist is not None:
            return by_name.get(hist[0])
        if entry.inbound in (None, []):  # Sequential: the layer before
            i = siblings.index(entry)
            return siblings[i - 1] if i > 0 else None
        return None

    _, kwargs = _node_parts(target)
    explicit = _history(kwargs.get("mask")) if isinstance(kwargs, dict) else None
    if explicit is not None:
        producer = by_name.get(explicit[0])
        if producer is None:
            return f"mask from {explicit[0]!r}"
        if producer.class_name == "InputLayer":
            return f"mask from model input {producer.name!r} (an explicit mask input)"
        if producer.is_op:  # Keras 3 records Embedding/Masking masks as op nodes on their input
            for _ in range(4):
                args, _ = _node_parts(producer)
                hist = _history(args[0]) if args else None
                if hist is None:
                    break
                source = by_name.get(hist[0])
                if source is None:
                    break
                for e in siblings:
                    e_args, _ = _node_parts(e)
                    e_hist = _history(e_args[0]) if e_args else None
                    if e_hist and e_hist[0] == source.name and _describe_producer(e):
                        return str(_describe_producer(e))
                if not source.is_op:
                    break
                producer = source
            return f"mask computed by op {explicit[0]!r} ({producer.class_name})"
        return _describe_producer(producer) or f"mask from {producer.name}: {producer.class_name}"
    if isinstance(target.inbound, list) and target.inbound and isinstance(target.inbound[0], dict):
        return "no mask"  # Keras 3 records every mask a layer is called with
    entry: Optional[LayerEntry] = upstream(target)
    passed: list[str] = []
    for _ in range(256):
        if entry is None or entry.class_name == "InputLayer":
            break
        described = _describe_producer(entry)
        if described:
            return described + (f" (through {', '.join(passed)})" if passed else "")
        cfg = entry.config if isinstance(entry.config, dict) else {}
        if entry.class_name in MASK_PASSING or (
                entry.class_name in ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "CuDNNLSTM")
                and (cfg.get("return_sequences") or (cfg.get("layer") or {}).get("config", {}).get("return_sequences"))):
            passed.append(entry.name)
            entry = upstream(entry)
            continue
        return f"no mask ({entry.name}: {entry.class_name} does not pass a mask on)" if passed else "no mask"
    if target.scope and entry is None:
        return f"no mask from inside {target.scope[-1]!r}; a mask passed into the nested model is not traced"
    return "no mask"
