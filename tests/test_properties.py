"""Property tests (hypothesis) over random shapes, masks, flags and seeds.

Oracles are equivalences between code paths, never the implementation against itself on the same
path: reversed input vs go_backwards, all-True mask vs no mask, prefix runs vs full runs,
Bidirectional halves vs separately built LSTMs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm_ref import LSTM, Bidirectional

FAST = settings(deadline=None, max_examples=40)


@dataclasses.dataclass(frozen=True)
class Problem:
    B: int
    T: int
    D: int
    n: int
    seed: int
    mask: Optional[np.ndarray]

    @property
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def weights(self, salt: int = 0) -> list[np.ndarray]:
        """Random weights with per-gate scales and offsets (i, f, c, o)."""
        rng = np.random.default_rng([self.seed, 1 + salt])
        n, D = self.n, self.D
        scale = np.repeat([0.6, 1.2, 0.9, 0.75], n)
        return [
            rng.normal(size=(D, 4 * n)) * scale,
            rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n),
            rng.normal(scale=0.3, size=4 * n) + np.repeat([0.4, 1.0, 0.0, -0.3], n),
        ]

    def x(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 100]).normal(size=(self.B, self.T, self.D))

    def states(self, count: int = 2, units: Optional[int] = None) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, 200])
        return [rng.normal(size=(self.B, units or self.n)) for _ in range(count)]


@st.composite
def problems(draw, masked: bool = True) -> Problem:
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 8))
    D = draw(st.integers(1, 4))
    n = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    mask = None
    if masked:
        bits = draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
        mask = np.array(bits, dtype=bool).reshape(B, T)
    return Problem(B, T, D, n, seed, mask)


def _lstm(p: Problem, salt: int = 0, **kw) -> LSTM:
    layer = LSTM(p.n, **kw)
    layer.set_weights(p.weights(salt))
    return layer


def _close(a, b, tol: float = 1e-12):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# --- shapes -------------------------------------------------------------------------------------


@FAST
@given(p=problems(), rs=st.booleans(), rstate=st.booleans(), gb=st.booleans())
def test_lstm_output_shapes_match_documented_structure(p, rs, rstate, gb):
    res = _lstm(p, return_sequences=rs, return_state=rstate, go_backwards=gb)(p.x(), mask=p.mask)
    out_shape = (p.B, p.T, p.n) if rs else (p.B, p.n)
    if rstate:
        assert isinstance(res, tuple) and [a.shape for a in res] == [out_shape, (p.B, p.n), (p.B, p.n)]
    else:
        assert isinstance(res, np.ndarray) and res.shape == out_shape


@FAST
@given(
    p=problems(),
    merge_mode=st.sampled_from(["concat", "sum", "mul", "ave", None]),
    rs=st.booleans(),
    rstate=st.booleans(),
)
def test_bidirectional_output_shapes_match_documented_structure(p, merge_mode, rs, rstate):
    layer = Bidirectional(LSTM(p.n, return_sequences=rs, return_state=rstate), merge_mode=merge_mode)
    layer.set_weights(p.weights(0) + p.weights(1))
    res = layer(p.x(), mask=p.mask)
    lead = (p.B, p.T) if rs else (p.B,)
    out = lead + ((2 * p.n,) if merge_mode == "concat" else (p.n,))
    expected = ([out, out] if merge_mode is None else [out]) + ([(p.B, p.n)] * 4 if rstate else [])
    if len(expected) == 1:
        assert isinstance(res, np.ndarray)
        res = (res,)
    assert isinstance(res, tuple)
    assert [a.shape for a in res] == expected


# --- masking --------------------------------------------------------------------------------------


@FAST
@given(p=problems(), zofm=st.booleans(), gb=st.booleans())
def test_a_masked_step_never_changes_h_or_c(p, zofm, gb):
    # Run every prefix (in processing order) and compare the states before and after each step.
    x, mask = p.x(), p.mask
    h0, c0 = p.states()
    layer = _lstm(p, return_state=True, zero_output_for_mask=zofm)  # forward layer on processing order
    xp, mp = (x[:, ::-1], mask[:, ::-1]) if gb else (x, mask)
    prev_h, prev_c = h0, c0
    for k in range(p.T):
        _, h, c = layer(xp[:, : k + 1], mask=mp[:, : k + 1], initial_state=[h0, c0])
        frozen = ~mp[:, k]
        _close(h[frozen], prev_h[frozen])
        _close(c[frozen], prev_c[frozen])
        prev_h, prev_c = h, c
    # and the whole-sequence run of the go_backwards layer ends in the same state
    _, h_full, c_full = _lstm(p, return_state=True, go_backwards=gb, zero_output_for_mask=zofm)(
        x, mask=mask, initial_state=[h0, c0]
    )
    _close(h_full, prev_h)
    _close(c_full, prev_c)


@FAST
@given(p=problems(masked=False), rs=st.booleans(), zofm=st.booleans(), gb=st.booleans(), init=st.booleans())
def test_mask_of_all_true_equals_no_mask(p, rs, zofm, gb, init):
    layer = _lstm(p, return_sequences=rs, return_state=True, zero_output_for_mask=zofm, go_backwards=gb)
    state = p.states() if init else None
    with_mask = layer(p.x(), mask=np.ones((p.B, p.T), dtype=bool), initial_state=state)
    without = layer(p.x(), initial_state=state)
    for a, b in zip(with_mask, without, strict=True):
        np.testing.assert_array_equal(a, b)


@FAST
@given(p=problems(masked=False), merge_mode=st.sampled_from(["concat", "sum", "mul", "ave", None]), rs=st.booleans())
def test_bidirectional_mask_of_all_true_equals_no_mask(p, merge_mode, rs):
    layer = Bidirectional(LSTM(p.n, return_sequences=rs, return_state=True), merge_mode=merge_mode)
    layer.set_weights(p.weights(0) + p.weights(1))
    for a, b in zip(layer(p.x(), mask=np.ones((p.B, p.T), dtype=bool)), layer(p.x()), strict=True):
        np.testing.assert_array_equal(a, b)


# --- direction ------------------------------------------------------------------------------------


@FAST
@given(p=problems(), rs=st.booleans(), zofm=st.booleans(), init=st.booleans(), use_mask=st.booleans())
def test_go_backwards_equals_forward_lstm_on_time_reversed_input_and_mask(p, rs, zofm, init, use_mask):
    mask = p.mask if use_mask else None
    state = p.states() if init else None
    kw = dict(return_sequences=rs, return_state=True, zero_output_for_mask=zofm)
    back = _lstm(p, go_backwards=True, **kw)(p.x(), mask=mask, initial_state=state)
    fwd = _lstm(p, **kw)(p.x()[:, ::-1], mask=None if mask is None else mask[:, ::-1], initial_state=state)
    for a, b in zip(back, fwd, strict=True):
        _close(a, b)


@FAST
@given(p=problems(), rs=st.booleans(), init=st.booleans(), use_mask=st.booleans())
def test_bidirectional_concat_halves_equal_separately_built_lstms(p, rs, init, use_mask):
    mask = p.mask if use_mask else None
    states = p.states(4) if init else None
    layer = Bidirectional(LSTM(p.n, return_sequences=rs, return_state=True), merge_mode="concat")
    layer.set_weights(p.weights(0) + p.weights(1))
    out, h_f, c_f, h_b, c_b = layer(p.x(), mask=mask, initial_state=states)

    # Bidirectional forces zero_output_for_mask = return_sequences on both directions
    fw = _lstm(p, 0, return_sequences=rs, return_state=True, zero_output_for_mask=rs)
    bw = _lstm(p, 1, return_sequences=rs, return_state=True, zero_output_for_mask=rs, go_backwards=True)
    y_f, hf_w, cf_w = fw(p.x(), mask=mask, initial_state=None if states is None else states[:2])
    y_b, hb_w, cb_w = bw(p.x(), mask=mask, initial_state=None if states is None else states[2:])
    if rs:
        y_b = y_b[:, ::-1]  # re-aligned to input time only for sequences
    _close(out[..., : p.n], y_f)
    _close(out[..., p.n :], y_b)
    for a, b in zip((h_f, c_f, h_b, c_b), (hf_w, cf_w, hb_w, cb_w), strict=True):
        _close(a, b)
