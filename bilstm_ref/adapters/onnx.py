"""ONNX files in onnxruntime, and the ONNX converter as an implementation factory.

Opening a file is safe for untrusted input: the file is read whole (bounded), parsed without its
external data, every tensor's declared size and every external-data location is checked, the
external data is read by this module (only from the model's own folder) into the in-memory model,
nodes of custom-op domains are refused, and onnxruntime gets the checked bytes, never the path.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import CorruptFileError, UnsafeModelError, UnsupportedModelError
from ..reference.spec import LayerSpec
from .base import (
    ConversionError,
    quiet_converter,
    ConvertedImpl,
    ConvertedModel,
    Converter,
    TensorInfo,
    check_total,
    declared_bytes,
    first_lines,
    inside_folder,
    package_version,
    read_model_bytes,
    require,
)

__all__ = ["OnnxModel", "open_onnx", "load_checked_model", "factory", "converter", "STANDARD_DOMAINS",
           "convert_keras"]

#: Operator domains onnxruntime implements itself; a node of any other domain (not defined as a
#: function in the file) would need a custom-op library, which is never loaded.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})
_RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
_LOOP_OPS = frozenset({"Loop", "Scan"})
_WORK = "onnx model"


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph inside it (Loop bodies, If branches), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def _nodes(model: Any) -> Iterator[Any]:
    for g in _graphs(model.graph):
        yield from g.node
    for f in model.functions:
        yield from f.node


def _tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(where, tensor) for every tensor the file stores: initializers, sparse initializers, attribute tensors."""
    for g in _graphs(model.graph):
        for t in g.initializer:
            yield "initializer", t
        for s in g.sparse_initializer:
            yield "sparse initializer", s.values
            yield "sparse initializer", s.indices
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield f"attribute {attr.name!r} of node {node.name!r}", attr.t
                for t in attr.tensors:
                    yield f"attribute {attr.name!r} of node {node.name!r}", t


def _itemsize(onnx: Any, data_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 8  # strings and unknown types: at least a pointer per element


def _check_domains(path: Path, model: Any) -> None:
    local = {f.domain for f in model.functions}
    for node in _nodes(model):
        if node.domain not in STANDARD_DOMAINS and node.domain not in local:
            raise UnsafeModelError(
                f"{path}: node {node.name!r} is op {node.op_type!r} of custom domain {node.domain!r}, which needs a "
                "custom-op library; custom-op libraries are never loaded, the model is refused")


def _inline_external(onnx: Any, path: Path, model: Any) -> None:
    """Check every tensor's declared size and external-data location, then read the external data
    (from the model's folder only) into the tensors, so the runtime never opens another file."""
    from ..loaders._io import open_local_file

    total = 0
    for where, t in _tensors(model):
        total += declared_bytes(path, f"{where} {t.name!r}", t.dims, _itemsize(onnx, t.data_type))
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        target = inside_folder(path, location)
        if target is None:
            raise UnsafeModelError(
                f"{path}: {where} {t.name!r} stores its data at {location!r}, outside the model's folder (absolute, "
                "'..' or a symlink leading out); refused, nothing was read")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise CorruptFileError(f"{path}: {where} {t.name!r}: bad external-data offset/length {info}") from None
        want = declared_bytes(path, f"{where} {t.name!r}", t.dims, _itemsize(onnx, t.data_type))
        with open_local_file(target) as f:
            size = f.seek(0, io.SEEK_END)
            length = size - offset if length < 0 else length
            if offset < 0 or length != want or offset + length > size:
                raise CorruptFileError(
                    f"{path}: {where} {t.name!r}: external data {location!r} offset {offset} length {length} does not "
                    f"hold the declared {want} bytes (file of {size} bytes)")
            f.seek(offset)
            t.raw_data = f.read(length)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
    check_total(path, total, "the tensors")


def _parse(onnx: Any, path: Path, data: bytes) -> Any:
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CorruptFileError(f"{path}: not an ONNX model ({type(exc).__name__}: {first_lines(str(exc), 1)})") from None
    if not model.ir_version or not model.graph.output:
        raise CorruptFileError(f"{path}: not an ONNX model (no IR version or no graph outputs)")
    return model


def _session(ort: Any, path: Path, model: Any) -> Any:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = first_lines(str(exc), 2)
        if type(exc).__name__ == "NotImplemented":
            raise UnsupportedModelError(f"{path}: onnxruntime cannot run the model: {text}") from None
        raise CorruptFileError(f"{path}: onnxruntime refused the model: {text}") from None


def _info(arg: Any) -> TensorInfo:
    ort_type = str(arg.type)  # "tensor(float)", "tensor(bool)"
    dtype = {"float": "float32", "double": "float64", "float16": "float16"}.get(ort_type[7:-1], ort_type[7:-1])
    return TensorInfo(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape), dtype)


