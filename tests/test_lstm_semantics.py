"""Hand-checkable semantics of the reference LSTM and Bidirectional(LSTM), without Keras.

Oracles: an explicit cell written out here (gate order i, f, c, o), a per-row scalar loop of the
masking rules (docs/semantics.md#the-masked-step-rule), and equivalences between code paths (reversed input, truncated
rows, separately built layers).
"""

from __future__ import annotations

import re
import warnings
from typing import Optional

import numpy as np
import pytest

from bilstm_ref import (
    LSTM,
    Bidirectional,
    ConfigError,
    StateError,
    UnsupportedModelError,
)

MERGE_MODES = ["concat", "sum", "mul", "ave", None]


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def make_weights(rng: np.random.Generator, d: int, n: int, use_bias: bool = True) -> list[np.ndarray]:
    """Random weights with different scales and offsets per gate (i, f, c, o)."""
    scale = np.repeat([0.6, 1.2, 0.9, 0.75], n)
    kernel = rng.normal(size=(d, 4 * n)) * scale
    recurrent = rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n)
    out = [kernel, recurrent]
    if use_bias:
        out.append(rng.normal(scale=0.3, size=4 * n) + np.repeat([0.4, 1.0, 0.0, -0.3], n))
    return out


def lstm(weights: list[np.ndarray], **kw) -> LSTM:
    layer = LSTM(weights[1].shape[0], use_bias=len(weights) == 3, **kw)
    layer.set_weights(weights)
    return layer


def bidi(weights: list[np.ndarray], merge_mode: Optional[str] = "concat", **kw) -> Bidirectional:
    """Bidirectional over LSTM(**kw); weights are forward + backward lists concatenated."""
    half = len(weights) // 2
    n = weights[1].shape[0]
    layer = Bidirectional(LSTM(n, use_bias=half == 3, **kw), merge_mode=merge_mode)
    layer.set_weights(weights)
    return layer


def sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def cell(x_t, h, c, W, U, b=None):
    """One explicit LSTM step, Keras gate layout i, f, c(g), o along the last axis."""
    n = h.shape[-1]
    z = x_t @ W + h @ U
    if b is not None:
        z = z + b
    i = sig(z[..., 0:n])
    f = sig(z[..., n : 2 * n])
    g = np.tanh(z[..., 2 * n : 3 * n])
    o = sig(z[..., 3 * n : 4 * n])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


def loop_reference(x, mask, weights, h0=None, c0=None, zero_output_for_mask=False):
    """Masking rule "A" written per row with Python control flow: returns (seq, h, c), input order."""
    W, U = weights[0], weights[1]
    b = weights[2] if len(weights) == 3 else None
    B, T, _ = x.shape
    n = U.shape[0]
    seq = np.zeros((B, T, n))
    hs = np.zeros((B, n)) if h0 is None else np.array(h0, dtype=float)
    cs = np.zeros((B, n)) if c0 is None else np.array(c0, dtype=float)
    for r in range(B):
        h, c, prev = hs[r].copy(), cs[r].copy(), np.zeros(n)
        for t in range(T):
            if mask is None or mask[r, t]:
                h, c = cell(x[r, t], h, c, W, U, b)
                prev = h
            elif zero_output_for_mask:
                prev = np.zeros(n)
            seq[r, t] = prev
        hs[r], cs[r] = h, c
    return seq, hs, cs


def close(actual, expected, tol: float = 1e-12):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


# --- the cell ----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_bias", [False, True], ids=["nobias", "bias"])
def test_one_step_matches_explicit_gate_formula(rng, use_bias):
    B, D, n = 3, 4, 2
    w = make_weights(rng, D, n, use_bias)
    x = rng.normal(size=(B, 1, D))
    h0, c0 = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    out, h, c = lstm(w, return_state=True)(x, initial_state=[h0, c0])

    W, U = w[0], w[1]
    z = x[:, 0] @ W + h0 @ U + (w[2] if use_bias else 0.0)
    i, f, g, o = sig(z[:, :n]), sig(z[:, n : 2 * n]), np.tanh(z[:, 2 * n : 3 * n]), sig(z[:, 3 * n :])
    c_want = f * c0 + i * g
    h_want = o * np.tanh(c_want)
    close(c, c_want)
    close(h, h_want)
    close(out, h_want)


def test_one_step_formula_with_swapped_gates_does_not_match(rng):
    # The test weights discriminate gate order: reading i and f swapped gives a different answer.
    B, D, n = 2, 3, 2
    w = make_weights(rng, D, n, use_bias=False)
    x = rng.normal(size=(B, 1, D))
    h0, c0 = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    _, _, c = lstm(w, return_state=True)(x, initial_state=[h0, c0])
    z = x[:, 0] @ w[0] + h0 @ w[1]
    f_wrong, i_wrong, g = sig(z[:, :n]), sig(z[:, n : 2 * n]), np.tanh(z[:, 2 * n : 3 * n])
    assert np.max(np.abs(c - (f_wrong * c0 + i_wrong * g))) > 1e-3


def test_multi_step_sequence_matches_explicit_loop(rng):
    B, T, D, n = 2, 6, 3, 4
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    seq, h, c = lstm(w, return_sequences=True, return_state=True)(x)
    seq_want, h_want, c_want = loop_reference(x, None, w)
    close(seq, seq_want)
    close(h, h_want)
    close(c, c_want)


