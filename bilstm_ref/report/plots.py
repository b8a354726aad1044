"""PNG plots (matplotlib, Agg backend): error heatmap over flag values x outputs, error against
sequence length, and case status by flag value."""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BilstmRefError
from .data import STATUSES, ReportData

_COLORS = {"pass": "#4c9a2a", "known-deviation": "#88b04b", "xpass": "#c5e17a", "xfail": "#bbbbbb",
           "fail": "#d62728", "error": "#8c1d18", "integrity": "#7b3294"}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BilstmRefError("plots need matplotlib: pip install 'bilstm_ref[report]' (or pass --no-plots)") from None
    return plt


def make_plots(data: ReportData, out: Path) -> dict[str, str]:
    plt = _pyplot()
    written = {}
    for name, fn in (("heatmap", _heatmap), ("error_vs_length", _error_vs_length), ("status_by_flag", _status)):
        fig = fn(plt, data)
        if fig is None:
            continue
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written[name] = str(path)
    return written


def _heatmap(plt: Any, data: ReportData) -> Any:
    outputs, rows = data.flag_table(metric="tol_used")
    if not rows or not outputs:
        return None
    grid = np.full((len(rows), len(outputs)), np.nan)
    for i, (_, _, worst, _) in enumerate(rows):
        for j, name in enumerate(outputs):
            v = worst[name]
            if v is not None:
                grid[i, j] = math.log10(max(v, 1e-12))
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(outputs), 0.22 * len(rows) + 1.2))
    im = ax.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest", vmin=-8, vmax=0.5)
    ax.set_xticks(range(len(outputs)), outputs, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [f"{f}={v}" for f, v, _, _ in rows], fontsize=7)
    ax.set_title("share of the tolerance used (worst case; 0 = at the limit)\nby flag value and output")
    fig.colorbar(im, ax=ax, label="log10 (max |diff| / allowed |diff|)")
    return fig


def _error_vs_length(plt: Any, data: ReportData) -> Any:
    points: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for r in data.records:
        t = r["flags"].get("time")
        if not isinstance(t, int):
            continue
        for o in r["outputs"]:
            if o["max_abs"] is not None:
                points[o["name"].rsplit("/", 1)[-1]].append((t, max(o["max_abs"], 1e-17)))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    rng = np.random.default_rng(0)
    for name, pts in sorted(points.items()):
        t, e = np.array(pts).T
        ax.scatter(t * np.exp(rng.normal(0, 0.04, len(t))), e, s=8, alpha=0.6, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (jittered)")
    ax.set_ylabel("max |expected - actual|")
    ax.set_title("error against sequence length")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _status(plt: Any, data: ReportData) -> Any:
    _, rows = data.flag_table()
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.22 * len(rows) + 1.2))
    left = np.zeros(len(rows))
    for status in reversed(STATUSES):
        vals = np.array([counts.get(status, 0) for _, _, _, counts in rows], dtype=float)
        if vals.any():
            ax.barh(range(len(rows)), vals, left=left, color=_COLORS[status], label=status)
            left += vals
    ax.set_yticks(range(len(rows)), [f"{f}={v}" for f, v, _, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("cases")
    ax.set_title("case status by flag value")
    ax.legend(fontsize=7, loc="lower right")
    return fig
