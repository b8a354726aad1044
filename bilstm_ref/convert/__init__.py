"""Exact weight-layout converters (Keras <-> torch.nn.LSTM, the ONNX LSTM op, TFLite per-gate tensors)
and a diff that names the layout fault between two weight sets. docs/weights.md has the tables.

torch and onnx are imported only when a ``.pt`` / ``.onnx`` file is read.
"""

__all__ = [
    "Finding", "WeightsDiff", "diff_weights", "WeightSet", "read_weight_set", "read_weights", "weights_diff_main",
    "KERAS_GATES", "keras_to_onnx", "keras_to_tflite_gates", "keras_to_torch", "merge_biases", "onnx_to_keras",
    "permute_gates", "split_directions", "tflite_gates_to_keras", "torch_to_keras",
]

from .diff import Finding as Finding
from .diff import WeightsDiff as WeightsDiff
from .diff import diff_weights as diff_weights
from .files import WeightSet as WeightSet
from .files import read_weight_set as read_weight_set
from .files import read_weights as read_weights
from .files import weights_diff_main as weights_diff_main
from .layouts import KERAS_GATES as KERAS_GATES
from .layouts import keras_to_onnx as keras_to_onnx
from .layouts import keras_to_tflite_gates as keras_to_tflite_gates
from .layouts import keras_to_torch as keras_to_torch
from .layouts import merge_biases as merge_biases
from .layouts import onnx_to_keras as onnx_to_keras
from .layouts import permute_gates as permute_gates
from .layouts import split_directions as split_directions
from .layouts import tflite_gates_to_keras as tflite_gates_to_keras
from .layouts import torch_to_keras as torch_to_keras
