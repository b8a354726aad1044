"""Keras activations as NumPy functions, numerically stable for finite inputs of any magnitude.

Every function takes and returns an array of the same dtype and shape. None of them emits a
floating-point warning for finite input (the sigmoid family goes through ``tanh``/``logaddexp``
instead of ``exp(-x)``), so a user's ``-W error`` test run never sees one from the reference.

Two semantics profiles exist because ``hard_sigmoid`` changed between Keras 2 and Keras 3:

* ``keras3``: ``clip(x / 6 + 0.5, 0, 1)`` (breakpoints at +-3)
* ``keras2``: ``clip(0.2 * x + 0.5, 0, 1)`` (breakpoints at +-2.5)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import numpy as np

from ..errors import UnsupportedModelError

__all__ = ["Activation", "SEMANTICS", "get", "names"]

Activation = Callable[[np.ndarray], np.ndarray]
Semantics = Literal["keras2", "keras3"]
SEMANTICS: tuple[str, ...] = ("keras3", "keras2")

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.frompyfunc(math.erf, 1, 1)


def _c(x: np.ndarray, v: float) -> np.ndarray:
    """A scalar in x's dtype, so float32 arithmetic stays float32."""
    return np.asarray(v, dtype=x.dtype)


def linear(x: np.ndarray) -> np.ndarray:
    return x


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # sigmoid(x) = (1 + tanh(x/2)) / 2: no exp, so no overflow for any finite x. Computed in place
    # in one temporary (the same operations in the same order as 0.5 * tanh(0.5 * x) + 0.5).
    half = _c(x, 0.5)
    t = np.multiply(half, x)
    np.tanh(t, out=t)
    t *= half
    t += half
    return t


def hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / _c(x, 6.0) + _c(x, 0.5), _c(x, 0.0), _c(x, 1.0))


def hard_sigmoid_keras2(x: np.ndarray) -> np.ndarray:
    return np.clip(_c(x, 0.2) * x + _c(x, 0.5), _c(x, 0.0), _c(x, 1.0))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _c(x, 0.0))


def relu6(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, _c(x, 0.0)), _c(x, 6.0))


def leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, _c(x, 0.2) * x)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(_c(x, 0.0), x)


def softsign(x: np.ndarray) -> np.ndarray:
    return x / (_c(x, 1.0) + np.abs(x))


def _expm1_neg(x: np.ndarray) -> np.ndarray:
    """expm1(min(x, 0)): the negative branch of elu-like functions, without overflow."""
    return np.expm1(np.minimum(x, _c(x, 0.0)))


def elu(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, _expm1_neg(x))


def selu(x: np.ndarray) -> np.ndarray:
    return _c(x, _SELU_SCALE) * np.where(x >= 0, x, _c(x, _SELU_ALPHA) * _expm1_neg(x))


def celu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, _c(x, 0.0)) + _expm1_neg(x)


