"""``report.html``: one self-contained page (inline CSS, plots as data URIs), failing cases first."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from .data import FAILING, ReportData, fmt

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{margin-bottom:.2em} table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right} th{background:#f3f3f3}
td.l,th.l{text-align:left} .fail,.error,.integrity{background:#fde2e1} .pass{background:#e6f4e0}
.known-deviation{background:#eef7d9} .xfail{background:#eeeeee} .xpass{background:#fff6d6}
.verdict{font-size:1.4em;font-weight:bold;padding:.3em .6em;display:inline-block;border-radius:4px}
.verdict.PASS{background:#4c9a2a;color:white} .verdict.FAIL{background:#d62728;color:white}
details{margin:.3em 0} summary{cursor:pointer} code{font-size:12px} img{max-width:100%;border:1px solid #ddd}
.meta td{text-align:left}
"""


def _img(path: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def render_html(data: ReportData, images: dict[str, str]) -> str:
    m, c = data.meta, data.counts()
    verdict = "FAIL" if data.failed else "PASS"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>bilstm_ref report: {verdict}"
             f"</title><style>{_CSS}</style></head><body>",
             "<h1>bilstm_ref conformance report</h1>",
             f"<p><span class='verdict {verdict}' id='verdict'>{verdict}</span></p>",
             "<table class='meta'>"]
    for key, value in (("implementation", m["implementation"]), ("source", m["source"]),
                       ("backend", m["backend"]), ("versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "backend")),
                       ("bilstm_ref", m["bilstm_ref"]), ("platform", f"Python {m['python']}, numpy {m['numpy']}, "
                                                                    f"{m['platform']}"),
                       ("tolerance", m["tolerance"]), ("generated", f"{m['generated']} in {m['wall_seconds']:.1f} s")):
        parts.append(f"<tr><th class='l'>{escape(key)}</th><td>{escape(str(value))}</td></tr>")
    parts.append("</table><h2>Counts</h2><table id='counts'><tr>")
    heads = ("total", "pass", "known-deviation", "xfail", "xpass", "fail", "error", "integrity")
    parts += [f"<th>{h}</th>" for h in heads] + ["<th>coverage</th></tr><tr>"]
    parts += [f"<td class='{h}' data-count='{h}'>{c[h]}</td>" for h in heads]
    parts.append(f"<td>{data.coverage():.1%}</td></tr></table>")

    bad = [r for r in data.records if r["status"] in FAILING]
    parts.append(f"<h2>Failing cases ({len(bad)})</h2>")
    if not bad:
        parts.append("<p>None.</p>")
    for r in bad:
        parts.append(f"<details open class='{r['status']}'><summary><code>{escape(r['id'])}</code>: "
                     f"{escape(r['status'])} {escape(r['message'])}</summary>")
        if r.get("diagnosis"):
            parts.append(f"<p>diagnosis: {escape(r['diagnosis'])}</p>")
        parts.append(_outputs_table(r["outputs"]) + "</details>")

    worst = data.worst()
    if worst:
        outputs = sorted({o for _, o in worst}, key=lambda n: (not n.startswith("output"), n))
        parts.append("<h2>Worst |expected - actual| over matching cases</h2><table><tr><th class='l'>dtype policy</th>"
                     + "".join(f"<th>{escape(o)}</th>" for o in outputs) + "</tr>")
        for p in sorted({p for p, _ in worst}):
            parts.append(f"<tr><td class='l'>{escape(p)}</td>"
                         + "".join(f"<td>{fmt(worst.get((p, o)))}</td>" for o in outputs) + "</tr>")
        parts.append("</table>")
    for key in ("heatmap", "error_vs_length", "status_by_flag"):
        if key in images:
            parts.append(f"<h2>{escape(key.replace('_', ' '))}</h2>{_img(images[key])}")
    outputs, rows = data.flag_table()
    if rows:
        parts.append("<h2>Flag x output</h2><table><tr><th class='l'>flag</th><th class='l'>value</th>"
                     + "".join(f"<th>{escape(o)}</th>" for o in outputs) + "<th class='l'>cases</th></tr>")
        for flag, value, w, counts in rows:
            status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            cls = "fail" if any(counts.get(s) for s in FAILING) else ""
            parts.append(f"<tr class='{cls}'><td class='l'>{escape(flag)}</td><td class='l'>{escape(value)}</td>"
                         + "".join(f"<td>{fmt(w[o])}</td>" for o in outputs)
                         + f"<td class='l'>{escape(status)}</td></tr>")
        parts.append("</table>")
    others = [r for r in data.records if r["status"] not in FAILING]
    parts.append(f"<h2>All other cases ({len(others)})</h2><table><tr><th class='l'>case</th><th class='l'>status"
                 "</th><th>worst max |diff|</th><th class='l'>note</th></tr>")
    for r in others:
        errs = [o["max_abs"] for o in r["outputs"] if o["max_abs"] is not None]
        parts.append(f"<tr class='{r['status']}'><td class='l'><code>{escape(r['id'])}</code></td>"
                     f"<td class='l'>{escape(r['status'])}</td><td>{fmt(max(errs) if errs else None)}</td>"
                     f"<td class='l'>{escape((r['deviation'] or '') + ' ' + r['message'])}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _outputs_table(outputs: list[dict[str, Any]]) -> str:
    rows = ["<table><tr><th class='l'>output</th><th>ok</th><th>max |diff|</th><th class='l'>at (batch, time, unit)"
            "</th><th>max rel</th><th>max ULP</th><th>off</th><th>NaN mismatches</th><th class='l'>tolerance</th></tr>"]
    for o in outputs:
        at = "" if o["max_abs_index"] is None else str(tuple(o["max_abs_index"]))
        rows.append(f"<tr class='{'pass' if o['ok'] else 'fail'}'><td class='l'>{escape(o['name'])}</td>"
                    f"<td>{'yes' if o['ok'] else 'NO'}</td><td>{fmt(o['max_abs'])}</td><td class='l'>{escape(at)}</td>"
                    f"<td>{fmt(o['max_rel'])}</td><td>{fmt(o['max_ulp'])}</td><td>{o['mismatched']:.1%}</td>"
                    f"<td>{o['nan_mismatch']}</td><td class='l'>{escape(o['note'] or o['tolerance'])}</td></tr>")
    rows.append("</table>")
    return "".join(rows)
