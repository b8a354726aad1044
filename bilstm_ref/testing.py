"""Assertions for users' own tests: ``assert_matches_keras(actual, expected)``."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .conformance.compare import TOLERANCES, Tolerance, TolerancePolicy, compare

__all__ = ["assert_matches_keras"]

_DEFAULT_NAMES = {1: ("output",), 3: ("output", "h", "c"), 5: ("output", "h1", "c1", "h2", "c2"),
                  6: ("output_fw", "output_bw", "h1", "c1", "h2", "c2"), 2: ("output_fw", "output_bw")}


def assert_matches_keras(actual: Any, expected: Any, *, names: Optional[Sequence[str]] = None,
                         tol: Any = None, dtype_policy: str = "float32") -> None:
    """Assert that an implementation's outputs match Keras's, output by output.

    Args:
        actual: what the implementation returned: an array, or a tuple/list of arrays in Keras's
            order (output(s) then states).
        expected: what Keras returned, the same structure.
        names: output names for the message (default: Keras's, from the number of outputs).
        tol: a :class:`~bilstm_ref.conformance.compare.Tolerance` or ``TolerancePolicy``; default: the
            ``dtype_policy``'s (float32: atol 1e-5 + rtol 1e-5).

    Raises:
        AssertionError listing every failing output at once: max |diff| and where (batch, time,
        unit), max relative error, ULPs, share of elements off, NaN mismatches, tolerance.
    """
    __tracebackhide__ = True
    acts = list(actual) if isinstance(actual, (tuple, list)) else [actual]
    exps = list(expected) if isinstance(expected, (tuple, list)) else [expected]
    if len(acts) != len(exps):
        raise AssertionError(f"the implementation returned {len(acts)} outputs, Keras {len(exps)}")
    labels = list(names) if names is not None else list(_DEFAULT_NAMES.get(len(exps), [f"out{i}" for i in
                                                                                        range(len(exps))]))
    policy = tol if isinstance(tol, (Tolerance, TolerancePolicy)) else TolerancePolicy(TOLERANCES[dtype_policy])
    results = [compare(n, np.asarray(e), np.asarray(a), policy) for n, e, a in zip(labels, exps, acts, strict=True)]
    bad = [r for r in results if not r.ok]
    if bad:
        lines = [f"{len(bad)} of {len(results)} outputs differ from Keras:"] + ["  " + r.describe() for r in bad]
        ok = [r.name for r in results if r.ok]
        if ok:
            lines.append(f"  matching: {', '.join(ok)}")
        raise AssertionError("\n".join(lines))
