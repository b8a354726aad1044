"""Error statistics of one output, accumulated batch by batch in bounded memory.

A verified layer's outputs are compared batch by batch; :class:`ErrorStats` keeps what the
summary needs and nothing that grows with the number of samples: the worst absolute error and
where (sample, time step, unit), the worst relative error, the mean, a log-scale histogram for
the 99th percentile, the share of elements outside the tolerance, NaN disagreements, the share
of the tolerance used, the worst error at each time step, and the padding pattern of the worst
sample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from ..conformance.compare import Tolerance, elementwise

__all__ = ["ErrorStats", "OutputStats", "padding_pattern"]

#: Histogram of |diff| in quarter octaves (a slot's upper edge is 2**0.25 = 1.19 times its lower one):
#: slot 0 holds zeros and values below 2**EXP_MIN, slot s the values in [2**(EXP_MIN + (s-1)/PER),
#: 2**(EXP_MIN + s/PER)), the last slot everything from 2**EXP_MAX up, infinities included.
_EXP_MIN, _EXP_MAX, _PER = -100, 30, 4
_SLOTS = (_EXP_MAX - _EXP_MIN) * _PER + 2


def _upper_edge(slot: int) -> float:
    return math.inf if slot >= _SLOTS - 1 else 2.0 ** (_EXP_MIN + slot / _PER)


def padding_pattern(mask: Optional[np.ndarray]) -> str:
    """A sample's mask row in words: ``"no mask"``, ``"all 12 steps valid"``, ``"right padding: 9 valid, 3
    padded"``, ``"left padding: ..."``, ``"fully padded (12 steps)"`` or ``"holes: valid 0-3, 6-11"``."""
    if mask is None:
        return "no mask"
    row = np.asarray(mask, dtype=bool).ravel()
    t, valid = row.size, int(row.sum())
    if valid == t:
        return f"all {t} steps valid"
    if valid == 0:
        return f"fully padded ({t} steps)"
    if row[:valid].all():
        return f"right padding: {valid} valid, {t - valid} padded"
    if row[t - valid:].all():
        return f"left padding: {t - valid} padded, {valid} valid"
    runs, start = [], None
    for i, v in enumerate(list(row) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append(f"{start}-{i - 1}" if i - 1 > start else f"{start}")
            start = None
    return f"holes: valid steps {', '.join(runs)} of {t}"


@dataclasses.dataclass(frozen=True)
class OutputStats:
    """How one output of one layer compared over every sample.

    ``where`` is ``{"sample": s, "t": t, "unit": u}`` (no ``t`` for outputs without a time axis);
    ``error_by_t`` is the worst |diff| at each time step (sequence outputs only); ``p99_abs`` is the
    upper edge of the histogram slot holding the 99th percentile (at most 25% above the exact value).
    """

    name: str
    ok: bool
    count: int
    max_abs: float
    where: Optional[dict[str, int]]
    max_rel: float
    mean_abs: float
    p99_abs: float
    share_off: float
    nan_mismatch: int
    tol_used: float
    tolerance: str
    error_by_t: Optional[list[float]]
    worst_sample_padding: str
    note: str = ""
    off_padded_only: bool = False  # every element off is in a sample whose mask hides a step

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("max_abs", "max_rel", "mean_abs", "p99_abs", "tol_used"):
            d[k] = d[k] if math.isfinite(d[k]) else None  # JSON has no inf
        if d["error_by_t"] is not None:
            d["error_by_t"] = [v if math.isfinite(v) else None for v in d["error_by_t"]]
        return d

    def describe(self) -> str:
        if self.note:
            return f"{self.name}: {self.note}"
        where = ""
        if self.where:
            where = " at " + ", ".join(f"{k} {v}" for k, v in self.where.items())
        return (f"{self.name}: max|diff| {self.max_abs:.3g}{where} ({self.worst_sample_padding}); "
                f"max rel {self.max_rel:.3g}, mean {self.mean_abs:.2g}, p99 {self.p99_abs:.2g}, "
                f"{self.share_off:.2%} off, {self.tol_used:.2g} of tolerance ({self.tolerance})"
                + (f", {self.nan_mismatch} NaN mismatches" if self.nan_mismatch else ""))


class ErrorStats:
    """Streaming comparison of one output: call :meth:`update` per batch, then :meth:`result`."""

    def __init__(self, name: str, tol: Tolerance) -> None:
        self.name, self.tol = name, tol
        self.count = self.off = self.off_padded = self.nan_mismatch = 0
        self.max_abs, self.max_rel, self.tol_used, self.sum_abs = -1.0, 0.0, 0.0, 0.0
        self.where: Optional[dict[str, int]] = None
        self.worst_padding = "no mask"
        self.hist = np.zeros(_SLOTS, dtype=np.int64)
        self.by_t: Optional[np.ndarray] = None
        self.note = ""

    def update(self, expected: np.ndarray, actual: np.ndarray, offset: int, mask: Optional[np.ndarray]) -> None:
        """One batch: ``expected`` (Keras) and ``actual`` of shape ``(b, T, units)`` or ``(b, units)``;
        ``offset`` is the global index of the batch's first sample; ``mask`` ``(b, T)`` or None."""
        e = np.asarray(expected, dtype=np.float64)
        a = np.asarray(actual, dtype=np.float64)
        if e.shape != a.shape:
            self.note = self.note or f"shape mismatch: expected {e.shape}, got {a.shape}"
            self.count += e.size
            self.off += e.size
            return
        if e.size == 0:
            return
        err = elementwise(e, a, self.tol, ulps=False)
        self.count += e.size
        self.off += int(np.count_nonzero(err.bad))
        if mask is not None:
            padded = ~np.asarray(mask, dtype=bool).all(axis=1)
            self.off_padded += int(np.count_nonzero(err.bad[padded]))
        self.nan_mismatch += err.nan_mismatch
        self.sum_abs += float(err.diff.sum())
        self.max_rel = max(self.max_rel, float(err.rel.max()))
        self.tol_used = max(self.tol_used, float(err.used.max()))
        flat = int(np.argmax(err.diff))
        worst = float(err.diff.flat[flat])
        if worst > self.max_abs:
            idx = np.unravel_index(flat, e.shape)
            self.max_abs = worst
            keys = ("sample", "t", "unit") if e.ndim == 3 else ("sample", "unit")
            self.where = dict(zip(keys, (int(i) for i in idx), strict=True))
            self.where["sample"] += offset
            self.worst_padding = padding_pattern(None if mask is None else mask[idx[0]])
        finite = err.diff.ravel() if err.finite else err.diff[np.isfinite(err.diff)]
        level = np.log2(np.maximum(finite, 2.0 ** (_EXP_MIN - 1)))
        level -= _EXP_MIN
        level *= _PER
        slots = np.clip(np.floor(level, out=level), -1, _SLOTS - 2).astype(np.int64) + 1
        self.hist += np.bincount(slots, minlength=_SLOTS)
        self.hist[-1] += err.diff.size - finite.size
        if e.ndim == 3:
            per_t = err.diff.max(axis=(0, 2))
            if self.by_t is None or self.by_t.shape != per_t.shape:
                self.by_t = per_t if self.by_t is None else np.maximum(self.by_t[: per_t.size], per_t[: self.by_t.size])
            else:
                np.maximum(self.by_t, per_t, out=self.by_t)

    def _p99(self) -> float:
        if not self.count:
            return 0.0
        cum = np.cumsum(self.hist)
        k = int(np.searchsorted(cum, 0.99 * self.count))
        if k == 0 and self.max_abs <= 0:
            return 0.0
        return _upper_edge(k)

    def result(self) -> OutputStats:
        n = max(self.count, 1)
        ok = not self.note and self.off == 0
        max_abs = max(self.max_abs, 0.0)
        return OutputStats(
            name=self.name, ok=ok, count=self.count, max_abs=max_abs, where=self.where, max_rel=self.max_rel,
            mean_abs=self.sum_abs / n, p99_abs=min(self._p99(), max_abs), share_off=self.off / n,
            nan_mismatch=self.nan_mismatch, tol_used=self.tol_used, tolerance=self.tol.describe(),
            error_by_t=None if self.by_t is None else [float(v) for v in self.by_t],
            worst_sample_padding=self.worst_padding, note=self.note,
            off_padded_only=self.off > 0 and self.off_padded == self.off,
        )
