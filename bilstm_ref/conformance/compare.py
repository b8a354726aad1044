"""Tolerances and per-output comparison results, in one place.

``atol`` and ``rtol`` are always given together: an element passes when
``|actual - expected| <= atol + rtol * |expected|``, and NaN must sit at the same positions in
both (NaN never equals a number, and a NaN that appears or vanishes is a mismatch). In ULP mode
(``Tolerance(ulp=N)``) an element passes when it is within ``N`` units in the last place of the
expected value, counted in ``ulp_dtype`` (the precision Keras computed in).

A :class:`TolerancePolicy` holds the default for a dtype policy plus per-output overrides (the
cell state ``c`` is unbounded and may need a looser relative tolerance than ``h``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ConfigError

__all__ = ["Tolerance", "TolerancePolicy", "OutputResult", "tolerance_for", "policy_for", "compare", "TOLERANCES",
           "BACKEND_TOLERANCES",
           "output_base", "elementwise", "Elementwise", "ULP_FLOOR"]


#: ULPs of values smaller than this (in magnitude) are counted in the spacing at this value. The
#: spacing of the float format shrinks without bound towards 0 (to 1.4e-45 in float32), so an
#: absolute error of 1e-7 on an expected 0 would otherwise read as 7e+37 ULP. Outputs of an LSTM
#: are O(1); below 2**-10 (about 1e-3) an error is measured against the precision near 1e-3.
ULP_FLOOR = 2.0 ** -10


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``atol`` and ``rtol`` together; or, with ``ulp`` set, at most ``ulp`` ULPs of ``ulp_dtype``."""

    atol: float
    rtol: float
    ulp: Optional[float] = None
    ulp_dtype: str = "float32"

    def __post_init__(self) -> None:
        for key in ("atol", "rtol") + (("ulp",) if self.ulp is not None else ()):
            v = getattr(self, key)
            try:
                ok = isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            except OverflowError:
                ok = False
            if not ok:
                raise ConfigError(f"tolerance {key}: expected a finite number >= 0, got {v!r}")
        if self.ulp_dtype not in ("float16", "float32", "float64", "auto"):
            raise ConfigError(f"tolerance ulp_dtype: expected float16, float32, float64 or auto, got {self.ulp_dtype!r}")

    def describe(self) -> str:
        if self.ulp is not None:
            return f"<= {self.ulp:g} ULP ({self.ulp_dtype})"
        return f"atol {self.atol:g} + rtol {self.rtol:g}"


def output_base(name: str) -> str:
    """``"call2/c1"`` -> ``"c1"``: the output a label names, without the call prefix."""
    return name.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class TolerancePolicy:
    """A default tolerance plus per-output overrides, keyed by output name (``c``, ``c1``, ``h2``...)."""

    default: Optional[Tolerance]  # None: the dtype policy's default (see with_base)
    per_output: Mapping[str, Tolerance] = dataclasses.field(default_factory=dict)

    def for_output(self, name: str) -> Tolerance:
        tol = self.per_output.get(output_base(name), self.default)
        if tol is None:
            raise ConfigError("TolerancePolicy without a default: call with_base() with the dtype's tolerance")
        return tol

    def with_base(self, base: Tolerance) -> "TolerancePolicy":
        """This policy completed by a case's per-dtype default: a missing default becomes ``base``,
        and ULP counts in ``"auto"`` precision take ``base``'s (the precision Keras computed in)."""
        def fill(t: Optional[Tolerance]) -> Tolerance:
            if t is None:
                return base
            if t.ulp_dtype == "auto":
                return dataclasses.replace(t, ulp_dtype=base.ulp_dtype)
            return t

        return TolerancePolicy(fill(self.default), {k: fill(v) for k, v in self.per_output.items()})

    def describe(self) -> str:
        extra = "".join(f"; {k}: {t.describe()}" for k, t in sorted(self.per_output.items()))
        return (self.default.describe() if self.default else "per-dtype default") + extra

    def as_dict(self) -> dict[str, Any]:
        return {"default": dataclasses.asdict(self.default) if self.default else "per-dtype default",
                "per_output": {k: dataclasses.asdict(t) for k, t in sorted(self.per_output.items())}}


