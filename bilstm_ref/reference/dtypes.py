"""Compute dtypes of the reference and Keras dtype policies.

Two different things are called "dtype" here:

* the reference's **compute dtype** (``float64`` by default, ``float32`` optional): the precision
  the NumPy recurrence runs in;
* the Keras layer's **dtype policy** (``float32``, ``float64``, ``mixed_float16``,
  ``mixed_bfloat16``, ...): what the emulated Keras layer outputs. Half-precision policies cast the
  reference's outputs to that precision at the end; the recurrence itself is not emulated in half
  precision (Keras's is not bit-reproducible: compare with the per-dtype tolerance instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedModelError

__all__ = ["compute_dtype", "policy_name", "cast_output", "POLICIES"]

COMPUTE_DTYPES = ("float64", "float32")
POLICIES = ("float32", "float64", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")


def compute_dtype(dtype: Any) -> np.dtype:
    """The reference's compute dtype: ``None`` means float64."""
    if dtype is None:
        return np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in COMPUTE_DTYPES:
        raise UnsupportedModelError(
            f"dtype: the reference computes in one of {COMPUTE_DTYPES}, got {dtype!r} "
            "(a Keras dtype policy such as 'mixed_float16' goes in dtype_policy=)"
        )
    return dt


def policy_name(policy: Any) -> str:
    """Normalize a Keras dtype policy (a name, or the serialized DTypePolicy dict) to its name."""
    if policy is None:
        return "float32"
    if isinstance(policy, dict):
        cfg = policy.get("config", {})
        policy = cfg.get("name") if isinstance(cfg, dict) else None
    name = getattr(policy, "name", policy)
    if name not in POLICIES:
        raise UnsupportedModelError(f"dtype policy: expected one of {POLICIES}, got {policy!r}")
    return str(name)


def output_dtype(policy: str) -> str:
    """The dtype Keras returns outputs and states in under ``policy``."""
    return policy.removeprefix("mixed_")


def _round_bfloat16(a: np.ndarray) -> np.ndarray:
    """Round float values to bfloat16 precision (round half to even), returned as float32."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(
        0xFFFF0000
    )
    out = rounded.view(np.float32)
    return np.where(np.isfinite(a), out, a.astype(np.float32))


def cast_output(a: np.ndarray, policy: str, compute: np.dtype) -> np.ndarray:
    """Cast an output of the reference to ``policy``'s output dtype, as Keras casts.

    ``float16`` policies give ``np.float16`` arrays; ``bfloat16`` ones give float32 arrays holding
    bfloat16-rounded values (NumPy has no bfloat16 dtype); full-precision policies give the
    reference's ``compute`` dtype (the float64 truth stays float64; values already rounded by an
    inner half-precision layer keep their rounding).
    """
    out = output_dtype(policy)
    if out == "float16":
        with np.errstate(over="ignore"):
            return a.astype(np.float16)
    if out == "bfloat16":
        with np.errstate(over="ignore", invalid="ignore"):
            return _round_bfloat16(a)
    return a.astype(compute, copy=False)
