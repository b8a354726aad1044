"""Bad forward-pass inputs (wrong shapes, dtypes, values) and bad states/weights.

Every error is a specific BilstmRefError subclass whose message names expected vs actual.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import bilstm_ref
import bilstm_ref.reference.lstm
from bilstm_ref import (
    LSTM,
    BilstmRefError,
    Bidirectional,
    ConfigError,
    DTypeMismatchError,
    KerasUnavailableError,
    ResourceLimitError,
    ShapeMismatchError,
    StateError,
    UnsupportedModelError,
)

D, N = 3, 4  # input features and units of every layer here: kernel (3, 16)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _weights(rng: np.random.Generator, d: int = D, n: int = N) -> list[np.ndarray]:
    scale = np.repeat([0.6, 1.2, 0.9, 0.75], n)
    return [
        rng.normal(size=(d, 4 * n)) * scale,
        rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n),
        rng.normal(scale=0.3, size=4 * n) + np.repeat([0.4, 1.0, 0.0, -0.3], n),
    ]


@pytest.fixture(params=["lstm", "bidi"])
def layer(request, rng):
    """A built layer of either family with return_sequences and return_state."""
    if request.param == "lstm":
        lay = LSTM(N, return_sequences=True, return_state=True)
        lay.set_weights(_weights(rng))
    else:
        lay = Bidirectional(LSTM(N, return_sequences=True, return_state=True))
        lay.set_weights(_weights(rng) + _weights(rng))
    return lay


@pytest.mark.parametrize(
    "cls",
    [ConfigError, UnsupportedModelError, ShapeMismatchError, DTypeMismatchError, StateError, ResourceLimitError,
     KerasUnavailableError],
    ids=lambda c: c.__name__,
)
def test_every_error_class_is_a_bilstm_ref_error_and_a_value_error(cls):
    assert issubclass(cls, BilstmRefError)
    assert issubclass(cls, ValueError)


# --- E1: rank -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (2, 5, 3, 1), (3,)], ids=["rank2", "rank4", "rank1"])
def test_e1_wrong_rank_raises_shape_mismatch_with_expected_and_actual(layer, shape):
    msg = re.escape(f"x: expected rank 3 (batch, time, features={D}), got shape {shape}")
    with pytest.raises(ShapeMismatchError, match=msg):
        layer(np.zeros(shape))


# --- E2: features -------------------------------------------------------------------------------


@pytest.mark.parametrize("features", [1, 5], ids=["fewer", "more"])
def test_e2_feature_mismatch_names_kernel_input_dim_and_actual_shape(layer, features):
    msg = re.escape(f"x: expected {D} features (kernel has input_dim={D}), got shape (1, 5, {features})")
    with pytest.raises(ShapeMismatchError, match=msg):
        layer(np.zeros((1, 5, features)))


# --- E3: T = 0 / B = 0 --------------------------------------------------------------------------


def test_e3_zero_time_steps_raises_shape_mismatch(layer):
    with pytest.raises(ShapeMismatchError, match=re.escape(f"expected at least one time step (batch, time, features={D}), got shape (2, 0, {D})")):
        layer(np.zeros((2, 0, D)))


def test_e3_zero_batch_raises_shape_mismatch(layer):
    with pytest.raises(ShapeMismatchError, match=re.escape(f"expected batch >= 1 (batch, time, features={D}), got shape (0, 4, {D})")):
        layer(np.zeros((0, 4, D)))


# --- E4: dtypes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16], ids=lambda d: np.dtype(d).name)
def test_e4_integer_input_is_cast_like_float_input(layer, dtype):
    x = np.arange(2 * 4 * D).reshape(2, 4, D) % 5  # 0..4: representable in every integer dtype
    got = layer(x.astype(dtype))
    want = layer(x.astype(np.float64))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
def test_e4_lower_precision_float_input_is_upcast(layer, dtype):
    x = np.linspace(-1, 1, 2 * 4 * D).reshape(2, 4, D).astype(dtype)
    for a, b in zip(layer(x), layer(x.astype(np.float64)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((1, 2, D), dtype=bool),
        np.zeros((1, 2, D), dtype=np.complex64),
        np.zeros((1, 2, D), dtype=object),
        np.full((1, 2, D), "0.5"),
        np.full((1, 2, D), b"0.5"),
        np.zeros((1, 2, D), dtype="datetime64[s]"),
    ],
    ids=["bool", "complex", "object", "str", "bytes", "datetime"],
)
def test_e4_non_numeric_input_raises_dtype_mismatch_naming_the_dtype(layer, x):
    with pytest.raises(DTypeMismatchError, match=re.escape(f"expected a real floating or integer array, got dtype {x.dtype}")):
        layer(x)


@pytest.mark.parametrize("x", [None, "hello", [[["a", "b", "c"]]]], ids=["none", "string", "nested_str"])
def test_non_numeric_python_objects_raise_dtype_mismatch(layer, x):
    with pytest.raises(DTypeMismatchError, match="x: expected a real floating or integer array, got dtype"):
        layer(x)


def test_nested_list_input_works(rng):
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    x = rng.normal(size=(1, 2, D))
    np.testing.assert_array_equal(lay(x.tolist()), lay(x))


# --- E10: memory layouts ------------------------------------------------------------------------


def _variants(x: np.ndarray, tmp_path) -> dict[str, np.ndarray]:
    f = np.asfortranarray(x)
    wide = np.zeros(x.shape[:2] + (2 * x.shape[2],))
    wide[:, :, ::2] = x
    ro = x.copy()
    ro.flags.writeable = False
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=x.dtype, shape=x.shape)
    mm[...] = x
    mm.flush()
    mm_ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    rev = x[:, ::-1][:, ::-1]  # negative strides, same values
    return {"fortran": f, "strided": wide[:, :, ::2], "read_only": ro, "memmap_ro": mm_ro, "neg_strides": rev}


@pytest.mark.parametrize("kind", ["fortran", "strided", "read_only", "memmap_ro", "neg_strides"])
def test_e10_any_memory_layout_gives_the_same_result_and_is_not_modified(layer, rng, tmp_path, kind):
    x = rng.normal(size=(2, 5, D))
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=bool)
    want = layer(x, mask=mask)
    v = _variants(x, tmp_path)[kind]
    before = np.array(v, copy=True)
    got = layer(v, mask=mask)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(v, before)


def test_e10_read_only_fortran_mask_and_states_work_and_are_not_modified(rng):
    lay = LSTM(N, return_sequences=True, return_state=True)
    lay.set_weights(_weights(rng))
    x = rng.normal(size=(2, 5, D))
    mask = np.asfortranarray(np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=bool))
    h0, c0 = np.asfortranarray(rng.normal(size=(2, N))), rng.normal(size=(2, N))
    want = lay(x, mask=mask.copy(), initial_state=[h0.copy(), c0.copy()])
    for a in (mask, h0, c0):
        a.flags.writeable = False
    got = lay(x, mask=mask, initial_state=[h0, c0])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_e10_stateful_layer_does_not_write_into_the_callers_initial_state(rng):
    lay = LSTM(N, stateful=True)
    lay.set_weights(_weights(rng))
    h0, c0 = rng.normal(size=(2, N)), rng.normal(size=(2, N))
    h_copy, c_copy = h0.copy(), c0.copy()
    lay(rng.normal(size=(2, 3, D)), initial_state=[h0, c0])
    lay(rng.normal(size=(2, 3, D)))
    lay.reset_state()
    np.testing.assert_array_equal(h0, h_copy)
    np.testing.assert_array_equal(c0, c_copy)


# --- E11: masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 2), (2, 4), (2, 5, 1), (5,)], ids=["transposed", "short", "rank3", "rank1"])
def test_e11_mask_of_wrong_shape_raises_shape_mismatch(layer, shape):
    msg = re.escape(f"mask: expected shape (batch, time) = (2, 5), got {shape}")
    with pytest.raises(ShapeMismatchError, match=msg):
        layer(np.zeros((2, 5, D)), mask=np.ones(shape, dtype=bool))


@pytest.mark.parametrize(
    "mask", [np.full((2, 5), "1"), np.full((2, 5), None, dtype=object), np.ones((2, 5), dtype=np.complex128)],
    ids=["str", "object", "complex"],
)
def test_e11_non_numeric_mask_raises_dtype_mismatch(layer, mask):
    with pytest.raises(DTypeMismatchError, match=re.escape(f"mask: expected a boolean array, got dtype {mask.dtype}")):
        layer(np.zeros((2, 5, D)), mask=mask)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float32], ids=lambda d: np.dtype(d).name)
def test_e11_numeric_mask_is_cast_to_bool_nonzero_valid(layer, rng, dtype):
    x = rng.normal(size=(2, 5, D))
    bool_mask = np.array([[1, 1, 1, 0, 0], [0, 1, 0, 1, 1]], dtype=bool)
    numeric = bool_mask.astype(dtype) * 3  # 3 and 0: any non-zero is valid
    for a, b in zip(layer(x, mask=numeric), layer(x, mask=bool_mask), strict=True):
        np.testing.assert_array_equal(a, b)


def test_e11_all_false_rows_keep_the_initial_state_and_output_zeros(rng):
    lay = Bidirectional(LSTM(N, return_sequences=True, return_state=True))
    lay.set_weights(_weights(rng) + _weights(rng))
    x = rng.normal(size=(2, 5, D))
    mask = np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    states = [rng.normal(size=(2, N)) for _ in range(4)]
    out, *got_states = lay(x, mask=mask, initial_state=states)
    np.testing.assert_array_equal(out[0], 0.0)
    for got, init in zip(got_states, states, strict=True):
        np.testing.assert_array_equal(got[0], init[0])
    assert np.all(out[1] != 0.0)


def test_e11_nan_under_mask_does_not_reach_any_output(layer, rng):
    x = rng.normal(size=(2, 5, D))
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=bool)
    x[~mask] = np.nan
    for a in layer(x, mask=mask):
        assert np.isfinite(a).all()


def test_e11_left_and_right_padding_give_the_same_valid_run(rng):
    # The same 3 valid steps, padded on the right in row 0 and on the left in row 1.
    lay = LSTM(N, return_state=True)
    lay.set_weights(_weights(rng))
    valid = rng.normal(size=(1, 3, D))
    x = np.zeros((2, 5, D))
    x[0, :3], x[1, 2:] = valid[0], valid[0]
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=bool)
    last, h, c = lay(x, mask=mask)
    _, h_v, c_v = lay(valid)
    np.testing.assert_allclose(h, np.repeat(h_v, 2, axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c, np.repeat(c_v, 2, axis=0), rtol=1e-12, atol=1e-12)


# --- E12: resource limit --------------------------------------------------------------------------


def test_e12_work_over_the_limit_raises_resource_limit_before_computing(monkeypatch, rng):
    monkeypatch.setattr(bilstm_ref.reference.lstm, "MAX_WORK_ELEMENTS", 100)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the recurrence ran although the request is over the limit")

    monkeypatch.setattr(bilstm_ref.reference.lstm, "scan_stack", must_not_run)
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    # B*T*(D+5*units) = 2*4*(D+5*N) > 100
    msg = re.escape(f"B*T*(features+5*units) = 2*4*({D}+5*{N}) elements (input copy, projections, "
                    "sequence), over the limit MAX_WORK_ELEMENTS=100")
    with pytest.raises(ResourceLimitError, match=msg):
        lay(np.zeros((2, 4, D)))


def test_e12_bidirectional_over_the_limit_raises_resource_limit(monkeypatch, rng):
    monkeypatch.setattr(bilstm_ref.reference.lstm, "MAX_WORK_ELEMENTS", 100)
    lay = Bidirectional(LSTM(N))
    lay.set_weights(_weights(rng) + _weights(rng))
    with pytest.raises(ResourceLimitError, match="over the limit MAX_WORK_ELEMENTS=100"):
        lay(np.zeros((2, 4, D)))


def test_e12_work_exactly_at_the_limit_runs(monkeypatch, rng):
    monkeypatch.setattr(bilstm_ref.reference.lstm, "MAX_WORK_ELEMENTS", 2 * 4 * (D + 5 * N))
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    assert lay(np.zeros((2, 4, D))).shape == (2, N)


def test_e12_limit_applies_to_huge_shapes_without_allocating_the_input(monkeypatch, rng):
    # A broadcast view backed by 24 bytes (a copy would take 240 MB); the limit must stop it.
    monkeypatch.setattr(bilstm_ref.reference.lstm, "MAX_WORK_ELEMENTS", 10**6)
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    x = np.broadcast_to(np.zeros((1, 1, D)), (10**4, 10**3, D))
    with pytest.raises(ResourceLimitError, match=r"over the limit MAX_WORK_ELEMENTS=1000000"):
        lay(x)


# --- initial states ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3], ids=["one", "three"])
def test_lstm_wrong_number_of_initial_states_raises(rng, count):
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    states = [np.zeros((2, N))] * count
    with pytest.raises(ShapeMismatchError, match=re.escape(f"initial_state: expected 2 states [h, c], got {count}")):
        lay(np.zeros((2, 3, D)), initial_state=states)


def test_lstm_single_array_as_initial_state_raises(rng):
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    with pytest.raises(ShapeMismatchError, match=re.escape("initial_state: expected 2 states [h, c], got ndarray")):
        lay(np.zeros((2, 3, D)), initial_state=np.zeros((2, N)))


@pytest.mark.parametrize("count", [2, 3, 5], ids=["two", "three", "five"])
def test_bidirectional_wrong_number_of_initial_states_raises(rng, count):
    lay = Bidirectional(LSTM(N))
    lay.set_weights(_weights(rng) + _weights(rng))
    states = [np.zeros((2, N))] * count
    msg = re.escape(f"initial_state: expected 4 states [h_fw, c_fw, h_bw, c_bw], got {count}")
    with pytest.raises(ShapeMismatchError, match=msg):
        lay(np.zeros((2, 3, D)), initial_state=states)


@pytest.mark.parametrize(
    "which, shape",
    [("h", (2, N + 1)), ("c", (2, N - 1)), ("h", (3, N)), ("c", (N,)), ("h", (2, N, 1))],
    ids=["h_units", "c_units", "h_batch", "c_rank1", "h_rank3"],
)
def test_lstm_initial_state_of_wrong_shape_raises_with_expected_and_actual(rng, which, shape):
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    h0, c0 = np.zeros((2, N)), np.zeros((2, N))
    if which == "h":
        h0 = np.zeros(shape)
    else:
        c0 = np.zeros(shape)
    msg = re.escape(f"initial_state {which}: expected shape (batch, units) = (2, {N}), got {shape}")
    with pytest.raises(ShapeMismatchError, match=msg):
        lay(np.zeros((2, 3, D)), initial_state=[h0, c0])


def test_bidirectional_backward_initial_state_of_wrong_shape_raises(rng):
    lay = Bidirectional(LSTM(N))
    lay.set_weights(_weights(rng) + _weights(rng))
    states = [np.zeros((2, N)), np.zeros((2, N)), np.zeros((2, N)), np.zeros((2, N + 2))]
    msg = re.escape(f"backward_lstm initial_state c: expected shape (batch, units) = (2, {N}), got (2, {N + 2})")
    with pytest.raises(ShapeMismatchError, match=msg):
        lay(np.zeros((2, 3, D)), initial_state=states)


def test_non_numeric_initial_state_raises(rng):
    lay = LSTM(N)
    lay.set_weights(_weights(rng))
    with pytest.raises(BilstmRefError, match=r"initial_state h: expected floats, got <U"):
        lay(np.zeros((2, 3, D)), initial_state=[np.full((2, N), "a"), np.zeros((2, N))])


# --- weights ----------------------------------------------------------------------------------------


def test_call_before_set_weights_raises_state_error():
    with pytest.raises(StateError, match="weights are not set; call set_weights"):
        LSTM(N)(np.zeros((1, 2, D)))


@pytest.mark.parametrize("count", [2, 4], ids=["two", "four"])
def test_lstm_wrong_weight_count_raises(rng, count):
    w = (_weights(rng) + [np.zeros(4 * N)])[:count]
    with pytest.raises(ShapeMismatchError, match=re.escape(f"lstm: expected 3 weights [kernel, recurrent_kernel, bias], got {count}")):
        LSTM(N).set_weights(w)


def test_lstm_without_bias_wants_two_weights(rng):
    with pytest.raises(ShapeMismatchError, match=re.escape("expected 2 weights [kernel, recurrent_kernel], got 3")):
        LSTM(N, use_bias=False).set_weights(_weights(rng))


@pytest.mark.parametrize("count", [5, 3, 7], ids=["five", "three", "seven"])
def test_bidirectional_wrong_weight_count_raises(rng, count):
    w = (_weights(rng) + _weights(rng) + [np.zeros(4 * N)])[:count]
    msg = re.escape(f"bidirectional: expected 6 weights (3 forward + 3 backward), got {count}")
    with pytest.raises(ShapeMismatchError, match=msg):
        Bidirectional(LSTM(N)).set_weights(w)


@pytest.mark.parametrize(
    "index, shape, fragment",
    [
        (0, (D, 4 * N + 1), f"lstm kernel: expected shape (input_dim, 4*units={4 * N}), got ({D}, {4 * N + 1})"),
        (0, (4 * N,), f"lstm kernel: expected shape (input_dim, 4*units={4 * N}), got ({4 * N},)"),
        (1, (N + 1, 4 * N), f"lstm recurrent_kernel: expected shape ({N}, {4 * N}), got ({N + 1}, {4 * N})"),
        (2, (4 * N + 4,), f"lstm bias: expected shape ({4 * N},), got ({4 * N + 4},)"),
        (2, (1, 4 * N), f"lstm bias: expected shape ({4 * N},), got (1, {4 * N})"),
    ],
    ids=["kernel_cols", "kernel_rank1", "recurrent_rows", "bias_len", "bias_rank2"],
)
def test_lstm_wrong_weight_shape_names_weight_expected_and_actual(rng, index, shape, fragment):
    w = _weights(rng)
    w[index] = np.ones(shape)
    with pytest.raises(ShapeMismatchError, match=re.escape(fragment)):
        LSTM(N).set_weights(w)


def test_transposed_recurrent_kernel_gets_a_transposed_hint(rng):
    w = _weights(rng)
    w[1] = w[1].T
    msg = re.escape(f"lstm recurrent_kernel: expected shape ({N}, {4 * N}), got ({4 * N}, {N}) (looks transposed)")
    with pytest.raises(ShapeMismatchError, match=msg):
        LSTM(N).set_weights(w)


def test_transposed_kernel_gets_a_transposed_hint(rng):
    # a mismatch message says what looks wrong: got (16, 3) ... looks transposed
    w = _weights(rng)
    w[0] = w[0].T
    with pytest.raises(ShapeMismatchError, match=re.escape(f"got ({4 * N}, {D})")) as info:
        LSTM(N).set_weights(w)
    assert "transposed" in str(info.value)


def test_bidirectional_backward_weight_shape_error_names_the_backward_layer(rng):
    w = _weights(rng) + _weights(rng)
    w[4] = np.ones((N + 1, 4 * N))
    with pytest.raises(ShapeMismatchError, match=re.escape(f"backward_lstm recurrent_kernel: expected shape ({N}, {4 * N}), got ({N + 1}, {4 * N})")):
        Bidirectional(LSTM(N)).set_weights(w)


def test_bidirectional_forward_and_backward_input_dims_must_agree(rng):
    w = _weights(rng, d=D) + _weights(rng, d=D + 1)
    msg = re.escape(f"forward kernel has input_dim {D}, backward kernel {D + 1}")
    with pytest.raises(ShapeMismatchError, match=msg):
        Bidirectional(LSTM(N)).set_weights(w)


def test_non_numeric_weights_raise(rng):
    w = _weights(rng)
    w[1] = np.full((N, 4 * N), "x")
    with pytest.raises(BilstmRefError, match=re.escape(f"lstm recurrent_kernel: expected a float array of shape ({N}, {4 * N}), got dtype <U1")):
        LSTM(N).set_weights(w)


# --- constructor values ---------------------------------------------------------------------------


@pytest.mark.parametrize("units", [0, -1, 2.5, True, "4"], ids=["zero", "negative", "float", "bool", "str"])
def test_invalid_units_raise_config_error(units):
    with pytest.raises(ConfigError, match=re.escape(f"LSTM units: expected a positive integer, got {units!r}")):
        LSTM(units)


@pytest.mark.parametrize("key", ["dropout", "recurrent_dropout"])
def test_dropout_rate_out_of_range_raises_config_error(key):
    with pytest.raises(ConfigError, match=re.escape(f"LSTM {key}: expected a rate in [0, 1], got 1.5")):
        LSTM(N, **{key: 1.5})


def test_training_mode_dropout_is_rejected(rng):
    lay = LSTM(N, dropout=0.3)
    lay.set_weights(_weights(rng))
    with pytest.raises(UnsupportedModelError, match="training-mode dropout"):
        lay(np.zeros((1, 2, D)), training=True)
    assert lay(np.zeros((1, 2, D)), training=False).shape == (1, N)


def test_unknown_quirk_raises_config_error():
    with pytest.raises(ConfigError, match=re.escape("quirks: unknown ['no_such_quirk']")):
        LSTM(N, quirks=["no_such_quirk"])