def test_zero_initial_state_is_the_default(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 4, 3))
    layer = lstm(w, return_sequences=True)
    np.testing.assert_array_equal(layer(x), layer(x, initial_state=[np.zeros((2, 2)), np.zeros((2, 2))]))


# --- return structures -------------------------------------------------------------------------


@pytest.mark.parametrize("return_state", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_lstm_return_structure(rng, return_sequences, return_state):
    B, T, D, n = 2, 5, 3, 4
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    res = lstm(w, return_sequences=return_sequences, return_state=return_state)(x)
    out_shape = (B, T, n) if return_sequences else (B, n)
    if return_state:
        assert isinstance(res, tuple) and len(res) == 3
        out, h, c = res
        assert (out.shape, h.shape, c.shape) == (out_shape, (B, n), (B, n))
        last = out[:, -1] if return_sequences else out
        np.testing.assert_array_equal(last, h)  # no mask: the last output is h_T
        assert not np.allclose(h, c)
    else:
        assert isinstance(res, np.ndarray)
        assert res.shape == out_shape


@pytest.mark.parametrize("return_state", [False, True], ids=["nostate", "state"])
@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=lambda m: f"merge_{m}")
def test_bidirectional_return_structure(rng, merge_mode, return_sequences, return_state):
    B, T, D, n = 2, 5, 3, 4
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    res = bidi(w, merge_mode, return_sequences=return_sequences, return_state=return_state)(x)
    lead = (B, T) if return_sequences else (B,)
    n_out = 2 * n if merge_mode == "concat" else n
    n_outputs = 2 if merge_mode is None else 1
    expected_count = n_outputs + (4 if return_state else 0)
    if expected_count == 1:
        assert isinstance(res, np.ndarray)
        res = (res,)
    else:
        assert isinstance(res, tuple)
        assert all(isinstance(a, np.ndarray) for a in res)  # flat: no nesting
    assert len(res) == expected_count
    for a in res[:n_outputs]:
        assert a.shape == lead + (n_out,)
    for s in res[n_outputs:]:
        assert s.shape == (B, n)


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "seq"])
def test_bidirectional_merge_modes_combine_the_two_directions(rng, return_sequences):
    B, T, D, n = 2, 4, 3, 3
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    y_f, y_b = bidi(w, None, return_sequences=return_sequences)(x)
    close(bidi(w, "concat", return_sequences=return_sequences)(x), np.concatenate([y_f, y_b], axis=-1))
    close(bidi(w, "sum", return_sequences=return_sequences)(x), y_f + y_b)
    close(bidi(w, "mul", return_sequences=return_sequences)(x), y_f * y_b)
    close(bidi(w, "ave", return_sequences=return_sequences)(x), (y_f + y_b) / 2)


def test_bidirectional_merge_none_with_state_returns_six_flat_arrays(rng):
    B, T, D, n = 2, 4, 3, 2
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    res = bidi(w, None, return_sequences=True, return_state=True)(x)
    assert isinstance(res, tuple) and len(res) == 6
    y_f, y_b, h_f, c_f, h_b, c_b = res
    np.testing.assert_array_equal(y_f[:, -1], h_f)
    np.testing.assert_array_equal(y_b[:, 0], h_b)
    assert not np.allclose(h_f, c_f) and not np.allclose(h_b, c_b)


def test_invalid_merge_mode_raises_config_error():
    with pytest.raises(ConfigError, match="merge_mode: expected one of .*got 'max'"):
        Bidirectional(LSTM(2), merge_mode="max")


# --- masks (rule A) ----------------------------------------------------------------------------


@pytest.mark.parametrize("zofm", [False, True], ids=["repeat", "zofm"])
def test_masked_run_matches_per_row_loop_reference(rng, zofm):
    B, T, D, n = 4, 7, 3, 3
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array(
        [
            [1, 1, 1, 1, 0, 0, 0],  # right padding
            [0, 0, 1, 1, 1, 1, 1],  # left padding
            [1, 0, 1, 1, 0, 0, 1],  # holes
            [0, 0, 0, 0, 0, 0, 0],  # fully masked
        ],
        dtype=bool,
    )
    h0, c0 = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    seq, h, c = lstm(w, return_sequences=True, return_state=True, zero_output_for_mask=zofm)(
        x, mask=mask, initial_state=[h0, c0]
    )
    seq_want, h_want, c_want = loop_reference(x, mask, w, h0, c0, zofm)
    close(seq, seq_want)
    close(h, h_want)
    close(c, c_want)


@pytest.mark.parametrize("zofm", [False, True], ids=["repeat", "zofm"])
def test_state_is_frozen_on_masked_steps(rng, zofm):
    # Stepping the layer one prefix at a time: a masked step leaves (h, c) bit-for-bit unchanged.
    B, T, D, n = 2, 6, 3, 3
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[1, 0, 0, 1, 0, 1], [1, 1, 0, 1, 1, 0]], dtype=bool)
    layer = lstm(w, return_state=True, zero_output_for_mask=zofm)
    prev = None
    for t in range(T):
        _, h, c = layer(x[:, : t + 1], mask=mask[:, : t + 1])
        if prev is not None:
            for r in range(B):
                if not mask[r, t]:
                    close(h[r], prev[0][r], 1e-14)
                    close(c[r], prev[1][r], 1e-14)
                else:
                    assert not np.allclose(h[r], prev[0][r])
        prev = (h, c)


