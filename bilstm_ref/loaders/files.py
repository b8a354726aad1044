"""Model files to layer specs: ``.keras``, ``.weights.h5`` (+ config), legacy ``.h5`` (Keras 2 and 3),
Keras 2 weights-only ``.h5`` (+ JSON), CuDNNLSTM weights.

Parse, never deserialize: the config is JSON read as data, the weights are HDF5 datasets read by
the path the config implies. Keras and TensorFlow are never imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
from typing import Any, Iterator, Optional

import h5py
import numpy as np

from ..errors import (BilstmRefError, CorruptFileError, FileAccessError, ShapeMismatchError, UnsafeModelError,
                      UnsupportedModelError, a_or_an)
from ..reference.spec import Layer, LayerSpec, build
from . import limits
from ._io import (
    H5_ERRORS,
    HDF5_MAGIC,
    ZIP_MAGIC,
    PathLike,
    SafeZip,
    describe_magic,
    h5_children,
    h5_get,
    open_hdf5,
    open_local_file,
    parse_json,
    read_attr,
    read_bounded,
    read_dataset,
    read_head,
    read_string_list,
)
from .model_config import (
    CODE_CLASSES,
    SUPPORTED_CLASSES,
    LayerEntry,
    Normalized,
    check_safe,
    find_layer,
    input_dim_from_graph,
    layer_status,
    mask_source,
    model_layers,
    normalize,
)

__all__ = ["load", "load_spec", "inspect_file", "mask_sources", "SEMANTICS"]

SEMANTICS = ("auto", "keras2", "keras3")


@dataclasses.dataclass
class _Source:
    """An opened model: its config, its weights tree and what the file says about itself."""

    file_name: str
    format: str
    model: Optional[dict[str, Any]]  # the serialized model (None: weights-only without a config)
    h5: h5py.File
    layout: str  # "keras3" (layers/<key>/vars) or "legacy" (layer_names / weight_names)
    container: h5py.Group  # legacy: the group holding layer_names; keras3: the root
    keras_version: Optional[str]
    backend: Optional[str]
    config_source: Optional[str] = None
    config_version: Optional[str] = None


# --- opening ------------------------------------------------------------------------------------
def _name(path: Any) -> str:
    """The path as text for messages, after checking it is a path at all."""
    if isinstance(path, bytes):
        return os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise FileAccessError(f"model path: expected a str or os.PathLike, got {type(path).__name__}")
    return str(os.fspath(path))


def _kind(path: PathLike, head: bytes) -> str:
    """``"zip"``, ``"hdf5"`` or ``"json"``: from the extension, checked against the signature."""
    name = _name(path)
    lower = name.lower()
    if lower.endswith(".keras"):
        expected = "zip"
    elif lower.endswith((".h5", ".hdf5", ".he5")):
        expected = "hdf5"
    elif lower.endswith(".json"):
        expected = "json"
    else:
        expected = ""
    found = "zip" if head.startswith(ZIP_MAGIC) else "hdf5" if head.startswith(HDF5_MAGIC) else ""
    if expected in ("zip", "hdf5") and found != expected:
        what = ".keras (zip) archive" if expected == "zip" else "HDF5 file"
        hint = {"zip": "; it is a .keras archive, name it *.keras", "hdf5": "; it is HDF5, name it *.h5"}
        raise CorruptFileError(
            f"{name!r} is not a {what}: expected its signature at offset 0, found {describe_magic(head)}"
            + hint.get(found, "")
        )
    if expected == "json" or (not expected and head.lstrip()[:1] in (b"{", b"[")):
        return "json"
    if not found:
        raise CorruptFileError(
            f"{name!r}: not a model file: found {describe_magic(head)}; expected a .keras archive, an HDF5 "
            ".h5 / .weights.h5 file or a model JSON"
        )
    return found


def _version_of(meta: Any) -> Optional[str]:
    v = meta.get("keras_version") if isinstance(meta, dict) else None
    return v if isinstance(v, str) else None


def _read_config_file(config: PathLike) -> tuple[dict[str, Any], Optional[str], str]:
    """(serialized model, keras version, description) from a model JSON or a .keras archive."""
    name = _name(config)
    with open_local_file(config) as f:
        head = read_head(f)
        kind = _kind(config, head)
        if kind == "zip":
            model, version = _archive_config(SafeZip(f, name), name)
            return model, version, f"{name}!config.json"
        if kind == "hdf5":
            with open_hdf5(f, str(name)) as h5:
                text = read_attr(h5, "model_config", str(name))
                if text is None:
                    raise CorruptFileError(f"{name!r}: no 'model_config' attribute; not a full-model .h5 file")
                model = parse_json(text, f"{name!r} attribute 'model_config'")
                return _model_dict(model, str(name)), read_attr(h5, "keras_version", str(name)), f"{name} (attribute model_config)"
        data = read_bounded(f, limits.MAX_JSON_BYTES, repr(str(name)))
        model = parse_json(data, repr(str(name)))
        return _model_dict(model, str(name)), _version_of(model), str(name)


def _archive_config(z: SafeZip, name: str) -> tuple[dict[str, Any], Optional[str]]:
    """A ``.keras`` archive's serialized model (``config.json``) and Keras version (``metadata.json``)."""
    model = parse_json(z.read("config.json", limits.MAX_JSON_BYTES), f"{name!r} member 'config.json'")
    version = None
    if z.has("metadata.json"):
        meta = parse_json(z.read("metadata.json", limits.MAX_JSON_BYTES), f"{name!r} member 'metadata.json'")
        version = _version_of(meta)
    return _model_dict(model, name), version


