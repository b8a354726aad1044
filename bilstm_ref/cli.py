"""Command line: ``bilstm-ref check`` (the main job)."""

from __future__ import annotations

import argparse
import collections
import contextlib
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


def _summary(results: Sequence[Any], wall: float, versions: dict[str, str], out: Any = None) -> None:
    out = out or sys.stdout
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


def _print_inspect(info: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
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
    _add_fixtures(sub)
    c.set_defaults(func=cmd_check)
    return p


# --- fixtures -----------------------------------------------------------------------------------
def _record_chunk(ids: list[str]) -> list[tuple[str, Any, Optional[str], str]]:
    """Worker: Keras's answers for matrix cases, and whether the reference matches (or a known deviation)."""
    from . import matrix
    from .runner import judge

    out = []
    for cid in ids:
        case = matrix.by_id()[cid]
        outputs = _ORACLE.run(case)
        verdict = judge(case, outputs, _ORACLE.backend)
        out.append((cid, outputs, verdict.deviation, verdict.status))
    return out


def _generate_matrix(args: argparse.Namespace, out_dir: Any) -> tuple[list[Any], list[str]]:
    from . import matrix
    from .fixtures import write_fixture
    from .oracle import keras_available
    from .record import fixture_for_case

    pool_cases = list(matrix.fixture_suite()) if args.suite == "committed" else matrix.cases()
    cases = matrix.select(pool_cases, args.k)
    if not cases:
        raise BilstmRefError(f"no matrix case matches {args.k}")
    if not keras_available():
        raise BilstmRefError("recording fixtures needs Keras: pip install 'bilstm_ref[keras]'")
    existing = [c for c in cases if (out_dir / f"{c.id}.json").exists()]
    todo = cases if args.force else [c for c in cases if c not in existing]
    skipped = [] if args.force else [c.id for c in existing]
    statuses: list[Any] = []
    if not todo:
        return statuses, skipped
    jobs = max(1, min(args.jobs or (os.cpu_count() or 1), max(1, len(todo) // _CHUNK)))
    print(f"recording {len(todo)} matrix cases from Keras into {str(out_dir)!r}, {jobs} process(es)", file=sys.stderr)
    deviations = {d.name: d for d in matrix.KNOWN_DEVIATIONS}
    progress = _Progress(len(todo))
    bad = 0
    try:
        if jobs == 1:
            _worker_init(args.backend)
            chunks: Iterable[list[Any]] = map(_record_chunk, _chunks([c.id for c in todo], _CHUNK))
            versions = dict(_ORACLE.versions)
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = ctx.Pool(jobs, initializer=_worker_init, initargs=(args.backend,))
            versions = pool.apply(_oracle_versions)
            chunks = pool.imap(_record_chunk, _chunks([c.id for c in todo], _CHUNK))
        for chunk in chunks:
            for cid, outputs, dev, status in chunk:
                case = matrix.by_id()[cid]
                fixture = fixture_for_case(case, outputs, versions, deviations.get(dev) if dev else None)
                statuses.append((cid, write_fixture(out_dir, fixture, force=args.force), status))
                bad += status not in ("pass", "known-deviation")
            progress.advance(len(chunk), bad)
        if jobs > 1:
            pool.close()
    finally:
        progress.close()
    return statuses, skipped


def _oracle_versions() -> dict[str, str]:
    return dict(_ORACLE.versions)


def _generate_model(args: argparse.Namespace, out_dir: Any) -> tuple[list[Any], list[str]]:
    from .fixtures import write_fixture
    from .loaders import load_spec
    from .record import model_fixtures

    spec = load_spec(args.model, layer=args.layer, config=args.config)
    fixtures = model_fixtures(spec, args.model, n_cases=args.cases, seed=args.seed, batch=args.batch,
                              time=args.time, masks=args.masks, states=args.states)
    statuses, skipped = [], []
    for f in fixtures:
        if (out_dir / f"{f.id}.json").exists() and not args.force:
            skipped.append(f.id)
            continue
        statuses.append((f.id, write_fixture(out_dir, f, force=args.force), "recorded"))
    return statuses, skipped


def cmd_fixtures_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise BilstmRefError(f"--out {args.out!r} exists and is not a directory")
    if args.model and os.path.exists(args.model) and out_dir.exists() and any(
            os.path.samefile(args.model, p) for p in out_dir.iterdir() if p.is_file()):
        raise BilstmRefError(f"--out {args.out!r} holds the input model {args.model!r}; choose another directory")
    try:
        return _generate(args, out_dir)
    except OSError as e:  # unwritable directory, disk full, ...: reported, never half-published
        raise BilstmRefError(f"cannot write fixtures into {args.out!r}: {e}") from None


def _generate(args: argparse.Namespace, out_dir: Any) -> int:
    from .fixtures import clean_stale_temps, directory_lock

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with directory_lock(out_dir):
        stale = clean_stale_temps(out_dir)
        if stale:
            print(f"removed {len(stale)} stale temp file(s) of an interrupted run", file=sys.stderr)
        if args.model:
            statuses, skipped = _generate_model(args, out_dir)
        else:
            statuses, skipped = _generate_matrix(args, out_dir)
    counts = collections.Counter(s for _, s, _ in statuses)
    print(f"fixtures in {str(out_dir)!r}: {counts['written']} written, {counts['replaced']} replaced, "
          f"{counts['unchanged']} unchanged, {len(skipped)} existing kept ({time.perf_counter() - t0:.1f}s)")
    off = [(cid, st) for cid, _, st in statuses if st not in ("pass", "known-deviation", "recorded")]
    for cid, st in off:
        print(f"warning: {cid}: the reference does not reproduce Keras here ({st}); recorded anyway", file=sys.stderr)
    if skipped:
        print(f"error: {len(skipped)} fixture(s) exist already (first: {skipped[0]}); nothing was overwritten. "
              "Pass --force to rewrite them.", file=sys.stderr)
        return 1
    return 0


def _verify_summary(results: list[Any], warnings: list[str], wall: float, impl: str, out: Any = None) -> None:
    out = out or sys.stdout
    counts = collections.Counter(r.status for r in results)
    print(f"\nbilstm-ref {__version__} fixtures verify: {impl}", file=out)
    print(f"fixtures checked: {len(results)}  passed: {counts['pass']}  known deviations: {counts['known-deviation']}  "
          f"failed: {counts['fail']}  errors: {counts['error']}  integrity failures: {counts['integrity']}  "
          f"wall time: {wall:.2f}s", file=out)
    worst: dict[str, float] = collections.defaultdict(float)
    for r in results:
        if r.status == "pass":
            for o in r.outputs:
                name = o.name.rsplit("/", 1)[-1]
                worst[name] = max(worst[name], o.max_abs)
    if worst:
        print("worst |fixture - implementation| over passing fixtures: "
              + ", ".join(f"{k} {v:.2e}" for k, v in sorted(worst.items())), file=out)
    for w in warnings:
        print(f"warning: {w}", file=out)
    bad = [r for r in results if r.status in ("fail", "error", "integrity")]
    for r in bad[:50]:
        print(r.describe() + (f"\n  file: {r.file}" if r.file else ""), file=out)
    if len(bad) > 50:
        print(f"... and {len(bad) - 50} more", file=out)


def cmd_fixtures_verify(args: argparse.Namespace) -> int:
    from .fixtures import FixtureResult, read_fixture, scan, verify_fixture
    from .spec import resolve_factory

    t0 = time.perf_counter()
    factory = resolve_factory(args.impl) if args.impl else None
    found = scan(args.dir)
    manifests = [p for p in found.manifests if _selected(p.name[:-5], args.k)]
    problems = [p for p in found.problems if _selected(p.id, args.k)]
    results: list[Any] = list(problems)
    for path in manifests:
        try:
            fixture = read_fixture(path)
        except BilstmRefError as e:
            results.append(FixtureResult(path.name[:-5], "integrity", [], str(path), f"{type(e).__name__}: {e}"))
            continue
        results.append(verify_fixture(fixture, factory=factory, dtype=args.dtype))
    if not results:
        print(f"error: no fixtures found in {args.dir!r}" + (f" matching {args.k}" if args.k else ""), file=sys.stderr)
        return 2
    _verify_summary(results, found.warnings, time.perf_counter() - t0, args.impl or "the reference")
    return 1 if any(r.status in ("fail", "error", "integrity") for r in results) else 0


def _selected(fid: str, patterns: Optional[Sequence[str]]) -> bool:
    if not patterns:
        return True
    include = [p for p in patterns if not p.startswith("~")]
    exclude = [p[1:] for p in patterns if p.startswith("~")]
    return (not include or any(p in fid for p in include)) and not any(p in fid for p in exclude)


def cmd_fixtures_diff(args: argparse.Namespace) -> int:
    from .fixtures import diff_fixtures

    drifts, notes = diff_fixtures(args.old, args.new)
    for note in notes:
        print(f"note: {note}")
    if not drifts:
        print(f"no recorded answer differs between {args.old!r} and {args.new!r}")
        return 0
    beyond = [d for d in drifts if d.note == "beyond tolerance"]
    print(f"{len(drifts)} fixture(s) recorded different answers ({len(beyond)} beyond their tolerance):")
    for d in drifts:
        print(f"  {d.id} ({d.note})")
        for o in d.outputs:
            where = "" if o.max_abs_index is None else f" at {o.max_abs_index}"
            print(f"    {o.name}: max|new - old| = {o.max_abs:.3g}{where}, {o.mismatched:.0%} of elements changed"
                  + (f", {o.nan_mismatch} NaN changes" if o.nan_mismatch else ""))
    return 1 if beyond else 0


def _add_fixtures(sub: Any) -> None:
    f = sub.add_parser("fixtures", help="record Keras's answers as fixtures; verify them without Keras")
    fsub = f.add_subparsers(dest="fixtures_command", required=True)
    g = fsub.add_parser("generate", help="record fixtures from live Keras (the matrix, or --model FILE --layer NAME)")
    g.add_argument("--out", required=True, help="fixture directory (created if missing)")
    g.add_argument("--force", action="store_true", help="rewrite existing fixtures")
    g.add_argument("-k", action="append", metavar="PATTERN", help="matrix cases whose id contains PATTERN (~ excludes)")
    g.add_argument("--suite", choices=("matrix", "committed"), default="matrix",
                   help="matrix: every case (default); committed: the subset kept in the repository's fixtures/")
    g.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None)
    g.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: CPU count)")
    g.add_argument("--model", default=None, help="record a layer of this model file instead of the matrix")
    g.add_argument("--layer", default=None, help="the layer's name in --model")
    g.add_argument("--config", default=None, help="architecture for a weights-only --model")
    g.add_argument("--cases", type=_bounded(1, 10_000), default=4, help="fixtures per model layer (default 4)")
    g.add_argument("--seed", type=_bounded(0, 2**32 - 1), default=0)
    g.add_argument("--batch", type=_bounded(1, 4096), default=3)
    g.add_argument("--time", type=_bounded(1, 100_000), default=8)
    g.add_argument("--masks", action="store_true", help="masked inputs (right padding and holes)")
    g.add_argument("--states", action="store_true", help="random initial states")
    g.set_defaults(func=cmd_fixtures_generate)
    v = fsub.add_parser("verify", help="check an implementation against recorded fixtures (numpy + h5py only)")
    v.add_argument("dir", help="fixture directory")
    v.add_argument("--impl", default=None, metavar="package.module:factory",
                   help="implementation under test (default: the reference)")
    v.add_argument("-k", action="append", metavar="PATTERN", help="fixtures whose id contains PATTERN (~ excludes)")
    v.add_argument("--dtype", choices=("float64", "float32"), default=None, help="reference compute dtype")
    v.set_defaults(func=cmd_fixtures_verify)
    d = fsub.add_parser("diff", help="how recorded answers changed between two fixture directories")
    d.add_argument("old")
    d.add_argument("new")
    d.set_defaults(func=cmd_fixtures_diff)


def _bounded(lo: int, hi: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {value}")
        return value

    return parse


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
    except KeyboardInterrupt:  # fixtures already published stay whole; temp files are removed or reported
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        return 0
