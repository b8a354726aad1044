"""Memory: a call's peak allocation is linear in batch x time and within the documented budget
(``lstm.MAX_WORK_ELEMENTS`` counts B*T*(features + 5*units) elements per direction), and a request
over the budget raises ResourceLimitError before anything of its size is allocated (T = 10**8).

NumPy reports its allocations to tracemalloc, so the traced peak is the arrays' memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.reference import lstm

D, N = 8, 16


def _layer(rng: np.random.Generator, dtype=None, **kw) -> br.Bidirectional:
    layer = br.Bidirectional(br.LSTM(N, **kw, **({"dtype": dtype} if dtype else {})))
    layer.set_weights([rng.normal(size=s) for s in [(D, 4 * N), (N, 4 * N), (4 * N,)] * 2])
    return layer


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _budget_bytes(batch: int, time: int, itemsize: int) -> int:
    return 2 * batch * time * (D + 5 * N) * itemsize  # two directions


@pytest.mark.parametrize("dtype, itemsize", [(None, 8), ("float32", 4)], ids=["float64", "float32"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("mask", [False, True], ids=["nomask", "mask"])
def test_peak_memory_is_linear_in_batch_and_time_and_within_the_budget(rng, dtype, itemsize, return_sequences, mask):
    layer = _layer(rng, dtype, return_sequences=return_sequences)
    peaks = {}
    for batch, time in [(4, 500), (4, 1000), (8, 1000)]:
        x = rng.normal(size=(batch, time, D)).astype(np.float32)
        m = np.arange(time)[None, :] < np.array([time, time // 2] * (batch // 2))[:, None] if mask else None
        peaks[batch, time] = _peak_bytes(lambda: layer(x, mask=m))
        assert peaks[batch, time] <= 1.25 * _budget_bytes(batch, time, itemsize), peaks
    assert 1.8 <= peaks[4, 1000] / peaks[4, 500] <= 2.2, peaks  # doubling T doubles the memory
    assert 1.8 <= peaks[8, 1000] / peaks[4, 1000] <= 2.2, peaks  # doubling B too


def test_t_of_10_to_the_8_raises_resource_limit_before_allocating(rng):
    layer = _layer(rng)  # float64 compute: casting this float32 input alone would take 6.4 GB
    x = np.broadcast_to(np.zeros((1, 1, D), np.float32), (1, 10**8, D))  # 32 bytes of real data

    def call() -> None:
        with pytest.raises(br.ResourceLimitError, match=r"B\*T\*\(features\+5\*units\) = 1\*100000000\*\(8\+5\*16\)"):
            layer(x)

    peak = _peak_bytes(call)
    assert peak < 1_000_000


def test_the_budget_admits_what_it_documents(rng, monkeypatch):
    batch, time = 2, 50
    monkeypatch.setattr(lstm, "MAX_WORK_ELEMENTS", batch * time * (D + 5 * N))
    layer = _layer(rng, return_sequences=True)
    assert layer(rng.normal(size=(batch, time, D))).shape == (batch, time, 2 * N)
    with pytest.raises(br.ResourceLimitError):
        layer(rng.normal(size=(batch, time + 1, D)))
