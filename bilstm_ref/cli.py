"""Command line: ``bilstm-ref check`` (the main job)."""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import sys
import time
from typing import Any, Iterable, Optional, Sequence

from . import __version__
from .errors import BilstmRefError

__all__ = ["main"]

_CHUNK = 24  # cases per work unit: large enough to reuse built Keras layers, small for balance


def _worker_init(backend: str) -> None:
    # One BLAS/TF thread per worker: two-thread pools collapse when workers share 2 cores.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    global _ORACLE
    from .oracle import KerasOracle

    _ORACLE = KerasOracle(backend)


_ORACLE: Any = None


def _run_chunk(args: tuple[list[str], Optional[str]]) -> list[Any]:
    from . import matrix
    from .runner import ERROR, CaseResult, judge

    ids, dtype = args
    out = []
    for cid in ids:
        case = matrix.by_id()[cid]
        try:
            out.append(judge(case, _ORACLE.run(case), _ORACLE.backend, dtype=dtype))
        except Exception as exc:  # a crash in one case is reported, not fatal to the run
            out.append(CaseResult(case, ERROR, [], message=f"{type(exc).__name__}: {exc}"))
    return out


def _chunks(ids: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


class _Progress:
    """rich progress bar when rich is installed and stderr is a terminal; plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0, self._last = total, 0, time.perf_counter(), 0.0
        self._rich = None
        if sys.stderr.isatty():
            try:
                from rich.progress import Progress

                self._rich = Progress(transient=True)
                self._task = self._rich.add_task("matrix", total=total)
                self._rich.start()
            except ImportError:
                pass

    def advance(self, n: int, failed: int) -> None:
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, advance=n, description=f"matrix ({failed} failed)")
            return
        now = time.perf_counter()
        if now - self._last > 5 or self.done == self.total:
            self._last = now
            print(f"  {self.done}/{self.total} cases, {failed} failed, {now - self.t0:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


def _summary(results: Sequence[Any], wall: float, versions: dict[str, str], out: Any = sys.stdout) -> None:
    from .matrix import EXCLUSIONS, KERAS_WORKAROUNDS

    counts = collections.Counter(r.status for r in results)
    print(f"\nbilstm-ref {__version__} check against " + ", ".join(f"{k} {v}" for k, v in versions.items()), file=out)
    print(
        f"cases run: {len(results)}  passed: {counts['pass']}  known deviations: {counts['known-deviation']}  "
        f"failed: {counts['fail']}  errors: {counts['error']}  wall time: {wall:.1f}s",
        file=out,
    )
    worst: dict[tuple[str, str], float] = collections.defaultdict(float)
    for r in results:
        if r.status != "pass":
            continue
        for o in r.outputs:
            key = (r.case.dtype_policy, o.name.rsplit("/", 1)[-1])
            worst[key] = max(worst[key], o.max_abs)
    if worst:
        print("\nworst |Keras - reference| per output over passing cases (by dtype policy):", file=out)
        names = sorted({n for _, n in worst}, key=lambda n: ("output" not in n, n))
        policies = sorted({p for p, _ in worst})
        print(f"  {'policy':<16}" + "".join(f"{n:>12}" for n in names), file=out)
        for p in policies:
            row = "".join(f"{worst[(p, n)]:>12.2e}" if (p, n) in worst else f"{'-':>12}" for n in names)
            print(f"  {p:<16}{row}", file=out)
    devs = collections.Counter(r.deviation for r in results if r.deviation)
    if devs:
        print("\nknown Keras deviations matched (Keras equals the reference with the named quirk):", file=out)
        for name, n in devs.items():
            reason = next(r.message for r in results if r.deviation == name)
            print(f"  {name}: {n} cases. {reason}", file=out)
    print("\nKeras call workarounds used by the oracle:", file=out)
    for w in KERAS_WORKAROUNDS:
        n = sum(1 for r in results if w.applies(r.case))
        print(f"  {w.name}: {n} cases. {w.reason}", file=out)
    print("\nexcluded combinations, by rule: " + "; ".join(f"{e.name}: {e.reason}" for e in EXCLUSIONS), file=out)
    bad = [r for r in results if r.status in ("fail", "error")]
    if bad:
        print(f"\n{len(bad)} case(s) did not match Keras:", file=out)
        for r in bad[:50]:
            print(r.describe(), file=out)
        if len(bad) > 50:
            print(f"... and {len(bad) - 50} more", file=out)


def cmd_check(args: argparse.Namespace) -> int:
    from . import matrix

    t0 = time.perf_counter()
    cases = matrix.select(matrix.cases(), args.k)
    if args.list:
        for c in cases:
            print(c.id)
        return 0
    if not cases:
        print(f"error: no matrix case matches {args.k}", file=sys.stderr)
        return 2
    from .oracle import keras_available

    if not keras_available():
        print("error: Keras is not installed; install the oracle with: pip install 'bilstm_ref[keras]'", file=sys.stderr)
        return 2
    jobs = max(1, min(args.jobs or (os.cpu_count() or 1), max(1, len(cases) // _CHUNK)))
    print(f"running {len(cases)} matrix cases against Keras ({args.backend or 'default backend'}), {jobs} process(es)", file=sys.stderr)
    work = [(ids, args.dtype) for ids in _chunks([c.id for c in cases], _CHUNK)]
    progress = _Progress(len(cases))
    results: list[Any] = []
    failed = 0
    try:
        if jobs == 1:
            _worker_init(args.backend)
            chunks: Iterable[list[Any]] = map(_run_chunk, work)
            versions = _ORACLE.versions
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = ctx.Pool(jobs, initializer=_worker_init, initargs=(args.backend,))
            chunks = pool.imap(_run_chunk, work)
            versions = {}
        for chunk in chunks:
            results.extend(chunk)
            failed += sum(r.status in ("fail", "error") for r in chunk)
            progress.advance(len(chunk), failed)
        if jobs > 1:
            versions = pool.apply(_versions)
            pool.close()
    finally:
        progress.close()
    _summary(results, time.perf_counter() - t0, versions)
    if not results:
        print("error: no case was executed", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _print_inspect(info: dict[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    w(f"file:      {info['file']}\n")
    w(f"format:    {info['format']}\n")
    if info.get("config"):
        w(f"config:    {info['config']}\n")
    w(f"keras:     {info['keras_version'] or 'not recorded'}   backend: {info['backend'] or 'not recorded'}\n")
    w(f"semantics: {info['semantics']} ({info['semantics_reason']})\n")
    if info["layers"]:
        w("layers:\n")
        width = max(len(r["name"]) for r in info["layers"])
        cwidth = max(len(r["class_name"]) for r in info["layers"])
        for row in info["layers"]:
            mark = "ok " if row["supported"] else "-- "
            w(f"  {mark}{row['name']:<{width}}  {row['class_name']:<{cwidth}}  {row['reason']}\n")
            if "config" in row:
                cfg = row["config"]
                extra = {k: cfg[k] for k in ("merge_mode",) if k in cfg}
                if extra:
                    w(f"        {extra}\n")
                for d in row.get("directions", []):
                    w(f"        {d}\n")
                for wt in row.get("weights", []):
                    w(f"        {wt['path']}  {tuple(wt['shape'])}  {wt['dtype']}\n")
    for warning in info["warnings"]:
        w(f"warning: {warning}\n")


def cmd_inspect(args: argparse.Namespace) -> int:
    from .loaders import inspect_file

    info = inspect_file(args.file, config=args.config)
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        _print_inspect(info)
    return 0


def _versions() -> dict[str, str]:
    """Versions as a worker process sees them."""
    return _ORACLE.versions


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bilstm-ref", description="Keras LSTM / Bidirectional(LSTM) reference verifier")
    p.add_argument("--version", action="version", version=f"bilstm-ref {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="run the conformance matrix against the installed Keras")
    c.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                   help="Keras backend (sets KERAS_BACKEND); default: Keras's configured backend")
    c.add_argument("-k", action="append", metavar="PATTERN",
                   help="only cases whose id contains PATTERN (repeatable; ~PATTERN excludes)")
    c.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: CPU count)")
    c.add_argument("--dtype", choices=("float64", "float32"), default=None, help="reference compute dtype (default float64)")
    c.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    _add_inspect(sub)
    c.set_defaults(func=cmd_check)
    return p


def _add_inspect(sub: Any) -> None:
    i = sub.add_parser("inspect", help="what a model file holds: layers, configs, weight shapes, Keras version")
    i.add_argument("file", help="a .keras archive, a .weights.h5 or a legacy .h5 file")
    i.add_argument("--config", default=None, help="architecture for weights-only files (model JSON or .keras)")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.set_defaults(func=cmd_inspect)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BilstmRefError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
