"""The conformance harness: runs the matrix (live Keras) or recorded fixtures on the reference or a
plugged-in implementation, applies an expected-failures list, and turns verdicts into records that
the terminal summary, the reports and the scoreboard share.

Work is spread over ``spawn`` worker processes (one BLAS/TF thread each); Keras's backend is
process-global, so each worker sets ``KERAS_BACKEND`` before Keras is imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from ..conformance.compare import Tolerance, TolerancePolicy
from ..errors import ConfigError

__all__ = ["RunOptions", "ExpectedFailure", "load_expected_failures", "run_matrix", "pending", "record_matrix",
           "run_fixtures", "record_of", "shard", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
CHUNK = 24  # cases per work unit: large enough to reuse built Keras layers, small for balance


@dataclasses.dataclass(frozen=True)
class ExpectedFailure:
    """A case-id substring that an implementation is known to fail, and why (ONNX backend-test style)."""

    pattern: str
    reason: str


def load_expected_failures(path: Optional[str]) -> tuple[ExpectedFailure, ...]:
    """``PATTERN  reason`` per line (``#`` comments, blank lines ignored); the pattern is a substring of
    case ids, e.g. ``mask_left`` or ``act_relu``."""
    if not path:
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--xfail {path!r}: cannot be read ({e})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise ConfigError(f"--xfail {path!r} line {n}: expected 'PATTERN  reason', got {line!r}")
        out.append(ExpectedFailure(parts[0], parts[1].strip()))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What to run and how to judge it."""

    backend: Optional[str] = None
    impl: Optional[str] = None  # "package.module:factory"; None = the reference
    dtype: Optional[str] = None  # reference compute dtype
    tolerance: Optional[TolerancePolicy] = None  # overrides the per-dtype defaults
    expected_failures: tuple[ExpectedFailure, ...] = ()
    jobs: int = 1


def shard(items: Sequence[Any], spec: Optional[str]) -> list[Any]:
    """``"K/N"``: the K-th of N interleaved shards (1-based), for spreading a run over CI machines."""
    if not spec:
        return list(items)
    m = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {spec!r}: expected K/N with 1 <= K <= N")
    k, n = int(m.group(1)), int(m.group(2))
    return list(items)[k - 1::n]


# --- workers ------------------------------------------------------------------------------------
_ORACLE: Any = None
_OPTIONS: Optional[RunOptions] = None
_FACTORY: Any = None


def worker_init(options: RunOptions) -> None:
    """Per worker process: one thread per numeric library, the Keras backend, the oracle and the impl."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    global _ORACLE, _OPTIONS, _FACTORY
    _OPTIONS = options
    if options.impl:
        from ..reference.spec import resolve_factory

        _FACTORY = resolve_factory(options.impl)
    from ..conformance.oracle import KerasOracle

    _ORACLE = KerasOracle(options.backend)


def worker_versions() -> dict[str, str]:
    return dict(_ORACLE.versions)


def _expected(case_id: str, options: RunOptions) -> Optional[ExpectedFailure]:
    return next((x for x in options.expected_failures if x.pattern in case_id), None)


def apply_expected(result: Any, case_id: str, options: RunOptions) -> Any:
    """``fail``/``error`` on a listed case becomes ``xfail``; ``pass`` on one becomes ``xpass``."""
    x = _expected(case_id, options)
    if x is None:
        return result
    if result.status in ("fail", "error"):
        detail = f" [{result.message}]" if result.message else ""
        return dataclasses.replace(result, status="xfail", message=f"expected failure: {x.reason}{detail}")
    if result.status == "pass":
        return dataclasses.replace(result, status="xpass",
                                   message=f"listed as an expected failure ({x.reason}) but passed")
    return result


def run_chunk(ids: list[str]) -> list[Any]:
    """Worker: judge matrix cases against live Keras."""
    from ..conformance import matrix
    from ..conformance.judge import ERROR, CaseResult, crash_report, judge

    assert _OPTIONS is not None
    out = []
    for cid in ids:
        case = matrix.by_id()[cid]
        try:
            keras_outputs = _ORACLE.run(case)
        except Exception as exc:
            crash = matrix.keras_errors_for(case, _ORACLE.backend)
            if crash:  # a documented Keras crash: Keras has no answer here
                result = CaseResult(case, "known-deviation", [], crash[0].name,
                                    f"{crash[0].reason} [{type(exc).__name__}]")
            else:
                result = CaseResult(case, ERROR, [], message=f"Keras raised {type(exc).__name__}: {exc}")
            out.append(apply_expected(result, cid, _OPTIONS))
            continue
        try:
            result = judge(case, keras_outputs, _ORACLE.backend, factory=_FACTORY, tol=_OPTIONS.tolerance,
                           dtype=_OPTIONS.dtype)
            if _FACTORY is not None and result.status == "fail":
                result = dataclasses.replace(result, diagnosis=_diagnosis(case, _FACTORY))
        except Exception as exc:  # a crash in one case is that case's verdict, not the run's end
            message, trace = crash_report(exc)
            result = CaseResult(case, ERROR, [], message=message, traceback=trace)
        out.append(apply_expected(result, cid, _OPTIONS))
    return out


def record_chunk(ids: list[str]) -> list[tuple[str, Any, Optional[str], str]]:
    """Worker: Keras's answers for matrix cases (to record as fixtures), and the reference's verdict."""
    from ..conformance import matrix
    from ..conformance.judge import judge

    out = []
    for cid in ids:
        case = matrix.by_id()[cid]
        outputs = _ORACLE.run(case)
        verdict = judge(case, outputs, _ORACLE.backend)
        out.append((cid, outputs, verdict.deviation, verdict.status))
    return out


def _chunks(ids: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def jobs_for(n_cases: int, options: RunOptions) -> int:
    """Worker processes for ``n_cases`` matrix cases: at most ``options.jobs``, at least one chunk each."""
    return max(1, min(options.jobs, max(1, n_cases // CHUNK)))


@contextlib.contextmanager
def _over_workers(work: Callable[[list[str]], list[Any]], ids: list[str], options: RunOptions
                  ) -> Iterator[tuple[dict[str, str], Iterable[list[Any]]]]:
    """(the oracle's versions, ``work``'s results chunk by chunk, in order), in this process or in
    :func:`jobs_for` spawned workers; the workers are stopped on leaving."""
    jobs = jobs_for(len(ids), options)
    pool = None
    try:
        if jobs == 1:
            worker_init(options)
            yield worker_versions(), map(work, _chunks(ids, CHUNK))
        else:
            pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=worker_init, initargs=(options,))
            yield pool.apply(worker_versions), pool.imap(work, _chunks(ids, CHUNK))
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def run_matrix(cases: Sequence[Any], options: RunOptions,
               progress: Optional[Callable[[int, int], None]] = None) -> tuple[list[Any], dict[str, str], float]:
    """Judge ``cases`` against live Keras; returns (CaseResults in case order, versions, wall seconds).
    ``progress(cases done in this chunk, failed so far)`` is called after each chunk."""
    t0 = time.perf_counter()
    results: list[Any] = []
    bad = 0
    with _over_workers(run_chunk, [c.id for c in cases], options) as (versions, chunks):
        for chunk in chunks:
            results.extend(chunk)
            bad += sum(r.status in ("fail", "error") for r in chunk)
            if progress:
                progress(len(chunk), bad)
    return results, versions, time.perf_counter() - t0


def pending(cases: Sequence[Any], out_dir: Path, force: bool = False) -> tuple[list[Any], list[str]]:
    """``(cases to record, ids of existing fixtures kept)``: every case under ``force``, else those whose
    fixture is not in ``out_dir`` yet."""
    if force:
        return list(cases), []
    kept = {c.id for c in cases if (out_dir / f"{c.id}.json").exists()}
    return [c for c in cases if c.id not in kept], [c.id for c in cases if c.id in kept]


def record_matrix(cases: Sequence[Any], out_dir: Path, options: RunOptions, force: bool = False,
                  progress: Optional[Callable[[int, int], None]] = None) -> list[tuple[str, str, str]]:
    """Record Keras's answers for ``cases`` (see :func:`pending`) as fixtures in ``out_dir`` (the caller holds
    its lock); ``force`` replaces a fixture whose answers changed.

    Under ``options.backend == "tf_keras"`` the answers are Keras 2's and the fixtures carry Keras 2
    semantics. Returns ``(case id, what writing did: "written", "replaced" or "unchanged", the reference's
    verdict)`` per case. ``progress(cases done in this chunk, off so far)`` is called after each chunk.
    """
    if not cases:
        return []  # no worker, no Keras
    from ..conformance import matrix
    from ..fixtures.record import fixture_for_case
    from ..fixtures.store import write_fixture

    deviations = {d.name: d for d in matrix.KNOWN_DEVIATIONS}
    semantics = "keras2" if options.backend == "tf_keras" else "keras3"
    statuses: list[tuple[str, str, str]] = []
    bad = 0
    with _over_workers(record_chunk, [c.id for c in cases], options) as (versions, chunks):
        for chunk in chunks:
            for cid, outputs, dev, status in chunk:
                fixture = fixture_for_case(matrix.by_id()[cid], outputs, versions,
                                           deviations.get(dev) if dev else None, semantics=semantics)
                statuses.append((cid, write_fixture(out_dir, fixture, force=force), status))
                bad += status not in ("pass", "known-deviation")
            if progress:
                progress(len(chunk), bad)
    return statuses


def run_fixtures(directory: str, options: RunOptions, patterns: Optional[Sequence[str]] = None,
                 shard_spec: Optional[str] = None) -> tuple[list[Any], list[str], float]:
    """Judge recorded fixtures (no Keras); returns (FixtureResults, warnings, wall seconds)."""
    from ..fixtures.store import FixtureResult, read_fixture, scan, verify_fixture
    from ..errors import BilstmRefError
    from ..reference.spec import resolve_factory

    t0 = time.perf_counter()
    factory = resolve_factory(options.impl) if options.impl else None
    found = scan(directory)
    results: list[Any] = [p for p in found.problems if selected(p.id, patterns)]
    manifests = shard([p for p in found.manifests if selected(p.name[:-5], patterns)], shard_spec)
    for path in manifests:
        fid = path.name[:-5]
        try:
            fixture = read_fixture(path)
        except BilstmRefError as e:
            results.append(FixtureResult(fid, "integrity", [], str(path), f"{type(e).__name__}: {e}"))
            continue
        result = verify_fixture(fixture, factory=factory, dtype=options.dtype, tol=options.tolerance)
        if factory is not None and result.status == "fail":
            result = dataclasses.replace(result, diagnosis=_diagnosis(fixture, factory))
        results.append(apply_expected(result, fid, options))
    return results, found.warnings, time.perf_counter() - t0


def selected(fid: str, patterns: Optional[Sequence[str]]) -> bool:
    """``-k`` semantics (as for matrix cases): every plain pattern in the id, no ``~pattern``."""
    from ..conformance.matrix import id_selected

    return id_selected(fid, patterns)


# --- records ------------------------------------------------------------------------------------
def _diagnosis(target: Any, factory: Any) -> str:
    """The one-line diagnosis of a failing case or fixture (bilstm_ref.diagnose.explain)."""
    from ..diagnose.explain import diagnose_line

    return diagnose_line(target, factory)


def record_of(result: Any) -> dict[str, Any]:
    """A JSON-able record of a CaseResult (matrix) or FixtureResult (fixtures), the same shape for both."""
    case = getattr(result, "case", None)
    if case is not None:
        flags = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)}
        rid = case.id
        flags["time"] = case.time
    else:
        flags = dict(getattr(result, "flags", None) or {})
        flags.pop("id", None)
        rid = result.id
    return {
        "id": rid,
        "status": result.status,
        "flags": flags,
        "deviation": result.deviation,
        "message": result.message,
        "diagnosis": getattr(result, "diagnosis", "") or None,
        "outputs": [o.as_dict() for o in result.outputs],
        "failing_outputs": [o.name for o in result.outputs if not o.ok],
        "traceback": getattr(result, "traceback", "") or None,
    }


def default_jobs(value: Optional[str]) -> int:
    """``--jobs N`` or ``auto`` (the CPU count), as pytest-xdist's ``-n`` takes them."""
    if value in (None, "auto"):
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"--jobs {value!r}: expected a positive integer or 'auto'") from None
    if n < 1:
        raise ConfigError(f"--jobs {value!r}: expected a positive integer or 'auto'")
    return n


