"""The reference against live Keras outside the matrix: the seed example, from_keras, inputs."""

import subprocess
import sys

import numpy as np
import pytest

import bilstm_ref as br

pytestmark = pytest.mark.keras

ATOL = 1e-5  # float32 Keras against the float64 reference (docs/tolerances.md)


def _randomize(layer, rng):
    """Random weights that differ per gate: per-gate scales and a saturating forget unit."""
    ws = []
    for w in layer.get_weights():
        n4 = w.shape[-1]
        scale = np.repeat([0.6, 1.4, 1.0, 0.8], n4 // 4)
        v = rng.normal(size=w.shape) * scale
        if w.ndim == 1:
            v[n4 // 4] += 3.0
        ws.append(v.astype("float32"))
    layer.set_weights(ws)


@pytest.mark.parametrize("rs,rst", [(True, False), (False, True), (True, True)], ids=["seq", "state", "seq-state"])
def test_seed_example(keras, rng, rs, rst):
    """The notebook the project started from: Bidirectional(LSTM(3)) on (1, 4, 2)."""
    x = rng.normal(size=(1, 4, 2)).astype("float32")
    kl = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=rs, return_state=rst))
    kl(x)
    _randomize(kl, rng)
    k = kl(x)
    ref = br.from_keras(kl)
    r = ref(x)
    if not rst:
        assert r.shape == (1, 4, 6)
        np.testing.assert_allclose(r, np.asarray(k), atol=ATOL, rtol=0)
        return
    out, h1, c1, h2, c2 = r
    assert len(k) == 5 and isinstance(k, tuple)
    for mine, theirs in zip(r, k, strict=True):
        np.testing.assert_allclose(mine, np.asarray(theirs), atol=ATOL, rtol=0)
    if rs:
        assert out.shape == (1, 4, 6)
        np.testing.assert_array_equal(h1, out[:, -1, :3])  # forward final state at the end
        np.testing.assert_array_equal(h2, out[:, 0, 3:])  # backward final state at the front
    else:
        assert out.shape == (1, 6)
        np.testing.assert_array_equal(out, np.concatenate([h1, h2], axis=-1))


def test_from_keras_copies_config_weights_and_stateful_states(keras, rng):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    kl = keras.layers.Bidirectional(
        keras.layers.LSTM(4, return_sequences=True, return_state=True, stateful=True, activation="softsign"),
        merge_mode="ave",
    )
    kl.build((2, 5, 3))
    _randomize(kl, rng)
    kl.call(keras.ops.convert_to_tensor(x))  # advance Keras's states (call(): see matrix.KERAS_WORKAROUNDS)
    spec = br.spec_from_keras(kl)
    assert spec.class_name == "Bidirectional" and spec.states is not None and len(spec.states) == 4
    assert spec.provenance["semantics"] == "keras3" and spec.provenance["keras_version"] == keras.__version__
    ref = br.from_keras(kl)
    assert ref.merge_mode == "ave" and ref.forward_layer.activation == "softsign" and ref.stateful
    for mine, theirs in zip(ref.get_weights(), kl.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    x2 = rng.normal(size=(2, 5, 3)).astype("float32")
    k = kl.call(keras.ops.convert_to_tensor(x2))  # continues from the copied states
    for mine, theirs in zip(ref(x2), k, strict=True):
        np.testing.assert_allclose(mine, np.asarray(theirs), atol=ATOL, rtol=1e-5)


def test_from_keras_custom_backward_layer_other_units(keras, rng):
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    fw = keras.layers.LSTM(4, return_sequences=True)
    bw = keras.layers.LSTM(5, return_sequences=True, go_backwards=True, activation="relu", recurrent_activation="hard_sigmoid")
    kl = keras.layers.Bidirectional(fw, backward_layer=bw)
    kl(x)
    _randomize(kl, rng)
    m = np.ones((2, 6), bool)
    m[0, 4:] = False
    k = np.asarray(kl(x, mask=m))
    r = br.from_keras(kl)(x, mask=m)
    assert r.shape == k.shape == (2, 6, 9)
    np.testing.assert_allclose(r, k, atol=ATOL, rtol=1e-5)


def test_from_keras_rejects_other_layers(keras):
    with pytest.raises(br.UnsupportedModelError, match="GRU"):
        br.from_keras(keras.layers.GRU(3))


def test_integer_input_is_cast_like_keras(keras, rng):
    kl = keras.layers.LSTM(3, return_sequences=True)
    xi = rng.integers(-3, 4, size=(2, 4, 2)).astype("int32")
    kl(xi.astype("float32"))
    _randomize(kl, rng)
    np.testing.assert_allclose(br.from_keras(kl)(xi), np.asarray(kl(xi)), atol=ATOL)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_inputs_propagate_in_keras_pattern(keras, rng, bad):
    kl = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    kl(x)
    _randomize(kl, rng)
    x[1, 2, 0] = bad
    k = np.asarray(kl(x))
    r = br.from_keras(kl)(x)
    np.testing.assert_array_equal(np.isnan(r), np.isnan(k))
    if np.isnan(bad):
        assert np.isnan(r[1, 2:, :4]).all() and np.isnan(r[1, :3, 4:]).all()  # fw from t=2 on, bw up to t=2
        assert not np.isnan(r[[0, 2]]).any()  # other rows clean
    fin = ~np.isnan(k)
    np.testing.assert_allclose(r[fin], k[fin], atol=ATOL)


def test_huge_inputs_match_keras_without_warnings(keras, rng):
    kl = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True, return_state=True))
    x = (rng.normal(size=(2, 5, 3)) * 1e30).astype("float32")
    kl(x)
    _randomize(kl, rng)
    k = kl(x)
    r = br.from_keras(kl)(x)  # pytest runs with -W error: any floating-point warning fails here
    for mine, theirs in zip(r, k, strict=True):
        assert np.isfinite(mine).all()
        np.testing.assert_allclose(mine, np.asarray(theirs), atol=ATOL)


