"""Sanity: every builder's file loads with the weights written into it, so the mutations in the
other security tests change a file that is otherwise valid."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bilstm_ref


def _assert_weights(spec, expected):
    assert len(spec.weights) == len(expected)
    for got, want in zip(spec.weights, expected):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want.astype(np.float64))


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_keras_archive_builder_loads(build, kb, kind):
    weights = kb.make_weights(seed=1)
    path = build.keras(config=kb.keras3_model_config(kind), weights=weights, input_layer=kind == "functional",
                       model_name=kind)
    spec = bilstm_ref.load_spec(path)
    assert spec.class_name == "Bidirectional"
    _assert_weights(spec, weights)
    assert spec.provenance["format"] == ".keras"
    assert spec.provenance["keras_version"] == "3.15.1"
    assert spec.provenance["semantics"] == "keras3"
    assert spec.provenance["weight_paths"] == kb.KERAS3_WEIGHT_PATHS
    assert spec.provenance["weight_dtypes"] == ["float32"]
    assert "nonfinite_weights" not in spec.provenance
    # The named layer resolves to the same thing, and the reference runs on it.
    layer = bilstm_ref.load(path, layer="bidirectional")
    y = layer(np.zeros((2, 5, 3), np.float32))
    assert y.shape == (2, 5, 8)


def test_weights_h5_plus_json_builder_loads(build, kb):
    weights = kb.make_weights(seed=2)
    spec = bilstm_ref.load_spec(build.weights_h5(weights=weights), config=build.model_json())
    _assert_weights(spec, weights)
    assert spec.provenance["format"] == ".weights.h5"
    assert spec.provenance["weight_paths"] == kb.KERAS3_WEIGHT_PATHS


def test_weights_h5_with_keras_archive_as_config(build, kb):
    weights = kb.make_weights(seed=3)
    spec = bilstm_ref.load_spec(build.weights_h5(weights=weights), config=build.keras(weights=kb.make_weights(9)))
    _assert_weights(spec, weights)


def test_legacy_h5_builder_loads(build, kb):
    weights = kb.make_weights(seed=4)
    spec = bilstm_ref.load_spec(build.legacy_h5(weights=weights))
    _assert_weights(spec, weights)
    assert spec.provenance["format"] == "legacy .h5 (full model)"
    assert spec.provenance["keras_version"] == "2.15.0"
    assert spec.provenance["semantics"] == "keras2"
    assert spec.provenance["weight_paths"] == kb.LEGACY_WEIGHT_PATHS
    assert spec.config["layer"]["config"]["recurrent_activation"] == "hard_sigmoid"


@pytest.mark.parametrize("relpath", ["keras-2.15/bidi_hard_sigmoid_concat.h5",
                                     "keras-2.12/bidi_hard_sigmoid_concat.h5"])
def test_real_keras2_files_load(build, relpath):
    import h5py

    path = build.copy_keras2(relpath)
    spec = bilstm_ref.load_spec(path, layer="bidirectional")
    with h5py.File(path, "r") as h5:
        expected = [np.asarray(h5[p]) for p in spec.provenance["weight_paths"]]
    _assert_weights(spec, expected)


def test_real_keras2_weights_only_with_json(build):
    path = build.copy_keras2("keras-2.15/bidi_custom_backward_mul.weights-only.h5")
    cfg = build.copy_keras2("keras-2.15/bidi_custom_backward_mul.json")
    spec = bilstm_ref.load_spec(path, layer="bidirectional", config=cfg)
    assert spec.config["merge_mode"] == "mul"
    assert json.loads(cfg.read_text())["class_name"] == "Functional"


def test_guard_sees_writes_and_imports(tmp_path, no_side_effects):
    """The side-effect guard itself catches what it is meant to catch."""
    with pytest.raises(AssertionError, match="files under"):
        with no_side_effects():
            (tmp_path / "new-file").write_text("x")
    import sys

    with pytest.raises(AssertionError, match="new modules"):
        with no_side_effects():
            sys.modules["evil_marker_probe_x"] = sys  # a fake new module
    del sys.modules["evil_marker_probe_x"]
