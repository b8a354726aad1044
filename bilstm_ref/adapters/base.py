"""What every runtime adapter shares: the model interface, the size limits, safe reading, the
conversion cache and the implementation object the factories return.

Nothing here imports Keras, TensorFlow or a runtime at import time; they are imported inside the
functions that need them.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import (
    BilstmRefError,
    CorruptFileError,
    InputDataError,
    ResourceLimitError,
    ShapeMismatchError,
    UnsupportedModelError,
)
from ..reference.spec import SUPPORTED_CLASSES, LayerSpec, returned_outputs, state_units

__all__ = [
    "MAX_FILE_BYTES", "MAX_TENSOR_BYTES", "MAX_TOTAL_BYTES", "INSTALL_HINT", "TensorInfo", "ConvertedModel",
    "ConversionError", "RuntimeUnavailableError", "Converter", "ConvertedImpl", "CallSignature", "CacheStats",
    "cache_stats", "cache_dir", "require", "package_version",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Largest converted model file read at all (bytes on disk; ONNX protobufs cannot exceed 2 GiB anyway).
MAX_FILE_BYTES = 2 * 1024**3
#: Largest single tensor a model may declare (initializer, external data, TFLite tensor), in bytes,
#: checked from its declared shape and dtype before anything is allocated.
MAX_TENSOR_BYTES = 1024**3
#: Largest sum of declared tensor bytes of one model (initializers plus external data; for TFLite
#: every tensor the interpreter would allocate).
MAX_TOTAL_BYTES = 4 * 1024**3
#: What installs the converters and runtimes.
INSTALL_HINT = 'pip install "bilstm_ref[convert]"'


class RuntimeUnavailableError(BilstmRefError):
    """A converter or runtime the adapter needs is not installed (the message says what installs it)."""


class ConversionError(UnsupportedModelError):
    """The converter refused the model. ``converter`` names it; ``message`` holds the first lines of
    the converter's own error, shown by a scoreboard as "refused at conversion: <message>"."""

    def __init__(self, converter: str, message: str) -> None:
        self.converter = converter
        self.message = message
        super().__init__(f"{converter} refused the model: {message}")


def first_lines(text: str, n: int = 3, width: int = 400) -> str:
    """The first ``n`` non-blank lines of a converter's message, each cut at ``width`` characters."""
    lines = [ln.strip()[:width] for ln in str(text).splitlines() if ln.strip()]
    return " | ".join(lines[:n]) or "(no message)"


@contextlib.contextmanager
def quiet_converter() -> Iterator[None]:
    """Converters print and log as they work (tf2onnx logs every unsupported op and rewriter note through
    Python's logging); what matters reaches the caller as a :class:`ConversionError`. Silence both
    while a converter runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def package_version(dist: str) -> str:
    """The installed version of distribution ``dist`` (read from metadata, nothing imported)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def require(module: str, purpose: str) -> Any:
    """Import ``module`` or raise a one-line :class:`RuntimeUnavailableError` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeUnavailableError(
            f"{purpose} needs {module}, which is not importable ({exc}); install it with: {INSTALL_HINT}"
        ) from None


# --- the model interface ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A model input or output: ``shape`` has None for a dynamic dimension; ``dtype`` a NumPy dtype name."""

    name: str
    shape: tuple[Optional[int], ...]
    dtype: str


