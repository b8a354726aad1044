"""The multi-backend scoreboard: the matrix on every installed Keras backend, each in its own
process (Keras's backend is process-global), combined into one table of where backends agree
with the reference, where they deviate in documented ways, and where they disagree with each other.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["BACKENDS", "BACKEND_INSTALL", "run_scoreboard", "combine", "render_markdown", "from_files",
           "environment_label"]

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
#: What installs each Keras backend (torch: the CPU build the project tests with).
BACKEND_INSTALL = {"tensorflow": "pip install 'bilstm_ref[keras]'", "jax": "pip install jax",
                   "torch": "pip install torch==2.13.0"}


def installed(backend: str) -> bool:
    return importlib.util.find_spec(BACKENDS[backend]) is not None and importlib.util.find_spec("keras") is not None


def run_scoreboard(out_dir: str, backends: Sequence[str], patterns: Optional[Sequence[str]] = None,
                   jobs: Optional[str] = None, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``bilstm-ref check --backend B --json`` for each backend in a fresh process; combine."""
    out = Path(out_dir)
    runs: dict[str, Any] = {}
    for backend in backends:
        if importlib.util.find_spec("keras") is None:
            runs[backend] = {"status": "not installed", "reason": "Keras is not installed: pip install 'bilstm_ref[keras]'"}
            continue
        if not installed(backend):
            runs[backend] = {"status": "not installed",
                             "reason": f"{backend} is not installed: {BACKEND_INSTALL[backend]}"}
            continue
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"check-{backend}.json"
        path.unlink(missing_ok=True)  # never report an earlier run's results
        cmd = [sys.executable, "-m", "bilstm_ref", "check", "--backend", backend, "--json", str(path)]
        for p in patterns or ():
            cmd += ["-k", p]
        if jobs:
            cmd += ["--jobs", jobs]
        cmd += list(extra)
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        print(f"scoreboard: {backend} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        (out / f"check-{backend}.txt").write_text(done.stdout + done.stderr, encoding="utf-8")
        if not path.exists():
            runs[backend] = {"status": "crashed", "reason": (done.stderr or done.stdout)[-2000:], "wall": wall}
            continue
        runs[backend] = {"status": "ran", "exit": done.returncode, "wall": wall,
                         "report": json.loads(path.read_text(encoding="utf-8"))}
    board = combine(runs)
    if not any(r.get("status") == "ran" for r in runs.values()):
        return board  # nothing ran: no scoreboard files that would look like a result
    (out / "scoreboard.json").write_text(json.dumps(board, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "scoreboard.md").write_text(render_markdown(board), encoding="utf-8")
    return board


def environment_label(report: dict[str, Any]) -> str:
    """A run's environment in words: Keras version and backend (``tf_keras`` for Keras 2), and the device
    when the run says it ran on one."""
    v = report.get("versions", {})
    backend = v.get("backend", "?")
    engine = v.get(backend) or v.get("tensorflow") if backend in ("tensorflow", "tf_keras") else v.get(backend)
    keras = f"tf_keras {v.get('keras', '?')}" if backend == "tf_keras" else f"keras {v.get('keras', '?')}"
    label = f"{keras} / {'tensorflow' if backend == 'tf_keras' else backend} {engine or ''}".strip()
    device = v.get("device") or report.get("device")
    return f"{label} / {device}" if device else label


def from_files(paths: Sequence[str], out_dir: Optional[str] = None) -> dict[str, Any]:
    """Combine ``check --json`` results recorded in different environments (Keras versions, backends,
    machines) into one board: which cases change status, or answer, between them."""
    from ..errors import ConfigError
    from ..loaders._io import open_local_file, parse_json, read_bounded

    runs: dict[str, Any] = {}
    for path in paths:
        with open_local_file(path) as f:
            report = parse_json(read_bounded(f, 512 * 1024**2, repr(path)), repr(path))
        if not isinstance(report, dict) or not isinstance(report.get("cases"), list) or "counts" not in report:
            raise ConfigError(f"{path!r}: not a 'bilstm-ref check --json' result (no cases and counts)")
        label = environment_label(report)
        k = 2
        while label in runs:
            label = f"{environment_label(report)} #{k}"
            k += 1
        runs[label] = {"status": "ran", "wall": float(report.get("wall_seconds") or 0.0),
                       "report": report, "file": str(path)}
    board = combine(runs)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scoreboard.json").write_text(json.dumps(board, indent=1, default=str) + "\n", encoding="utf-8")
        (out / "scoreboard.md").write_text(render_markdown(board, "environments"), encoding="utf-8")
    return board


#: Two passing runs' answers differ when their worst errors against the reference differ by this
#: factor and the larger is above :data:`ANSWER_FLOOR` (errors at rounding level move freely).
ANSWER_FACTOR, ANSWER_FLOOR = 10.0, 1e-6


def combine(runs: dict[str, Any]) -> dict[str, Any]:
    """Per backend: counts, deviations by name and reason; per case: status on every backend that ran;
    the cases whose status differs between backends."""
    ran = {b: r for b, r in runs.items() if r.get("status") == "ran"}
    summary: dict[str, Any] = {}
    by_case: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for backend, run in runs.items():
        if backend not in ran:
            summary[backend] = {"status": run["status"], "reason": run.get("reason", "")}
            continue
        report = run["report"]
        devs: dict[str, Any] = {}
        worst: dict[str, float] = collections.defaultdict(float)
        for rec in report["cases"]:
            errs = [o["max_abs"] for o in rec.get("outputs", []) if o.get("max_abs") is not None]
            by_case[rec["id"]][backend] = {"status": rec["status"], "deviation": rec["deviation"],
                                           "failing": rec["failing_outputs"], "message": rec["message"],
                                           "worst": max(errs) if errs else None}
            if rec["status"] == "known-deviation":
                d = devs.setdefault(rec["deviation"], {"cases": 0, "reason": rec["message"]})
                d["cases"] += 1
            if rec["status"] == "pass":
                pol = str(rec["flags"].get("dtype_policy"))
                for o in rec["outputs"]:
                    if o["max_abs"] is not None:
                        worst[pol] = max(worst[pol], o["max_abs"])
        summary[backend] = {"status": "ran", "counts": report["counts"], "versions": report["versions"],
                            "wall": round(run["wall"], 1), "deviations": devs, "worst_by_policy": dict(worst)}
    disagreements, answers = [], []
    for cid, per in sorted(by_case.items()):
        labels = {b: _label(v) for b, v in per.items()}  # a different deviation is a disagreement too
        if len(set(labels.values())) > 1 or len(per) < len(ran):
            disagreements.append({"id": cid, **{b: _label(v) for b, v in per.items()}})
            continue
        worst = [v["worst"] for v in per.values() if v["status"] == "pass" and v["worst"] is not None]
        if len(worst) > 1 and max(worst) > ANSWER_FLOOR and max(worst) > ANSWER_FACTOR * max(min(worst), 1e-300):
            answers.append({"id": cid, **{b: f"pass, worst {v['worst']:.2g}" for b, v in per.items()}})
    return {"backends": summary, "disagreements": disagreements, "answers": answers, "cases": len(by_case)}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _label(v: dict[str, Any]) -> str:
    if v["status"] == "known-deviation":
        return f"deviation: {v['deviation']}"
    if v["status"] in ("fail", "error"):
        message = " ".join(_ANSI.sub("", v["message"]).split())[:100]
        return f"{v['status']}: {', '.join(v['failing']) or message}"
    return v["status"]


def render_markdown(board: dict[str, Any], what: str = "backends") -> str:
    title = "multi-backend scoreboard" if what == "backends" else "scoreboard across environments"
    column = "backend" if what == "backends" else "environment"
    lines = [f"# bilstm_ref {title}", "",
             f"| {column} | versions | cases | passed | known deviations | failed | errors | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for backend, s in board["backends"].items():
        if s["status"] != "ran":
            lines.append(f"| {backend} | {s['status']} ({s['reason'][:60]}) | - | - | - | - | - | - |")
            continue
        c = s["counts"]
        vers = ", ".join(f"{k} {v}" for k, v in s["versions"].items() if k != "backend")
        lines.append(f"| {backend} | {vers} | {c['total']} | {c['pass']} | {c['known-deviation']} | {c['fail']} | "
                     f"{c['error']} | {s['wall']} |")
    lines.append("")
    for backend, s in board["backends"].items():
        if s.get("deviations"):
            lines += [f"## Known deviations on {backend}", ""]
            lines += [f"- {name}: {d['cases']} cases. {d['reason']}" for name, d in sorted(s["deviations"].items())]
            lines.append("")
    ran = [b for b, s in board["backends"].items() if s["status"] == "ran"]
    dis = board["disagreements"]
    lines += [f"## Where {what} disagree ({len(dis)} of {board['cases']} cases)", ""]
    if dis:
        lines += ["| case | " + " | ".join(ran) + " |", "|---" * (len(ran) + 1) + "|"]
        lines += [f"| `{d['id']}` | " + " | ".join(d.get(b, "-") for b in ran) + " |" for d in dis[:300]]
        if len(dis) > 300:
            lines.append(f"... and {len(dis) - 300} more (scoreboard.json)")
    else:
        lines.append(f"Every case has the same status in every one of the {what} that ran.")
    answers = board.get("answers") or []
    lines += ["", f"## Same status, another answer ({len(answers)} cases)", "",
              f"Cases that pass everywhere, but whose worst error against the reference differs by more than "
              f"{ANSWER_FACTOR:g}x (and exceeds {ANSWER_FLOOR:g}) between {what}.", ""]
    if answers:
        lines += ["| case | " + " | ".join(ran) + " |", "|---" * (len(ran) + 1) + "|"]
        lines += [f"| `{d['id']}` | " + " | ".join(d.get(b, "-") for b in ran) + " |" for d in answers[:300]]
    lines.append("")
    return "\n".join(lines)