def exponential(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflows to inf exactly as Keras does
        return np.exp(x)


def gelu(x: np.ndarray) -> np.ndarray:
    # Keras's activations.gelu defaults to the exact (erf) form, approximate=False.
    erf = _erf(x.astype(np.float64) / math.sqrt(2.0)).astype(np.float64).astype(x.dtype)
    return _c(x, 0.5) * x * (_c(x, 1.0) + erf)


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def hard_silu(x: np.ndarray) -> np.ndarray:
    return x * hard_sigmoid(x)


def mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(softplus(x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -softplus(-x)


def tanh_shrink(x: np.ndarray) -> np.ndarray:
    return x - np.tanh(x)


def hard_tanh(x: np.ndarray) -> np.ndarray:
    return np.clip(x, _c(x, -1.0), _c(x, 1.0))


def soft_shrink(x: np.ndarray) -> np.ndarray:
    t = _c(x, 0.5)
    return np.where(x > t, x - t, np.where(x < -t, x + t, _c(x, 0.0)))


def hard_shrink(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) > _c(x, 0.5), x, _c(x, 0.0))


def squareplus(x: np.ndarray) -> np.ndarray:
    s = np.hypot(x, _c(x, 2.0))  # sqrt(x^2 + 4) without overflow
    # (x + s) / 2, rewritten as 2 / (s - x) for x < 0 to avoid cancellation.
    return np.where(x >= 0, (x + s) / _c(x, 2.0), _c(x, 2.0) / (s - np.minimum(x, _c(x, 0.0))))


def sparse_plus(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # the quadratic branch is discarded where it overflows
        q = _c(x, 0.25) * (x + _c(x, 1.0)) ** 2
    return np.where(x <= -1, _c(x, 0.0), np.where(x < 1, q, x))


def sparse_sigmoid(x: np.ndarray) -> np.ndarray:
    mid = _c(x, 0.5) * (x + _c(x, 1.0))
    return np.where(x <= -1, _c(x, 0.0), np.where(x >= 1, _c(x, 1.0), mid))


_KERAS3: dict[str, Activation] = {
    "linear": linear,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "relu": relu,
    "relu6": relu6,
    "leaky_relu": leaky_relu,
    "softplus": softplus,
    "softsign": softsign,
    "elu": elu,
    "selu": selu,
    "celu": celu,
    "exponential": exponential,
    "gelu": gelu,
    "silu": silu,
    "swish": silu,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "mish": mish,
    "log_sigmoid": log_sigmoid,
    "tanh_shrink": tanh_shrink,
    "hard_tanh": hard_tanh,
    "soft_shrink": soft_shrink,
    "hard_shrink": hard_shrink,
    "squareplus": squareplus,
    "sparse_plus": sparse_plus,
    "sparse_sigmoid": sparse_sigmoid,
}

# Keras activations that exist but act across the units axis or need arguments the LSTM
# config cannot carry; rejected by name with the reason.
_REJECTED: dict[str, str] = {
    "softmax": "normalizes across units, not element-wise",
    "log_softmax": "normalizes across units, not element-wise",
    "sparsemax": "normalizes across units, not element-wise",
    "glu": "halves the units axis, which breaks the LSTM gate shapes",
    "threshold": "needs threshold/default_value arguments that an LSTM config cannot carry",
}


def names() -> tuple[str, ...]:
    """Names of every supported activation (Keras 3 spelling, aliases included)."""
    return tuple(_KERAS3)


def canonical_name(spec: Any) -> str:
    """Normalize what a Keras config holds for an activation to a name.

    Accepts ``None`` (identity), a string, or the serialized dict form
    ``{"class_name": "function", "config": "tanh", ...}``. Never resolves a module.
    """
    if spec is None:
        return "linear"
    if isinstance(spec, dict):
        inner = spec.get("config", spec.get("registered_name"))
        if isinstance(inner, dict):
            inner = inner.get("name")
        spec = inner
    if callable(spec):
        spec = getattr(spec, "__name__", repr(spec))
    if not isinstance(spec, str):
        raise UnsupportedModelError(f"activation: expected a name or None, got {spec!r}")
    name = spec.rsplit(".", 1)[-1]
    return "linear" if name in ("None", "none") else name


def get(spec: Any, semantics: Semantics = "keras3") -> Activation:
    """The NumPy function for a Keras activation spec under a semantics profile.

    Raises:
        UnsupportedModelError: the name is unknown or not element-wise, naming it.
    """
    if semantics not in SEMANTICS:
        raise UnsupportedModelError(f"semantics: expected one of {SEMANTICS}, got {semantics!r}")
    name = canonical_name(spec)
    if name == "hard_sigmoid" and semantics == "keras2":
        return hard_sigmoid_keras2
    if name in _KERAS3:
        return _KERAS3[name]
    if name in _REJECTED:
        raise UnsupportedModelError(f"activation {name!r} is not supported: {_REJECTED[name]}")
    raise UnsupportedModelError(
        f"activation {name!r} is not a Keras activation the reference knows; "
        f"supported: {', '.join(sorted(_KERAS3))}"
    )
