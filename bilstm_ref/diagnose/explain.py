"""``explain``: why an implementation fails a case. The first divergence from the reference, and a
ranking of the known porting faults (:mod:`.faults`) by how much of the implementation's output
each one reproduces.

The reference is the documented semantics: where the implementation and the reference part, the
implementation computes something else, and a fault that reproduces every output it returns is the
likely cause ("most likely: gate blocks read in the order f, i, c, o; explains all 5 outputs to
1e-7"). When no fault reproduces everything, the report says so and shows the trace of the
reference around the first divergence.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..conformance.compare import OutputResult, TolerancePolicy, compare, elementwise, tolerance_for
from ..errors import BilstmRefError, ConfigError
from ..conformance.judge import call_label, crash_report
from ..reference.spec import LayerSpec, direction_units, layer_policy
from .faults import FAULTS, Fault, Outputs, Subject, run_spec

__all__ = ["Explanation", "FaultMatch", "Divergence", "explain", "subject_of", "diagnose_line", "judge_outputs"]

Factory = Callable[[LayerSpec], Any]


@dataclasses.dataclass(frozen=True)
class FaultMatch:
    """How well one fault reproduces the implementation: outputs (per call) it matches within the
    tolerance, the share of elements it matches, and its worst |difference| from the implementation."""

    name: str
    family: str
    explained: int
    total: int
    elements: float
    max_abs: float
    fixes: int = 0  # of the outputs the reference gets wrong, how many it explains
    failing: int = 0  # how many outputs the reference gets wrong

    @property
    def complete(self) -> bool:
        return self.explained == self.total

    def describe(self) -> str:
        if self.complete:
            how = "explains the output" if self.total == 1 else f"explains all {self.total} outputs"
        else:
            how = (f"explains {self.fixes} of the {self.failing} differing outputs" if self.failing
                   else f"explains {self.explained} of {self.total} outputs")
        return f"{self.name}; {how} to {self.max_abs:.2g}"


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where the implementation first leaves the reference.

    ``t`` is the time step in input order and ``k`` in the direction's processing order (None for
    outputs without a time axis: final states, last outputs); ``growth`` the worst |difference| at
    each later step (input order for ``t``'s output)."""

    call: int
    output: str
    direction: str
    t: Optional[int]
    k: Optional[int]
    unit: int
    sample: int
    size: float
    growth: tuple[float, ...]

    def describe(self, calls: int) -> str:
        where = f"call {self.call}, " if calls > 1 else ""
        step = "" if self.t is None else f" at time step {self.t} (processing step {self.k} of the {self.direction} direction)"
        growth = ""
        if len(self.growth) > 1:
            growth = "; then " + ", ".join(f"{g:.2g}" for g in self.growth[1:6]) + (" ..." if len(self.growth) > 6 else "")
        return (f"first divergence: {where}{self.output}{step}, sample {self.sample}, unit {self.unit} "
                f"({self.direction}): |diff| {self.size:.3g}{growth}")


@dataclasses.dataclass
class Explanation:
    """What :func:`explain` found. ``status``: ``pass`` (the implementation matches the reference),
    ``explained`` (a known fault reproduces every output), ``unexplained``, or ``error`` (it raised)."""

    subject: str
    status: str
    results: list[OutputResult]
    divergence: Optional[Divergence]
    ranking: list[FaultMatch]
    message: str = ""
    trace: str = ""
    calls: int = 1

    @property
    def best(self) -> Optional[FaultMatch]:
        return self.ranking[0] if self.ranking else None

    def headline(self) -> str:
        """One line: the diagnosis."""
        if self.status == "pass":
            return "matches the reference"
        if self.status == "error":
            return self.message
        best = self.best
        if self.status == "explained" and best is not None:
            tied = [m.name for m in self.ranking[1:] if m.complete and m.max_abs <= best.max_abs]
            also = f" (equally: {'; '.join(tied[:2])})" if tied else ""
            return f"most likely: {best.describe()}{also}"
        closest = f"; closest: {best.describe()}" if best is not None and best.fixes else ""
        return f"no known fault explains it{closest}"

    def describe(self) -> str:
        lines = [f"{self.subject}: {self.headline()}"]
        if self.divergence is not None:
            lines.append("  " + self.divergence.describe(self.calls))
        lines += ["  " + r.describe() for r in self.results if not r.ok]
        if self.ranking and self.status != "pass":
            lines.append("  ranking:")
            lines += [f"    {i + 1}. {m.describe()}" for i, m in enumerate(self.ranking[:5])]
        if self.trace:
            lines += ["  the reference around the first divergence:", self.trace]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "status": self.status, "headline": self.headline(),
                "divergence": None if self.divergence is None else dataclasses.asdict(self.divergence),
                "ranking": [dataclasses.asdict(m) for m in self.ranking[:10]],
                "outputs": [r.as_dict() for r in self.results], "message": self.message}


