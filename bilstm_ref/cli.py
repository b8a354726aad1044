"""Command line: ``bilstm-ref check`` (the main job)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ._version import __version__
from .errors import BilstmRefError, ConfigError

__all__ = ["main"]

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
            self._rich.update(self._task, advance=n, description=f"matrix ({failed} failed or errors)")
            return
        now = time.perf_counter()
        if now - self._last > 5 or self.done == self.total:
            self._last = now
            print(f"  {self.done}/{self.total} cases, {failed} failed or errors, {now - self.t0:.0f}s", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


def _expected_lines(results: Sequence[Any], counts: Any, out: Any) -> None:
    if counts["xfail"] or counts["xpass"]:
        n = len(results)
        ok = counts["pass"] + counts["known-deviation"] + counts["xpass"]
        print(f"expected failures: {counts['xfail']}  unexpectedly passing: {counts['xpass']}  "
              f"coverage: {ok}/{n} cases match Keras ({ok / max(n, 1):.1%})", file=out)
        reasons = collections.Counter(r.message.split(" [")[0] for r in results if r.status == "xfail")
        for reason, k in reasons.most_common(12):
            print(f"  {k:4d} x {reason}", file=out)
        for r in [r for r in results if r.status == "xpass"][:10]:
            print(f"  xpass: {getattr(r, 'id', None) or r.case.id}: {r.message}", file=out)


def _policy_of(result: Any) -> str:
    case = getattr(result, "case", None)
    if case is not None:
        return str(case.dtype_policy)
    return str((getattr(result, "flags", None) or {}).get("dtype_policy") or "float32")


def _worst_table(results: Sequence[Any], title: str, out: Any) -> None:
    """Worst max |diff| per output and dtype policy over passing results (a bfloat16 error never hides a
    float32 one)."""
    worst: dict[tuple[str, str], float] = collections.defaultdict(float)
    for r in results:
        if r.status != "pass":
            continue
        for o in r.outputs:
            key = (_policy_of(r), o.name.rsplit("/", 1)[-1])
            worst[key] = max(worst[key], o.max_abs)
    if not worst:
        return
    print(title, file=out)
    names = sorted({n for _, n in worst}, key=lambda n: ("output" not in n, n))
    policies = sorted({p for p, _ in worst})
    print(f"  {'policy':<15}" + "".join(f"{n:>9}" for n in names), file=out)
    for p in policies:
        row = "".join(f"{worst[(p, n)]:>9.1e}" if (p, n) in worst else f"{'-':>9}" for n in names)
        print(f"  {p:<15}{row}", file=out)


def _summary(results: Sequence[Any], wall: float, versions: dict[str, str], out: Any = None,
             impl: Optional[str] = None) -> None:
    out = out or sys.stdout
    from .conformance.matrix import EXCLUSIONS, KERAS_WORKAROUNDS

    counts = collections.Counter(r.status for r in results)
    print(f"\nbilstm-ref {__version__} check: {impl or 'the reference'} against "
          + ", ".join(f"{k} {v}" for k, v in versions.items()), file=out)
    print(
        f"cases run: {len(results)}  passed: {counts['pass']}  known deviations: {counts['known-deviation']}  "
        f"failed: {counts['fail']}  errors: {counts['error']}  wall time: {wall:.1f}s",
        file=out,
    )
    _expected_lines(results, counts, out)
    _worst_table(results, f"\nworst |Keras - {impl or 'reference'}| per output over passing cases (by dtype policy):",
                 out)
    devs = collections.Counter(r.deviation for r in results if r.deviation)
    if devs:
        print("\nknown Keras deviations matched (Keras equals the reference with the named quirk):", file=out)
        for name, n in devs.items():
            reason = next(r.message for r in results if r.deviation == name)
            print(_wrapped(f"{name}: {n} case(s). {reason}"), file=out)
    used = [(w, sum(1 for r in results if w.applies(r.case))) for w in KERAS_WORKAROUNDS]
    used = [(w, n) for w, n in used if n]
    if used:
        print("\nKeras call workarounds used by the oracle:", file=out)
        for w, n in used:
            print(_wrapped(f"{w.name}: {n} case(s). {w.reason}"), file=out)
    print("\n" + _wrapped(f"not in the matrix ({len(EXCLUSIONS)} rules, reasons in {DEVIATIONS_DOC}): "
                          + ", ".join(e.name for e in EXCLUSIONS), indent=""), file=out)
    bad = [r for r in results if r.status in ("fail", "error")]
    if bad:
        print(f"\n{len(bad)} case(s) did not match Keras:", file=out)
        for r in bad[:50]:
            print(r.describe(), file=out)
        if len(bad) > 50:
            print(f"... and {len(bad) - 50} more", file=out)


#: Where the known deviations, workarounds and exclusions are explained, in the repository.
DEVIATIONS_DOC = "docs/deviations.md"


def _wrapped(text: str, indent: str = "  ", width: int = 100) -> str:
    import textwrap

    return textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False, break_long_words=False)


def _options(args: argparse.Namespace) -> Any:
    from .suites.harness import RunOptions, default_jobs, load_expected_failures, tolerance_from_args

    oracle = getattr(args, "oracle", "keras")
    return RunOptions(
        backend="tf_keras" if oracle == "tf_keras" else getattr(args, "backend", None),
        impl=getattr(args, "impl", None),
        dtype=getattr(args, "dtype", None),
        tolerance=tolerance_from_args(args.atol, args.rtol, args.ulp, args.tol_output or []),
        expected_failures=load_expected_failures(getattr(args, "xfail", None)),
        jobs=default_jobs(getattr(args, "jobs", None)),
    )


def _matrix_cases(args: argparse.Namespace) -> list[Any]:
    from .conformance import matrix
    from .suites.harness import shard

    pool = list(matrix.fixture_suite()) if getattr(args, "suite", "matrix") == "committed" else matrix.cases()
    return shard(matrix.select(pool, args.k), getattr(args, "shard", None))


def _check_backend(backend: Optional[str]) -> None:
    import importlib.util

    from .suites.backends import BACKEND_INSTALL

    if backend and importlib.util.find_spec(backend) is None:
        raise BilstmRefError(f"--backend {backend}: {backend} is not installed; install it with: {BACKEND_INSTALL[backend]}")


def _run_live(args: argparse.Namespace, cases: list[Any]) -> tuple[list[Any], dict[str, str], float]:
    from .suites.harness import run_matrix
    from .conformance.oracle import keras_available

    if not keras_available():
        raise BilstmRefError("Keras is not installed; install the oracle with: pip install 'bilstm_ref[keras]'")
    _check_backend(getattr(args, "backend", None))
    options = _options(args)
    what = options.impl or "the reference"
    oracle = ("tf_keras (Keras 2)" if getattr(args, "oracle", "keras") == "tf_keras"
              else f"Keras ({args.backend or 'default backend'})")
    print(f"running {len(cases)} matrix cases: {what} against {oracle}, "
          f"{min(options.jobs, max(1, len(cases) // 24))} process(es); starting them (each imports Keras, ~10 s)",
          file=sys.stderr, flush=True)
    progress = _Progress(len(cases))
    try:
        return run_matrix(cases, options, progress.advance)
    finally:
        progress.close()


def cmd_check(args: argparse.Namespace) -> int:
    if args.oracle == "tf_keras" and args.backend not in (None, "tensorflow"):
        raise ConfigError(f"--oracle tf_keras runs on TensorFlow; --backend {args.backend} is a Keras 3 backend")
    cases = _matrix_cases(args)
    if not cases:
        print(f"error: no matrix case matches {args.k}" + (f" in shard {args.shard}" if args.shard else ""),
              file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(c.id)
        return 0
    results, versions, wall = _run_live(args, cases)
    _summary(results, wall, versions, impl=args.impl)
    if args.json:
        from .report import write_json

        write_json(args.json, _report_data(args, results, versions, wall, source="live Keras"))
    if not results:
        print("error: no case was executed", file=sys.stderr)
        return 1
    return 1 if any(r.status in ("fail", "error") for r in results) else 0


def _plots_possible(wanted: bool) -> bool:
    """Whether to draw plots: asked for and matplotlib importable (said before any work, not after)."""
    import importlib.util

    if wanted and importlib.util.find_spec("matplotlib") is None:
        print("warning: plots will be skipped: matplotlib is not installed (pip install 'bilstm_ref[report]'); "
              "every other output is written (--no-plots silences this)", file=sys.stderr)
        return False
    return wanted


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_all

    args.no_plots = not _plots_possible(not args.no_plots)
    if args.migration:
        return _migration(args)
    if args.verify:
        from .report.verify import read_verify_json, write_verify_report

        data = read_verify_json(args.verify)
        written = write_verify_report(args.out, data, plots=not args.no_plots)
        print(f"report of the verify run {args.verify!r}: {'PASS' if data['ok'] else 'FAIL'}")
        for kind, path in written.items():
            print(f"  {kind}: {path}")
        return 0 if data["ok"] else 1
    if args.fixtures:
        from .suites.harness import run_fixtures

        results, warnings, wall = run_fixtures(args.fixtures, _options(args), args.k, args.shard)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        versions: dict[str, str] = {}
        if results:
            versions = _fixture_versions(args.fixtures)
        source = f"recorded fixtures in {args.fixtures}"
    else:
        cases = _matrix_cases(args)
        if not cases:
            raise BilstmRefError(f"no matrix case matches {args.k}")
        results, versions, wall = _run_live(args, cases)
        source = "live Keras"
    if not results:
        raise BilstmRefError("no case was executed: no report written")
    data = _report_data(args, results, versions, wall, source=source)
    t0 = time.perf_counter()
    written = write_all(args.out, data, plots=not args.no_plots)
    c = data.counts()
    print(f"report: {c['total']} cases, {c['pass']} passed, {c['known-deviation']} known deviations, "
          f"{c['xfail']} expected failures, {c['xpass']} unexpected passes, {c['fail']} failed, "
          f"{c['error']} errors, {c['integrity']} integrity failures; "
          f"coverage {data.coverage():.1%}; run {wall:.1f}s, written in {time.perf_counter() - t0:.1f}s")
    for kind, path in written.items():
        print(f"  {kind}: {path}")
    return 1 if data.failed else 0


def cmd_converter_scoreboard(args: argparse.Namespace) -> int:
    from .suites.converters import CONVERTERS, render_converters_markdown, run_converter_scoreboard

    names = [c.strip() for c in args.converters.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONVERTERS]
    if unknown:
        raise ConfigError(f"--converters: unknown {unknown}; expected some of {', '.join(CONVERTERS)}")
    t0 = time.perf_counter()

    def progress(converter: str, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {converter}: {done}/{total} cases, {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)

    from .suites.harness import default_jobs

    board = run_converter_scoreboard(args.out, names, args.k, default_jobs(args.jobs), progress)
    print(render_converters_markdown(board))
    print(f"written: {args.out}/converters.md, converters.json")
    ran = [s for s in board["converters"].values() if s["status"] == "ran"]
    if not ran:
        return 2
    return 1 if any(s["counts"]["fail"] or s["counts"]["error"] for s in ran) else 0


def cmd_scoreboard(args: argparse.Namespace) -> int:
    from .suites.backends import render_markdown, run_scoreboard

    if args.converters:
        return cmd_converter_scoreboard(args)
    if args.from_files:
        from .suites.backends import from_files

        board = from_files(args.from_files, args.out)
        print(render_markdown(board, "environments"))
        print(f"written: {args.out}/scoreboard.md, scoreboard.json")
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in ("tensorflow", "jax", "torch")]
    if unknown:
        raise BilstmRefError(f"--backends: unknown {unknown}; expected tensorflow, jax, torch")
    board = run_scoreboard(args.out, backends, args.k, args.jobs, extra=("--suite", args.suite))
    ran = [s for s in board["backends"].values() if s["status"] == "ran"]
    if not ran:
        reasons = "; ".join(f"{b}: {s.get('reason', s['status'])}" for b, s in board["backends"].items())
        print(f"error: no backend ran, nothing written ({reasons})", file=sys.stderr)
        return 2
    print(render_markdown(board))
    print(f"written: {args.out}/scoreboard.md, scoreboard.json, check-<backend>.json")
    return 1 if any(s["counts"]["fail"] or s["counts"]["error"] for s in ran) else 0


def _fixture_versions(directory: str) -> dict[str, str]:
    """The Keras versions the fixtures were recorded with (from the first manifest)."""
    from .fixtures.store import read_fixture, scan

    for path in scan(directory).manifests:
        try:
            prov = read_fixture(path).provenance
        except BilstmRefError:
            continue
        return {k: str(v) for k, v in prov.items() if k in ("keras", "backend", "tensorflow", "jax", "torch")}
    return {}


def _report_data(args: argparse.Namespace, results: list[Any], versions: dict[str, str], wall: float,
                 source: str) -> Any:
    from .report import ReportData

    options = _options(args)
    return ReportData.build(results, versions=versions, wall=wall, source=source, impl=options.impl,
                            backend=versions.get("backend") or options.backend, tolerance=options.tolerance,
                            expected_failures=options.expected_failures, argv=getattr(args, "argv", []))


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
            if "mask" in row:
                w(f"        {row['mask']}\n")
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


def cmd_verify(args: argparse.Namespace) -> int:
    from .suites.harness import tolerance_from_args
    from .report.verify import render_text, write_verify_report
    from .verify import verify_model

    if args.against:
        return _verify_against(args)
    progress = _SampleProgress()
    result = verify_model(args.model, inputs=args.inputs, layers=args.layer, config=args.config,
                          batch_size=args.batch_size, impl=args.impl,
                          tolerance=tolerance_from_args(args.atol, args.rtol, args.ulp, args.tol_output or []),
                          samples=args.samples, time_steps=args.time, seed=args.seed, dtype=args.dtype,
                          progress=progress.update)
    data = result.as_dict()
    data["argv"] = list(getattr(args, "argv", []))
    print(render_text(data))
    _write_json(args.json, data)
    if args.report:
        written = write_verify_report(args.report, data, plots=_plots_possible(not args.no_plots))
        for kind, path in written.items():
            print(f"  {kind}: {path}")
    return 0 if result.ok else 1


def _write_json(path: Optional[str], data: dict[str, Any]) -> None:
    if path:
        from ._atomic import write_text_atomic as _atomic_text

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _atomic_text(Path(path), json.dumps(data, indent=1, allow_nan=False) + "\n")


def _verify_against(args: argparse.Namespace) -> int:
    from .conformance.compare import Tolerance
    from .report.verify import render_converted_text
    from .verify import verify_converted

    if args.layer and len(args.layer) > 1:
        raise ConfigError("verify --against judges one layer inside the converted graph: give --layer once")
    tol = None if args.atol is None and args.rtol is None else Tolerance(args.atol or 0.0, args.rtol or 0.0)
    result = verify_converted(args.model, args.against, inputs=args.inputs, layer=(args.layer or [None])[0],
                              config=args.config, battery=not args.no_battery, time_steps=args.time, seed=args.seed,
                              tolerance=tol)
    data = result.as_dict()
    data["argv"] = list(getattr(args, "argv", []))
    print(render_converted_text(data))
    _write_json(args.json, data)
    return 0 if result.ok else 1


class _SampleProgress:
    """Samples done, on stderr, at most every 5 s (long verify runs)."""

    def __init__(self) -> None:
        self.t0 = self._last = time.perf_counter()

    def update(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self._last > 5 or (done == total and now - self.t0 > 5):
            self._last = now
            print(f"  {done}/{total} samples, {now - self.t0:.0f}s", file=sys.stderr, flush=True)


def _add_verify(sub: Any) -> None:
    v = sub.add_parser("verify", help="every LSTM / Bidirectional(LSTM) of a saved model on your data, against Keras")
    v.add_argument("model", help="a .keras, a legacy .h5, or a .weights.h5 (with --config)")
    v.add_argument("--inputs", default=None, metavar="FILE",
                   help=".npz with one array per model input (by input name, or arr_0... by position), or .npy for "
                        "a one-input model; default: inputs generated from the model's input spec")
    v.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="a layer to verify (repeatable; outer/inner in nested models); default: every LSTM and "
                        "Bidirectional(LSTM)")
    v.add_argument("--config", default=None, help="architecture for a weights-only MODEL (model JSON or .keras)")
    v.add_argument("--batch-size", type=_bounded(1, 1 << 20), default=64, help="samples per forward pass (default 64)")
    v.add_argument("--samples", type=_bounded(1, 1 << 20), default=12, help="generated inputs: samples (default 12)")
    v.add_argument("--time", type=_bounded(1, 100_000), default=16, help="generated inputs: time steps (default 16)")
    v.add_argument("--seed", type=_bounded(0, 2**32 - 1), default=0, help="generated inputs: seed")
    v.add_argument("--dtype", choices=("float64", "float32"), default=None,
                   help="reference compute dtype (default float64; float32 is about twice as fast)")
    v.add_argument("--against", default=None, metavar="CONVERTED",
                   help="a conversion of MODEL (.onnx run by onnxruntime, .tflite by ai-edge-litert): judged against "
                        "Keras and the reference on a battery of inputs conversions get wrong")
    v.add_argument("--no-battery", action="store_true", help="with --against: only your --inputs, no battery")
    v.add_argument("--json", default=None, metavar="FILE", help="write the whole result as JSON")
    v.add_argument("--report", default=None, metavar="DIR", help="write verify.md, verify.html, verify.json and plots")
    v.add_argument("--no-plots", action="store_true", help="with --report: no PNG plots (no matplotlib needed)")
    _add_harness_options(v, xfail=False)
    v.set_defaults(func=cmd_verify)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bilstm-ref", description="Keras LSTM / Bidirectional(LSTM) reference verifier")
    p.add_argument("--version", action="version", version=f"bilstm-ref {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{check,inspect,verify,fixtures,weights,explain,trace,report,scoreboard}", required=True)
    c = sub.add_parser("check", help="run the conformance matrix against the installed Keras")
    c.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None,
                   help="Keras backend (sets KERAS_BACKEND); default: Keras's configured backend")
    c.add_argument("--oracle", choices=("keras", "tf_keras"), default="keras",
                   help="keras (default): Keras 3; tf_keras: Keras 2 on TensorFlow, the reference under Keras 2 "
                        "semantics")
    c.add_argument("-k", action="append", metavar="PATTERN",
                   help="only cases whose id contains PATTERN (repeatable; ~PATTERN excludes)")
    c.add_argument("--jobs", "-j", "-n", default=None, help="worker processes, or 'auto' (default: CPU count)")
    c.add_argument("--dtype", choices=("float64", "float32"), default=None, help="reference compute dtype (default float64)")
    c.add_argument("--list", action="store_true", help="list the selected case ids and exit")
    c.add_argument("--suite", choices=("matrix", "committed"), default="matrix",
                   help="matrix: every case; committed: the 258-case suite of fixtures/ (all pairs + core concat + core pairs)")
    _add_harness_options(c)
    c.add_argument("--shard", default=None, metavar="K/N", help="run the K-th of N interleaved shards (CI fan-out)")
    c.add_argument("--json", default=None, metavar="FILE", help="also write every case's record as JSON")
    _add_inspect(sub)
    _add_verify(sub)
    _add_fixtures(sub)
    _add_weights(sub)
    _add_explain(sub)
    _add_trace(sub)
    r = sub.add_parser("report", help="run the matrix (or read fixtures) and write md, html, json, junit and plots")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--fixtures", default=None, metavar="DIR", help="report on recorded fixtures instead (no Keras)")
    r.add_argument("--migration", action="store_true",
                   help="the Keras 2 -> Keras 3 migration table instead: every matrix case through tf_keras and Keras 3 "
                        "(migration.md, migration.json)")
    r.add_argument("--verify", default=None, metavar="RUN.json",
                   help="render a 'bilstm-ref verify --json' run (verify.md, verify.html, plots) instead")
    r.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None)
    r.add_argument("--oracle", choices=("keras", "tf_keras"), default="keras",
                   help="keras (default): Keras 3; tf_keras: Keras 2 on TensorFlow")
    r.add_argument("-k", action="append", metavar="PATTERN", help="cases whose id contains PATTERN (~ excludes)")
    r.add_argument("--jobs", "-j", "-n", default=None, help="worker processes, or 'auto' (default: CPU count)")
    r.add_argument("--dtype", choices=("float64", "float32"), default=None, help="reference compute dtype")
    r.add_argument("--shard", default=None, metavar="K/N", help="the K-th of N interleaved shards")
    r.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    r.add_argument("--suite", choices=("matrix", "committed"), default="matrix",
                   help="matrix: every case; committed: the 258-case suite of fixtures/ (all pairs + core concat + core pairs)")
    _add_harness_options(r)
    r.set_defaults(func=cmd_report)
    b = sub.add_parser("scoreboard", help="the matrix on every installed Keras backend, combined (or --converters)")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated (default: all three)")
    b.add_argument("-k", action="append", metavar="PATTERN", help="cases whose id contains PATTERN (~ excludes)")
    b.add_argument("--jobs", "-j", "-n", default=None, help="worker processes per backend, or 'auto'")
    b.add_argument("--suite", choices=("matrix", "committed"), default="committed",
                   help="committed (default): the 258-case suite, about 10 min on JAX; matrix: all cases")
    b.add_argument("--from", dest="from_files", action="append", default=None, metavar="CHECK.json",
                   help="instead of running: combine 'check --json' results recorded in different environments (Keras "
                        "versions, backends, machines, CPU or GPU); repeatable")
    b.add_argument("--converters", default=None, metavar="LIST",
                   help="instead of backends: the converter suite through these converters (onnx, tflite, openvino), "
                        "judged against live Keras")
    b.set_defaults(func=cmd_scoreboard)
    c.set_defaults(func=cmd_check)
    return p


# --- fixtures -----------------------------------------------------------------------------------
def _generate_matrix(args: argparse.Namespace, out_dir: Any) -> tuple[list[Any], list[str]]:
    from .conformance import matrix
    from .conformance.oracle import keras_available
    from .suites import harness

    pool_cases = list(matrix.fixture_suite()) if args.suite == "committed" else matrix.cases()
    cases = matrix.select(pool_cases, args.k)
    if not cases:
        raise BilstmRefError(f"no matrix case matches {args.k}")
    if not keras_available():
        raise BilstmRefError("recording fixtures needs Keras: pip install 'bilstm_ref[keras]'")
    keras2 = getattr(args, "oracle", "keras") == "tf_keras"
    options = harness.RunOptions(backend="tf_keras" if keras2 else args.backend, jobs=harness.default_jobs(args.jobs))
    todo, kept = harness.pending(cases, out_dir, args.force)
    if not todo:
        return [], kept
    print(f"recording {len(todo)} matrix cases from Keras into {str(out_dir)!r}, "
          f"{harness.jobs_for(len(todo), options)} process(es)", file=sys.stderr)
    progress = _Progress(len(todo))
    try:
        return harness.record_matrix(todo, out_dir, options, force=args.force, progress=progress.advance), kept
    finally:
        progress.close()


def _model_fixtures(args: argparse.Namespace) -> list[Any]:
    """Every fixture a ``--model`` run records, before anything is written."""
    if args.inputs is not None or args.real_data:
        from .fixtures.record import real_data_fixtures

        return real_data_fixtures(args.model, args.inputs, args.layer, config=args.config, samples=args.samples,
                                  seed=args.seed, time_steps=args.time)
    from .loaders import inspect_file, load_spec
    from .fixtures.record import model_fixtures

    names = args.layer or [r["name"] for r in inspect_file(args.model, config=args.config)["layers"] if r["supported"]]
    if not names:
        load_spec(args.model, config=args.config)  # raises, naming the model's layers
    fixtures = []
    for name in dict.fromkeys(names):
        spec = load_spec(args.model, layer=name, config=args.config)
        fixtures += model_fixtures(spec, args.model, n_cases=args.cases, seed=args.seed, batch=args.batch,
                                   time=args.time, masks=args.masks, states=args.states)
    return fixtures


def _write_model_fixtures(args: argparse.Namespace, out_dir: Any, fixtures: list[Any]) -> tuple[list[Any], list[str]]:
    from .fixtures.store import write_fixture

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
    from .fixtures.store import LOCK_NAME, clean_stale_temps, directory_lock

    t0 = time.perf_counter()
    created = not out_dir.exists()
    # A model's answers are all computed before anything is written: into a new folder before it is made
    # (a failure leaves nothing), into an existing one under its lock (another run is refused first).
    fixtures = _model_fixtures(args) if args.model and created else None
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with directory_lock(out_dir):
            stale = clean_stale_temps(out_dir)
            if stale:
                print(f"removed {len(stale)} stale temp file(s) of an interrupted run", file=sys.stderr)
            if args.model:
                fixtures = _model_fixtures(args) if fixtures is None else fixtures
                statuses, skipped = _write_model_fixtures(args, out_dir, fixtures)
            else:
                statuses, skipped = _generate_matrix(args, out_dir)
    except BaseException:
        if created:  # a failed run leaves no empty output folder behind
            with contextlib.suppress(OSError):
                (out_dir / LOCK_NAME).unlink(missing_ok=True)
                out_dir.rmdir()
        raise
    counts = collections.Counter(s for _, s, _ in statuses)
    print(f"fixtures in {str(out_dir)!r}: {counts['written']} written, {counts['replaced']} replaced, "
          f"{counts['unchanged']} unchanged, {len(skipped)} existing kept ({time.perf_counter() - t0:.1f}s)")
    if args.trace:
        traced = _write_traces(out_dir, [cid for cid, _, _ in statuses])
        print(f"gate traces: {traced} written into {str(out_dir / 'traces')!r} (bilstm_ref.diagnose.Trace.from_npz)")
    off = [(cid, st) for cid, _, st in statuses if st not in ("pass", "known-deviation", "recorded")]
    for cid, st in off:
        print(f"warning: {cid}: the reference does not reproduce Keras here ({st}); recorded anyway", file=sys.stderr)
    if skipped:
        print(f"error: {len(skipped)} fixture(s) exist already (first: {skipped[0]}); nothing was overwritten. "
              "Pass --force to rewrite them.", file=sys.stderr)
        return 1
    return 0


def _write_traces(out_dir: Any, ids: Sequence[str]) -> int:
    """Beside the fixtures (in ``traces/``, which ``fixtures verify`` does not read): each fixture's gate
    traces, every call, as the reference computes them (checked bit for bit against its outputs)."""
    from .diagnose.trace import save_traces, trace_case

    folder = out_dir / "traces"
    folder.mkdir(exist_ok=True)
    for fid in ids:
        save_traces(folder / f"{fid}.npz", trace_case(str(out_dir / f"{fid}.json"), all_calls=True))
    return len(ids)


def _verify_summary(results: list[Any], warnings: list[str], wall: float, impl: str, out: Any = None) -> None:
    out = out or sys.stdout
    counts = collections.Counter(r.status for r in results)
    print(f"bilstm-ref {__version__} fixtures verify: {impl}", file=out)
    print(f"fixtures checked: {len(results)}  passed: {counts['pass']}  known deviations: {counts['known-deviation']}  "
          f"failed: {counts['fail']}  errors: {counts['error']}  integrity failures: {counts['integrity']}  "
          f"wall time: {wall:.2f}s", file=out)
    _expected_lines(results, counts, out)
    _worst_table(results, "worst |fixture - implementation| per output over passing fixtures (by dtype policy):", out)
    for w in warnings:
        print(f"warning: {w}", file=out)
    bad = [r for r in results if r.status in ("fail", "error", "integrity")]
    for r in bad[:50]:
        print(r.describe() + (f"\n  file: {r.file}" if r.file else ""), file=out)
    if len(bad) > 50:
        print(f"... and {len(bad) - 50} more", file=out)


def cmd_fixtures_verify(args: argparse.Namespace) -> int:
    from .suites.harness import run_fixtures

    results, warnings, wall = run_fixtures(args.dir, _options(args), args.k)
    if not results:
        print(f"error: no fixtures found in {args.dir!r}" + (f" matching {args.k}" if args.k else ""), file=sys.stderr)
        return 2
    _verify_summary(results, warnings, wall, args.impl or "the reference")
    if args.json:
        from .report import write_json

        write_json(args.json, _report_data(args, results, {}, wall, source=f"fixtures {args.dir}"))
    # A known-deviation fixture whose buggy answer is reproduced is a change to look at, not a pass.
    return 1 if any(r.status in ("fail", "error", "integrity") or (r.status == "xpass" and r.deviation)
                    for r in results) else 0


def cmd_fixtures_export(args: argparse.Namespace) -> int:
    from .fixtures.export import export_main

    code, text = export_main(args.dir, args.format, args.out, args.k, traces=args.trace)
    print(text)
    return code


def cmd_fixtures_diff(args: argparse.Namespace) -> int:
    from .fixtures.store import diff_fixtures, scan

    drifts, notes = diff_fixtures(args.old, args.new)
    for note in notes:
        print(f"note: {note}")
    common = {p.name for p in scan(args.old).manifests} & {p.name for p in scan(args.new).manifests}
    compared = len(common) - sum(n.endswith("answers not comparable") for n in notes)
    if not compared:
        print(f"error: no fixture of {args.old!r} can be compared with one of {args.new!r} (same id, layer, "
              "weights and inputs): nothing was compared, so this says nothing about differences", file=sys.stderr)
        return 2
    if not drifts:
        print(f"no recorded answer differs between {args.old!r} and {args.new!r} ({compared} fixture(s) compared)")
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


def _migration(args: argparse.Namespace) -> int:
    from .suites.harness import default_jobs
    from .suites.migration import run_migration

    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"  {done}/{total} cases, {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)

    board = run_migration(args.out, args.k, default_jobs(args.jobs), progress)
    c = board["counts"]
    print(f"Keras 2 -> Keras 3: {board['cases']} cases; same answer {c.get('same', 0)} ({board['bitwise_same']} bit for "
          f"bit), different {c.get('different', 0)} (causes: {board['causes']}); written: {args.out}/migration.md, "
          "migration.json")
    return 1 if board["causes"].get("unexplained") else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .diagnose.explain import explain, subject_of
    from .reference.spec import resolve_factory

    factory = resolve_factory(args.impl)
    subject = subject_of(args.target)
    result = explain(subject, factory)
    print(result.describe())
    if args.json:
        _write_json(args.json, result.as_dict())
    if args.shrink:
        from .diagnose.shrink import shrink, write_repro

        if result.status == "pass":
            print("nothing to shrink: the implementation matches the reference on this case")
        else:
            shrunk = shrink(subject, factory)
            print(shrunk.describe())
            for kind, path in write_repro(shrunk, args.impl, args.out).items():
                print(f"  {kind}: {path}")
    return 0 if result.status == "pass" else 1


def cmd_trace(args: argparse.Namespace) -> int:
    from .diagnose.trace import trace_main

    code, text = trace_main(args.target, args.out)
    print(text)
    return code


def _add_trace(sub: Any) -> None:
    t = sub.add_parser("trace", help="the reference's gates (i, f, g, o), c and h at every step of a case or fixture")
    t.add_argument("target", help="a matrix case id (bilstm-ref check --list) or a fixture manifest (.json)")
    t.add_argument("--out", default=None, metavar="FILE", help="write the trace as .npz (default for large traces: "
                                                                "trace-<id>.npz)")
    t.set_defaults(func=cmd_trace)


def _add_explain(sub: Any) -> None:
    e = sub.add_parser("explain", help="why an implementation fails a case: the first divergence and the known "
                                       "porting fault that explains it")
    e.add_argument("target", help="a matrix case id (bilstm-ref check --list) or a fixture manifest (.json)")
    e.add_argument("--impl", required=True, metavar="MODULE:FACTORY", help="the implementation under test")
    e.add_argument("--shrink", action="store_true",
                   help="also reduce the case to a minimal failing repro: a fixture and a standalone repro.py")
    e.add_argument("--out", default="repro", metavar="DIR", help="with --shrink: where the repro goes (default ./repro)")
    e.add_argument("--json", default=None, metavar="FILE", help="write the explanation as JSON")
    e.set_defaults(func=cmd_explain)


def cmd_weights_diff(args: argparse.Namespace) -> int:
    from .convert import weights_diff_main

    code, text = weights_diff_main(args.a, args.b, layer=args.layer, config=args.config, b_layer=args.b_layer,
                                   b_config=args.b_config, atol=args.atol, rtol=args.rtol)
    print(text)
    return code


def _add_weights(sub: Any) -> None:
    w = sub.add_parser("weights", help="compare the LSTM weights of two files across layouts (Keras, torch, ONNX, TFLite)")
    wsub = w.add_subparsers(dest="weights_command", metavar="{diff}", required=True)
    d = wsub.add_parser("diff", help="the weights of A and B in Keras's layout; names the layout fault when they differ")
    d.add_argument("a", help="the reference: .keras, .h5, .weights.h5 (with --config), .onnx, .pt/.pth (a torch "
                             "state_dict) or .npz (a torch state_dict, ONNX W/R/B or TFLite per-gate tensors)")
    d.add_argument("b", help="the file to compare, of any of those kinds")
    d.add_argument("--layer", default=None, help="the layer (Keras name, ONNX node or state_dict prefix) in A, and in B "
                                                  "unless --b-layer")
    d.add_argument("--config", default=None, help="architecture of a weights-only A (and B unless --b-config)")
    d.add_argument("--b-layer", default=None, help="the layer in B when it is named differently")
    d.add_argument("--b-config", default=None, help="architecture of a weights-only B")
    d.add_argument("--atol", type=_nonneg, default=0.0, help="absolute tolerance (default: bit-exact)")
    d.add_argument("--rtol", type=_nonneg, default=0.0, help="relative tolerance (default: bit-exact)")
    d.set_defaults(func=cmd_weights_diff)


def _add_fixtures(sub: Any) -> None:
    f = sub.add_parser("fixtures", help="record Keras's answers as fixtures; verify them without Keras")
    fsub = f.add_subparsers(dest="fixtures_command", metavar="{generate,verify,export,diff}", required=True)
    g = fsub.add_parser("generate", help="record fixtures from live Keras (the matrix, or --model FILE --layer NAME)")
    g.add_argument("--out", required=True, help="fixture directory (created if missing)")
    g.add_argument("--force", action="store_true", help="rewrite existing fixtures")
    g.add_argument("--trace", action="store_true",
                   help="also write each fixture's gate traces (every call, both directions) into DIR/traces/")
    g.add_argument("-k", action="append", metavar="PATTERN", help="matrix cases whose id contains PATTERN (~ excludes)")
    g.add_argument("--suite", choices=("matrix", "committed"), default="matrix",
                   help="matrix: every case (default); committed: the subset kept in the repository's fixtures/")
    g.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None)
    g.add_argument("--oracle", choices=("keras", "tf_keras"), default="keras",
                   help="record Keras 3 (default) or tf_keras (Keras 2) answers; a fixture records its oracle")
    g.add_argument("--jobs", "-j", "-n", default=None, help="worker processes, or 'auto' (default: CPU count)")
    g.add_argument("--model", default=None, help="record a layer of this model file instead of the matrix")
    g.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="a layer of --model (repeatable; default: every LSTM and Bidirectional layer)")
    g.add_argument("--inputs", default=None, metavar="FILE",
                   help="record --model's layers on your data (.npz / .npy, as for verify): each layer's real "
                        "input, mask and Keras's outputs")
    g.add_argument("--real-data", action="store_true",
                   help="record --model's layers as the model computes them, on inputs generated from its input spec")
    g.add_argument("--samples", type=_bounded(1, 1 << 16), default=32,
                   help="with --inputs / --real-data: samples recorded (the first N; default 32)")
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
    _add_harness_options(v, impl=False)
    v.add_argument("--json", default=None, metavar="FILE", help="also write every fixture's record as JSON")
    v.set_defaults(func=cmd_fixtures_verify)
    e = fsub.add_parser("export", help="fixtures for ports in any language: one JSON file or one C99 header")
    e.add_argument("dir", help="fixture directory")
    e.add_argument("--format", choices=("json", "c-header"), required=True,
                   help="json: every array as nested lists, bit-exact; c-header: a C99 header (hexadecimal floats)")
    e.add_argument("--out", required=True, metavar="FILE", help="the file to write (atomically)")
    e.add_argument("-k", action="append", metavar="PATTERN", help="only fixtures whose id contains PATTERN (~ excludes)")
    e.add_argument("--trace", action="store_true",
                   help="also the reference's gate trace (i, f, g, o, c, h per step and direction) of every call")
    e.set_defaults(func=cmd_fixtures_export)
    d = fsub.add_parser("diff", help="how recorded answers changed between two fixture directories")
    d.add_argument("old")
    d.add_argument("new")
    d.set_defaults(func=cmd_fixtures_diff)


def _nonneg(text: str) -> float:
    """A finite number >= 0 (argparse's float takes nan, inf and 1e400)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _add_harness_options(p: Any, impl: bool = True, xfail: bool = True) -> None:
    if impl:
        p.add_argument("--impl", default=None, metavar="package.module:factory",
                       help="implementation under test (default: the reference, bilstm_ref:reference_factory)")
    if xfail:
        p.add_argument("--xfail", default=None, metavar="FILE",
                       help="expected failures: lines 'PATTERN  reason' (a case-id substring and why)")
    p.add_argument("--atol", type=_nonneg, default=None, help="absolute tolerance (with --rtol; default per dtype)")
    p.add_argument("--rtol", type=_nonneg, default=None, help="relative tolerance (with --atol; default per dtype)")
    p.add_argument("--ulp", type=_nonneg, default=None, help="judge in ULPs of the expected value instead")
    p.add_argument("--tol-output", action="append", default=None, metavar="NAME=ATOL,RTOL",
                   help="per-output override, e.g. c=1e-4,1e-4 or c=4ulp (repeatable)")


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


#: Commands that may import Keras (and so TensorFlow, whose native log lines are kept out of the output).
_KERAS_COMMANDS = frozenset({"check", "report", "fixtures", "verify", "scoreboard"})
_PY_ARGUMENT = re.compile(r"(?<![\w-])(layer|config)=(?=[\s:;,)]|$)")


def _flag_words(message: str) -> str:
    """The library names its Python arguments (``layer=``, ``config=``); the command line names flags."""
    return _PY_ARGUMENT.sub(lambda m: f"--{m.group(1)}", message)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.command in _KERAS_COMMANDS:
            from ._native_logs import native_logs_hidden

            with native_logs_hidden():
                return int(args.func(args))
        return int(args.func(args))
    except BilstmRefError as exc:
        print(f"error: {_flag_words(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # fixtures already published stay whole; temp files are removed or reported
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        return 0