def test_masked_step_output_repeats_previous_emitted_output_starting_at_zero(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(1, 6, 3))
    mask = np.array([[0, 1, 0, 0, 1, 0]], dtype=bool)
    seq = lstm(w, return_sequences=True)(x, mask=mask)
    np.testing.assert_array_equal(seq[0, 0], 0.0)  # nothing emitted yet: zeros
    np.testing.assert_array_equal(seq[0, 2], seq[0, 1])
    np.testing.assert_array_equal(seq[0, 3], seq[0, 1])
    np.testing.assert_array_equal(seq[0, 5], seq[0, 4])
    assert not np.allclose(seq[0, 4], seq[0, 1])


def test_masked_step_output_is_zero_with_zero_output_for_mask(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(1, 6, 3))
    mask = np.array([[0, 1, 0, 0, 1, 0]], dtype=bool)
    seq = lstm(w, return_sequences=True, zero_output_for_mask=True)(x, mask=mask)
    np.testing.assert_array_equal(seq[0, ~mask[0]], 0.0)
    assert np.all(seq[0, mask[0]] != 0.0)


@pytest.mark.parametrize("zofm", [False, True], ids=["repeat", "zofm"])
def test_right_padded_row_equals_unmasked_run_on_truncated_row(rng, zofm):
    B, T, D, n, L = 1, 6, 3, 4, 4
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.arange(T)[None, :] < L
    layer = lstm(w, return_sequences=True, return_state=True, zero_output_for_mask=zofm)
    seq, h, c = layer(x, mask=mask)
    seq_t, h_t, c_t = layer(x[:, :L])
    close(seq[:, :L], seq_t)
    close(h, h_t)
    close(c, c_t)
    for t in range(L, T):
        np.testing.assert_array_equal(seq[:, t], 0.0 if zofm else seq[:, L - 1])


def test_right_padded_last_output_is_h_at_last_valid_step(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    last, h, _ = lstm(w, return_state=True)(x, mask=mask)
    np.testing.assert_array_equal(last, h)
    close(last[0], lstm(w)(x[:1, :3])[0])


def test_zero_output_for_mask_also_zeroes_last_output_when_last_step_masked(rng):
    # docs/semantics.md#zero_output_for_mask: with return_sequences=False the last output is 0 for a right-padded row.
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    last, h, _ = lstm(w, return_state=True, zero_output_for_mask=True)(x, mask=mask)
    np.testing.assert_array_equal(last[0], 0.0)
    np.testing.assert_array_equal(last[1], h[1])
    assert np.all(h[0] != 0.0)


@pytest.mark.parametrize("zofm", [False, True], ids=["repeat", "zofm"])
def test_fully_masked_row_outputs_zeros_and_keeps_initial_state(rng, zofm):
    B, T, D, n = 3, 5, 3, 2
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.ones((B, T), dtype=bool)
    mask[1] = False
    h0, c0 = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    layer = lstm(w, return_sequences=True, return_state=True, zero_output_for_mask=zofm)
    seq, h, c = layer(x, mask=mask, initial_state=[h0, c0])
    np.testing.assert_array_equal(seq[1], 0.0)
    np.testing.assert_array_equal(h[1], h0[1])
    np.testing.assert_array_equal(c[1], c0[1])
    # the other rows are what they would be on their own
    keep = [0, 2]
    seq_o, h_o, _ = layer(x[keep], initial_state=[h0[keep], c0[keep]])
    close(seq[keep], seq_o)
    close(h[keep], h_o)


@pytest.mark.parametrize("zofm", [False, True], ids=["repeat", "zofm"])
def test_left_padded_row_starts_at_first_valid_step(rng, zofm):
    B, T, D, n, k = 2, 6, 3, 3, 2
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.arange(T)[None, :].repeat(B, 0) >= k
    h0, c0 = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    layer = lstm(w, return_sequences=True, return_state=True, zero_output_for_mask=zofm)
    seq, h, c = layer(x, mask=mask, initial_state=[h0, c0])
    np.testing.assert_array_equal(seq[:, :k], 0.0)  # leading masked steps output zeros, not h0
    seq_v, h_v, c_v = layer(x[:, k:], initial_state=[h0, c0])
    close(seq[:, k:], seq_v)
    close(h, h_v)
    close(c, c_v)


def test_holes_equal_running_with_the_masked_steps_deleted(rng):
    B, T, D, n = 1, 7, 3, 3
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[1, 0, 1, 1, 0, 0, 1]], dtype=bool)
    layer = lstm(w, return_sequences=True, return_state=True)
    seq, h, c = layer(x, mask=mask)
    seq_v, h_v, c_v = layer(x[:, mask[0]])
    close(seq[:, mask[0]], seq_v)
    close(h, h_v)
    close(c, c_v)