# --- subjects -------------------------------------------------------------------------------------
def subject_of(target: Union[str, Any]) -> Subject:
    """A matrix case id, a fixture manifest path, a matrix ``Case`` or a ``Fixture`` as a :class:`Subject`."""
    from ..conformance import matrix
    from ..fixtures.store import Fixture, read_fixture
    from ..conformance.judge import _direction_tolerances

    if isinstance(target, str):
        if target in matrix.by_id():
            target = matrix.by_id()[target]
        elif target.endswith(".json"):
            target = read_fixture(target)
        else:
            raise ConfigError(f"{target!r}: neither a matrix case id (bilstm-ref check --list) nor a fixture "
                              "manifest (.json)")
    if isinstance(target, Fixture):
        return Subject(target.id, target.spec, tuple(target.calls), tuple(target.output_names), target.tolerance)
    case = target
    base = tolerance_for(case.tolerance_policy, "tensorflow")
    return Subject(case.id, case.spec(), tuple(case.calls), tuple(case.output_names),
                   _direction_tolerances(case, "tensorflow", base))


def _run_impl(subject: Subject, factory: Factory) -> Outputs:
    from ..conformance.judge import run_calls

    return run_calls(subject.calls, subject.output_names, factory(subject.spec))


def judge_outputs(subject: Subject, expected: Outputs, actual: Outputs, representable: bool = True
                  ) -> list[OutputResult]:
    """Every output of every call of ``actual`` against ``expected`` at the subject's tolerance; under a
    half-precision policy (with ``representable``) an answer must also be a number of that format, as
    Keras's are."""
    from ..fixtures.store import HALF_OUTPUT_POLICIES, _half_representable

    policy = layer_policy(subject.spec)
    out = []
    for k, (e, a) in enumerate(zip(expected, actual, strict=True)):
        for name in subject.output_names:
            r = compare(call_label(subject.calls, k, name), e[name], a[name], _tol(subject, name))
            if representable and r.ok and policy in HALF_OUTPUT_POLICIES and not _half_representable(policy, a[name]):
                r = dataclasses.replace(r, ok=False, note=f"not rounded to {policy.removeprefix('mixed_')}")
            out.append(r)
    return out


def _tol(subject: Subject, name: str) -> Any:
    tol = subject.tolerance
    return tol.for_output(name) if isinstance(tol, TolerancePolicy) else tol


# --- the first divergence -------------------------------------------------------------------------
def _direction_of(subject: Subject, name: str, unit: int) -> tuple[str, int]:
    """(direction, unit within it) of column ``unit`` of output ``name``."""
    units = direction_units(subject.spec)
    if subject.spec.class_name == "LSTM" or name in ("h1", "c1", "output_fw"):
        return "forward", unit
    if name in ("h2", "c2", "output_bw"):
        return "backward", unit
    if subject.spec.config.get("merge_mode", "concat") == "concat":
        return ("forward", unit) if unit < units[0] else ("backward", unit - units[0])
    return "merged (both directions)", unit


def _processing_step(subject: Subject, direction: str, t: int, steps: int) -> int:
    cfg = subject.spec.config
    backwards = cfg.get("go_backwards", False) if subject.spec.class_name == "LSTM" else direction == "backward"
    return steps - 1 - t if backwards else t


