"""Runtime adapters: converted models (ONNX, TFLite, OpenVINO IR) opened safely and run, and the
converters as ``--impl`` implementation factories (docs/converters.md).

    bilstm_ref.adapters.onnx:factory       Keras -> model.export(format="onnx") -> onnxruntime
    bilstm_ref.adapters.tflite:factory     Keras -> TFLiteConverter (batch fixed) -> LiteRT
    bilstm_ref.adapters.openvino:factory   Keras -> ONNX -> openvino.convert_model -> OpenVINO CPU, float32

Importing this package imports no converter or runtime; they are imported when first used.
"""

import os
from pathlib import Path

from ..errors import UnsupportedModelError
from .base import ConversionError as ConversionError
from .base import ConvertedImpl as ConvertedImpl
from .base import ConvertedModel as ConvertedModel
from .base import RuntimeUnavailableError as RuntimeUnavailableError
from .base import TensorInfo as TensorInfo
from .base import cache_dir as cache_dir

__all__ = ["ConversionError", "ConvertedImpl", "ConvertedModel", "RuntimeUnavailableError", "TensorInfo",
           "cache_dir", "open_converted"]


def open_converted(path: "os.PathLike[str] | str") -> ConvertedModel:
    """The converted model at ``path`` in its runtime, chosen by suffix: ``.onnx`` (onnxruntime),
    ``.tflite`` (LiteRT), ``.xml`` (OpenVINO IR, its ``.bin`` beside it)."""
    p = Path(os.fspath(path))
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from .onnx import open_onnx

        return open_onnx(p)
    if suffix == ".tflite":
        from .tflite import open_tflite

        return open_tflite(p)
    if suffix == ".xml":
        from .openvino import open_openvino

        return open_openvino(p)
    raise UnsupportedModelError(f"{p}: unknown converted-model suffix {p.suffix!r}; expected .onnx, .tflite or .xml")