def test_mask_all_true_equals_no_mask(rng):
    w = make_weights(rng, 3, 3)
    x = rng.normal(size=(2, 5, 3))
    layer = lstm(w, return_sequences=True, return_state=True, zero_output_for_mask=True)
    for a, b in zip(layer(x, mask=np.ones((2, 5), dtype=bool)), layer(x), strict=True):
        np.testing.assert_array_equal(a, b)


# --- go_backwards ------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_go_backwards_equals_forward_run_on_reversed_input(rng, masked):
    B, T, D, n = 2, 6, 3, 3
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1]], dtype=bool) if masked else None
    seq_b, h_b, c_b = lstm(w, go_backwards=True, return_sequences=True, return_state=True)(x, mask=mask)
    seq_f, h_f, c_f = lstm(w, return_sequences=True, return_state=True)(
        x[:, ::-1], mask=None if mask is None else mask[:, ::-1]
    )
    close(seq_b, seq_f)
    close(h_b, h_f)
    close(c_b, c_f)


def test_go_backwards_sequence_is_in_processing_order(rng):
    B, T, D, n = 2, 5, 3, 2
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    h0, c0 = rng.normal(size=(B, n)), rng.normal(size=(B, n))
    seq, h, _ = lstm(w, go_backwards=True, return_sequences=True, return_state=True)(x, initial_state=[h0, c0])
    h1, _ = cell(x[:, T - 1], h0, c0, *w)  # first processed step reads x[T-1] from the initial state
    close(seq[:, 0], h1)
    np.testing.assert_array_equal(seq[:, -1], h)  # last processed step (after x[0]) is the final h


def test_go_backwards_last_output_is_state_after_x0(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 5, 3))
    last = lstm(w, go_backwards=True)(x)
    close(last, lstm(w, go_backwards=True, return_sequences=True)(x)[:, -1])
    close(last, lstm(w)(x[:, ::-1]))


def test_go_backwards_right_padding_is_processed_first_with_zero_outputs(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(1, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0]], dtype=bool)
    seq, h, _ = lstm(w, go_backwards=True, return_sequences=True, return_state=True)(x, mask=mask)
    np.testing.assert_array_equal(seq[0, :2], 0.0)
    close(seq[:, 2:], lstm(w, return_sequences=True)(x[:, 2::-1]))
    close(h, lstm(w)(x[:, 2::-1]))


# --- Bidirectional ------------------------------------------------------------------------------


def test_bidirectional_sequence_realigns_backward_half(rng):
    B, T, D, n = 2, 5, 3, 3
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    out, h_fw, c_fw, h_bw, c_bw = bidi(w, return_sequences=True, return_state=True)(x)
    assert out.shape == (B, T, 2 * n)
    np.testing.assert_array_equal(out[:, -1, :n], h_fw)
    np.testing.assert_array_equal(out[:, 0, n:], h_bw)
    seq_b = lstm(w[3:], go_backwards=True, return_sequences=True, zero_output_for_mask=True)(x)
    close(out[:, :, n:], seq_b[:, ::-1])
    close(out[:, :, :n], lstm(w[:3], return_sequences=True)(x))


def test_bidirectional_last_output_is_not_realigned(rng):
    B, T, D, n = 2, 5, 3, 3
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    out, h_fw, _, h_bw, _ = bidi(w, return_state=True)(x)
    np.testing.assert_array_equal(out, np.concatenate([h_fw, h_bw], axis=-1))
    seq = bidi(w, return_sequences=True)(x)
    close(out[:, :n], seq[:, -1, :n])
    close(out[:, n:], seq[:, 0, n:])  # the backward value aligned with t = 0
    close(out[:, n:], lstm(w[3:], go_backwards=True)(x))


def test_bidirectional_sequence_forces_zero_output_for_mask(rng):
    B, T, D, n = 2, 6, 3, 2
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 0, 1, 1, 1]], dtype=bool)
    layer = bidi(w, "concat", return_sequences=True, zero_output_for_mask=False)
    assert layer.forward_layer.zero_output_for_mask and layer.backward_layer.zero_output_for_mask
    out = layer(x, mask=mask)
    np.testing.assert_array_equal(out[~mask], 0.0)  # both halves exactly 0 at masked steps
    assert np.all(out[mask] != 0.0)


@pytest.mark.parametrize("merge_mode", ["sum", "mul", "ave"])
def test_bidirectional_sequence_masked_steps_are_zero_for_every_merge_mode(rng, merge_mode):
    w = make_weights(rng, 3, 2) + make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1]], dtype=bool)
    out = bidi(w, merge_mode, return_sequences=True)(x, mask=mask)
    np.testing.assert_array_equal(out[~mask], 0.0)


def test_bidirectional_last_output_forces_zero_output_for_mask_false(rng):
    B, T, D, n = 2, 5, 3, 2
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=bool)
    layer = bidi(w, return_state=True, zero_output_for_mask=True)
    assert not layer.forward_layer.zero_output_for_mask
    assert not layer.backward_layer.zero_output_for_mask
    out, h_fw, _, h_bw, _ = layer(x, mask=mask)
    # right-padded row 0: forward half is h at the last valid step, not 0 (zofm was overwritten)
    np.testing.assert_array_equal(out[:, :n], h_fw)
    np.testing.assert_array_equal(out[:, n:], h_bw)
    assert np.all(out != 0.0)