def tolerance_from_args(atol: Optional[float], rtol: Optional[float], ulp: Optional[float],
                        per_output: Sequence[str]) -> Optional[TolerancePolicy]:
    """A TolerancePolicy from command-line options, or None for the per-dtype defaults.

    ``per_output`` items are ``NAME=ATOL,RTOL`` or ``NAME=ULPulp`` (e.g. ``c=1e-4,1e-4``)."""
    if atol is None and rtol is None and ulp is None and not per_output:
        return None
    default: Optional[Tolerance] = None  # only --tol-output: every other output keeps its dtype default
    if ulp is not None:
        default = Tolerance(0.0, 0.0, ulp=ulp, ulp_dtype="auto")
    elif atol is not None or rtol is not None:
        default = Tolerance(atol if atol is not None else 0.0, rtol if rtol is not None else 0.0)
    overrides = {}
    for item in per_output:
        name, sep, value = item.partition("=")
        parts = value.split(",")
        try:
            if not sep or not name:
                raise ValueError
            if value.endswith("ulp"):
                overrides[name] = Tolerance(0.0, 0.0, ulp=float(value[:-3]), ulp_dtype="auto")
            elif len(parts) == 2:
                overrides[name] = Tolerance(float(parts[0]), float(parts[1]))
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--tol-output {item!r}: expected NAME=ATOL,RTOL or NAME=Nulp") from None
    return TolerancePolicy(default, overrides)


__all__ += ["worker_init", "run_chunk", "record_chunk", "worker_versions", "apply_expected", "selected", "default_jobs",
            "tolerance_from_args"]