#: Keras (under the policy) against the float64 reference. Evidence: docs/semantics.md#numerical-behaviour and docs/semantics.md#dtype-policies:
#: float32 Keras stays within ~1e-6 of float64 in these regimes; half-precision policies run the
#: whole recurrence in f16/bf16 (eps 9.8e-4 / 7.8e-3), so their errors are a few eps.
TOLERANCES: Mapping[str, Tolerance] = {
    # TF's float64 erf/erfc (gelu) is accurate to ~5e-9, measured; everything else to ~1e-15.
    "float64": Tolerance(1e-8, 1e-8, ulp_dtype="float64"),
    "float32": Tolerance(1e-5, 1e-5),
    "mixed_float16": Tolerance(5e-3, 5e-3, ulp_dtype="float16"),
    "float16": Tolerance(5e-3, 5e-3, ulp_dtype="float16"),
    "mixed_bfloat16": Tolerance(4e-2, 4e-2),
    "bfloat16": Tolerance(4e-2, 4e-2),
}


#: Backends whose Keras does not compute the policy at full precision (measured, Keras 3.15.1):
#: JAX runs float64 as float32 unless jax_enable_x64, and Keras's result_type maps 64-bit to
#: 32-bit matmuls on JAX and torch in the generic (masked / recurrent-dropout) loop: worst 2.9e-7.
BACKEND_TOLERANCES: Mapping[tuple[str, str], Tolerance] = {
    ("jax", "float64"): Tolerance(1e-6, 1e-6),
    ("torch", "float64"): Tolerance(1e-6, 1e-6),
}


def tolerance_for(policy: str, backend: Optional[str] = None) -> Tolerance:
    return BACKEND_TOLERANCES.get((backend or "", policy), TOLERANCES[policy])


