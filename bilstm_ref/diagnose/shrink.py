"""``explain --shrink``: reduce a failing case to a minimal repro that still fails.

The failure is the implementation's outputs leaving the reference's tolerance (or the
implementation raising). Reductions are tried in a fixed order and kept while the case still
fails: the fewest calls (a prefix: a stateful failure needs the calls before it), one sample, the
shortest sequence (a prefix or a suffix of each call), no mask or the fewest padded steps, no
initial state, then inputs zeroed step by step and feature by feature wherever they do not matter.
The result is written as a fixture (its expected outputs are the reference's, said so in its
provenance) and as a standalone Python snippet that needs only NumPy and the implementation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from ..conformance.compare import Tolerance, TolerancePolicy
from ..conformance.matrix import CallInputs
from ..reference.spec import LayerSpec, layer_policy
from .explain import judge_outputs
from .faults import Subject, run_spec

__all__ = ["Shrunk", "shrink", "write_repro"]

Factory = Callable[[LayerSpec], Any]


@dataclasses.dataclass
class Shrunk:
    """The reduced subject and what was reduced (``steps``: total time steps over the calls)."""

    subject: Subject
    original: Subject
    log: list[str]

    @property
    def steps(self) -> int:
        return sum(int(c.x.shape[1]) for c in self.subject.calls)

    def describe(self) -> str:
        o, s = self.original, self.subject
        before = f"{len(o.calls)} call(s), batch {o.calls[0].x.shape[0]}, {sum(c.x.shape[1] for c in o.calls)} steps"
        after = f"{len(s.calls)} call(s), batch {s.calls[0].x.shape[0]}, {self.steps} steps"
        return f"shrunk from {before} to {after}: " + ("; ".join(self.log) or "nothing could be removed")


def _calls(subject: Subject) -> list[CallInputs]:
    return [CallInputs(np.asarray(c.x), None if c.mask is None else np.asarray(c.mask, dtype=bool),
                      None if c.initial_state is None else tuple(np.asarray(v) for v in c.initial_state),
                      bool(c.reset_before)) for c in subject.calls]


def _fails(subject: Subject, factory: Factory) -> bool:
    from ..conformance.judge import run_calls

    expected = run_spec(subject.spec, subject.calls, subject.output_names)
    try:
        actual = run_calls(subject.calls, subject.output_names, factory(subject.spec))
    except Exception:  # the implementation raising is a failure too
        return True
    return not all(r.ok for r in judge_outputs(subject, expected, actual))


def shrink(subject: Subject, factory: Factory, rounds: int = 3) -> Shrunk:
    """The smallest variant of a failing ``subject`` found by the reductions (see the module)."""
    if not _fails(subject, factory):
        raise ValueError(f"{subject.id}: the implementation does not fail it; nothing to shrink")
    original = subject
    current = dataclasses.replace(subject, calls=tuple(_calls(subject)))
    log: list[str] = []

    def attempt(calls: list[CallInputs], what: str) -> bool:
        nonlocal current
        candidate = dataclasses.replace(current, calls=tuple(calls))
        if _fails(candidate, factory):
            current = candidate
            if what:
                log.append(what)
            return True
        return False

    for _ in range(rounds):
        before = _size(current)
        calls = list(current.calls)
        for k in range(1, len(calls)):  # the fewest calls
            if attempt(calls[:k], f"first {k} call(s) kept"):
                break
        calls = list(current.calls)
        if calls[0].x.shape[0] > 1:  # one sample
            for b in range(calls[0].x.shape[0]):
                if attempt([_rows(c, b) for c in calls], f"sample {b} alone"):
                    break
        for k in range(len(current.calls)):  # the shortest sequence, call by call
            c = current.calls[k]
            for t in range(1, c.x.shape[1]):
                done = False
                for part, sl in (("first", slice(0, t)), ("last", slice(c.x.shape[1] - t, None))):
                    if attempt(_replace(current.calls, k, _steps(c, sl)), f"call {k}: {part} {t} step(s)"):
                        done = True
                        break
                if done:
                    break
        for k, c in enumerate(current.calls):  # the simplest mask
            if c.mask is None:
                continue
            if attempt(_replace(current.calls, k, dataclasses.replace(c, mask=None)), f"call {k}: no mask"):
                continue
            for t in np.argwhere(~current.calls[k].mask).tolist():
                m = current.calls[k].mask.copy()
                m[tuple(t)] = True
                attempt(_replace(current.calls, k, dataclasses.replace(current.calls[k], mask=m)), "")
        for k, c in enumerate(current.calls):  # no initial state
            if c.initial_state is not None:
                attempt(_replace(current.calls, k, dataclasses.replace(c, initial_state=None)),
                        f"call {k}: no initial state")
        for k in range(len(current.calls)):  # zeroed inputs
            for t in range(current.calls[k].x.shape[1]):
                c = current.calls[k]
                if np.any(c.x[:, t]):
                    x = c.x.copy()
                    x[:, t] = 0
                    attempt(_replace(current.calls, k, dataclasses.replace(c, x=x)), "")
            for f in range(current.calls[k].x.shape[2]):
                c = current.calls[k]
                if np.any(c.x[..., f]):
                    x = c.x.copy()
                    x[..., f] = 0
                    attempt(_replace(current.calls, k, dataclasses.replace(c, x=x)), "")
        if _size(current) == before:
            break
    zeroed = sum(int(np.count_nonzero(c.x == 0)) for c in current.calls)
    if zeroed:
        log.append(f"{zeroed} input value(s) zeroed")
    return Shrunk(current, original, log)


def _size(s: Subject) -> tuple[int, ...]:
    return (len(s.calls), int(s.calls[0].x.shape[0]), sum(int(c.x.shape[1]) for c in s.calls),
            sum(0 if c.mask is None else int(np.count_nonzero(~c.mask)) + 1 for c in s.calls),
            sum(c.initial_state is not None for c in s.calls), sum(int(np.count_nonzero(c.x)) for c in s.calls))


def _replace(calls: Any, k: int, call: CallInputs) -> list[CallInputs]:
    out = list(calls)
    out[k] = call
    return out


def _rows(c: CallInputs, b: int) -> CallInputs:
    sl = slice(b, b + 1)
    return CallInputs(c.x[sl], None if c.mask is None else c.mask[sl],
                     None if c.initial_state is None else tuple(v[sl] for v in c.initial_state), c.reset_before)


def _steps(c: CallInputs, sl: slice) -> CallInputs:
    return dataclasses.replace(c, x=c.x[:, sl], mask=None if c.mask is None else c.mask[:, sl])


# --- writing the repro ----------------------------------------------------------------------------
def write_repro(shrunk: Shrunk, impl: str, out_dir: Union[str, Path]) -> dict[str, str]:
    """The repro as a fixture (``out_dir/fixtures``) and a standalone snippet (``out_dir/repro.py``);
    returns what was written."""
    from .._version import __version__
    from ..fixtures.store import Call, Fixture, write_fixture

    s = shrunk.subject
    out = Path(out_dir)
    expected = run_spec(s.spec, s.calls, s.output_names)
    tol = s.tolerance.for_output(s.output_names[0]) if isinstance(s.tolerance, TolerancePolicy) else s.tolerance
    fixture = Fixture(
        id=f"repro-{s.id}"[:120], spec=s.spec,
        calls=tuple(Call(c.x, c.mask, c.initial_state, e, c.reset_before) for c, e in zip(s.calls, expected)),
        output_names=s.output_names, tolerance=tol, tolerance_policy=layer_policy(s.spec),
        flags={"id": f"repro-{s.id}", "shrunk_from": shrunk.original.id},
        provenance={"generator": f"bilstm_ref {__version__} explain --shrink", "expected": "the reference (float64)",
                    "implementation": impl, "shrunk_from": shrunk.original.id, "reductions": shrunk.log},
    )
    (out / "fixtures").mkdir(parents=True, exist_ok=True)
    write_fixture(out / "fixtures", fixture, force=True)
    written = {"fixture": str(out / "fixtures" / f"{fixture.id}.json")}
    from .._atomic import write_text_atomic as _atomic_text

    snippet = out / "repro.py"
    _atomic_text(snippet, _snippet(s, expected, tol, impl))
    written["snippet"] = str(snippet)
    return written


def _literal(a: Optional[np.ndarray]) -> str:
    if a is None:
        return "None"
    a = np.asarray(a)
    if a.dtype == bool:
        return f"np.array({a.tolist()!r}, dtype=bool)"
    values = json.dumps(np.asarray(a, dtype=np.float64).tolist()).replace("NaN", "float('nan')")
    values = values.replace("-Infinity", "-float('inf')").replace("Infinity", "float('inf')")
    return f"np.array({values}, dtype={str(a.dtype)!r})"


def _snippet(s: Subject, expected: list[dict[str, np.ndarray]], tol: Tolerance, impl: str) -> str:
    calls = []
    for c, e in zip(s.calls, expected):
        init = "None" if c.initial_state is None else "[" + ", ".join(_literal(v) for v in c.initial_state) + "]"
        exp = "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in e.items()) + "}"
        calls.append(f"    dict(x={_literal(c.x)},\n         mask={_literal(c.mask)},\n         initial_state={init},\n"
                     f"         reset_before={c.reset_before!r},\n         expected={exp}),")
    weights = ",\n    ".join(_literal(w) for w in s.spec.weights)
    return f'''"""A minimal repro of {s.id}: {impl} against the documented Keras semantics.