def first_divergence(subject: Subject, expected: Outputs, actual: Outputs) -> Optional[Divergence]:
    """The earliest call, then the earliest time step, where an output leaves its tolerance."""
    for k, (e_call, a_call) in enumerate(zip(expected, actual, strict=True)):
        found: list[tuple[int, int, str]] = []  # (time, order of the output, name)
        for order, name in enumerate(subject.output_names):
            e, a = np.asarray(e_call[name], dtype=np.float64), np.asarray(a_call[name], dtype=np.float64)
            if e.shape != a.shape:
                continue
            bad = elementwise(e, a, _tol(subject, name)).bad
            if not bad.any():
                continue
            time_axis = e.ndim == 3
            t = int(np.argwhere(bad.any(axis=(0, 2)))[0][0]) if time_axis else 10**9
            found.append((t, order, name))
        if not found:
            continue
        t, _, name = min(found)
        e, a = np.asarray(e_call[name], dtype=np.float64), np.asarray(a_call[name], dtype=np.float64)
        err = elementwise(e, a, _tol(subject, name))
        diff = np.where(err.bad, err.diff, 0.0)
        if e.ndim == 3:
            at = diff[:, t]
            sample, unit = (int(i) for i in np.unravel_index(int(np.argmax(at)), at.shape))
            growth = tuple(float(v) for v in err.diff[:, t:].max(axis=(0, 2)))
            direction, unit_in = _direction_of(subject, name, unit)
            steps = e.shape[1]
            # an LSTM with go_backwards returns its sequence in processing order
            if subject.spec.class_name == "LSTM" and subject.spec.config.get("go_backwards"):
                t_input, k_proc = steps - 1 - t, t
            else:
                t_input, k_proc = t, _processing_step(subject, direction, t, steps)
            return Divergence(k, name, direction, t_input, k_proc, unit_in, sample, float(at[sample, unit]), growth)
        sample, unit = (int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        direction, unit_in = _direction_of(subject, name, unit)
        return Divergence(k, name, direction, None, None, unit_in, sample, float(diff[sample, unit]), ())
    return None


# --- ranking the faults ---------------------------------------------------------------------------
#: A fault explains an output the reference gets wrong only when it reproduces it this many times
#: closer than the reference does (a variant merely inside a loose half-precision tolerance does not).
CLOSER = 10.0


def rank_faults(subject: Subject, actual: Outputs, faults: Sequence[Fault] = FAULTS,
                baseline: Optional[list[OutputResult]] = None) -> list[FaultMatch]:
    """Every applicable fault, best first: most outputs reproduced, then most elements, then the
    smallest worst difference (ties keep the library's order). ``baseline``: the reference against the
    implementation, output by output; a failing output counts as explained only when the fault comes
    :data:`CLOSER` times closer to it than the reference."""
    from ..fixtures.store import HALF_OUTPUT_POLICIES, _half_representable

    policy = layer_policy(subject.spec)
    matches = []
    for fault in faults:
        try:
            variant = fault.outputs(subject, actual)
        except BilstmRefError:
            continue  # the variant cannot be built for this layer (e.g. its config refuses it)
        if variant is None:
            continue
        results = judge_outputs(subject, variant, actual, representable=False)
        if policy in HALF_OUTPUT_POLICIES:  # rounded to the half format or not: part of what a fault explains
            results = [r if not r.ok or _half_representable(policy, v[n]) == _half_representable(policy, a[n])
                       else dataclasses.replace(r, ok=False)
                       for r, (v, a, n) in zip(results, _pairs(subject, variant, actual))]
        if baseline is not None:
            results = [r if not r.ok or b.ok or r.max_abs * CLOSER <= b.max_abs else dataclasses.replace(r, ok=False)
                       for r, b in zip(results, baseline, strict=True)]
        elements = float(np.mean([1.0 - r.mismatched for r in results])) if results else 0.0
        worst = max((r.max_abs for r in results), default=0.0)
        failing = [k for k, b in enumerate(baseline or []) if not b.ok]
        matches.append(FaultMatch(fault.name, fault.family, sum(r.ok for r in results), len(results), elements,
                                  worst, sum(results[k].ok for k in failing), len(failing)))
    order = sorted(range(len(matches)), key=lambda i: (-matches[i].explained, -matches[i].fixes,
                                                        -matches[i].elements, matches[i].max_abs, i))
    return [matches[i] for i in order]


def _pairs(subject: Subject, variant: Outputs, actual: Outputs) -> list[tuple[dict[str, np.ndarray],
                                                                              dict[str, np.ndarray], str]]:
    return [(v, a, name) for v, a in zip(variant, actual, strict=True) for name in subject.output_names]


def explain(target: Union[str, Any], impl: Union[str, Factory], *, trace_rows: int = 6) -> Explanation:
    """Run the implementation and the reference on a case or fixture; find the first divergence and the
    known fault that explains it.

    Args:
        target: a matrix case id, a fixture manifest path, a matrix ``Case``, a ``Fixture`` or a
            :class:`~bilstm_ref.diagnose.faults.Subject`.
        impl: the implementation's factory, or ``"package.module:factory"``.
    """
    from ..reference.spec import resolve_factory

    subject = target if isinstance(target, Subject) else subject_of(target)
    factory = resolve_factory(impl) if isinstance(impl, str) else impl
    expected = run_spec(subject.spec, subject.calls, subject.output_names)
    try:
        actual = _run_impl(subject, factory)
    except Exception as e:  # the implementation raised: its error, named
        return Explanation(subject.id, "error", [], None, [], message=crash_report(e, "the implementation raised ")[0])
    results = judge_outputs(subject, expected, actual)
    if all(r.ok for r in results):
        return Explanation(subject.id, "pass", results, None, [], calls=len(subject.calls))
    divergence = first_divergence(subject, expected, actual)
    ranking = rank_faults(subject, actual, baseline=results)
    status = "explained" if ranking and ranking[0].complete else "unexplained"
    text = ""
    if status == "unexplained" and divergence is not None:
        text = _trace_around(subject, divergence, trace_rows)
    return Explanation(subject.id, status, results, divergence, ranking, trace=text, calls=len(subject.calls))


def _trace_around(subject: Subject, d: Divergence, rows: int) -> str:
    """The reference's gates around the first divergence (empty when traces are unavailable)."""
    try:
        from .trace import trace
    except ImportError:
        return ""
    try:
        call = subject.calls[d.call]
        tr = trace(subject.spec, call.x, mask=call.mask,
                   initial_state=None if call.initial_state is None else list(call.initial_state))
        return tr.table(max_rows=rows, around=d.t, direction=d.direction if d.direction in ("forward", "backward") else None,
                        sample=d.sample)
    except Exception:  # a trace is a help, never the reason a diagnosis fails
        return ""


def diagnose_line(target: Union[str, Any], impl: Union[str, Factory]) -> str:
    """The diagnosis of a failing case in one line (for ``check --impl`` and ``fixtures verify --impl``)."""
    try:
        return explain(target, impl, trace_rows=0).headline()
    except BilstmRefError as e:
        return f"no diagnosis: {e}"