class ConvertedModel(abc.ABC):
    """A converted model file opened in its runtime.

    Attributes:
        path: the file.
        runtime: e.g. ``"onnxruntime 1.32.0"``.
        converter: who wrote the file, from its metadata where it says (e.g. ``"tf2onnx 1.17.0"``), else ``"unknown"``.
        inputs, outputs: :class:`TensorInfo` tuples; outputs in the model's order.
    """

    path: Path
    runtime: str
    converter: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs for ``feeds`` (one array per input name), keyed by name in model order.

        Every call is a fresh run: nothing is carried between calls unless the file itself keeps it.
        Inputs are cast to the declared dtype; a missing or extra name is an :class:`InputDataError`,
        a static dimension that differs a :class:`ShapeMismatchError`.
        """
        arrays = self._check_feeds(feeds)
        values = self._run(arrays)
        return {info.name: np.asarray(v) for info, v in zip(self.outputs, values, strict=True)}

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        want = [i.name for i in self.inputs]
        missing = [n for n in want if n not in feeds]
        extra = [n for n in feeds if n not in want]
        if missing or extra:
            raise InputDataError(f"{self.path}: inputs {want} expected; missing {missing}, unexpected {extra}")
        out = {}
        for info in self.inputs:
            a = np.asarray(feeds[info.name])
            if a.ndim != len(info.shape) or any(d is not None and d != s for d, s in zip(info.shape, a.shape)):
                shape = tuple("?" if d is None else d for d in info.shape)
                raise ShapeMismatchError(f"{self.path}: input {info.name!r} expects shape {shape}, got {a.shape}")
            out[info.name] = np.ascontiguousarray(a, dtype=info.dtype)
        return out

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """The output arrays in the order of :attr:`outputs`."""

    @abc.abstractmethod
    def op_form(self) -> str:
        """The recurrent op form of the graph: ``"fused LSTM op"``, ``"loop"``, ``"unrolled"`` or a short description."""

    @abc.abstractmethod
    def tensor_names(self) -> list[str]:
        """Intermediate tensors :meth:`with_outputs` can expose."""

    @abc.abstractmethod
    def with_outputs(self, extra_names: Sequence[str]) -> "ConvertedModel":
        """A copy that also returns the named intermediate tensors (after the model's own outputs)."""

    def _unknown_tensors(self, extra_names: Sequence[str]) -> None:
        known = set(self.tensor_names())
        unknown = [n for n in extra_names if n not in known]
        if unknown:
            raise InputDataError(f"{self.path}: no intermediate tensor named {unknown}; see tensor_names()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} ({self.runtime}, written by {self.converter})>"


# --- safe reading -----------------------------------------------------------------------------------
def read_model_bytes(path: Path, what: str) -> bytes:
    """The whole of a local regular file, refused above :data:`MAX_FILE_BYTES`."""
    from ..loaders._io import open_local_file, read_bounded

    with open_local_file(path) as f:
        return read_bounded(f, MAX_FILE_BYTES, f"{path} ({what}; limit bilstm_ref.adapters.base.MAX_FILE_BYTES)")


def declared_bytes(path: Path, tensor: str, shape: Sequence[int], itemsize: int) -> int:
    """A tensor's declared size, refused above :data:`MAX_TENSOR_BYTES` before anything is allocated.
    ``tensor`` describes it for messages (``"initializer 'W'"``)."""
    if any(int(d) < 0 for d in shape):
        raise CorruptFileError(f"{path}: {tensor} declares a negative dimension {tuple(shape)}")
    n = math.prod(int(d) for d in shape) * itemsize
    if n > MAX_TENSOR_BYTES:
        raise ResourceLimitError(f"{path}: {tensor} declares shape {tuple(shape)}, {n} bytes, over the "
                                 f"limit of {MAX_TENSOR_BYTES} (bilstm_ref.adapters.base.MAX_TENSOR_BYTES)")
    return n


def check_total(path: Path, total: int, what: str) -> None:
    if total > MAX_TOTAL_BYTES:
        raise ResourceLimitError(f"{path}: {what} declare {total} bytes in all, over the limit of "
                                 f"{MAX_TOTAL_BYTES} (bilstm_ref.adapters.base.MAX_TOTAL_BYTES)")


def inside_folder(path: Path, location: str) -> Optional[Path]:
    """``location`` resolved inside ``path``'s folder, or None when it points outside it (an absolute
    path, a ``..`` step, a drive or a symlink leading out)."""
    parts = location.replace("\\", "/").split("/")
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
        return None
    folder = path.resolve().parent
    target = (folder / location).resolve()
    return target if target.is_relative_to(folder) and target != folder else None


# --- the conversion cache ---------------------------------------------------------------------------
@dataclasses.dataclass
class CacheStats:
    """Conversions run and cache hits in this process (tests read it to see that a hit converts nothing)."""

    conversions: int = 0
    hits: int = 0


cache_stats = CacheStats()


def cache_dir() -> Path:
    """``$BILSTM_REF_CACHE``, else ``$XDG_CACHE_HOME/bilstm_ref/conversions`` (``~/.cache`` by default)."""
    env = os.environ.get("BILSTM_REF_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bilstm_ref" / "conversions"


def _weights_digest(spec: LayerSpec) -> str:
    h = hashlib.sha256()
    for w in spec.weights:
        a = np.ascontiguousarray(w)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(converter: str, spec: LayerSpec, signature: "CallSignature") -> str:
    """sha256 of the converter and its versions, the config, the weights' bytes and the input signature."""
    doc = {"converter": converter, "class": spec.class_name, "semantics": spec.semantics,
           "config": spec.config, "weights": _weights_digest(spec), "signature": dataclasses.asdict(signature)}
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cached_artifact(name: str, suffix: str, write: Callable[[Path], None], companions: Sequence[str] = ()) -> Path:
    """The cached file ``name + suffix``, written by ``write(temp_path)`` when absent.

    ``write`` writes into a temporary name in the cache folder, moved into place with ``os.replace``
    (companion files, e.g. OpenVINO's ``.bin``, first), so a reader never sees a half-written file.
    """
    folder = cache_dir()
    final = folder / (name + suffix)
    if final.exists() and all(final.with_suffix(c).exists() for c in companions):
        cache_stats.hits += 1
        return final
    folder.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name[:16]}-", dir=folder))
    try:
        tmp = tmp_dir / ("model" + suffix)
        write(tmp)
        cache_stats.conversions += 1
        for c in companions:
            os.replace(tmp.with_suffix(c), final.with_suffix(c))
        os.replace(tmp, final)
    finally:
        for leftover in tmp_dir.iterdir():
            leftover.unlink()
        tmp_dir.rmdir()
    return final


# --- converter adapters as implementation factories -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CallSignature:
    """What a converted graph is specialized to: None for a dimension left dynamic."""

    batch: Optional[int]
    time: Optional[int]
    features: int
    mask: bool
    n_states: int


@dataclasses.dataclass(frozen=True)
class Converter:
    """One way from a Keras model to a runnable file.

    Attributes:
        name: short name (``"onnx"``).
        suffix: the artifact's suffix.
        description: the converter and versions, part of the cache key.
        runtime: the runtime and version that runs the artifact.
        fixed_batch, fixed_time: whether the graph is specialized to the call's batch / time steps
            (time is always fixed for ``unroll=True`` layers).
        convert: ``convert(keras_model, path)`` writes the artifact; raises :class:`ConversionError`.
        requires: modules checked at build time (import name, what it is for).
        companions: suffixes of files written beside the artifact.
        open: ``open(path)`` opens the artifact in its runtime.
    """

    name: str
    suffix: str
    description: str
    runtime: str
    fixed_batch: bool
    fixed_time: bool
    convert: Callable[[Any, Path], None]
    open: Callable[[Path], "ConvertedModel"]
    requires: tuple[tuple[str, str], ...] = ()
    companions: tuple[str, ...] = ()


def _layer_options(spec: LayerSpec) -> dict[str, Any]:
    return spec.config if spec.class_name == "LSTM" else spec.config["layer"]["config"]


def refuse_unconvertible(spec: LayerSpec, converter: str) -> None:
    """Raise :class:`UnsupportedModelError` (with the reason) for layers no converted graph can reproduce."""
    if spec.class_name not in SUPPORTED_CLASSES:
        raise UnsupportedModelError(f"{converter}: layer class {spec.class_name!r} is not supported; "
                                    f"expected one of {SUPPORTED_CLASSES}")
    if _layer_options(spec).get("stateful") or spec.states is not None:
        raise UnsupportedModelError(f"{converter}: stateful layers are refused: a converted graph has no variables "
                                    "across calls, so the states a stateful layer carries between calls are lost")
    if spec.semantics != "keras3":
        raise UnsupportedModelError(f"{converter}: only Keras 3 layers are converted (this spec has "
                                    f"{spec.semantics!r} semantics, which Keras 3 would not reproduce)")


def keras_model(spec: LayerSpec, sig: CallSignature) -> Any:
    """A functional Keras model around the spec's layer: inputs ``x`` (and ``mask``, ``state_0`` ...
    when used), outputs the layer's outputs in Keras's order, weights set and called once."""
    from ..loaders.live import keras_layer

    layer, _ = keras_layer(spec)
    import keras

    batch, time = sig.batch or 1, sig.time or 2  # the shapes of the one call that builds the model
    x = keras.Input((sig.time, sig.features), batch_size=sig.batch, name="x", dtype="float32")
    inputs, dummies = [x], [np.zeros((batch, time, sig.features), np.float32)]
    kwargs: dict[str, Any] = {}
    if sig.mask:
        kwargs["mask"] = keras.Input((sig.time,), batch_size=sig.batch, name="mask", dtype="bool")
        inputs.append(kwargs["mask"])
        dummies.append(np.ones((batch, time), bool))
    if sig.n_states:
        units = state_units(spec)[:sig.n_states]
        kwargs["initial_state"] = [keras.Input((u,), batch_size=sig.batch, name=f"state_{j}", dtype="float32")
                                   for j, u in enumerate(units)]
        inputs += kwargs["initial_state"]
        dummies += [np.zeros((batch, u), np.float32) for u in units]
    out = layer(x, **kwargs)
    model = keras.Model(inputs, list(out) if isinstance(out, (list, tuple)) else out)
    layer.set_weights([np.asarray(w) for w in spec.weights])
    model(dummies)  # Keras's ONNX export wants a model that has been called
    return model


class ConvertedImpl:
    """``impl(x, mask=None, initial_state=None)`` run through a converted artifact.

    The artifact depends on what a call brings (a mask, initial states, and for converters that fix
    them the batch and time steps), so it is converted (or taken from the cache) at the first call
    of each signature. Returns exactly what :func:`bilstm_ref.reference_factory` returns: the
    output array, or a tuple with ``merge_mode=None`` or ``return_state``.

    Attributes:
        converter, runtime: descriptions of the converter and the runtime.
        op_form: the recurrent op form of the artifact of the latest call (None before the first);
            ``op_forms`` maps every signature used so far to its op form.
        paths: the artifact of each signature used so far.
    """

    def __init__(self, spec: LayerSpec, converter: Converter) -> None:
        refuse_unconvertible(spec, converter.description)
        for module, purpose in converter.requires:
            if importlib.util.find_spec(module) is None:
                raise RuntimeUnavailableError(f"{purpose} needs {module}, which is not installed; "
                                              f"install it with: {INSTALL_HINT}")
        self.spec = spec
        self.conv = converter
        self.converter = converter.description
        self.runtime = converter.runtime
        self.op_form: Optional[str] = None
        self.op_forms: dict[CallSignature, str] = {}
        self.paths: dict[CallSignature, Path] = {}
        self._models: dict[CallSignature, ConvertedModel] = {}
        cfg = _layer_options(spec)
        self._unroll = bool(cfg.get("unroll"))
        self._n_outputs = len(returned_outputs(spec))

    def __repr__(self) -> str:
        return f"<ConvertedImpl {self.spec.class_name} via {self.converter} on {self.runtime}>"

    def _signature(self, x: np.ndarray, mask: Any, initial_state: Any) -> CallSignature:
        if x.ndim != 3:
            raise ShapeMismatchError(f"x: expected (batch, time, features), got shape {x.shape}")
        return CallSignature(
            batch=int(x.shape[0]) if self.conv.fixed_batch else None,
            time=int(x.shape[1]) if (self.conv.fixed_time or self._unroll) else None,
            features=int(x.shape[2]), mask=mask is not None,
            n_states=0 if initial_state is None else len(initial_state),
        )

    def model_for(self, sig: CallSignature) -> ConvertedModel:
        """The opened artifact for a call signature (converted, or taken from the cache)."""
        model = self._models.get(sig)
        if model is None:
            name = f"{self.conv.name}-{cache_key(self.conv.description, self.spec, sig)[:40]}"

            def write(tmp: Path) -> None:
                self.conv.convert(keras_model(self.spec, sig), tmp)

            path = cached_artifact(name, self.conv.suffix, write, self.conv.companions)
            try:
                model = self.conv.open(path)
            except CorruptFileError:  # a damaged cache entry: convert again, once
                for p in [path, *(path.with_suffix(c) for c in self.conv.companions)]:
                    p.unlink(missing_ok=True)
                model = self.conv.open(cached_artifact(name, self.conv.suffix, write, self.conv.companions))
            self._models[sig] = model
            self.paths[sig] = path
            self.op_forms[sig] = model.op_form()
        self.op_form = self.op_forms[sig]
        return model

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        x = np.asarray(x)
        sig = self._signature(x, mask, initial_state)
        model = self.model_for(sig)
        feeds = {"x": x}
        if mask is not None:
            feeds["mask"] = np.asarray(mask)
        for j, s in enumerate(initial_state or ()):
            feeds[f"state_{j}"] = np.asarray(s)
        outs = list(model.run(feeds).values())
        if len(outs) != self._n_outputs:
            raise CorruptFileError(f"{model.path}: {len(outs)} outputs, the layer returns {self._n_outputs}")
        return outs[0] if len(outs) == 1 else tuple(outs)