def test_bidirectional_last_output_with_holes_runs_over_valid_steps_only(rng):
    # docs/semantics.md#masks: forward half = run over the valid steps; backward half = run over them reversed.
    B, T, D, n = 1, 7, 3, 3
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    mask = np.array([[0, 1, 1, 0, 1, 0, 1]], dtype=bool)
    out = bidi(w)(x, mask=mask)
    valid = x[:, mask[0]]
    close(out[:, :n], lstm(w[:3])(valid))
    close(out[:, n:], lstm(w[3:])(valid[:, ::-1]))


def test_bidirectional_initial_state_order_is_h_fw_c_fw_h_bw_c_bw(rng):
    B, T, D, n = 2, 5, 3, 3
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    h_f0, c_f0, h_b0, c_b0 = (rng.normal(size=(B, n)) for _ in range(4))
    out, h_f, c_f, h_b, c_b = bidi(w, return_sequences=True, return_state=True)(
        x, initial_state=[h_f0, c_f0, h_b0, c_b0]
    )
    seq_f, hf_w, cf_w = lstm(w[:3], return_sequences=True, return_state=True)(x, initial_state=[h_f0, c_f0])
    seq_b, hb_w, cb_w = lstm(w[3:], go_backwards=True, return_sequences=True, return_state=True)(
        x, initial_state=[h_b0, c_b0]
    )
    close(out[:, :, :n], seq_f)
    close(out[:, :, n:], seq_b[:, ::-1])
    close(np.stack([h_f, c_f, h_b, c_b]), np.stack([hf_w, cf_w, hb_w, cb_w]))
    swapped = bidi(w, return_sequences=True)(x, initial_state=[h_b0, c_b0, h_f0, c_f0])
    assert np.max(np.abs(swapped - out)) > 1e-3


def test_bidirectional_does_not_run_or_change_the_wrapped_layer(rng):
    w = make_weights(rng, 3, 2)
    inner = lstm(w)
    layer = Bidirectional(inner)
    assert layer.forward_layer is not inner and layer.backward_layer is not inner
    assert layer.forward_layer.name == "forward_lstm" and layer.backward_layer.name == "backward_lstm"
    assert layer.backward_layer.go_backwards and not inner.go_backwards
    for a, b in zip(inner.get_weights(), w, strict=True):
        np.testing.assert_array_equal(a, b)


# --- custom backward layer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fw_kw, bw_kw, merge_mode, fragment",
    [
        (dict(), dict(go_backwards=False), "concat", "must have different go_backwards"),
        (dict(go_backwards=True), dict(go_backwards=True), "concat", "must have different go_backwards"),
        (dict(), dict(go_backwards=True, stateful=True), "concat", "must have the same stateful"),
        (dict(), dict(go_backwards=True, return_sequences=True), "concat", "must have the same return_sequences"),
        (dict(), dict(go_backwards=True, return_state=True), "concat", "must have the same return_state"),
        (dict(), dict(go_backwards=True, units=3), "sum", "merge_mode='sum' needs equal units"),
        (dict(), dict(go_backwards=True, units=3), "mul", "merge_mode='mul' needs equal units"),
        (dict(), dict(go_backwards=True, units=3), "ave", "merge_mode='ave' needs equal units"),
    ],
    ids=["same_go_backwards", "both_backwards", "stateful", "return_sequences", "return_state", "units_sum",
         "units_mul", "units_ave"],
)
def test_custom_backward_layer_constraints_raise_config_error(fw_kw, bw_kw, merge_mode, fragment):
    bw_units = bw_kw.pop("units", 2)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        Bidirectional(LSTM(2, **fw_kw), merge_mode=merge_mode, backward_layer=LSTM(bw_units, **bw_kw))


def test_wrapped_layer_with_go_backwards_and_no_backward_layer_raises_config_error():
    with pytest.raises(ConfigError, match="different go_backwards"):
        Bidirectional(LSTM(2, go_backwards=True))


@pytest.mark.parametrize("merge_mode", ["concat", None], ids=["concat", "none"])
def test_custom_backward_layer_with_other_units_and_activation_is_used_as_is(rng, merge_mode):
    B, T, D = 2, 5, 3
    wf, wb = make_weights(rng, D, 2), make_weights(rng, D, 3)
    bw = LSTM(3, go_backwards=True, return_sequences=True, activation="relu", name="my_backward")
    bw.set_weights(wb)
    layer = Bidirectional(LSTM(2, return_sequences=True), merge_mode=merge_mode, backward_layer=bw)
    layer.set_weights(wf + wb)
    assert layer.backward_layer.name == "my_backward"
    x = rng.normal(size=(B, T, D))
    res = layer(x)
    y_b_want = bw(x)[:, ::-1]
    if merge_mode == "concat":
        assert res.shape == (B, T, 5)
        close(res[:, :, 2:], y_b_want)
    else:
        assert res[0].shape == (B, T, 2) and res[1].shape == (B, T, 3)
        close(res[1], y_b_want)


# --- stateful ----------------------------------------------------------------------------------