def _model_dict(model: Any, name: str) -> dict[str, Any]:
    if not isinstance(model, dict) or "class_name" not in model:
        raise CorruptFileError(f"{name!r}: expected a serialized Keras model (an object with 'class_name')")
    return model


@contextlib.contextmanager
def _open(path: PathLike, config: Optional[PathLike]) -> Iterator[_Source]:
    name = _name(path)
    with open_local_file(path) as f:
        kind = _kind(path, read_head(f))
        if kind == "json":
            raise UnsupportedModelError(
                f"{name!r} is a model JSON (architecture only); pass the weights file as the path and this "
                "file as config="
            )
        if kind == "zip":
            z = SafeZip(f, name)
            model, version = _archive_config(z, name)
            weights = z.read("model.weights.h5", limits.MAX_MEMBER_BYTES)
            buf = io.BytesIO(weights)
            del weights
            wname = f"{name}!model.weights.h5"
            with open_hdf5(buf, wname, container=f) as h5:
                if config is not None:
                    raise UnsupportedModelError(f"{name!r}: a .keras archive holds its own config; config= is not used")
                yield _Source(wname, ".keras", model, h5, "keras3", h5, version, None,
                              config_source=f"{name}!config.json")
            return
        with open_hdf5(f, name) as h5:
            yield _hdf5_source(h5, name, config)


def _hdf5_source(h5: h5py.File, name: str, config: Optional[PathLike]) -> _Source:
    root_version = read_attr(h5, "keras_version", name)
    backend = read_attr(h5, "backend", name)
    children = h5_children(h5, name)
    if "model_weights" in children or read_attr(h5, "model_config", name) is not None:
        text = read_attr(h5, "model_config", name)
        if text is None:
            raise CorruptFileError(f"{name!r}: legacy model file without a 'model_config' attribute")
        model = _model_dict(parse_json(text, f"{name!r} attribute 'model_config'"), name)
        container = h5_get(h5, "model_weights", name)
        version = root_version or read_attr(container, "keras_version", name)
        src = _Source(name, "legacy .h5 (full model)", model, h5, "legacy", container, version, backend)
    elif read_attr(h5, "layer_names", name) is not None:
        src = _Source(name, "legacy .h5 (weights only)", None, h5, "legacy", h5, root_version, backend)
    elif "layers" in children or "vars" in children:
        src = _Source(name, ".weights.h5", None, h5, "keras3", h5, None, backend)
    else:
        raise CorruptFileError(
            f"{name!r}: HDF5 file with neither 'model_weights', 'layer_names' nor 'layers': not a Keras weights file"
        )
    if config is not None:
        if src.model is not None:
            raise UnsupportedModelError(f"{name!r}: a full-model .h5 holds its own config; config= is not used")
        src.model, src.config_version, src.config_source = _read_config_file(config)
    return src


# --- semantics ----------------------------------------------------------------------------------
def _major(version: Optional[str]) -> Optional[int]:
    m = re.match(r"^\s*(\d+)\.", version or "")
    return int(m.group(1)) if m else None