class OnnxModel(ConvertedModel):
    """An ONNX model in onnxruntime (open with :func:`open_onnx` or :func:`~bilstm_ref.adapters.open_converted`)."""

    def __init__(self, path: Path, model: Any) -> None:
        ort = require("onnxruntime", "running an ONNX model")
        self.path = path
        self._model = model
        self._session = _session(ort, path, model)
        self.runtime = f"onnxruntime {ort.__version__}"
        self.converter = " ".join(filter(None, (model.producer_name, model.producer_version))) or "unknown"
        self.inputs = tuple(_info(a) for a in self._session.get_inputs())
        self.outputs = tuple(_info(a) for a in self._session.get_outputs())

    def _run(self, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        return self._session.run([o.name for o in self.outputs], feeds)  # type: ignore[no-any-return]

    def op_form(self) -> str:
        ops = [n.op_type for n in _nodes(self._model)]
        fused = sorted(_RECURRENT_OPS.intersection(ops))
        loops = sorted(_LOOP_OPS.intersection(ops))
        if fused:
            return f"fused {'/'.join(fused)} op" + (f" + {'/'.join(loops).lower()}" if loops else "")
        if loops:
            return "loop"
        matmuls = sum(op in ("MatMul", "Gemm") for op in ops)
        return "unrolled" if matmuls > 2 else "no recurrent op found"

    def tensor_names(self) -> list[str]:
        outputs = {o.name for o in self._model.graph.output}
        return [name for node in self._model.graph.node for name in node.output if name and name not in outputs]

    def with_outputs(self, extra_names: Sequence[str]) -> "OnnxModel":
        """A copy whose graph (in memory) also outputs the named intermediate tensors."""
        onnx = require("onnx", "exposing ONNX intermediates")
        self._unknown_tensors(extra_names)
        model = copy.deepcopy(self._model)
        try:
            inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        except Exception:  # shape inference is a nicety: untyped outputs work as well
            inferred = {}
        for name in extra_names:
            model.graph.output.append(inferred.get(name) or onnx.helper.ValueInfoProto(name=name))
        return OnnxModel(self.path, model)


def load_checked_model(path: Path) -> Any:
    """The ``ModelProto`` of an untrusted ONNX file: read whole (bounded), parsed, every tensor's
    declared size bounded, its external data checked to lie inside the model's folder and read into
    the model. Nothing else of the file is trusted; also what ``weights diff`` reads weights from."""
    onnx = require("onnx", "reading an ONNX model")
    path = Path(path)
    model = _parse(onnx, path, read_model_bytes(path, _WORK))
    _inline_external(onnx, path, model)
    return model


def open_onnx(path: Path) -> OnnxModel:
    """An ONNX file, checked (see the module docstring) and opened in onnxruntime."""
    path = Path(path)
    model = load_checked_model(path)
    _check_domains(path, model)
    return OnnxModel(path, model)


# --- the converter ----------------------------------------------------------------------------------
def convert_keras(model: Any, path: Path) -> None:
    """``model.export(path, format="onnx")`` (tf2onnx under the TensorFlow backend); a refusal is a
    :class:`ConversionError` carrying the converter's first lines."""
    try:
        with quiet_converter():
            model.export(str(path), format="onnx", verbose=False)
    except Exception as exc:
        raise ConversionError(converter().description, first_lines(str(exc) or type(exc).__name__)) from exc
    if not path.exists():
        raise ConversionError(converter().description, "the export wrote no file")


def converter() -> Converter:
    v = package_version
    return Converter(
        name="onnx", suffix=".onnx",
        description=f"tf2onnx {v('tf2onnx')} (keras {v('keras')} model.export, tensorflow {v('tensorflow')})",
        runtime=f"onnxruntime {v('onnxruntime')}", fixed_batch=False, fixed_time=False, convert=convert_keras,
        open=open_onnx,
        requires=(("keras", "converting a layer"), ("tf2onnx", "the ONNX converter"),
                  ("onnx", "reading an ONNX model"), ("onnxruntime", "running an ONNX model")),
    )


def factory(spec: LayerSpec) -> ConvertedImpl:
    """The layer converted to ONNX (``model.export(format="onnx")``) and run in onnxruntime, as an
    ``--impl`` implementation: ``bilstm_ref.adapters.onnx:factory``."""
    return ConvertedImpl(spec, converter())