def test_stateful_lstm_three_chunks_equal_one_long_run(rng):
    B, D, n = 2, 3, 3
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, 9, D))
    long_seq, long_h, long_c = lstm(w, return_sequences=True, return_state=True)(x)
    layer = lstm(w, stateful=True, return_sequences=True, return_state=True)
    chunks = [layer(x[:, k : k + 3]) for k in (0, 3, 6)]
    close(np.concatenate([c[0] for c in chunks], axis=1), long_seq)
    close(chunks[-1][1], long_h)
    close(chunks[-1][2], long_c)
    close(np.stack(layer.states), np.stack([long_h, long_c]))


def test_stateful_bidirectional_forward_half_of_three_chunks_equals_one_long_run(rng):
    B, D, n = 2, 3, 2
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, 9, D))
    long_out, long_hf, long_cf, _, _ = bidi(w, return_sequences=True, return_state=True)(x)
    layer = bidi(w, return_sequences=True, return_state=True, stateful=True)
    chunks = [layer(x[:, k : k + 3]) for k in (0, 3, 6)]
    close(np.concatenate([c[0][:, :, :n] for c in chunks], axis=1), long_out[:, :, :n])
    close(chunks[-1][1], long_hf)
    close(chunks[-1][2], long_cf)
    # docs/semantics.md#initial-state-and-stateful-layers: the backward layer continues from its state after x[:, 0] of the previous chunk
    _, _, _, hb1, cb1 = bidi(w, return_sequences=True, return_state=True)(x[:, 3:6], initial_state=[
        chunks[0][1], chunks[0][2], chunks[0][3], chunks[0][4]])
    close(chunks[1][3], hb1)
    close(chunks[1][4], cb1)


@pytest.mark.parametrize("family", ["lstm", "bidi"])
def test_reset_state_zeros_the_states_and_restarts(rng, family):
    B, T, D, n = 2, 4, 3, 2
    if family == "lstm":
        w = make_weights(rng, D, n)
        layer, fresh = lstm(w, stateful=True), lstm(w)
    else:
        w = make_weights(rng, D, n) + make_weights(rng, D, n)
        layer, fresh = bidi(w, stateful=True), bidi(w)
    x = rng.normal(size=(B, T, D))
    first = layer(x)
    assert not np.allclose(layer(x), first)  # the second call continues from stored states
    layer.reset_state()
    assert all(np.all(s == 0.0) for s in layer.states)
    close(layer(x), fresh(x))
    close(first, fresh(x))


@pytest.mark.parametrize("family", ["lstm", "bidi"])
def test_reset_state_on_non_stateful_layer_raises_state_error(family):
    layer = LSTM(2) if family == "lstm" else Bidirectional(LSTM(2))
    with pytest.raises(StateError, match="must be stateful"):
        layer.reset_state()
    with pytest.raises(StateError, match="must be stateful"):
        layer.reset_states()


@pytest.mark.parametrize("family", ["lstm", "bidi"])
def test_stateful_batch_size_change_raises_state_error(rng, family):
    D, n = 3, 2
    if family == "lstm":
        layer = lstm(make_weights(rng, D, n), stateful=True)
    else:
        layer = bidi(make_weights(rng, D, n) + make_weights(rng, D, n), stateful=True)
    layer(rng.normal(size=(2, 4, D)))
    with pytest.raises(StateError, match="called with batch 2, now 3"):
        layer(rng.normal(size=(3, 4, D)))


def test_stateful_explicit_initial_state_overrides_stored_state(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 4, 3))
    h0, c0 = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
    layer = lstm(w, stateful=True, return_state=True)
    layer(x)
    _, h, c = layer(x, initial_state=[h0, c0])
    _, h_w, c_w = lstm(w, return_state=True)(x, initial_state=[h0, c0])
    close(h, h_w)
    close(np.stack(layer.states), np.stack([h_w, c_w]))


def test_stateful_masked_chunk_stores_the_carried_state(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(2, 4, 3))
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    layer = lstm(w, stateful=True)
    layer(x, mask=mask)
    h, c = layer.states
    _, h_w, c_w = lstm(w, return_state=True)(x[:1, :2])
    close(h[0], h_w[0])
    close(c[0], c_w[0])
    np.testing.assert_array_equal(h[1], 0.0)


# --- weights and config --------------------------------------------------------------------------


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_bidirectional_set_get_weights_order_forward_then_backward(rng, use_bias):
    D, n = 3, 2
    wf, wb = make_weights(rng, D, n, use_bias), make_weights(rng, D, n, use_bias)
    layer = bidi(wf + wb, return_sequences=True)
    got = layer.get_weights()
    assert len(got) == (6 if use_bias else 4)
    for a, b in zip(got, wf + wb, strict=True):
        np.testing.assert_array_equal(a, b)
    x = rng.normal(size=(2, 4, D))
    out = layer(x)
    close(out[:, :, :n], lstm(wf, return_sequences=True)(x))
    close(out[:, :, n:], lstm(wb, go_backwards=True, return_sequences=True)(x)[:, ::-1])


def test_lstm_get_weights_returns_the_set_values_in_keras_order(rng):
    w = make_weights(rng, 3, 2)
    got = lstm(w).get_weights()
    assert [a.shape for a in got] == [(3, 8), (2, 8), (8,)]
    for a, b in zip(got, w, strict=True):
        np.testing.assert_array_equal(a, b)


