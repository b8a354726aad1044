"""Every supported activation against an independent scalar formula, incl. huge magnitudes."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

from bilstm_ref import LSTM, UnsupportedModelError
from bilstm_ref.reference import activations as act

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x)) if x < 800 else 1.0
    e = math.exp(x) if x > -800 else 0.0
    return e / (1.0 + e)


def _softplus(x: float) -> float:
    return max(x, 0.0) + (math.log1p(math.exp(-abs(x))) if abs(x) < 800 else 0.0)


def _expm1(x: float) -> float:
    return math.expm1(x) if x > -800 else -1.0


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _hard_sigmoid3(x: float) -> float:
    return min(max(x / 6.0 + 0.5, 0.0), 1.0)


def _squareplus(x: float) -> float:
    # (x + sqrt(x^2 + 4)) / 2 without overflow and without cancellation for x < 0
    r = math.hypot(x, 2.0)
    return (x + r) / 2.0 if x >= 0 else 2.0 / (r - x)


# Independent formulas (Keras 3 definitions and default arguments), one Python float at a time.
FORMULAS = {
    "linear": lambda x: x,
    "tanh": math.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid3,
    "relu": lambda x: max(x, 0.0),
    "relu6": lambda x: min(max(x, 0.0), 6.0),
    "leaky_relu": lambda x: x if x >= 0 else 0.2 * x,
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + abs(x)),
    "elu": lambda x: x if x >= 0 else _expm1(x),
    "selu": lambda x: _SELU_SCALE * (x if x >= 0 else _SELU_ALPHA * _expm1(x)),
    "celu": lambda x: max(x, 0.0) + min(0.0, _expm1(min(x, 0.0))),
    "exponential": _exp,
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "hard_silu": lambda x: x * _hard_sigmoid3(x),
    "hard_swish": lambda x: x * _hard_sigmoid3(x),
    "mish": lambda x: x * math.tanh(_softplus(x)),
    "log_sigmoid": lambda x: -_softplus(-x),
    "tanh_shrink": lambda x: x - math.tanh(x),
    "hard_tanh": lambda x: min(max(x, -1.0), 1.0),
    "soft_shrink": lambda x: x - 0.5 if x > 0.5 else (x + 0.5 if x < -0.5 else 0.0),
    "hard_shrink": lambda x: x if abs(x) > 0.5 else 0.0,
    "squareplus": _squareplus,
    "sparse_plus": lambda x: 0.0 if x <= -1 else ((x + 1.0) ** 2 / 4.0 if x < 1 else x),
    "sparse_sigmoid": lambda x: 0.0 if x <= -1 else (1.0 if x >= 1 else 0.5 * (x + 1.0)),
}

POINTS = (-1e30, -1e4, -3.0, -2.5, -1.0, -0.7, -0.3, 0.0, 0.3, 0.7, 1.0, 2.5, 3.0, 1e4, 1e30)


def _expected(name: str) -> np.ndarray:
    return np.array([FORMULAS[name](float(p)) for p in POINTS])


def _call_strict(fn, x: np.ndarray) -> np.ndarray:
    """Call fn with every floating-point warning (overflow, invalid, divide) turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", invalid="warn", divide="warn"):
            return fn(x)


def test_every_supported_name_has_an_independent_formula_here():
    assert set(act.names()) == set(FORMULAS)


# float32 tolerance: a few float32 ulps (eps 1.2e-7) on values of order 1.
@pytest.mark.parametrize(
    "dtype,rtol,atol", [(np.float64, 1e-12, 1e-12), (np.float32, 2e-6, 1e-6)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_keeps_dtype_matches_formula_without_warnings(name, dtype, rtol, atol):
    # The module promises: same dtype out as in, and no floating-point warning for finite input.
    x = np.array(POINTS, dtype=dtype)
    got = _call_strict(act.get(name), x)
    want = _expected(name)
    assert got.dtype == dtype
    assert got.shape == x.shape
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_does_not_modify_its_input(name):
    x = np.array(POINTS, dtype=np.float64)
    before = x.copy()
    act.get(name)(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_keeps_a_2d_shape(name):
    x = np.linspace(-4.0, 4.0, 12).reshape(3, 4)
    got = act.get(name)(x)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got.ravel(), [FORMULAS[name](float(v)) for v in x.ravel()], rtol=1e-12, atol=1e-12)


# --- hard_sigmoid: Keras 3 vs Keras 2 (docs/semantics.md#keras-2-and-keras-3-differences) ---------------------------------------------

HS_X = [-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0]
HS_KERAS3 = [0.0, 1 / 12, 1 / 3, 0.5, 2 / 3, 11 / 12, 1.0]  # table: 0, 0.0833, 0.3333, 0.5, 0.6667, 0.9167, 1
HS_KERAS2 = [0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0]


@pytest.mark.parametrize(
    "semantics, expected", [("keras3", HS_KERAS3), ("keras2", HS_KERAS2)], ids=["keras3", "keras2"]
)
def test_hard_sigmoid_matches_spec_table(semantics, expected):
    got = act.get("hard_sigmoid", semantics)(np.array(HS_X))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


def test_hard_sigmoid_table_values_rounded_as_in_spec():
    got = act.get("hard_sigmoid", "keras3")(np.array(HS_X))
    np.testing.assert_array_equal(np.round(got, 4), [0.0, 0.0833, 0.3333, 0.5, 0.6667, 0.9167, 1.0])


def test_hard_sigmoid_default_semantics_is_keras3():
    x = np.array(HS_X)
    np.testing.assert_array_equal(act.get("hard_sigmoid")(x), act.get("hard_sigmoid", "keras3")(x))


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "linear"])
def test_other_activations_are_the_same_under_keras2(name):
    x = np.array(POINTS)
    np.testing.assert_array_equal(act.get(name, "keras2")(x), act.get(name, "keras3")(x))


