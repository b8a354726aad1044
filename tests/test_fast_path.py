"""The paired fast path (both directions of a Bidirectional stepped together, lstm.scan_pair) is
proven identical to the straightforward one (each direction scanned on its own, lstm.scan) on every
Bidirectional case of the matrix: bit for bit, NaN positions included."""

from __future__ import annotations

import numpy as np
import pytest

from bilstm_ref import lstm, matrix
from bilstm_ref.runner import run_impl

BIDI = [c for c in matrix.cases() if c.family == "bidi"]


def _separately(fw, bw, x, mask, fw_state, bw_state, training):
    return fw.run(x, mask, fw_state, training), bw.run(x, mask, bw_state, training)


def test_the_fast_path_is_taken_where_the_cells_match(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = lstm.scan_pair
    monkeypatch.setattr(lstm, "scan_pair", lambda *a, **k: calls.append(1) or original(*a, **k))
    case = matrix.by_id()["bidi-concat-seq-state-mask_right-init-stateful"]
    run_impl(case, case.reference())
    assert calls  # same cell in both directions: stepped together


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_paired_scan_equals_separate_scans_on_every_bidi_case(monkeypatch: pytest.MonkeyPatch, dtype) -> None:
    differing = []
    for case in BIDI:
        fast = run_impl(case, case.reference(dtype=dtype))
        with monkeypatch.context() as m:
            m.setattr("bilstm_ref.bidirectional.run_pair", _separately)
            slow = run_impl(case, case.reference(dtype=dtype))
        for k, (a, b) in enumerate(zip(fast, slow, strict=True)):
            for name in case.output_names:
                if not np.array_equal(a[name], b[name], equal_nan=True):
                    differing.append((case.id, k, name, float(np.nanmax(np.abs(a[name] - b[name])))))
    assert not differing, differing[:10]
    assert len(BIDI) > 400