def _semantics(src: _Source, requested: str) -> tuple[str, str, Optional[str]]:
    """(profile, why, keras version) for a source."""
    if requested not in SEMANTICS:
        raise UnsupportedModelError(f"semantics: expected one of {SEMANTICS}, got {requested!r}")
    version = src.keras_version or src.config_version
    major = _major(version)
    if major is not None and major < 2:
        raise UnsupportedModelError(f"{src.file_name!r}: written by Keras {version}; Keras 1 files are not supported")
    if requested != "auto":
        return requested, f"semantics={requested!r} requested", version
    if major == 2:
        return "keras2", f"written by Keras {version}", version
    if major is not None:
        return "keras3", f"written by Keras {version}", version
    if src.layout == "keras3":
        return "keras3", "no Keras version recorded; the .weights.h5 layout is Keras 3's", version
    return "keras2", "no Keras version recorded; the legacy .h5 layout without one predates Keras 3", version


# --- weights ------------------------------------------------------------------------------------
_SNAKE_1 = re.compile(r"(.)([A-Z][a-z]+)")
_SNAKE_2 = re.compile(r"([a-z])([A-Z])")


def _snake(name: str) -> str:
    """Keras's ``naming.to_snake_case`` (the key a layer's class gives it in ``.weights.h5``)."""
    name = re.sub(r"\W+", "", name)
    return _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).lower()


def _keras3_layer_group(src: _Source, entries: list[LayerEntry], target: LayerEntry) -> h5py.Group:
    """``layers/<key>`` of ``target`` (nested models: ``layers/<key>/layers/<key>``)."""
    group: h5py.Group = src.h5
    path = target.scope + (target.name,)
    for depth, name in enumerate(path):
        layers = h5_get(group, "layers", src.file_name)
        keys = h5_children(layers, src.file_name)
        found = None
        for key in keys:  # Keras 3 records the layer's name on layers/<key>/vars (hard links only)
            try:
                if not isinstance(layers.get(key, getlink=True), h5py.HardLink):
                    continue
                child = layers[key]
                if not isinstance(child, h5py.Group) or not isinstance(child.get("vars", getlink=True), h5py.HardLink):
                    continue
                vars_ = child["vars"]
            except H5_ERRORS as e:
                raise CorruptFileError(f"{src.file_name!r}: {layers.name}/{key}: cannot be read ({e})") from None
            if isinstance(vars_, h5py.Group) and read_attr(vars_, "name", src.file_name) == name:
                found = key
                break
        if found is None:  # otherwise: snake_case(class) numbered in model order, per class
            siblings = [e for e in entries if e.scope == path[:depth] and not e.is_op]
            me = next(e for e in siblings if e.name == name)
            same = [e for e in siblings if _snake(e.class_name) == _snake(me.class_name)]
            idx = same.index(me)
            found = _snake(me.class_name) + (f"_{idx}" if idx else "")
        group = h5_get(layers, found, src.file_name)
    return group


def _keras3_weights(src: _Source, group: h5py.Group, norm: Normalized) -> list[h5py.Dataset]:
    prefixes = ["cell/vars"] if norm.class_name == "LSTM" else ["forward_layer/cell/vars", "backward_layer/cell/vars"]
    out = []
    for prefix, cfg in zip(prefixes, norm.directions, strict=True):
        vars_ = h5_get(group, prefix, src.file_name)
        n = 3 if cfg.get("use_bias", True) else 2
        names = [str(n) for n in h5_children(vars_, src.file_name)]
        expected = [str(i) for i in range(n)]
        if sorted(names) != expected:
            raise ShapeMismatchError(
                f"{src.file_name!r}: {vars_.name}: expected datasets {expected} "
                f"(kernel, recurrent_kernel{', bias' if n == 3 else ''}), found {sorted(names)}"
            )
        out.extend(h5_get(vars_, k, src.file_name) for k in expected)
    return out


def _legacy_weights(src: _Source, target: LayerEntry, norm: Normalized) -> list[h5py.Dataset]:
    layer_names = read_string_list(src.container, "layer_names", src.file_name)
    if layer_names is None:
        raise CorruptFileError(f"{src.file_name!r}: {src.container.name}: missing attribute 'layer_names'")
    top = target.scope[0] if target.scope else target.name
    if top not in layer_names:
        raise CorruptFileError(
            f"{src.file_name!r}: {src.container.name} attribute 'layer_names' does not list {top!r} "
            f"(lists {layer_names})"
        )
    group = h5_get(src.container, top, src.file_name)
    weight_names = read_string_list(group, "weight_names", src.file_name) or []
    if target.scope:  # a layer inside a nested model: its weights are among the model's
        qualified = list(target.scope) + [target.name]

        def belongs(w: str) -> bool:
            parts = w.split("/")
            return parts[0] == target.name or parts[: len(qualified)] == qualified

        weight_names = [w for w in weight_names if belongs(w)]
    n = sum(3 if cfg.get("use_bias", True) else 2 for cfg in norm.directions)
    if len(weight_names) != n:
        raise ShapeMismatchError(
            f"{src.file_name!r}: {group.name} attribute 'weight_names': expected {n} weights for "
            f"{target.class_name} {target.name!r}, found {len(weight_names)}: {weight_names}"
        )
    return [h5_get(group, w, src.file_name) for w in weight_names]


