"""TFLite files in LiteRT (``ai_edge_litert``), and the TFLite converter as an implementation factory.

Outputs are read through the file's signature (``output_0``, ``output_1`` ... in the Keras model's
order), never from ``get_output_details()``, whose order is the converter's internal one (for a
``return_state`` Bidirectional: c2, h1, h2, sequence, c1).

Opening a file is safe for untrusted input: the file is read whole (bounded) and handed to the
interpreter as bytes; every tensor's declared size is checked before the interpreter allocates;
custom ops are refused (no custom-op library is ever registered).
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

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
    package_version,
    read_model_bytes,
    require,
)

__all__ = ["TfliteModel", "open_tflite", "factory", "converter", "convert_keras"]

_FUSED_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM"})
_WORK = "tflite model"


def _litert() -> Any:
    return require("ai_edge_litert.interpreter", "running a TFLite model")


def _interpreter(path: Path, data: bytes, preserve: bool) -> Any:
    if data[4:8] != b"TFL3":
        raise CorruptFileError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier at byte 4)")
    litert = _litert()
    try:
        with warnings.catch_warnings():  # preserving all tensors is what with_outputs asks for
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            # XNNPACK (a default delegate) leaves the tensors inside its partitions unmaterialized
            resolver = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if preserve else litert.OpResolverType.AUTO
            return litert.Interpreter(model_content=data, experimental_preserve_all_tensors=preserve,
                                      experimental_op_resolver_type=resolver)
    except Exception as exc:
        text = first_lines(str(exc), 2)
        if "custom op" in text.lower():
            raise UnsafeModelError(f"{path}: the model uses a custom op that needs a custom-op library, which is "
                                   f"never registered; refused ({text})") from None
        raise CorruptFileError(f"{path}: LiteRT cannot read the model: {text}") from None


def _op_codes(path: Path, data: bytes) -> tuple[set[str], str]:
    """(the operator names every subgraph uses, the file's description) from the flatbuffer, read after
    the interpreter has verified it; a custom op is refused."""
    schema = require("ai_edge_litert.schema_py_generated", "reading a TFLite model")
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        ops, custom = set(), []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            op = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            ops.add(op)
            if op == "CUSTOM":
                custom.append((code.CustomCode() or b"?").decode("utf-8", "replace"))
        description = (model.Description() or b"").decode("utf-8", "replace")
    except (IndexError, ValueError, TypeError, struct.error) as exc:  # flatbuffers reads past a bad offset
        raise CorruptFileError(f"{path}: malformed TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    if custom:
        raise UnsafeModelError(f"{path}: the model uses custom op {custom[0]!r}, which needs a custom-op library; "
                               "custom-op libraries are never registered, the model is refused")
    return ops, description


def _check_sizes(path: Path, interp: Any) -> None:
    """Every tensor's declared size (dynamic dimensions at 1), before anything is allocated."""
    total = 0
    for sg in range(interp.num_subgraphs()):
        for d in interp.get_tensor_details(sg):
            total += declared_bytes(path, f"tensor {d['name']!r} (subgraph {sg})", [max(int(s), 1) for s in d["shape"]],
                                    np.dtype(d["dtype"]).itemsize)
    check_total(path, total, "the tensors")


def _info(name: str, details: dict[str, Any]) -> TensorInfo:
    sig = details.get("shape_signature", details["shape"])
    return TensorInfo(name, tuple(None if int(d) < 0 else int(d) for d in sig), np.dtype(details["dtype"]).name)


def _output_number(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else 1 << 30, name)


class TfliteModel(ConvertedModel):
    """A TFLite model in LiteRT (open with :func:`open_tflite` or :func:`~bilstm_ref.adapters.open_converted`).

    Inputs are listed in the signature's order (the converter sorts them by name: the Keras order is
    not stored); outputs in the model's order. A file without a signature falls back to the
    interpreter's own input and output lists.
    """

    def __init__(self, path: Path, data: bytes, extra: Sequence[str] = ()) -> None:
        self.path = path
        self._data = data
        self._interp = _interpreter(path, data, preserve=bool(extra))
        self._ops, description = _op_codes(path, data)
        _check_sizes(path, self._interp)
        self.runtime = f"ai-edge-litert {package_version('ai-edge-litert')}"
        self.converter = {"MLIR Converted.": "TFLite MLIR converter"}.get(description, description or "unknown")
        self._runner: Optional[Any] = None
        signatures = self._interp.get_signature_list()
        if signatures:
            self._runner = self._interp.get_signature_runner(next(iter(signatures)))
            ins = self._runner.get_input_details()
            outs = self._runner.get_output_details()
            self.inputs = tuple(_info(n, d) for n, d in ins.items())
            own = tuple(_info(n, outs[n]) for n in sorted(outs, key=_output_number))
        else:
            self._interp.allocate_tensors()
            self.inputs = tuple(_info(d["name"], d) for d in self._interp.get_input_details())
            own = tuple(_info(d["name"], d) for d in self._interp.get_output_details())
        self._own = len(own)
        by_name = self._intermediates()
        self._extra = tuple(extra)
        self._extra_index = [by_name[n] for n in extra]
        self.outputs = own + tuple(_info(n, self._details(by_name[n])) for n in extra)

    def _details(self, index: int) -> dict[str, Any]:
        return next(d for d in self._interp.get_tensor_details() if d["index"] == index)

    def _intermediates(self) -> dict[str, int]:
        """Named intermediate tensors of numeric or boolean type. Resource and variant tensors (a
        stateful model's variables, TensorList handles) are left out: LiteRT's ``get_tensor`` on them
        reads no array, and crashed the process on a stateful model's variables."""
        io = {d["index"] for d in self._interp.get_input_details() + self._interp.get_output_details()}
        out: dict[str, int] = {}
        for d in self._interp.get_tensor_details():
            if d["name"] and d["index"] not in io and np.dtype(d["dtype"]).kind in "fiub":
                out.setdefault(d["name"], d["index"])
        return out

    def _run(self, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        if self._runner is not None:
            result = self._runner(**feeds)
            values = [result[o.name] for o in self.outputs[:self._own]]
        else:
            interp = self._interp
            for d, info in zip(interp.get_input_details(), self.inputs):
                if tuple(d["shape"]) != feeds[info.name].shape:
                    interp.resize_tensor_input(d["index"], feeds[info.name].shape)
                    interp.allocate_tensors()
                interp.set_tensor(d["index"], feeds[info.name])
            interp.invoke()
            values = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
        return values + [self._intermediate(name, i) for name, i in zip(self._extra, self._extra_index)]

    def _intermediate(self, name: str, index: int) -> np.ndarray:
        try:
            return self._interp.get_tensor(index)  # type: ignore[no-any-return]
        except ValueError:  # "Tensor data is null": e.g. a loop output nothing reads
            raise UnsupportedModelError(f"{self.path}: LiteRT holds no data for tensor {name!r} after the run "
                                        "(a tensor nothing reads, such as an unused loop output)") from None

    def op_form(self) -> str:
        ops = self._ops
        if ops & _FUSED_OPS:
            return f"fused LSTM op ({', '.join(sorted(ops & _FUSED_OPS))})"
        if "WHILE" in ops:
            return "loop"
        return "unrolled" if {"FULLY_CONNECTED", "BATCH_MATMUL"} & ops else "no recurrent op found"

    def tensor_names(self) -> list[str]:
        return list(self._intermediates())

    def with_outputs(self, extra_names: Sequence[str]) -> "TfliteModel":
        """A copy (interpreter with ``experimental_preserve_all_tensors=True``) that also returns the
        named intermediate tensors, read with ``get_tensor`` after each run."""
        self._unknown_tensors(extra_names)
        return TfliteModel(self.path, self._data, tuple(extra_names))


def open_tflite(path: Path) -> TfliteModel:
    """A TFLite file, checked (see the module docstring) and opened in LiteRT."""
    path = Path(path)
    return TfliteModel(path, read_model_bytes(path, _WORK))


# --- the converter ----------------------------------------------------------------------------------
def convert_keras(model: Any, path: Path) -> None:
    """``tf.lite.TFLiteConverter.from_keras_model(model).convert()`` written to ``path``; a refusal is
    a :class:`ConversionError` carrying the converter's first lines."""
    description = converter().description
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ConversionError(description, f"the TFLite converter needs Keras's TensorFlow backend, "
                                           f"not {keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)")
    import tensorflow as tf

    try:
        with quiet_converter():
            data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as exc:
        raise ConversionError(description, _mlir_errors(str(exc))) from exc
    path.write_bytes(data)


def _mlir_errors(text: str) -> str:
    """The first two distinct ``error:`` diagnostics of the converter, without their ``loc(...)`` prefix."""
    errors: list[str] = []
    for line in text.splitlines():
        if "error:" not in line:
            continue  # notes and the call-site chain
        msg = line.split("error:", 1)[1].strip()
        if msg.startswith("loc("):
            msg = msg.rsplit("): ", 1)[-1]
        if msg not in errors:
            errors.append(msg)
    return first_lines("\n".join(errors) if errors else text, 2)


def converter(fixed_batch: bool = True) -> Converter:
    v = package_version
    return Converter(
        name="tflite" if fixed_batch else "tflite-dynbatch", suffix=".tflite",
        description=f"TFLiteConverter.from_keras_model (tensorflow {v('tensorflow')}, keras {v('keras')})",
        runtime=f"ai-edge-litert {v('ai-edge-litert')}", fixed_batch=fixed_batch, fixed_time=False,
        convert=convert_keras, open=open_tflite,
        requires=(("keras", "converting a layer"), ("tensorflow", "the TFLite converter"),
                  ("ai_edge_litert", "running a TFLite model")),
    )


def factory(spec: LayerSpec, *, fixed_batch: bool = True) -> ConvertedImpl:
    """The layer converted to TFLite (``TFLiteConverter.from_keras_model``) and run in LiteRT, as an
    ``--impl`` implementation: ``bilstm_ref.adapters.tflite:factory``.

    The batch is fixed to the call's (the converter refuses a dynamic batch: the LSTM loop's
    ``TensorListReserve`` needs a static element shape); ``fixed_batch=False`` shows that refusal
    as a :class:`ConversionError`. Time steps stay dynamic.
    """
    return ConvertedImpl(spec, converter(fixed_batch))
