"""``report.md``: summary, worst errors, the flag x output table, failing cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import FAILING, ReportData, fmt


def render_markdown(data: ReportData, images: dict[str, str]) -> str:
    m, c = data.meta, data.counts()
    lines = [
        "# bilstm_ref conformance report",
        "",
        f"- implementation: `{m['implementation']}`",
        f"- source: {m['source']}; backend: {m['backend'] or '-'}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "backend"),
        f"- bilstm_ref {m['bilstm_ref']}, Python {m['python']}, numpy {m['numpy']}, {m['platform']}",
        f"- generated {m['generated']} in {m['wall_seconds']:.1f} s; tolerance: {m['tolerance']}",
        "",
        "## Counts",
        "",
        "| total | passed | known deviations | expected failures | unexpected passes | failed | errors | integrity "
        "| coverage |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {c['total']} | {c['pass']} | {c['known-deviation']} | {c['xfail']} | {c['xpass']} | {c['fail']} | "
        f"{c['error']} | {c['integrity']} | {data.coverage():.1%} |",
        "",
        f"**Verdict: {'FAIL' if data.failed else 'PASS'}**",
        "",
    ]
    worst = data.worst()
    if worst:
        outputs = sorted({o for _, o in worst}, key=lambda n: (not n.startswith("output"), n))
        policies = sorted({p for p, _ in worst})
        lines += ["## Worst |expected - actual| over matching cases", "",
                  "| dtype policy | " + " | ".join(outputs) + " |", "|---" * (len(outputs) + 1) + "|"]
        for p in policies:
            lines.append(f"| {p} | " + " | ".join(fmt(worst.get((p, o))) for o in outputs) + " |")
        lines.append("")
    outputs, rows = data.flag_table()
    if rows:
        lines += ["## Flag x output (worst max |diff|; cases by status)", "",
                  "| flag | value | " + " | ".join(outputs) + " | cases |",
                  "|---|---" + "|---" * len(outputs) + "|---|"]
        for flag, value, w, counts in rows:
            status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"| {flag} | {value} | " + " | ".join(fmt(w[o]) for o in outputs) + f" | {status} |")
        lines.append("")
    bad = [r for r in data.records if r["status"] in FAILING]
    if bad:
        lines += [f"## Failing cases ({len(bad)})", ""]
        for r in bad[:200]:
            lines.append(f"- `{r['id']}`: {r['status']}" + (f" ({r['message']})" if r["message"] else ""))
            if r.get("diagnosis"):
                lines.append(f"  - diagnosis: {r['diagnosis']}")
            for o in r["outputs"]:
                if not o["ok"]:
                    lines.append(f"  - {_output_line(o)}")
        lines.append("")
    devs: dict[str, Any] = {}
    for r in data.records:
        if r["status"] == "known-deviation":
            devs.setdefault(r["deviation"], [r["message"], 0])[1] += 1
    if devs:
        lines += ["## Known Keras deviations", ""]
        lines += [f"- {name}: {n} cases. {reason}" for name, (reason, n) in sorted(devs.items())]
        lines.append("")
    xf = [r for r in data.records if r["status"] in ("xfail", "xpass")]
    if xf:
        lines += [f"## Expected failures ({len(xf)})", ""]
        lines += [f"- `{r['id']}`: {r['status']}: {r['message']}" for r in xf[:200]]
        lines.append("")
    if images:
        lines += ["## Plots", ""]
        lines += [f"![{k}]({Path(v).name})" for k, v in images.items()]
        lines.append("")
    return "\n".join(lines)


def _output_line(o: dict[str, Any]) -> str:
    if o.get("note"):
        return f"{o['name']}: {o['note']}"
    where = "" if o["max_abs_index"] is None else f" at {tuple(o['max_abs_index'])}"
    return (f"{o['name']}: max|diff| {fmt(o['max_abs'])}{where}, max rel {fmt(o['max_rel'])}, "
            f"max {fmt(o['max_ulp'])} ULP, {o['mismatched']:.1%} off, {o['nan_mismatch']} NaN mismatches "
            f"(tolerance {o['tolerance']})")
