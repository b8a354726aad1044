"""Tolerances and per-output comparison results, in one place.

``atol`` and ``rtol`` are always given together: an element passes when
``|actual - expected| <= atol + rtol * |expected|``, and NaN must sit at the same positions in
both (NaN never equals a number, and a NaN that appears or vanishes is a mismatch).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional

import numpy as np

__all__ = ["Tolerance", "OutputResult", "tolerance_for", "compare", "TOLERANCES"]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.atol) and np.isfinite(self.rtol) and self.atol >= 0 and self.rtol >= 0):
            raise ValueError(f"tolerance must be finite and non-negative, got atol={self.atol}, rtol={self.rtol}")


#: Keras (under the policy) against the float64 reference. Sources: spec §9.1-9.3 and §6.3:
#: float32 Keras stays within ~1e-6 of float64 in these regimes; half-precision policies run the
#: whole recurrence in f16/bf16 (eps 9.8e-4 / 7.8e-3), so their errors are a few eps.
TOLERANCES: Mapping[str, Tolerance] = {
    # TF's float64 erf/erfc (gelu) is accurate to ~5e-9, measured; everything else to ~1e-15.
    "float64": Tolerance(1e-8, 1e-8),
    "float32": Tolerance(1e-5, 1e-5),
    "mixed_float16": Tolerance(5e-3, 5e-3),
    "float16": Tolerance(5e-3, 5e-3),
    "mixed_bfloat16": Tolerance(4e-2, 4e-2),
    "bfloat16": Tolerance(4e-2, 4e-2),
}


def tolerance_for(policy: str) -> Tolerance:
    return TOLERANCES[policy]


@dataclasses.dataclass(frozen=True)
class OutputResult:
    """How one named output compared: worst absolute error (with its index), worst relative
    error, share of elements off, NaN agreement, and the verdict."""

    name: str
    ok: bool
    max_abs: float
    max_abs_index: Optional[tuple[int, ...]]
    max_rel: float
    mismatched: float  # share of elements outside tolerance, 0..1
    nan_mismatch: int  # elements NaN in exactly one of the two
    shape_expected: tuple[int, ...]
    shape_actual: tuple[int, ...]
    note: str = ""

    def describe(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        where = "" if self.max_abs_index is None else f" at {self.max_abs_index}"
        return (
            f"{self.name}: max|diff|={self.max_abs:.3g}{where}, max rel={self.max_rel:.3g}, "
            f"{self.mismatched:.1%} off, {self.nan_mismatch} NaN mismatches"
        )


def compare(name: str, expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> OutputResult:
    """Compare ``actual`` (the implementation) against ``expected`` (Keras) at ``tol``."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        return OutputResult(
            name, False, float("inf"), None, float("inf"), 1.0, 0, e.shape, a.shape,
            note=f"shape mismatch: expected {e.shape}, got {a.shape}",
        )
    nan_e, nan_a = np.isnan(e), np.isnan(a)
    nan_mismatch = int(np.count_nonzero(nan_e != nan_a))
    both = ~(nan_e | nan_a)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both, np.abs(a - e), 0.0)
        # infinities of the same sign are equal; inf - inf gives NaN, treat as equal
        same_inf = both & np.isinf(e) & (e == a)
        diff = np.where(same_inf | np.isnan(diff), np.where(same_inf, 0.0, np.inf), diff)
        rel = np.where(both & (e != 0), diff / np.abs(np.where(e == 0, 1.0, e)), np.where(diff > 0, np.inf, 0.0))
        bad = (diff > tol.atol + tol.rtol * np.abs(np.where(np.isinf(e), 0.0, e))) | (nan_e != nan_a)
    n = max(e.size, 1)
    if e.size:
        idx = np.unravel_index(int(np.argmax(diff)), e.shape)
        max_abs = float(diff[idx])
        max_rel = float(np.max(rel))
        index: Optional[tuple[int, ...]] = tuple(int(i) for i in idx)
    else:
        max_abs, max_rel, index = 0.0, 0.0, None
    off = int(np.count_nonzero(bad))
    return OutputResult(name, off == 0, max_abs, index, max_rel, off / n, nan_mismatch, e.shape, a.shape)
