"""The fast path (lstm.scan_stack: the directions of a layer stepped together, fused gate
activations, preallocated buffers) is proven identical to the straightforward one (lstm.scan, one
direction at a time: the readable specification) on every case of the matrix: bit for bit, signed
zeros and NaN positions included, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

from bilstm_ref.reference import lstm
from bilstm_ref.conformance import matrix
from bilstm_ref.conformance.judge import run_impl

CASES = matrix.cases()


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a), np.signbit(b)))


def test_the_paired_fast_path_is_taken_where_the_cells_match(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = lstm.scan_stack
    monkeypatch.setattr(lstm, "scan_stack", lambda xs, *a, **k: calls.append(len(xs)) or original(xs, *a, **k))
    case = matrix.by_id()["bidi-concat-seq-state-mask_right-init-stateful"]
    run_impl(case, case.reference())
    assert calls and set(calls) == {2}  # same cell in both directions: stepped together


@pytest.mark.parametrize("dtype", [None, "float32"], ids=["float64", "float32"])
@pytest.mark.parametrize("family", ["bidi", "lstm"])
def test_fast_path_equals_the_straightforward_scan_on_every_case(monkeypatch: pytest.MonkeyPatch, dtype, family) -> None:
    selected = [c for c in CASES if c.family == family]
    differing = []
    for case in selected:
        fast = run_impl(case, case.reference(dtype=dtype))
        with monkeypatch.context() as m:
            m.setattr(lstm, "scan_stack", lstm.scan_stack_spec)
            slow = run_impl(case, case.reference(dtype=dtype))
        for k, (a, b) in enumerate(zip(fast, slow, strict=True)):
            for name in case.output_names:
                if not _identical(np.asarray(a[name]), np.asarray(b[name])):
                    differing.append((case.id, k, name))
    assert not differing, differing[:10]
    assert len(selected) > 100