def test_set_weights_copies_and_get_weights_returns_copies(rng):
    w = make_weights(rng, 3, 2)
    x = rng.normal(size=(1, 3, 3))
    layer = lstm(w)
    before = layer(x)
    w[0][...] = 0.0  # caller changes its array after set_weights
    layer.get_weights()[1][...] = 0.0  # and mutates what get_weights returned
    np.testing.assert_array_equal(layer(x), before)


def test_lstm_config_round_trip(rng):
    layer = LSTM(
        3, activation="relu", recurrent_activation="hard_sigmoid", use_bias=False, return_sequences=True,
        return_state=True, go_backwards=True, zero_output_for_mask=True, unroll=True, dropout=0.2,
        name="my_lstm", kernel_initializer="glorot_uniform",
    )
    cfg = layer.get_config()
    again = LSTM.from_config(cfg)
    assert again.get_config() == cfg
    w = make_weights(rng, 2, 3, use_bias=False)
    layer.set_weights(w)
    again.set_weights(w)
    x = rng.normal(size=(2, 4, 2))
    mask = np.array([[1, 0, 1, 1], [1, 1, 1, 0]], dtype=bool)
    for a, b in zip(layer(x, mask=mask), again(x, mask=mask), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=lambda m: f"merge_{m}")
def test_bidirectional_config_round_trip_keeps_config(merge_mode):
    layer = Bidirectional(LSTM(3, return_sequences=True), merge_mode=merge_mode, name="bi")
    cfg = layer.get_config()
    assert cfg["layer"]["config"]["name"] == "forward_lstm"
    again = Bidirectional.from_config(cfg)
    # Keras strips an existing "forward_" prefix before adding it, so the name survives a round trip
    assert again.forward_layer.name == "forward_lstm"
    assert again.backward_layer.name == "backward_lstm"
    assert again.get_config() == cfg


def test_bidirectional_config_round_trip_keeps_outputs(rng):
    w = make_weights(rng, 3, 2) + make_weights(rng, 3, 2)
    layer = bidi(w, "concat", return_sequences=True, return_state=True)
    again = Bidirectional.from_config(layer.get_config())
    again.set_weights(w)
    x = rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=bool)
    for a, b in zip(layer(x, mask=mask), again(x, mask=mask), strict=True):
        np.testing.assert_array_equal(a, b)


def _keras_policy(name: str = "float32") -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def _keras_lstm_config(name: str, go_backwards: bool) -> dict:
    init = lambda cls: {"module": "keras.initializers", "class_name": cls, "config": {"seed": None},  # noqa: E731
                        "registered_name": None}
    return {
        "name": name, "trainable": True, "dtype": _keras_policy(), "return_sequences": True,
        "return_state": False, "go_backwards": go_backwards, "stateful": False, "unroll": False,
        "zero_output_for_mask": True, "units": 3, "activation": "tanh", "recurrent_activation": "sigmoid",
        "use_bias": True, "kernel_initializer": init("GlorotUniform"), "recurrent_initializer": init("Orthogonal"),
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                             "registered_name": None},
        "unit_forget_bias": True, "kernel_regularizer": None, "recurrent_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
        "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0,
        "seed": None,
    }


def test_bidirectional_from_keras_shaped_config_dict(rng):
    keras_cfg = {
        "name": "bidirectional", "trainable": True, "dtype": _keras_policy(), "merge_mode": "concat",
        "layer": {"module": "keras.layers", "class_name": "LSTM", "config": _keras_lstm_config("forward_lstm", False),
                  "registered_name": None, "build_config": {"input_shape": [None, 5, 2]}},
        "backward_layer": {"module": "keras.layers", "class_name": "LSTM",
                           "config": _keras_lstm_config("backward_lstm", True), "registered_name": None,
                           "build_config": {"input_shape": [None, 5, 2]}},
    }
    layer = Bidirectional.from_config(keras_cfg)
    assert layer.dtype_policy == "float32" and layer.forward_layer.dtype_policy == "float32"
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards
    w = make_weights(rng, 2, 3) + make_weights(rng, 2, 3)
    layer.set_weights(w)
    x = rng.normal(size=(2, 5, 2))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    close(layer(x, mask=mask), bidi(w, return_sequences=True)(x, mask=mask))


def test_bidirectional_from_config_rejects_non_lstm_inner_layer():
    cfg = {"layer": {"class_name": "GRU", "config": {"units": 2}}}
    with pytest.raises(UnsupportedModelError, match="only LSTM layers .*got 'GRU'"):
        Bidirectional.from_config(cfg)


def test_unknown_lstm_option_raises_naming_it():
    with pytest.raises(UnsupportedModelError, match="LSTM option 'frobnicate'"):
        LSTM(2, frobnicate=True)
    cfg = LSTM(2).get_config()
    cfg["frobnicate"] = 1
    with pytest.raises(UnsupportedModelError, match="'frobnicate'"):
        LSTM.from_config(cfg)


def test_unknown_bidirectional_option_raises_naming_it():
    cfg = Bidirectional(LSTM(2)).get_config()
    cfg["frobnicate"] = 1
    with pytest.raises(UnsupportedModelError, match="Bidirectional option 'frobnicate'"):
        Bidirectional.from_config(cfg)


