"""The Keras 2 -> Keras 3 migration table: for every matrix case, whether tf_keras (Keras 2) and Keras 3
give the same answer for the same weights and inputs, and where not, why.

Both oracles run in one worker process (tf_keras and Keras 3 on TensorFlow coexist). A difference
is explained when the reference under Keras 2 semantics reproduces Keras 2 and under Keras 3
semantics reproduces Keras 3: the semantics the two versions differ in is then the cause, and the
only one the reference knows is hard_sigmoid's formula. A difference the reference cannot tell
apart that way is reported as unexplained, with its figures.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

__all__ = ["CAUSES", "run_migration", "render_migration_markdown"]

#: Causes of a different answer, by name: what changed between Keras 2 and Keras 3.
CAUSES = {
    "hard_sigmoid": "hard_sigmoid's formula: Keras 2 computes clip(0.2 x + 0.5, 0, 1), Keras 3 relu6(x + 3) / 6 "
                    "(the same at 0, different slopes and saturation points: -2.5/2.5 against -3/3)",
    "policy": "the wrapper's dtype policy differs from the wrapped layer's: the merge or the wrapper's cast rounds "
              "differently (within the half-precision tolerance; a float32 wrapper concatenating half-precision "
              "directions, with no arithmetic and no cast, stays bit for bit)",
    "other": "not attributed",
}

_STATE: dict[str, Any] = {}


def _init() -> None:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    from ..conformance.oracle import KerasOracle

    _STATE.update(keras3=KerasOracle("tensorflow"), keras2=KerasOracle("tf_keras"))


def _uses_hard_sigmoid(case: Any) -> bool:
    names = {case.activation, case.recurrent_activation}
    if case.family == "bidi" and case.backward != "default":
        bw = case.lstm_kwargs(backward=True)
        names |= {bw["activation"], bw["recurrent_activation"]}
    return "hard_sigmoid" in names


def _same(case: Any, a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]], tol: Any) -> tuple[bool, bool, float]:
    """(bit for bit, within the tolerance, worst |difference|) of two runs' outputs."""
    from ..conformance.compare import compare

    bitwise, within, worst = True, True, 0.0
    for x, y in zip(a, b, strict=True):
        for name in case.output_names:
            bitwise = bitwise and np.array_equal(x[name], y[name], equal_nan=True)
            r = compare(name, x[name], y[name], tol)
            within = within and r.ok
            worst = max(worst, r.max_abs if np.isfinite(r.max_abs) else np.inf)
    return bitwise, within, worst