def _expected_shapes(norm: Normalized, datasets: list[h5py.Dataset], file_name: str) -> list[tuple[int, ...]]:
    """Weight shapes the config implies; the input dim D comes from the file's first kernel."""
    first = datasets[0]
    shape = first.shape
    if shape is None or len(shape) != 2 or shape[0] < 1:
        raise ShapeMismatchError(f"{file_name!r}: {first.name}: expected a kernel (input_dim, 4*units), got {shape}")
    dim = int(shape[0])
    if norm.input_dim is not None and norm.input_dim != dim:
        raise ShapeMismatchError(
            f"{file_name!r}: {first.name}: expected input_dim {norm.input_dim} (the config's build shape), "
            f"kernel has {dim} rows"
        )
    out: list[tuple[int, ...]] = []
    for cfg, cudnn in zip(norm.directions, norm.cudnn, strict=True):
        n = int(cfg["units"])
        out += [(dim, 4 * n), (n, 4 * n)]
        if cfg.get("use_bias", True):
            out.append((8 * n,) if cudnn else (4 * n,))
    return out


def cudnn_to_lstm(kernel: np.ndarray, recurrent: np.ndarray, bias8: np.ndarray) -> tuple[np.ndarray, ...]:
    """CuDNNLSTM weights -> LSTM weights (docs/semantics.md#keras-2-and-keras-3-differences), exactly as tf_keras converts them on load.

    cuDNN reads each gate's kernel slice flattened without transposition, so gate ``g`` acts as
    ``reshape(kernel[:, g], (n, D)) @ x``; its two biases add.

    Args:
        kernel: ``(D, 4n)``; recurrent: ``(n, 4n)``; bias8: ``(8n,)`` = input biases | recurrent biases.
    Returns:
        ``(kernel (D, 4n), recurrent_kernel (n, 4n), bias (4n,))`` in Keras's i, f, c, o layout.
    """
    n = recurrent.shape[0]
    dim = kernel.shape[0]
    k = np.concatenate([kernel[:, g * n:(g + 1) * n].reshape(n, dim).T for g in range(4)], axis=1)
    r = np.concatenate([recurrent[:, g * n:(g + 1) * n].T for g in range(4)], axis=1)
    return k, r, bias8[: 4 * n] + bias8[4 * n:]


def _read_weights(src: _Source, entries: list[LayerEntry], target: LayerEntry, norm: Normalized
                  ) -> tuple[list[h5py.Dataset], list[np.ndarray]]:
    if src.layout == "keras3":
        datasets = _keras3_weights(src, _keras3_layer_group(src, entries, target), norm)
    else:
        datasets = _legacy_weights(src, target, norm)
    for ds in datasets:
        if not isinstance(ds, h5py.Dataset):
            raise CorruptFileError(f"{src.file_name!r}: {ds.name}: expected a dataset, found a group")
    shapes = _expected_shapes(norm, datasets, src.file_name)
    arrays = [read_dataset(ds, src.file_name, shape) for ds, shape in zip(datasets, shapes, strict=True)]
    return datasets, arrays


