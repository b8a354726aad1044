"""Reports of a ``verify`` run (a user's model on the user's data): the terminal summary,
``verify.md``, a self-contained ``verify.html`` and an error-against-time-step plot per layer.

Everything renders from the run's JSON record (``VerifyResult.as_dict()``, what ``verify --json``
writes), so ``bilstm-ref report --verify run.json --out DIR`` renders a run made elsewhere.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any, Optional

from ..errors import BilstmRefError
from ..loaders._io import open_local_file, parse_json, read_bounded

__all__ = ["render_text", "render_markdown", "render_html", "write_verify_report", "read_verify_json"]

_STATUS_ORDER = ("fail", "error", "unsupported", "pass", "not-verified")


def _e(x: Optional[float]) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2e}"


def _where(o: dict[str, Any]) -> str:
    w = o.get("where") or {}
    return ", ".join(f"{k} {v}" for k, v in w.items()) or "-"


def _worst(outputs: Optional[list[dict[str, Any]]]) -> Optional[dict[str, Any]]:
    if not outputs:
        return None
    return max(outputs, key=lambda o: (o.get("tol_used") is None, o.get("tol_used") or 0.0))


def _worst_cells(v: dict[str, Any]) -> list[str]:
    """The worst output of a layer, isolated and chained: ``"output 2.9e-07 (0.019 tol)"`` or ``"-"``."""
    cells = []
    for mode in ("isolated", "chained"):
        o = _worst(v.get(mode))
        cells.append("-" if o is None else f"{o['name']} {_e(o['max_abs'])} ({(o['tol_used'] or 0):.2g} tol)")
    return cells


def _header(d: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in d["versions"].items())
    inputs = d["inputs"]
    sha = f", sha256 {inputs['sha256'][:16]}..." if inputs.get("sha256") else ""
    return [f"model: {d['model']} ({d['format']}, {d['semantics']} semantics)",
            f"against: {versions}",
            f"implementation: {d['impl']}",
            f"inputs: {inputs['source']}{sha}; batch size {d['batch_size']}",
            f"time: {d['wall_s']:.1f} s" + (" (" + ", ".join(f"{k} {v:.1f} s" for k, v in d["timings_s"].items()) + ")"
                                           if d.get("timings_s") else "")]


def render_text(d: dict[str, Any]) -> str:
    """The terminal summary: one row per layer, then every output of every verified layer."""
    lines = [f"bilstm-ref {d['bilstm_ref']} verify"] + _header(d) + [""]
    layers = d["layers"]
    w = max([len(v["path"]) for v in layers] + [5])
    cw = max([len(v["class_name"]) for v in layers] + [5])
    lines.append(f"{'layer':<{w}}  {'class':<{cw}}  {'status':<12}  {'isolated worst':<28}  {'chained worst':<28}  mask")
    for v in layers:
        cells = _worst_cells(v)
        lines.append(f"{v['path']:<{w}}  {v['class_name']:<{cw}}  {v['status']:<12}  {cells[0]:<28}  {cells[1]:<28}  "
                     f"{v.get('mask_source') or '-'}")
    for v in layers:
        if v["status"] == "not-verified":
            continue
        head = f"\n{v['path']}: {v['status']}"
        if v.get("reason"):
            head += f" ({v['reason']})"
        lines.append(head)
        if v.get("samples_masked"):
            lines.append(f"  {v['samples_masked']} sample(s) arrive with padding (the mask Keras passes)")
        if v.get("initial_states"):
            lines.append("  initial states: wired in the model; both sides are given the states Keras passed")
        if v.get("upstream"):
            via = f" through {', '.join(v['via'])}" if v.get("via") else ""
            lines.append(f"  chained: fed its own output of {v['upstream']}{via}")
        for mode in ("isolated", "chained"):
            for o in v.get(mode) or []:
                lines.append(f"  {mode:<8} {_describe(o)}")
        if any(not o["ok"] for o in v.get("chained") or []) and v["status"] == "pass":
            lines.append("  note: the chained error exceeds the tolerance while every isolated output is within it: "
                         "differences grow through the stack (the layers amplify them), not a fault of this layer")
    skipped = [v for v in layers if v["status"] == "not-verified"]
    if skipped:
        lines.append("\nnot verified:")
        lines += [f"  {v['path']} ({v['class_name']}): {v['reason']}" for v in skipped]
    n = [v for v in layers if v["status"] != "not-verified"]
    passed = sum(v["status"] == "pass" for v in n)
    lines.append(f"\n{passed} of {len(n)} layer(s) pass" + ("" if d["ok"] else ": FAIL"))
    return "\n".join(lines)


def render_converted_text(d: dict[str, Any]) -> str:
    """The terminal summary of ``verify --against``: one row per battery item, then the figures of each
    item that did not pass."""
    lines = [f"bilstm-ref {d['bilstm_ref']} verify --against",
             f"model:     {d['model']}", f"converted: {d['converted']} ({d['runtime']}; {d['op_form']})",
             f"layer:     {d['layer']}" + (f", judged at the converted graph's tensor {d['exposed']!r}" if d["exposed"]
                                          else " (the converted graph does not expose its output: model outputs only)"),
             ""]
    items = d["items"]
    w = max([len(i["name"]) for i in items] + [4])
    lines.append(f"{'item':<{w}}  {'status':<8}  {'shape':<10}  {'worst vs Keras':<16}  {'worst layer':<16}  self-check")
    for i in items:
        cells = []
        for key in ("outputs", "layer", "self_check"):
            worst = _worst(i[key])
            cells.append("-" if worst is None else f"{_e(worst['max_abs'])} {'ok' if worst['ok'] else 'OFF'}")
        shape = f"{i['batch']}x{i['time']}" if i["batch"] else "-"
        lines.append(f"{i['name']:<{w}}  {i['status']:<8}  {shape:<10}  {cells[0]:<16}  {cells[1]:<16}  {cells[2]}")
    for i in items:
        if i["status"] == "pass" and not i.get("reason"):
            continue
        lines.append(f"\n{i['name']}: {i['status']}" + (f" ({i['reason']})" if i.get("reason") else ""))
        lines.append(f"  {i['what']}")
        for key in ("outputs", "layer", "self_check"):
            lines += [f"  {_describe(o)}" for o in i[key] if not o["ok"]]
    judged = [i for i in items if i["status"] != "skipped"]
    passed = sum(i["status"] == "pass" for i in judged)
    lines.append(f"\n{passed} of {len(judged)} battery item(s) pass"
                 + (f", {len(items) - len(judged)} skipped" if len(items) > len(judged) else "")
                 + ("" if d["ok"] else ": FAIL"))
    return "\n".join(lines)


def _describe(o: dict[str, Any]) -> str:
    if o.get("note"):
        return f"{o['name']}: {o['note']}"
    return (f"{o['name']:<7} {'ok ' if o['ok'] else 'OFF'} max|diff| {_e(o['max_abs'])} at {_where(o)} "
            f"({o['worst_sample_padding']}); max rel {_e(o['max_rel'])}; mean {_e(o['mean_abs'])}; "
            f"p99 {_e(o['p99_abs'])}; {o['share_off']:.2%} off; {(o['tol_used'] or 0):.2g} of tolerance "
            f"({o['tolerance']})" + (f"; {o['nan_mismatch']} NaN mismatches" if o.get("nan_mismatch") else ""))


def render_markdown(d: dict[str, Any], images: dict[str, str]) -> str:
    verdict = "PASS" if d["ok"] else "FAIL"
    out = [f"# bilstm_ref verify: {verdict}", ""] + [f"- {line}" for line in _header(d)] + [""]
    out += ["| layer | class | status | mask | isolated worst | chained worst |", "|---|---|---|---|---|---|"]
    for v in d["layers"]:
        cells = _worst_cells(v)
        out.append(f"| {v['path']} | {v['class_name']} | {v['status']} | {v.get('mask_source') or '-'} | "
                   f"{cells[0]} | {cells[1]} |")
    for v in d["layers"]:
        if v["status"] == "not-verified":
            continue
        out += ["", f"## {v['path']} ({v['class_name']}): {v['status']}", ""]
        if v.get("reason"):
            out += [v["reason"], ""]
        out += ["| mode | output | ok | max abs | where | worst sample's padding | max rel | mean | p99 | off | "
                "tolerance used |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for mode in ("isolated", "chained"):
            for o in v.get(mode) or []:
                out.append(f"| {mode} | {o['name']} | {'yes' if o['ok'] else 'NO'} | {_e(o['max_abs'])} | {_where(o)} | "
                           f"{o['worst_sample_padding']} | {_e(o['max_rel'])} | {_e(o['mean_abs'])} | "
                           f"{_e(o['p99_abs'])} | {o['share_off']:.2%} | {(o['tol_used'] or 0):.2g} |")
        if v["path"] in images:
            out += ["", f"![error against time step]({Path(images[v['path']]).name})"]
    skipped = [v for v in d["layers"] if v["status"] == "not-verified"]
    if skipped:
        out += ["", "## Not verified", ""] + [f"- {v['path']} ({v['class_name']}): {v['reason']}" for v in skipped]
    return "\n".join(out) + "\n"


def render_html(d: dict[str, Any], images: dict[str, str]) -> str:
    from .html import _CSS, _img

    verdict = "PASS" if d["ok"] else "FAIL"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>bilstm_ref verify: {verdict}</title>"
             f"<style>{_CSS}</style></head><body><h1>bilstm_ref verify</h1>",
             f"<p><span class='verdict {verdict}' id='verdict'>{verdict}</span></p><table class='meta'>"]
    for line in _header(d):
        key, _, value = line.partition(": ")
        parts.append(f"<tr><th class='l'>{escape(key)}</th><td>{escape(value)}</td></tr>")
    parts.append("</table><table id='layers'><tr><th class='l'>layer</th><th class='l'>class</th><th>status</th>"
                 "<th class='l'>mask</th><th>isolated worst</th><th>chained worst</th></tr>")
    for v in d["layers"]:
        cells = _worst_cells(v)
        status = v["status"] if v["status"] != "unsupported" else "error"
        parts.append(f"<tr class='{escape(status)}'><td class='l'>{escape(v['path'])}</td>"
                     f"<td class='l'>{escape(v['class_name'])}</td><td data-status='{escape(v['status'])}'>"
                     f"{escape(v['status'])}</td><td class='l'>{escape(v.get('mask_source') or '-')}</td>"
                     f"<td>{escape(cells[0])}</td><td>{escape(cells[1])}</td></tr>")
    parts.append("</table>")
    for v in d["layers"]:
        if v["status"] == "not-verified":
            parts.append(f"<p><code>{escape(v['path'])}</code> ({escape(v['class_name'])}): not verified: "
                         f"{escape(v['reason'])}</p>")
            continue
        parts.append(f"<details open><summary><code>{escape(v['path'])}</code>: {escape(v['status'])} "
                     f"{escape(v.get('reason') or '')}</summary><table><tr><th>mode</th><th class='l'>output</th>"
                     "<th>ok</th><th>max abs</th><th class='l'>where</th><th class='l'>worst sample's padding</th>"
                     "<th>max rel</th><th>mean</th><th>p99</th><th>off</th><th>tolerance used</th></tr>")
        for mode in ("isolated", "chained"):
            for o in v.get(mode) or []:
                parts.append(f"<tr class='{'pass' if o['ok'] else 'fail'}'><td>{mode}</td><td class='l'>"
                             f"{escape(o['name'])}</td><td>{'yes' if o['ok'] else 'NO'}</td><td>{_e(o['max_abs'])}</td>"
                             f"<td class='l'>{escape(_where(o))}</td><td class='l'>{escape(o['worst_sample_padding'])}"
                             f"</td><td>{_e(o['max_rel'])}</td><td>{_e(o['mean_abs'])}</td><td>{_e(o['p99_abs'])}</td>"
                             f"<td>{o['share_off']:.2%}</td><td>{(o['tol_used'] or 0):.2g}</td></tr>")
        parts.append("</table>")
        if v["path"] in images:
            parts.append(_img(images[v["path"]]))
        parts.append("</details>")
    parts.append("</body></html>")
    return "".join(parts)


def _plots(d: dict[str, Any], out: Path) -> dict[str, str]:
    """One PNG per verified layer with a time axis: worst |diff| at each time step, isolated and chained."""
    from .plots import _pyplot

    plt = _pyplot()
    images = {}
    for i, v in enumerate(d["layers"]):
        series = [(mode, o) for mode in ("isolated", "chained") for o in v.get(mode) or [] if o.get("error_by_t")]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for mode, o in series:
            ys = [max(y or 0.0, 1e-18) for y in o["error_by_t"]]
            ax.semilogy(range(len(ys)), ys, label=f"{mode} {o['name']}", linestyle="-" if mode == "isolated" else "--")
        ax.set_xlabel("time step")
        ax.set_ylabel("max |diff|")
        ax.set_title(f"{v['path']}: error against time step")
        ax.legend(fontsize=8)
        path = out / f"verify_{i}_{''.join(c if c.isalnum() else '_' for c in v['path'])}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        images[v["path"]] = str(path)
    return images


def write_verify_report(out_dir: str, d: dict[str, Any], plots: bool = True) -> dict[str, str]:
    """Write ``verify.json``, ``verify.md``, ``verify.html`` and the plots into ``out_dir``.

    Plots need matplotlib; without it they are skipped with a note in the returned dict
    (``"skipped:plots"``) and everything else is still written."""
    from . import _atomic_text, draw_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, written = draw_plots(plots, lambda: _plots(d, out))
    _atomic_text(out / "verify.json", json.dumps(d, indent=1, allow_nan=False) + "\n")
    written["json"] = str(out / "verify.json")
    _atomic_text(out / "verify.md", render_markdown(d, images))
    written["md"] = str(out / "verify.md")
    _atomic_text(out / "verify.html", render_html(d, images))
    written["html"] = str(out / "verify.html")
    return written


def read_verify_json(path: str) -> dict[str, Any]:
    """A verify run's JSON record, checked enough to render."""
    with open_local_file(path) as f:
        d = parse_json(read_bounded(f, 256 * 1024**2, repr(path)), repr(path))
    if not isinstance(d, dict) or d.get("kind") != "verify" or not isinstance(d.get("layers"), list):
        raise BilstmRefError(f"{path!r}: not a verify record (expected the JSON that 'bilstm-ref verify --json' writes, "
                             "with kind 'verify' and a list of layers)")
    return d