def _run_case(case_id: str) -> dict[str, Any]:
    """Worker: one case through Keras 2 and Keras 3, compared, and the difference explained."""
    from ..conformance import matrix
    from ..conformance.compare import tolerance_for
    from ..conformance.judge import run_impl

    case = matrix.by_id()[case_id]
    rec: dict[str, Any] = {"id": case_id, "hard_sigmoid": _uses_hard_sigmoid(case)}
    runs = {}
    for name in ("keras2", "keras3"):
        oracle = _STATE[name]
        try:
            runs[name] = oracle.run(case)
        except Exception as exc:
            known = matrix.keras_errors_for(case, oracle.backend)
            rec.update(status=f"{name} cannot run it", reason=known[0].name if known else
                       f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            return rec
    tol = tolerance_for(case.tolerance_policy, "tensorflow")
    bitwise, within, worst = _same(case, runs["keras2"], runs["keras3"], tol)
    rec.update(bitwise=bitwise, worst=worst)
    if within:
        rec["status"] = "same"
        if not bitwise:  # the same within the tolerance, yet not bit for bit: say what the case has
            rec["near_cause"] = ("hard_sigmoid" if rec["hard_sigmoid"] else
                                 "policy" if case.inner_policy or case.backward_policy else "other")
        return rec
    rec["status"] = "different"
    # Under a known TensorFlow deviation both versions compute the bug: the reference models it with the quirk.
    quirks = tuple(d.quirk for d in matrix.deviations_for(case, "tensorflow"))
    ref = {s: run_impl(case, case.reference(semantics=s, quirks=quirks)) for s in ("keras2", "keras3")}
    explained = (_same(case, ref["keras2"], runs["keras2"], tol)[1] and _same(case, ref["keras3"], runs["keras3"], tol)[1]
                 and not _same(case, ref["keras2"], ref["keras3"], tol)[1])
    if quirks:
        rec["under"] = [d.name for d in matrix.deviations_for(case, "tensorflow")]
    rec["cause"] = "hard_sigmoid" if explained and rec["hard_sigmoid"] else ("unexplained" if not explained
                                                                              else "semantics")
    return rec


def run_migration(out_dir: str, patterns: Optional[Sequence[str]] = None, jobs: int = 2,
                  progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """Every matrix case through tf_keras and Keras 3; writes ``migration.json`` and ``migration.md``."""
    from ..conformance import matrix
    from ..conformance.oracle import keras_available

    if not keras_available():
        from ..errors import KerasUnavailableError

        raise KerasUnavailableError("the migration table needs Keras 3 and tf_keras: pip install 'bilstm_ref[keras]'")

    cases = matrix.select(matrix.cases(), list(patterns or []))
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    records: list[dict[str, Any]] = []
    with ctx.Pool(max(1, min(jobs, len(cases))), initializer=_init) as pool:
        for rec in pool.imap(_run_case, [c.id for c in cases], chunksize=8):
            records.append(rec)
            if progress:
                progress(len(records), len(cases))
    board = _summary(records, time.perf_counter() - t0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "migration.json").write_text(json.dumps(board, indent=1) + "\n", encoding="utf-8")
    (out / "migration.md").write_text(render_migration_markdown(board), encoding="utf-8")
    return board


def _versions() -> dict[str, str]:
    from ..adapters.base import package_version

    return {d: package_version(d) for d in ("keras", "tf_keras", "tensorflow")}


def _summary(records: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    counts = collections.Counter(r["status"] for r in records)
    causes = collections.Counter(r.get("cause") for r in records if r["status"] == "different")
    near = collections.Counter(r["near_cause"] for r in records if r.get("near_cause"))
    return {"versions": _versions(), "wall_s": round(wall, 1), "cases": len(records),
            "counts": dict(counts), "causes": dict(causes), "near_causes": dict(near),
            "bitwise_same": sum(bool(r.get("bitwise")) for r in records if r["status"] == "same"),
            "records": records}


def render_migration_markdown(board: dict[str, Any]) -> str:
    """The migration table: what changes between Keras 2 and Keras 3, and why."""
    v = board["versions"]
    c = board["counts"]
    both = c.get("same", 0) + c.get("different", 0)
    lines = ["# Keras 2 -> Keras 3: does the same model give the same answer?", "",
             f"tf_keras {v['tf_keras']} against Keras {v['keras']} (TensorFlow {v['tensorflow']}), the same weights and "
             f"inputs, {board['cases']} matrix cases, {board['wall_s']} s.", "",
             "| | cases |", "|---|---|",
             f"| both run it | {both} |",
             f"| same answer (within the Keras 3 tolerance) | {c.get('same', 0)}, of which {board['bitwise_same']} bit for bit |",
             f"| different answer | {c.get('different', 0)} |"]
    lines += [f"| {k} | {n} |" for k, n in sorted(c.items()) if k not in ("same", "different")]
    lines += ["", "## Why the answers differ", "", "| cause | cases |", "|---|---|"]
    for cause, n in sorted(board["causes"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {CAUSES.get(cause, cause)} | {n} |")
    if board.get("near_causes"):
        lines += ["", "## The same within the tolerance, but not bit for bit", "", "| what the cases have | cases | worst |",
                  "|---|---|---|"]
        for cause, n in sorted(board["near_causes"].items(), key=lambda kv: -kv[1]):
            worst = max(r["worst"] for r in board["records"] if r.get("near_cause") == cause)
            lines.append(f"| {CAUSES.get(cause, cause)} | {n} | {worst:.2g} |")
    diff = [r for r in board["records"] if r["status"] == "different"]
    if diff:
        lines += ["", "## Every case whose answer differs", "", "| case | cause | worst difference |", "|---|---|---|"]
        lines += [f"| `{r['id']}` | {r['cause']} | {r['worst']:.2g} |" for r in sorted(diff, key=lambda r: r["id"])]
    cannot = [r for r in board["records"] if r["status"].endswith("cannot run it")]
    if cannot:
        reasons = collections.Counter((r["status"], r["reason"]) for r in cannot)
        lines += ["", "## Cases only one version runs", "", "| | reason | cases |", "|---|---|---|"]
        lines += [f"| {who} | {why} | {n} |" for (who, why), n in sorted(reasons.items())]
    lines.append("")
    return "\n".join(lines)
