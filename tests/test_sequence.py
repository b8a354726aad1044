"""Direction and mask helpers of bilstm_ref.reference.sequence, checked as pure functions on hand-made arrays."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bilstm_ref import DTypeMismatchError, ShapeMismatchError
from bilstm_ref.reference.sequence import align_backward, as_input, as_mask, processing_order, reverse_time


def _x(b: int = 2, t: int = 3, d: int = 2) -> np.ndarray:
    """x[b, t, d] = 100*b + 10*t + d: every element names its own position."""
    bb, tt, dd = np.meshgrid(np.arange(b), np.arange(t), np.arange(d), indexing="ij")
    return (100 * bb + 10 * tt + dd).astype(np.float64)


# --- reverse_time -------------------------------------------------------------------------------


def test_reverse_time_flips_axis_1_of_a_3d_array():
    x = _x()
    r = reverse_time(x)
    assert r.shape == x.shape
    np.testing.assert_array_equal(r[0, :, 0], [20.0, 10.0, 0.0])
    np.testing.assert_array_equal(r[1, :, 1], [121.0, 111.0, 101.0])


def test_reverse_time_flips_a_2d_mask_per_row():
    m = np.array([[True, True, False], [False, True, True]])
    np.testing.assert_array_equal(reverse_time(m), [[False, True, True], [True, True, False]])


def test_reverse_time_passes_none():
    assert reverse_time(None) is None


def test_reverse_time_twice_is_identity():
    x = _x(3, 4, 2)
    np.testing.assert_array_equal(reverse_time(reverse_time(x)), x)


def test_reverse_time_returns_a_view_and_leaves_the_input_alone():
    x = _x()
    before = x.copy()
    r = reverse_time(x)
    assert np.shares_memory(r, x)
    np.testing.assert_array_equal(x, before)


def test_reverse_time_of_length_one_sequence_is_unchanged():
    x = _x(2, 1, 3)
    np.testing.assert_array_equal(reverse_time(x), x)


# --- processing_order ---------------------------------------------------------------------------


def test_processing_order_forward_returns_the_same_objects():
    x = _x()
    m = np.array([[True, False, True], [True, True, False]])
    xp, mp = processing_order(x, m, go_backwards=False)
    assert xp is x
    assert mp is m


def test_processing_order_backwards_reverses_input_and_mask_together():
    x = _x()
    m = np.array([[True, True, False], [False, True, True]])
    xp, mp = processing_order(x, m, go_backwards=True)
    np.testing.assert_array_equal(xp[:, 0], x[:, 2])
    np.testing.assert_array_equal(xp[:, 2], x[:, 0])
    np.testing.assert_array_equal(mp, [[False, True, True], [True, True, False]])
    # the step and its mask bit travel together
    for b in range(2):
        for t in range(3):
            assert xp[b, t, 0] == x[b, 2 - t, 0]
            assert mp[b, t] == m[b, 2 - t]


def test_processing_order_backwards_without_mask_keeps_mask_none():
    xp, mp = processing_order(_x(), None, go_backwards=True)
    assert mp is None
    np.testing.assert_array_equal(xp, _x()[:, ::-1])


def test_processing_order_returns_views_not_copies():
    x = _x()
    m = np.ones((2, 3), dtype=bool)
    xp, mp = processing_order(x, m, go_backwards=True)
    assert np.shares_memory(xp, x)
    assert np.shares_memory(mp, m)


def test_processing_order_right_padding_becomes_leading_masked_steps():
    # Keras flips the whole padded time axis (not each row's valid prefix).
    m = np.array([[True, True, True, False, False]])
    _, mp = processing_order(np.zeros((1, 5, 1)), m, go_backwards=True)
    np.testing.assert_array_equal(mp, [[False, False, True, True, True]])


# --- align_backward -----------------------------------------------------------------------------


def test_align_backward_maps_processing_step_k_to_input_time_T_minus_1_minus_k():
    # A backward layer's sequence in processing order: seq[:, k] is the state after x[T-1-k].
    T = 4
    seq = np.arange(T, dtype=float).reshape(1, T, 1)  # seq[:, k] = k
    aligned = align_backward(seq)
    # aligned[:, t] must be the state after reading x[T-1] ... x[t], i.e. processing step T-1-t
    np.testing.assert_array_equal(aligned[0, :, 0], [T - 1 - t for t in range(T)])


def test_align_backward_last_processed_step_lands_at_time_zero():
    seq = _x(2, 5, 3)
    np.testing.assert_array_equal(align_backward(seq)[:, 0], seq[:, -1])
    np.testing.assert_array_equal(align_backward(seq)[:, -1], seq[:, 0])


def test_align_backward_returns_a_view():
    seq = _x()
    assert np.shares_memory(align_backward(seq), seq)


# --- as_input -----------------------------------------------------------------------------------


def test_as_input_float64_to_float64_keeps_values_and_dtype():
    x = _x()
    out = as_input(x, 2, np.dtype(np.float64))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("target", [np.float32, np.float64], ids=["to_f32", "to_f64"])
def test_as_input_casts_floats_and_integers_to_the_compute_dtype(dtype, target):
    x = np.arange(12).reshape(2, 3, 2).astype(dtype)
    out = as_input(x, 2, np.dtype(target))
    assert out.dtype == np.dtype(target)
    np.testing.assert_array_equal(out, np.arange(12).reshape(2, 3, 2))


def test_as_input_accepts_nested_lists():
    out = as_input([[[1, 2], [3, 4]]], 2, np.dtype(np.float64))
    assert out.shape == (1, 2, 2)
    assert out.dtype == np.float64


def test_as_input_never_modifies_the_callers_array():
    x = _x().astype(np.float32)
    before = x.copy()
    out = as_input(x, 2, np.dtype(np.float64))
    out[...] = -1.0  # writing to the result must not reach the caller's float32 array
    np.testing.assert_array_equal(x, before)


def test_as_input_fortran_ordered_input_keeps_values():
    x = np.asfortranarray(_x(3, 4, 2))
    assert not x.flags.c_contiguous
    out = as_input(x, 2, np.dtype(np.float64))
    np.testing.assert_array_equal(out, _x(3, 4, 2))


def test_as_input_read_only_input_works():
    x = _x()
    x.flags.writeable = False
    out = as_input(x, 2, np.dtype(np.float32))
    np.testing.assert_array_equal(out, _x())
    assert not x.flags.writeable


def test_as_input_features_none_skips_the_feature_check():
    assert as_input(_x(1, 2, 7), None, np.dtype(np.float64)).shape == (1, 2, 7)


@pytest.mark.parametrize(
    "shape, fragment",
    [
        ((2, 3), r"expected rank 3 \(batch, time, features=2\), got shape \(2, 3\)"),
        ((1, 2, 3, 2), r"expected rank 3 \(batch, time, features=2\), got shape \(1, 2, 3, 2\)"),
        ((2, 0, 2), r"expected at least one time step .*got shape \(2, 0, 2\)"),
        ((0, 3, 2), r"expected batch >= 1 .*got shape \(0, 3, 2\)"),
        ((2, 3, 5), r"expected 2 features \(kernel has input_dim=2\), got shape \(2, 3, 5\)"),
    ],
    ids=["rank2", "rank4", "T0", "B0", "features"],
)
def test_as_input_rejects_bad_shapes_with_expected_vs_actual(shape, fragment):
    with pytest.raises(ShapeMismatchError, match=fragment):
        as_input(np.zeros(shape), 2, np.dtype(np.float64))


@pytest.mark.parametrize(
    "value",
    [
        np.zeros((1, 2, 2), dtype=bool),
        np.zeros((1, 2, 2), dtype=np.complex128),
        np.zeros((1, 2, 2), dtype=object),
        np.full((1, 2, 2), "a"),
    ],
    ids=["bool", "complex", "object", "str"],
)
def test_as_input_rejects_non_numeric_dtypes(value):
    with pytest.raises(DTypeMismatchError, match=rf"x: expected a real floating or integer array, got dtype {value.dtype}"):
        as_input(value, 2, np.dtype(np.float64))


# --- as_mask ------------------------------------------------------------------------------------


def test_as_mask_none_passes():
    assert as_mask(None, 2, 3) is None


def test_as_mask_bool_mask_comes_back_equal_and_uncopied():
    m = np.array([[True, False, True], [False, False, True]])
    out = as_mask(m, 2, 3)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, m)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_as_mask_numeric_masks_cast_nonzero_to_true(dtype):
    m = np.array([[1, 0, 2], [0, 0, 1]]).astype(dtype)
    out = as_mask(m, 2, 3)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, [[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(m, np.array([[1, 0, 2], [0, 0, 1]]).astype(dtype))  # caller's array untouched


def test_as_mask_accepts_nested_lists():
    np.testing.assert_array_equal(as_mask([[1, 0]], 1, 2), [[True, False]])


def test_as_mask_fortran_ordered_and_read_only_masks_work():
    m = np.asfortranarray(np.array([[True, False, True], [False, True, True]]))
    m.flags.writeable = False
    out = as_mask(m, 2, 3)
    np.testing.assert_array_equal(out, [[True, False, True], [False, True, True]])
    assert not m.flags.writeable


@pytest.mark.parametrize("shape", [(3, 2), (2, 4), (2,), (2, 3, 1)], ids=["transposed", "long", "rank1", "rank3"])
def test_as_mask_rejects_wrong_shape_naming_expected_and_actual(shape):
    with pytest.raises(ShapeMismatchError, match=re.escape(f"mask: expected shape (batch, time) = (2, 3), got {shape}")):
        as_mask(np.ones(shape, dtype=bool), 2, 3)


@pytest.mark.parametrize(
    "value", [np.full((2, 3), "x"), np.full((2, 3), None, dtype=object), np.ones((2, 3), dtype=complex)],
    ids=["str", "object", "complex"],
)
def test_as_mask_rejects_non_numeric_masks(value):
    with pytest.raises(DTypeMismatchError, match=rf"mask: expected a boolean array, got dtype {value.dtype}"):
        as_mask(value, 2, 3)
