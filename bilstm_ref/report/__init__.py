"""Conformance reports: one :class:`ReportData` (records + counts + provenance) written as
``report.json`` (schema-versioned, every case), ``report.md``, ``report.html`` (self-contained,
plots inlined), ``junit.xml`` (one test case per matrix case) and PNG plots.

Every writer reads the same ``ReportData``, so the counts agree across formats by construction
(and a test checks it). matplotlib is needed for plots only (``pip install 'bilstm_ref[report]'``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._atomic import write_text_atomic as _atomic_text
from ..errors import BilstmRefError
from .data import FAILING as FAILING
from .data import STATUSES as STATUSES
from .data import TABLE_FLAGS as TABLE_FLAGS
from .data import ReportData as ReportData
from .data import fmt as fmt

__all__ = ["ReportData", "write_json", "write_all", "draw_plots", "STATUSES"]


def write_json(path: str, data: ReportData) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(Path(path), json.dumps(data.as_json(), indent=1, allow_nan=False, default=str) + "\n")


def draw_plots(wanted: bool, draw: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(images, written) of ``draw()`` ({name: png path}) when plots are ``wanted``; a plot that cannot
    be drawn is noted as ``"skipped:plots"``: a finished run is never thrown away for want of a plot."""
    if not wanted:
        return {}, {}
    try:
        images = draw()
    except BilstmRefError as e:
        return {}, {"skipped:plots": str(e)}
    return images, {f"plot:{k}": v for k, v in images.items()}


def _make_plots(data: ReportData, out: Path) -> dict[str, str]:
    from .plots import make_plots

    return make_plots(data, out)


def write_all(out_dir: str, data: ReportData, plots: bool = True) -> dict[str, str]:
    """Write every format into ``out_dir``; returns {kind: path}."""
    from .html import render_html
    from .junit import render_junit
    from .markdown import render_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, written = draw_plots(plots, lambda: _make_plots(data, out))
    write_json(str(out / "report.json"), data)
    written["json"] = str(out / "report.json")
    _atomic_text(out / "report.md", render_markdown(data, images))
    written["md"] = str(out / "report.md")
    _atomic_text(out / "report.html", render_html(data, images))
    written["html"] = str(out / "report.html")
    _atomic_text(out / "junit.xml", render_junit(data))
    written["junit"] = str(out / "junit.xml")
    return written