def test_cli_check_subset_runs_and_summarizes(keras):
    proc = subprocess.run(
        [sys.executable, "-m", "bilstm_ref", "check", "-k", "bidi-concat-seq-state", "-k", "mask_right", "--jobs", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from bilstm_ref.conformance import matrix

    n = len(matrix.select(matrix.cases(), ["bidi-concat-seq-state", "mask_right"]))
    assert n >= 4 and f"cases run: {n}  passed: {n}" in proc.stdout
    assert "worst |Keras - reference|" in proc.stdout


def test_cli_check_no_match_is_an_error():
    proc = subprocess.run([sys.executable, "-m", "bilstm_ref", "check", "-k", "no-such-case"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no matrix case matches" in proc.stderr


def test_from_config_accepts_keras_get_config_dicts(keras, rng):
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    kl = keras.layers.Bidirectional(
        keras.layers.LSTM(3, return_sequences=True, return_state=True, recurrent_activation="hard_sigmoid"),
        merge_mode="mul",
    )
    kl(x)
    _randomize(kl, rng)
    ref = br.Bidirectional.from_config(kl.get_config())
    ref.set_weights(kl.get_weights())
    for mine, theirs in zip(ref(x), kl(x), strict=True):
        np.testing.assert_allclose(mine, np.asarray(theirs), atol=ATOL)
    lstm = keras.layers.LSTM(4, go_backwards=True, return_sequences=True)
    lstm(x)
    _randomize(lstm, rng)
    ref_lstm = br.LSTM.from_config(lstm.get_config())
    ref_lstm.set_weights(lstm.get_weights())
    np.testing.assert_allclose(ref_lstm(x), np.asarray(lstm(x)), atol=ATOL)
    assert ref_lstm.get_config()["go_backwards"] is True


def test_keras_bug_behind_the_stateful_return_state_workaround_is_still_there(keras, rng):
    """matrix.KERAS_WORKAROUNDS exists because Keras 3.15 cannot __call__ this layer; when a Keras
    release fixes it, this test fails and the workaround should go."""
    kl = keras.layers.Bidirectional(keras.layers.LSTM(3, return_state=True, stateful=True))
    x = rng.normal(size=(2, 4, 2)).astype("float32")
    with pytest.raises(TypeError, match="generator"):
        kl(x)


def test_from_keras_says_how_to_build_a_layer_and_where_a_models_layers_are(keras) -> None:
    L = keras.layers
    with pytest.raises(br.UnsupportedModelError, match=r"is not built, so it has no weights yet: call it once"):
        br.from_keras(L.Bidirectional(L.LSTM(3)))
    inp = keras.Input((5, 2))
    inner = keras.Sequential([keras.Input((5, 2)), L.LSTM(2, return_sequences=True, name="deep")], name="sub")
    model = keras.Model(inp, L.Bidirectional(L.LSTM(3), name="bi")(inner(inp)))
    with pytest.raises(br.UnsupportedModelError) as info:
        br.from_keras(model)
    assert "pass model.get_layer(name)" in str(info.value)
    assert "['sub/deep (LSTM)', 'bi (Bidirectional)']" in str(info.value)
    with pytest.raises(br.UnsupportedModelError, match="is an Embedding"):
        br.from_keras(L.Embedding(4, 2))


def test_bidirectional_takes_the_compute_dtype(keras) -> None:
    k = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
    x = np.random.default_rng(2).normal(size=(2, 4, 3)).astype("float32")
    k(x)
    ref = br.Bidirectional(br.LSTM(3, return_sequences=True), dtype="float32")
    ref.set_weights(k.get_weights())
    y = ref(x)
    assert y.dtype == np.float32 and ref.forward_layer.dtype == ref.backward_layer.dtype == np.float32
    np.testing.assert_allclose(y, np.asarray(k(x)), atol=1e-5)


@pytest.mark.parametrize("policy, merge_mode", [("mixed_float16", "sum"), ("mixed_float16", "ave"),
                                                ("mixed_float16", "mul"), ("mixed_bfloat16", "sum"),
                                                ("mixed_bfloat16", "ave"), ("mixed_bfloat16", "mul")])
def test_half_precision_merge_is_exactly_kerass(keras, policy: str, merge_mode: str) -> None:
    """The reference's merge step (cast each direction, merge in the wrapper's dtype, round once) applied
    to Keras's own direction outputs gives Keras's merged output exactly: 0 units of the half format."""
    from bilstm_ref.reference import dtypes
    from bilstm_ref.reference.bidirectional import merge

    L = keras.layers
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)  # the inner layers compute in half precision too
    try:
        x = np.random.default_rng(5).normal(size=(3, 7, 4)).astype("float32")
        merged = L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode=merge_mode)
        merged(x)
        split = L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode=None)
        split(x)
        split.set_weights(merged.get_weights())
        y_keras = np.asarray(merged(x)).astype(np.float64)
        y_f, y_b = (np.asarray(v) for v in split(x))
    finally:
        keras.config.set_dtype_policy(old)
    compute = np.dtype("float32")
    y_f32, y_b32 = y_f.astype(np.float32), y_b.astype(np.float32)
    ours = dtypes.cast_output(merge(y_f32, y_b32, merge_mode), policy, compute)
    np.testing.assert_array_equal(np.asarray(ours, np.float64), y_keras)