def policy_for(dtype_policy: str, overrides: Optional["TolerancePolicy"] = None) -> TolerancePolicy:
    """The tolerance policy for a case: ``overrides`` (from the command line) completed by the
    dtype policy's default."""
    base = TOLERANCES[dtype_policy]
    return overrides.with_base(base) if overrides is not None else TolerancePolicy(base)


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
    max_ulp: float = 0.0  # worst distance in units in the last place of the expected value
    tolerance: str = ""  # the tolerance it was judged at
    tol_used: float = 0.0  # worst |diff| / allowed |diff| (<= 1 passes): comparable across dtypes

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("max_abs", "max_rel", "max_ulp", "tol_used"):
            d[k] = None if not math.isfinite(d[k]) else d[k]  # JSON has no inf
        d["max_abs_index"] = None if self.max_abs_index is None else list(self.max_abs_index)
        d["shape_expected"], d["shape_actual"] = list(self.shape_expected), list(self.shape_actual)
        return d

    def describe(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        where = "" if self.max_abs_index is None else f" at {self.max_abs_index}"
        judged = f" (tolerance {self.tolerance})" if self.tolerance else ""
        if not self.ok and self.tolerance and 0 < self.tol_used < 1e200:  # which tolerance failed, and by how much
            judged += f", worst element at {self.tol_used:.3g}x that tolerance"
        return (
            f"{self.name}: max|diff|={self.max_abs:.3g}{where}, max rel={self.max_rel:.3g}, "
            f"max {self.max_ulp:.3g} ULP, {self.mismatched:.1%} off, {self.nan_mismatch} NaN mismatches" + judged
        )


def compare(name: str, expected: np.ndarray, actual: np.ndarray, tol: Any) -> OutputResult:
    """Compare ``actual`` (the implementation) against ``expected`` (Keras) at ``tol``.

    ``tol`` is a :class:`Tolerance` or a :class:`TolerancePolicy` (its override for ``name``).
    """
    if isinstance(tol, TolerancePolicy):
        tol = tol.for_output(name)
    with np.errstate(invalid="ignore"):  # a signalling NaN (a damaged fixture) is compared as a quiet one
        e = np.asarray(expected, dtype=np.float64)
        a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        return OutputResult(
            name, False, float("inf"), None, float("inf"), 1.0, 0, e.shape, a.shape,
            note=f"shape mismatch: expected {e.shape}, got {a.shape}", max_ulp=float("inf"), tolerance=tol.describe(),
        )
    err = elementwise(e, a, tol)
    diff, rel, ulps, used, bad, nan_mismatch = err.diff, err.rel, err.ulps, err.used, err.bad, err.nan_mismatch
    n = max(e.size, 1)
    if e.size:
        idx = np.unravel_index(int(np.argmax(diff)), e.shape)
        max_abs = float(diff[idx])
        max_rel = float(np.max(rel))
        max_ulp = float(np.max(ulps))
        tol_used = float(np.max(used))
        index: Optional[tuple[int, ...]] = tuple(int(i) for i in idx)
    else:
        max_abs, max_rel, max_ulp, tol_used, index = 0.0, 0.0, 0.0, 0.0, None
    off = int(np.count_nonzero(bad))
    return OutputResult(name, off == 0, max_abs, index, max_rel, off / n, nan_mismatch, e.shape, a.shape,
                        max_ulp=max_ulp, tolerance=tol.describe(), tol_used=tol_used)


@dataclasses.dataclass(frozen=True)
class Elementwise:
    """Per-element errors of ``actual`` against ``expected`` (both float64, same shape)."""

    diff: np.ndarray  # |actual - expected|; 0 where both are NaN or equal infinities, inf where only one is inf
    rel: np.ndarray  # diff / |expected| (inf where expected is 0 and diff > 0)
    ulps: np.ndarray  # diff in units in the last place of expected, counted in tol.ulp_dtype
    used: np.ndarray  # diff / allowed diff: <= 1 passes
    bad: np.ndarray  # outside tolerance, or NaN in exactly one
    nan_mismatch: int
    finite: bool = False  # both arrays were all finite (then diff is too)


def elementwise(e: np.ndarray, a: np.ndarray, tol: Tolerance, ulps: bool = True) -> Elementwise:
    """The per-element error arrays behind :func:`compare` (and the streaming statistics of ``verify``).

    ``ulps=False`` skips the ULP distances (left as zeros) unless the tolerance is in ULPs."""
    need_ulps = ulps or tol.ulp is not None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        finite = bool(np.isfinite(e).all() and np.isfinite(a).all())
        if finite:  # the common case, in fewer passes and temporaries
            nan_e = nan_a = None
            nan_mismatch = 0
            diff = np.subtract(a, e)
            np.abs(diff, out=diff)
            magnitude = np.abs(e)
            rel = np.divide(diff, magnitude)
            zero = magnitude == 0
            if zero.any():
                rel[zero] = np.where(diff[zero] > 0, np.inf, 0.0)
        else:
            nan_e, nan_a = np.isnan(e), np.isnan(a)
            nan_mismatch = int(np.count_nonzero(nan_e != nan_a))
            both = ~(nan_e | nan_a)
            diff = np.where(both, np.abs(a - e), 0.0)
            # infinities of the same sign are equal; inf - inf gives NaN, treat as equal
            same_inf = both & np.isinf(e) & (e == a)
            diff = np.where(same_inf | np.isnan(diff), np.where(same_inf, 0.0, np.inf), diff)
            rel = np.where(both & (e != 0), diff / np.abs(np.where(e == 0, 1.0, e)), np.where(diff > 0, np.inf, 0.0))
            magnitude = np.where(np.isfinite(e), np.abs(e), 0.0)
        if need_ulps:  # near zero, ULPs are counted at ULP_FLOOR's spacing (see ULP_FLOOR)
            spacing = np.spacing(np.maximum(magnitude, ULP_FLOOR).astype(tol.ulp_dtype)).astype(np.float64)
            ulp = np.where(diff > 0, diff / spacing, 0.0)
        else:
            ulp = np.zeros(diff.shape)
        if tol.ulp is not None:
            used = ulp / max(tol.ulp, 1e-300)
        else:
            used = np.multiply(magnitude, tol.rtol)
            used += tol.atol
            np.maximum(used, 1e-300, out=used)
            np.divide(diff, used, out=used)
        bad = used > 1.0
        if nan_e is not None:
            bad |= nan_e != nan_a
    return Elementwise(diff, rel, ulp, used, bad, nan_mismatch, finite and bool(np.isfinite(diff).all()))
