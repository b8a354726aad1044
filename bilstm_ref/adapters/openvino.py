"""OpenVINO IR files (``.xml`` with its ``.bin``) in the OpenVINO runtime, and ONNX -> OpenVINO as an
implementation factory.

The CPU plugin computes in bfloat16 by default on CPUs that have it (measured: 1.3e-3 off Keras
for a small Bidirectional); models are compiled with ``INFERENCE_PRECISION_HINT=f32``.

Opening a file is safe for untrusted input: the ``.xml`` and its ``.bin`` (same stem, same folder,
not a symlink leading out) are read whole (bounded) and handed to OpenVINO as bytes; an XML with a
DOCTYPE or entities is refused before parsing; every constant's declared byte range must lie in the
``.bin`` and within the size limits; layers outside the standard opsets (extensions) are refused.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import CorruptFileError, ResourceLimitError, UnsafeModelError
from ..reference.spec import LayerSpec
from .base import (
    ConversionError,
    ConvertedImpl,
    ConvertedModel,
    Converter,
    MAX_TENSOR_BYTES,
    TensorInfo,
    check_total,
    first_lines,
    inside_folder,
    package_version,
    read_model_bytes,
    require,
)
from .onnx import convert_keras as convert_keras_to_onnx

__all__ = ["OpenVinoModel", "open_openvino", "factory", "converter", "COMPILE_CONFIG"]

#: Compile options: full float32 (the CPU plugin's default precision hint is bf16 where the CPU has it).
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
_STANDARD_OPSET = re.compile(r"opset\d+")
_FUSED_OPS = frozenset({"LSTMSequence", "LSTMCell", "GRUSequence", "RNNSequence"})
_LOOP_OPS = frozenset({"TensorIterator", "Loop"})


def _check_xml(path: Path, xml: bytes, bin_size: int) -> None:
    head = xml[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in xml.upper():
        raise UnsafeModelError(f"{path}: the XML declares a DOCTYPE or entities; refused before parsing")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise CorruptFileError(f"{path}: not an OpenVINO IR ({exc})") from None
    if root.tag != "net":
        raise CorruptFileError(f"{path}: not an OpenVINO IR (root element {root.tag!r}, expected 'net')")
    total = 0
    for layer in root.iter("layer"):
        name, version = layer.get("name", "?"), layer.get("version", "")
        if not _STANDARD_OPSET.fullmatch(version):
            raise UnsafeModelError(f"{path}: layer {name!r} ({layer.get('type')}) is from {version!r}, not a standard "
                                   "opset: it needs an OpenVINO extension library, which is never loaded")
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None:
            try:
                offset, size = int(data.get("offset", "0")), int(data.get("size", "0"))
            except ValueError:
                raise CorruptFileError(f"{path}: constant {name!r} has a bad offset/size") from None
            if size > MAX_TENSOR_BYTES:
                raise ResourceLimitError(f"{path}: constant {name!r} declares {size} bytes, over the limit of "
                                         f"{MAX_TENSOR_BYTES} (bilstm_ref.adapters.base.MAX_TENSOR_BYTES)")
            if offset < 0 or size < 0 or offset + size > bin_size:
                raise CorruptFileError(f"{path}: constant {name!r} reads bytes {offset}..{offset + size} of a "
                                       f".bin of {bin_size} bytes")
            total += size
    check_total(path, total, "the constants")


def _info(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorInfo(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)


class OpenVinoModel(ConvertedModel):
    """An OpenVINO IR compiled for the CPU in float32 (open with :func:`open_openvino`)."""

    def __init__(self, path: Path, xml: bytes, weights: bytes, extra: Sequence[str] = ()) -> None:
        ov = require("openvino", "running an OpenVINO model")
        self.path = path
        self._xml, self._weights = xml, weights
        core = ov.Core()
        try:
            tensor = ov.Tensor(np.frombuffer(weights, np.uint8).copy()) if weights else ov.Tensor(np.zeros(0, np.uint8))
            self._model = core.read_model(model=xml.decode("utf-8"), weights=tensor)
            if extra:
                self._model.add_outputs(list(extra))
            self._compiled = core.compile_model(self._model, "CPU", COMPILE_CONFIG)
        except Exception as exc:
            raise CorruptFileError(f"{path}: OpenVINO cannot read the model: {first_lines(str(exc), 2)}") from None
        self.runtime = f"openvino {package_version('openvino')}"
        version = self._model.get_rt_info("Runtime_version").astype(str) if self._model.has_rt_info(
            "Runtime_version") else ""
        self.converter = f"OpenVINO {version}" if version else "unknown"
        self.inputs = tuple(_info(p) for p in self._model.inputs)
        self.outputs = tuple(_info(p) for p in self._model.outputs)

    def _run(self, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        request = self._compiled.create_infer_request()  # a fresh request: nothing carried between calls
        result = request.infer({i.name: feeds[i.name] for i in self.inputs})
        return [np.array(v) for v in result.to_tuple()]

    def op_form(self) -> str:
        ops = {op.get_type_name() for op in self._model.get_ordered_ops()}
        if ops & _FUSED_OPS:
            return f"fused LSTM op ({', '.join(sorted(ops & _FUSED_OPS))})"
        if ops & _LOOP_OPS:
            return "loop"
        return "unrolled" if "MatMul" in ops else "no recurrent op found"

    def tensor_names(self) -> list[str]:
        own = {n for p in self._model.outputs for n in p.get_names()}
        names = []
        for op in self._model.get_ordered_ops():
            if op.get_type_name() in ("Parameter", "Result", "Constant"):
                continue
            for port in op.outputs():
                names += sorted(n for n in port.get_names() if n not in own)
        return names

    def with_outputs(self, extra_names: Sequence[str]) -> "OpenVinoModel":
        self._unknown_tensors(extra_names)
        return OpenVinoModel(self.path, self._xml, self._weights, tuple(extra_names))


def open_openvino(path: Path) -> OpenVinoModel:
    """An OpenVINO IR ``.xml`` and its ``.bin``, checked (see the module docstring) and compiled."""
    path = Path(path)
    xml = read_model_bytes(path, "OpenVINO IR")
    bin_path = inside_folder(path, path.with_suffix(".bin").name)
    if bin_path is None:
        raise UnsafeModelError(f"{path}: its .bin is a symlink leading outside the model's folder; refused")
    weights = read_model_bytes(bin_path, "OpenVINO weights") if bin_path.exists() else b""
    _check_xml(path, xml, len(weights))
    return OpenVinoModel(path, xml, weights)


# --- the converter ----------------------------------------------------------------------------------
def convert_keras(model: Any, path: Path) -> None:
    """Keras -> ONNX (as :mod:`bilstm_ref.adapters.onnx` does) -> ``openvino.convert_model`` -> IR at ``path``."""
    ov = require("openvino", "the OpenVINO converter")
    onnx_path = path.with_suffix(".onnx")
    convert_keras_to_onnx(model, onnx_path)
    try:
        ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    except Exception as exc:
        failed = re.search(r"Conversion is failed for:?\s*(.+)", str(exc))  # the ops OpenVINO could not convert
        message = f"unconverted ONNX ops: {failed.group(1).strip()}" if failed else first_lines(str(exc))
        raise ConversionError(converter().description, message) from exc
    finally:
        onnx_path.unlink(missing_ok=True)


def converter() -> Converter:
    v = package_version
    return Converter(
        name="openvino", suffix=".xml",
        description=f"openvino.convert_model {v('openvino')} from tf2onnx {v('tf2onnx')} (keras {v('keras')})",
        runtime=f"openvino {v('openvino')}", fixed_batch=False, fixed_time=False, convert=convert_keras,
        open=open_openvino,
        requires=(("keras", "converting a layer"), ("tf2onnx", "the ONNX converter"),
                  ("openvino", "the OpenVINO converter and runtime")),
        companions=(".bin",),
    )


def factory(spec: LayerSpec) -> ConvertedImpl:
    """The layer converted Keras -> ONNX -> OpenVINO IR and run on OpenVINO's CPU plugin in float32:
    ``bilstm_ref.adapters.openvino:factory``."""
    return ConvertedImpl(spec, converter())