def test_unknown_semantics_profile_is_rejected():
    with pytest.raises(UnsupportedModelError, match="semantics: expected one of .*got 'keras1'"):
        act.get("tanh", "keras1")  # type: ignore[arg-type]


def test_lstm_semantics_keras2_changes_hard_sigmoid_recurrent_activation(rng):
    x = rng.normal(scale=2.0, size=(2, 5, 3))
    w = [rng.normal(size=(3, 8)), rng.normal(size=(2, 8)), rng.normal(size=8)]
    outs = []
    for semantics in ("keras3", "keras2"):
        layer = LSTM(2, recurrent_activation="hard_sigmoid", semantics=semantics)
        layer.set_weights(w)
        outs.append(layer(x))
    assert np.max(np.abs(outs[0] - outs[1])) > 1e-3


# --- rejected and unknown names ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax", "glu", "threshold", "no_such_activation"])
def test_rejected_or_unknown_activation_raises_naming_it(name):
    with pytest.raises(UnsupportedModelError, match=re.escape(f"activation {name!r}")):
        act.get(name)


@pytest.mark.parametrize("name", ["softmax", "glu", "threshold", "no_such_activation"])
def test_lstm_with_rejected_activation_raises_naming_it(name):
    with pytest.raises(UnsupportedModelError, match=re.escape(repr(name))):
        LSTM(2, activation=name)
    with pytest.raises(UnsupportedModelError, match=re.escape(repr(name))):
        LSTM(2, recurrent_activation=name)


def test_rejected_activation_in_serialized_dict_form_raises_naming_it():
    with pytest.raises(UnsupportedModelError, match="'softmax'"):
        act.get({"class_name": "function", "config": "softmax"})


# --- canonical_name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, "linear"),
        ("None", "linear"),
        ("tanh", "tanh"),
        ("hard_sigmoid", "hard_sigmoid"),
        ("keras.activations.relu", "relu"),
        ({"class_name": "function", "config": "tanh"}, "tanh"),
        (
            {"module": "keras.activations", "class_name": "function", "config": "sigmoid", "registered_name": "sigmoid"},
            "sigmoid",
        ),
    ],
    ids=["none", "none_str", "tanh", "hard_sigmoid", "dotted", "dict", "dict_full"],
)
def test_canonical_name_normalizes_config_forms(spec, expected):
    assert act.canonical_name(spec) == expected


@pytest.mark.parametrize("spec", [3, 1.5, ["tanh"]], ids=["int", "float", "list"])
def test_canonical_name_rejects_non_names(spec):
    with pytest.raises(UnsupportedModelError, match="activation: expected a name or None"):
        act.canonical_name(spec)


def test_get_none_is_identity():
    x = np.array(POINTS)
    np.testing.assert_array_equal(act.get(None)(x), x)


def test_lstm_accepts_serialized_activation_dict_and_matches_string_form(rng):
    x = rng.normal(size=(2, 4, 3))
    w = [rng.normal(size=(3, 12)), rng.normal(size=(3, 12)), rng.normal(size=12)]
    a = LSTM(3, activation={"class_name": "function", "config": "relu"}, recurrent_activation="hard_sigmoid")
    b = LSTM(3, activation="relu", recurrent_activation={"class_name": "function", "config": "hard_sigmoid"})
    a.set_weights(w)
    b.set_weights(w)
    assert a.activation == "relu" and b.recurrent_activation == "hard_sigmoid"
    np.testing.assert_array_equal(a(x), b(x))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)