def _convert(norm: Normalized, arrays: list[np.ndarray]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    i = 0
    for cfg, cudnn in zip(norm.directions, norm.cudnn, strict=True):
        n = 3 if cfg.get("use_bias", True) else 2
        part = arrays[i: i + n]
        i += n
        out.extend(cudnn_to_lstm(*part) if cudnn else part)
    return out


# --- public API ---------------------------------------------------------------------------------
def _entries(src: _Source) -> list[LayerEntry]:
    if src.model is None:
        raise UnsupportedModelError(
            f"{src.file_name!r}: a weights-only file ({src.format}) needs the architecture: pass config= "
            "(a model.to_json() file or a .keras file)"
        )
    return model_layers(src.model, src.config_source or src.file_name)


def load_spec(path: PathLike, layer: Optional[str] = None, config: Optional[PathLike] = None,
              semantics: str = "auto") -> LayerSpec:
    """The :class:`~bilstm_ref.LayerSpec` of one LSTM / Bidirectional layer in a model file.

    Args:
        path: a ``.keras`` archive, a Keras 3 ``.weights.h5``, or a legacy ``.h5`` (Keras 2 or 3,
            full model or weights only). A local regular file.
        layer: the layer's name in the model (``outer/inner`` inside a nested model); may be
            omitted when the model has exactly one LSTM / Bidirectional layer.
        config: the architecture for weights-only files: a ``model.to_json()`` file, a ``.keras``
            archive or a full-model ``.h5``.
        semantics: ``"auto"`` (from the recorded Keras version), ``"keras2"`` or ``"keras3"``.

    Returns:
        A spec whose weights are float arrays in Keras ``get_weights()`` order (CuDNNLSTM weights
        converted), whose config is the reference's, and whose provenance records the file,
        format, Keras version, backend, semantics profile and why.

    Raises:
        FileAccessError, CorruptFileError, UnsafeModelError, UnsupportedModelError,
        ShapeMismatchError, DTypeMismatchError, ResourceLimitError: all :class:`BilstmRefError`.
    """
    with _open(path, config) as src:
        profile, why, version = _semantics(src, semantics)
        entries = _entries(src)
        cfg_name = src.config_source or src.file_name
        target = find_layer(entries, layer, cfg_name)
        if target.class_name in CODE_CLASSES:
            raise UnsafeModelError(
                f"{cfg_name!r}: {target.json_path} {target.qualified_name!r}: {CODE_CLASSES[target.class_name]}"
            )
        if target.class_name not in SUPPORTED_CLASSES or target.is_op:
            _, reason = layer_status(target)
            raise UnsupportedModelError(
                f"{cfg_name!r}: {target.json_path}: layer {target.qualified_name!r} is {a_or_an(target.class_name)}: "
                f"{reason}; only LSTM and Bidirectional(LSTM) layers are loaded"
            )
        # The target's own entry and the model's root may name modules too (never imported; refused).
        check_safe({"module": src.model.get("module") if src.model else None}, "$", cfg_name)
        check_safe({"module": target.module, "registered_name": target.registered_name}, target.json_path, cfg_name)
        check_safe(target.config, f"{target.json_path}.config", cfg_name)
        norm = normalize(target, cfg_name)
        graph_dim = input_dim_from_graph(entries, target)
        if norm.input_dim is None and graph_dim is not None:
            norm = dataclasses.replace(norm, input_dim=graph_dim)
        datasets, arrays = _read_weights(src, entries, target, norm)
        original = sorted({str(ds.dtype) if ds.dtype.isnative else ds.dtype.str for ds in datasets})
        with np.errstate(invalid="ignore"):  # a signalling NaN in a damaged file becomes a quiet one, silently
            weights = tuple(np.asarray(w, dtype=np.float64) for w in _convert(norm, arrays))
        provenance: dict[str, Any] = {
            "source": _name(path),
            "format": src.format,
            "layer": target.qualified_name,
            "keras_version": version,
            "backend": src.backend,
            "semantics": profile,
            "semantics_reason": why,
            "weight_paths": [ds.name for ds in datasets],
            "weight_dtypes": original,
        }
        if src.config_source:
            provenance["config"] = src.config_source
        if any(norm.cudnn):
            provenance["converted_from"] = "CuDNNLSTM"
        nonfinite = [ds.name for ds, a in zip(datasets, arrays, strict=True) if not np.isfinite(a).all()]
        if nonfinite:
            provenance["nonfinite_weights"] = nonfinite
        spec = LayerSpec(norm.class_name, norm.config, weights, provenance)
        try:
            build(spec)  # validate the config and the weights against each other now, not at first call
        except BilstmRefError as e:  # same error, now naming the file and the layer's JSON path
            raise type(e)(f"{cfg_name!r}: {target.json_path} ({target.qualified_name!r}): {e}") from None
    return spec


def load(path: PathLike, layer: Optional[str] = None, config: Optional[PathLike] = None,
         semantics: str = "auto", dtype: Any = None) -> Layer:
    """The reference for one layer of a model file: ``br.load("model.keras", layer="bidirectional")``.

    Same arguments as :func:`load_spec`, plus ``dtype`` (``"float64"`` default or ``"float32"``).
    Returns a :class:`~bilstm_ref.LSTM` or :class:`~bilstm_ref.Bidirectional`.
    """
    return build(load_spec(path, layer=layer, config=config, semantics=semantics), dtype=dtype)


def _uses_hard_sigmoid(norm: Normalized) -> bool:
    return any("hard_sigmoid" in (c.get("activation"), c.get("recurrent_activation")) for c in norm.directions)


def inspect_file(path: PathLike, config: Optional[PathLike] = None) -> dict[str, Any]:
    """What a model file holds, without instantiating anything: a JSON-able dict.

    Keys: ``file``, ``format``, ``keras_version``, ``backend``, ``semantics``,
    ``semantics_reason``, ``layers`` (each: ``name``, ``class_name``, ``supported``, ``reason``
    and, for LSTM / Bidirectional layers, ``config`` and ``weights`` [path, shape, dtype]),
    ``warnings``.
    """
    with _open(path, config) as src:
        profile, why, version = _semantics(src, "auto")
        info: dict[str, Any] = {
            "file": _name(path), "format": src.format, "keras_version": version, "backend": src.backend,
            "semantics": profile, "semantics_reason": why, "layers": [], "warnings": [],
        }
        if src.config_source:
            info["config"] = src.config_source
        if src.model is None:
            info["warnings"].append("weights-only file: pass config= to see the layers")
            return info
        entries = model_layers(src.model, src.config_source or src.file_name)
        for entry in entries:
            ok, reason = layer_status(entry)
            row: dict[str, Any] = {"name": entry.qualified_name, "class_name": entry.class_name,
                                   "supported": ok, "reason": reason}
            if entry.is_op:
                row["op_module"] = entry.op_module
            if entry.class_name in SUPPORTED_CLASSES or entry.class_name in ("GRU", "SimpleRNN"):
                row["mask"] = mask_source(entries, entry)
            if ok:
                norm = normalize(entry, src.file_name)
                row["config"] = {k: v for k, v in norm.config.items() if k not in ("layer", "backward_layer")}
                row["directions"] = [
                    {k: c.get(k) for k in ("name", "units", "activation", "recurrent_activation", "use_bias",
                                           "return_sequences", "return_state", "go_backwards", "stateful",
                                           "unroll", "zero_output_for_mask") if k in c}
                    for c in norm.directions
                ]
                try:
                    datasets, arrays = _read_weights(src, entries, entry, norm)
                    row["weights"] = [{"path": ds.name, "shape": list(a.shape), "dtype": str(a.dtype)}
                                      for ds, a in zip(datasets, arrays, strict=True)]
                    bad = [ds.name for ds, a in zip(datasets, arrays, strict=True) if not np.isfinite(a).all()]
                    if bad:
                        info["warnings"].append(f"{entry.qualified_name}: NaN or Inf in weights {bad}")
                except BilstmRefError as e:  # inspect reports; load raises
                    row["supported"], row["reason"] = False, f"weights: {e}"
                if any(norm.cudnn):
                    info["warnings"].append(
                        f"{entry.qualified_name}: CuDNNLSTM weights (8*units bias, per-gate cuDNN layout) are "
                        "converted to LSTM weights on load"
                    )
                if _uses_hard_sigmoid(norm):
                    other = "keras3" if profile == "keras2" else "keras2"
                    info["warnings"].append(
                        f"{entry.qualified_name}: uses hard_sigmoid, which computes "
                        + ("clip(0.2x + 0.5, 0, 1)" if profile == "keras2" else "clip(x/6 + 0.5, 0, 1)")
                        + f" under {profile} semantics but "
                        + ("clip(x/6 + 0.5, 0, 1)" if profile == "keras2" else "clip(0.2x + 0.5, 0, 1)")
                        + f" under {other}: loading this model in "
                        + ("Keras 3 silently changes its outputs" if profile == "keras2" else "Keras 2 computes differently")
                    )
            info["layers"].append(row)
    return info


def mask_sources(path: PathLike, config: Optional[PathLike] = None) -> dict[str, str]:
    """For each LSTM / Bidirectional layer (by qualified name), whether it receives a mask and from
    where, read from the model config: ``{"bilstm1": "mask from emb: Embedding(mask_zero=True)"}``."""
    with _open(path, config) as src:
        entries = _entries(src)
        return {e.qualified_name: mask_source(entries, e) for e in entries if e.class_name in SUPPORTED_CLASSES}