Standalone: needs NumPy and the implementation only. Expected values are the float64 reference's.
Run: python repro.py [MODULE:FACTORY]  (exit status 1 while the implementation still fails; another
factory, such as your fixed port, can be named on the command line)
"""
import importlib
import json
import sys
import types

import numpy as np

CLASS_NAME = {s.spec.class_name!r}
CONFIG = json.loads(r"""{json.dumps(s.spec.config, indent=1, sort_keys=True)}""")
WEIGHTS = [
    {weights},
]
OUTPUT_NAMES = {list(s.output_names)!r}
ATOL, RTOL = {tol.atol!r}, {tol.rtol!r}
CALLS = [
{chr(10).join(calls)}
]


class Spec(types.SimpleNamespace):
    """What the factory receives (the fields of bilstm_ref.LayerSpec it reads)."""

    semantics = {s.spec.semantics!r}


IMPL = {impl!r}


def main() -> int:
    module, _, name = (sys.argv[1] if len(sys.argv) > 1 else IMPL).partition(":")
    factory = getattr(importlib.import_module(module), name)
    impl = factory(Spec(class_name=CLASS_NAME, config=CONFIG, weights=tuple(WEIGHTS),
                        provenance={{"semantics": {s.spec.semantics!r}}}, states=None))
    failed = 0
    for k, call in enumerate(CALLS):
        if call["reset_before"]:
            impl.reset_state()
        got = impl(call["x"], mask=call["mask"], initial_state=call["initial_state"])
        got = got if isinstance(got, (tuple, list)) else (got,)
        for name, value in zip(OUTPUT_NAMES, got):
            want = call["expected"][name]
            value = np.asarray(value, dtype=np.float64)
            bad = ~(np.abs(value - want) <= ATOL + RTOL * np.abs(want)) & ~(np.isnan(value) & np.isnan(want))
            if bad.any():
                failed += 1
                print(f"call {{k}} {{name}}: max |diff| {{np.nanmax(np.abs(value - want)):.3g}}; got {{value.ravel()[:6]}}, "
                      f"expected {{want.ravel()[:6]}}")
    print("FAILS" if failed else "passes")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
'''