def test_unknown_option_inside_nested_lstm_config_raises_naming_it():
    cfg = Bidirectional(LSTM(2)).get_config()
    cfg["layer"]["config"]["frobnicate"] = 1
    with pytest.raises(UnsupportedModelError, match="'frobnicate'"):
        Bidirectional.from_config(cfg)


def test_time_major_is_rejected_by_name():
    with pytest.raises(UnsupportedModelError, match="time_major"):
        LSTM(2, time_major=True)


# --- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["lstm", "bidi"])
def test_dtype_float32_computes_and_returns_float32(rng, family):
    B, T, D, n = 3, 6, 3, 4
    x = rng.normal(size=(B, T, D))
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=bool)
    if family == "lstm":
        w = make_weights(rng, D, n)
        l32 = lstm(w, return_sequences=True, return_state=True, dtype="float32")
        l64 = lstm(w, return_sequences=True, return_state=True)
    else:
        w = make_weights(rng, D, n) + make_weights(rng, D, n)
        l32 = bidi(w, return_sequences=True, return_state=True, dtype="float32")
        l64 = bidi(w, return_sequences=True, return_state=True)
    assert all(a.dtype == np.float32 for a in l32.get_weights())
    r32, r64 = l32(x, mask=mask), l64(x, mask=mask)
    assert all(a.dtype == np.float32 for a in r32)
    assert all(a.dtype == np.float64 for a in r64)
    for a, b in zip(r32, r64, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # float32 arithmetic, not a float64 run cast at the end
    assert any(np.any(a != b.astype(np.float32)) for a, b in zip(r32, r64, strict=True))


def test_unsupported_compute_dtype_is_rejected():
    with pytest.raises(UnsupportedModelError, match="dtype: the reference computes in one of"):
        LSTM(2, dtype="float16")


# --- NaN and huge inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("t_nan", [0, 2, 5], ids=lambda t: f"t{t}")
def test_nan_propagates_forward_after_and_backward_before_the_step(rng, t_nan):
    B, T, D, n = 3, 6, 3, 2
    w = make_weights(rng, D, n) + make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    x[1, t_nan, 0] = np.nan
    out = bidi(w, return_sequences=True)(x)
    t = np.arange(T)
    np.testing.assert_array_equal(np.isnan(out[1, :, :n]).all(axis=-1), t >= t_nan)
    np.testing.assert_array_equal(np.isnan(out[1, :, :n]).any(axis=-1), t >= t_nan)
    np.testing.assert_array_equal(np.isnan(out[1, :, n:]).all(axis=-1), t <= t_nan)
    np.testing.assert_array_equal(np.isnan(out[1, :, n:]).any(axis=-1), t <= t_nan)
    assert np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backwards"])
def test_nan_in_plain_lstm_propagates_in_processing_order(rng, go_backwards):
    B, T, D, n, t_nan = 2, 6, 3, 2, 3
    w = make_weights(rng, D, n)
    x = rng.normal(size=(B, T, D))
    x[0, t_nan, 1] = np.nan
    seq = lstm(w, return_sequences=True, go_backwards=go_backwards)(x)
    k = np.arange(T)  # processing step k reads x[T-1-k] when going backwards
    first = (T - 1 - t_nan) if go_backwards else t_nan
    np.testing.assert_array_equal(np.isnan(seq[0]).any(axis=-1), k >= first)
    assert np.isfinite(seq[1]).all()


@pytest.mark.parametrize("family", ["lstm", "bidi"])
def test_nan_in_a_masked_step_does_not_propagate(rng, family):
    B, T, D, n = 2, 6, 3, 2
    x = rng.normal(size=(B, T, D))
    mask = np.ones((B, T), dtype=bool)
    mask[0, 2] = False
    x_clean = x.copy()
    x[0, 2] = np.nan
    x_clean[0, 2] = 123.0  # any value: the masked step is not read
    if family == "lstm":
        layer = lstm(make_weights(rng, D, n), return_sequences=True, return_state=True)
    else:
        layer = bidi(make_weights(rng, D, n) + make_weights(rng, D, n), return_sequences=True, return_state=True)
    res, clean = layer(x, mask=mask), layer(x_clean, mask=mask)
    for a, b in zip(res, clean, strict=True):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("family", ["lstm", "bidi"])
def test_huge_finite_inputs_give_finite_outputs_without_warnings(rng, family, dtype):
    B, T, D, n = 2, 5, 3, 3
    x = np.where(rng.random((B, T, D)) < 0.5, -1e30, 1e30)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    if family == "lstm":
        layer = lstm(make_weights(rng, D, n), return_sequences=True, return_state=True, dtype=dtype)
    else:
        layer = bidi(make_weights(rng, D, n) + make_weights(rng, D, n), return_sequences=True,
                     return_state=True, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", invalid="warn", divide="warn"):
            res = layer(x, mask=mask)
    for a in res:
        assert np.isfinite(a).all()
    outputs_and_h = [res[0], res[1]] if family == "lstm" else [res[0], res[1], res[3]]
    for a in outputs_and_h:
        assert np.abs(a).max() <= 1.0  # h = o * tanh(c) is bounded by 1
