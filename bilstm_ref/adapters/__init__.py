"""Runtime adapters: converted models (ONNX, TFLite, OpenVINO IR) opened safely and run, and the
converters as ``--impl`` implementation factories (docs/converters.md).

    bilstm_ref.adapters.onnx:factory       Keras -> model.export(format="onnx") -> onnxruntime
    bilstm_ref.adapters.tflite:factory     Keras -> TFLiteConverter (batch fixed) -> LiteRT
    bilstm_ref.adapters.openvino:factory   Keras -> ONNX -> openvino.convert_model -> OpenVINO CPU, float32

Importing this package imports no converter or runtime; they are imported when first used.
"""

from .base import ConversionError as ConversionError
from .base import ConvertedImpl as ConvertedImpl
from .base import ConvertedModel as ConvertedModel
from .base import RuntimeUnavailableError as RuntimeUnavailableError
from .base import TensorInfo as TensorInfo
from .base import cache_dir as cache_dir
from .base import open_converted as open_converted

__all__ = ["ConversionError", "ConvertedImpl", "ConvertedModel", "RuntimeUnavailableError", "TensorInfo",
           "cache_dir", "open_converted"]
