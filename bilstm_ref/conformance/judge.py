"""Runs a matrix case on an implementation and on Keras, and judges it output by output."""

from __future__ import annotations

import dataclasses
import os
import traceback
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .compare import OutputResult, Tolerance, TolerancePolicy, compare, tolerance_for
from .matrix import Case, deviations_for
from ..reference.spec import LayerSpec, reference_factory

__all__ = ["CaseResult", "run_impl", "run_calls", "judge", "output_label", "call_label", "crash_report", "Factory"]

Factory = Callable[[LayerSpec], Any]
Outputs = list[dict[str, np.ndarray]]

PASS, FAIL, DEVIATION, ERROR = "pass", "fail", "known-deviation", "error"


@dataclasses.dataclass
class CaseResult:
    """The verdict on one case: ``status`` is pass / fail / known-deviation / error."""

    case: Case
    status: str
    outputs: list[OutputResult]
    deviation: Optional[str] = None  # name of the KnownDeviation Keras matched
    message: str = ""
    traceback: str = ""  # the whole traceback when the implementation raised
    diagnosis: str = ""  # for a failing implementation: the known fault that explains it, in one line

    @property
    def failures(self) -> list[OutputResult]:
        return [o for o in self.outputs if not o.ok]

    def describe(self) -> str:
        lines = [f"{self.case.id}: {self.status}" + (f" ({self.message})" if self.message else "")]
        lines += [f"  diagnosis: {self.diagnosis}"] if self.diagnosis else []
        lines += ["  " + o.describe() for o in (self.failures or [])]
        lines += implementation_frames(self.traceback)
        return "\n".join(lines)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _theirs(filename: str) -> bool:
    """A frame of the implementation under test: not bilstm_ref's, not NumPy's."""
    path = os.path.abspath(filename)
    return not path.startswith(_PACKAGE_DIR + os.sep) and f"{os.sep}numpy{os.sep}" not in path


def crash_report(exc: BaseException, who: str = "") -> tuple[str, str]:
    """(one line: the exception and where it was raised, the whole traceback) of an implementation's crash.

    The place is the innermost frame outside bilstm_ref and NumPy: the implementation's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if _theirs(f.filename)]
    where = (mine or frames)[-1] if frames else None
    at = f" at {where.filename}:{where.lineno} in {where.name}" if where is not None else ""
    return f"{who}{type(exc).__name__}: {exc}{at}", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def implementation_frames(text: str, most: int = 4) -> list[str]:
    """The last ``most`` frames of the implementation in a formatted traceback, as indented lines."""
    if not text:
        return []
    lines = text.splitlines()
    frames = [(i, line) for i, line in enumerate(lines) if line.startswith('  File "')]
    keep = [(i, line) for i, line in frames if _theirs(line.split('"')[1])][-most:]
    out = ["  raised in:"]
    for i, line in keep:
        out.append("  " + line.strip())
        if i + 1 < len(lines) and lines[i + 1].startswith("    ") and not lines[i + 1].startswith('  File "'):
            out.append("      " + lines[i + 1].strip())
    return out if keep else []


def call_label(calls: Sequence[Any], call: int, name: str) -> str:
    """``output`` for one-call runs; ``call1/output`` ... ``after_reset/output`` for stateful ones.

    ``calls`` are anything with ``reset_before`` (matrix CallInputs, fixture Calls)."""
    if len(calls) == 1:
        return name
    if calls[call].reset_before:
        return f"after_reset/{name}"
    return f"call{call + 1}/{name}"


def output_label(case: Case, call: int, name: str) -> str:
    return call_label(case.calls, call, name)


def run_calls(calls: Sequence[Any], output_names: Sequence[str], impl: Any, who: str = "") -> Outputs:
    """Run a sequence of calls (``x``, ``mask``, ``initial_state``, ``reset_before``) on an
    implementation (``impl(x, mask=, initial_state=)``), outputs by name."""
    results = []
    for call in calls:
        if call.reset_before:
            impl.reset_state()
        init = None if call.initial_state is None else list(call.initial_state)
        out = impl(call.x, mask=call.mask, initial_state=init)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if len(outs) != len(output_names):
            raise AssertionError(f"{who}implementation returned {len(outs)} outputs, expected {tuple(output_names)}")
        results.append(dict(zip(output_names, (np.asarray(o) for o in outs), strict=True)))
    return results


def run_impl(case: Case, impl: Any) -> Outputs:
    """Run every call of ``case`` on an implementation (``impl(x, mask=, initial_state=)``)."""
    return run_calls(case.calls, case.output_names, impl, f"{case.id}: ")


def _compare_all(case: Case, expected: Outputs, actual: Outputs, tol: Tolerance) -> list[OutputResult]:
    return [
        compare(output_label(case, k, name), exp[name], act[name], tol)
        for k, (exp, act) in enumerate(zip(expected, actual, strict=True))
        for name in case.output_names
    ]


def _direction_tolerances(case: Case, backend: str, base: Tolerance) -> Any:
    """Each direction's states judged at its own layer's policy (a float32 direction beside a
    half-precision one keeps the float32 tolerance); merged outputs at the least precise one."""
    if case.family != "bidi" or case.fw_policy == case.bw_policy == case.dtype_policy:
        return base
    fw, bw = tolerance_for(case.fw_policy, backend), tolerance_for(case.bw_policy, backend)
    return TolerancePolicy(base, {"h1": fw, "c1": fw, "h2": bw, "c2": bw})


def judge(
    case: Case,
    keras_outputs: Outputs,
    backend: str,
    factory: Optional[Factory] = None,
    tol: Any = None,
    dtype: Optional[str] = None,
) -> CaseResult:
    """Compare an implementation (the reference by default) with Keras's outputs for ``case``.

    A mismatch on a case under a known deviation counts as that deviation only when Keras
    matches the reference with the deviation's quirk switched on; otherwise it fails.
    """
    base = tolerance_for(case.tolerance_policy, backend)
    if isinstance(tol, TolerancePolicy):
        tol = tol.with_base(base)
    tol = tol or _direction_tolerances(case, backend, base)
    semantics = "keras2" if backend == "tf_keras" else "keras3"  # tf_keras is Keras 2: judged by its semantics
    spec = case.spec(semantics)
    impl = factory(spec) if factory else reference_factory(spec, dtype=dtype)
    actual = run_impl(case, impl)
    results = _compare_all(case, keras_outputs, actual, tol)
    if all(r.ok for r in results):
        return CaseResult(case, PASS, results)
    # A plugged-in implementation earns the deviation only by computing the documented semantics.
    follows_semantics = factory is None or all(
        r.ok for r in _compare_all(case, run_impl(case, case.reference(dtype=dtype, semantics=semantics)), actual, tol))
    for dev in deviations_for(case, backend):
        quirky = run_impl(case, case.reference(dtype=dtype, quirks=(dev.quirk,), semantics=semantics))
        if follows_semantics and all(r.ok for r in _compare_all(case, keras_outputs, quirky, tol)):
            return CaseResult(case, DEVIATION, results, dev.name, dev.reason)
    return CaseResult(case, FAIL, results)
