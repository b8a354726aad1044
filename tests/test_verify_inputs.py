"""The Keras-free parts of ``verify``: reading the user's input files in batches, generating inputs
from a model's input spec, streaming error statistics, and where a layer's mask comes from."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.conformance.compare import TOLERANCES, compare
from bilstm_ref.loaders.model_config import mask_source, model_layers
from bilstm_ref.verify.inputs import GENERATED_PATTERNS, InputSpec, generated_inputs, read_inputs
from bilstm_ref.verify.stats import ErrorStats, padding_pattern

TOKENS = InputSpec("tokens", (None,), "int32", vocab=20, mask_zero=True)
FEATURES = InputSpec("features", (7, 3), "float32", mask_value=0.0)


def _all(source, batch: int) -> list[np.ndarray]:
    parts = list(source.batches(batch))
    assert [o for o, _ in parts] == list(range(0, source.samples, batch))
    return [np.concatenate([arrays[i] for _, arrays in parts]) for i in range(len(source.specs))]


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("batch", [1, 4, 64])
def test_npz_read_back_in_batches_by_name_and_position(tmp_path: Path, rng, compressed: bool, batch: int) -> None:
    tokens = rng.integers(0, 20, size=(10, 5)).astype("int64")
    feats = rng.normal(size=(10, 7, 3)).astype("float32")
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "named.npz", features=feats, tokens=tokens)
    save(tmp_path / "pos.npz", tokens, feats)
    for name in ("named.npz", "pos.npz"):
        source = read_inputs(str(tmp_path / name), [TOKENS, FEATURES])
        assert source.samples == 10 and len(source.sha256 or "") == 64
        got_tokens, got_feats = _all(source, batch)
        np.testing.assert_array_equal(got_tokens, tokens)
        np.testing.assert_array_equal(got_feats, feats)


def test_npy_for_one_input(tmp_path: Path, rng) -> None:
    feats = rng.normal(size=(5, 7, 3))
    np.save(tmp_path / "x.npy", feats)
    (got,) = _all(read_inputs(str(tmp_path / "x.npy"), [FEATURES]), 2)
    np.testing.assert_array_equal(got, feats.astype("float32"))  # cast to the model input's dtype


@pytest.mark.parametrize("make, error, message", [
    (lambda p, r: np.savez(p, tokens=r.integers(0, 20, (3, 5)), extra=np.zeros(3)), br.InputDataError,
     "found ['extra', 'tokens']; missing ['features']; unexpected ['extra']"),
    (lambda p, r: np.savez(p, tokens=r.integers(0, 20, (3, 5)), features=np.zeros((4, 7, 3))), br.InputDataError,
     "the arrays disagree in their number of samples"),
    (lambda p, r: np.savez(p, tokens=r.integers(0, 20, (3, 5)), features=np.zeros((3, 7, 2))), br.ShapeMismatchError,
     "array 'features': axis 2: expected 3 for model input 'features'"),
    (lambda p, r: np.savez(p, tokens=r.integers(0, 20, (3, 5, 1)), features=np.zeros((3, 7, 3))), br.ShapeMismatchError,
     "expected shape (samples, any) for model input 'tokens', got (3, 5, 1)"),
    (lambda p, r: np.savez(p, tokens=np.full((3, 5), -1), features=np.zeros((3, 7, 3))), br.InputDataError,
     "token id -1 at sample 0, position (0,) is outside the vocabulary"),
    (lambda p, r: np.savez(p, tokens=np.zeros((3, 5), bool), features=np.zeros((3, 7, 3))), br.DTypeMismatchError,
     "takes integer token ids (int32), got bool"),
    (lambda p, r: np.savez(p, tokens=np.zeros((3, 5), int), features=np.zeros((3, 7, 3), complex)),
     br.DTypeMismatchError, "dtype complex128 is not a number array"),
    (lambda p, r: np.savez(p, tokens=np.array([["a"] * 5] * 3), features=np.zeros((3, 7, 3))), br.DTypeMismatchError,
     "is not a number array"),
    (lambda p, r: np.savez(p), br.InputDataError, "empty .npz (no arrays)"),
])
def test_bad_input_files_name_file_array_and_expected(tmp_path: Path, rng, make, error, message) -> None:
    path = tmp_path / "bad.npz"
    make(path, rng)
    with pytest.raises(error) as info:
        read_inputs(str(path), [TOKENS, FEATURES])
    assert message in str(info.value) and str(path) in str(info.value)


def test_objects_are_never_unpickled(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(br.DTypeMismatchError, match="objects and pickles are never read"):
        read_inputs(str(tmp_path / "obj.npy"), [InputSpec("x", (), "float32")])


def test_truncated_and_foreign_files(tmp_path: Path, rng) -> None:
    np.save(tmp_path / "x.npy", rng.normal(size=(50, 7, 3)))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    source = read_inputs(str(tmp_path / "cut.npy"), [FEATURES])
    with pytest.raises(br.CorruptFileError, match="truncated: expected 50 samples"):
        _all(source, 8)
    (tmp_path / "t.txt").write_text("1,2,3\n")
    with pytest.raises(br.CorruptFileError, match="expected an .npz"):
        read_inputs(str(tmp_path / "t.txt"), [FEATURES])
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("features.npy", b"not an npy")
    with pytest.raises(br.CorruptFileError, match="not a readable .npy"):
        read_inputs(str(tmp_path / "z.npz"), [FEATURES])
    with pytest.raises(br.FileAccessError, match="no such file"):
        read_inputs(str(tmp_path / "missing.npz"), [FEATURES])


def test_generated_tokens_stay_in_vocabulary_with_every_padding_pattern() -> None:
    source = generated_inputs([TOKENS], samples=14, time=9, seed=3)
    (tokens,) = _all(source, 5)
    assert tokens.shape == (14, 9) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < 20
    valid = tokens != 0
    kinds = [padding_pattern(row) for row in valid]
    assert kinds[GENERATED_PATTERNS.index("none")] == "all 9 steps valid"
    assert kinds[GENERATED_PATTERNS.index("full")] == "fully padded (9 steps)"
    assert kinds[GENERATED_PATTERNS.index("right")].startswith("right padding")
    assert kinds[GENERATED_PATTERNS.index("left")].startswith("left padding")
    assert source.generated and source.sha256 is None


def test_generated_float_padding_is_what_masking_masks() -> None:
    (feats,) = _all(generated_inputs([FEATURES], samples=6, seed=1), 6)
    masked = np.any(feats != 0.0, axis=-1)  # what Keras's Masking(mask_value=0.0) computes
    assert masked[GENERATED_PATTERNS.index("none")].all()
    assert not masked[GENERATED_PATTERNS.index("full")].any()
    assert masked[GENERATED_PATTERNS.index("right")].tolist() == [True] * 4 + [False] * 3


def test_streamed_statistics_equal_the_one_shot_comparison(rng) -> None:
    tol = TOLERANCES["float32"]
    expected = rng.normal(size=(23, 9, 4))
    actual = expected + rng.normal(scale=1e-6, size=expected.shape) * rng.uniform(0, 3, size=(1, 9, 1))
    actual[17, 6, 2] += 1e-3  # the worst element, off tolerance
    mask = np.ones((23, 9), bool)
    mask[17, 8:] = False
    stats = ErrorStats("output", tol)
    for start in range(0, 23, 5):
        stats.update(expected[start:start + 5], actual[start:start + 5], start, mask[start:start + 5])
    got = stats.result()
    one = compare("output", expected, actual, tol)
    assert got.max_abs == one.max_abs and got.max_rel == one.max_rel and got.tol_used == one.tol_used
    assert (got.where["sample"], got.where["t"], got.where["unit"]) == one.max_abs_index
    assert got.share_off == one.mismatched and not got.ok
    assert got.worst_sample_padding == "right padding: 8 valid, 1 padded"
    diffs = np.abs(actual - expected)
    assert got.mean_abs == pytest.approx(diffs.mean(), rel=1e-12)
    exact = np.quantile(diffs, 0.99)
    assert exact <= got.p99_abs <= exact * 1.25  # within one histogram slot above
    np.testing.assert_array_equal(got.error_by_t, diffs.max(axis=(0, 2)))
    assert got.off_padded_only  # the only element off is in the padded sample


def test_statistics_of_nan_and_shape_mismatches() -> None:
    tol = TOLERANCES["float32"]
    stats = ErrorStats("h1", tol)
    e = np.zeros((2, 3))
    a = e.copy()
    a[1, 2] = np.nan
    stats.update(e, a, 0, None)
    r = stats.result()
    assert r.nan_mismatch == 1 and not r.ok and r.share_off == 1 / 6
    bad = ErrorStats("c1", tol)
    bad.update(np.zeros((2, 3)), np.zeros((2, 4)), 0, None)
    assert not bad.result().ok and "shape mismatch: expected (2, 3), got (2, 4)" in bad.result().describe()


def test_padding_patterns_in_words() -> None:
    assert padding_pattern(None) == "no mask"
    assert padding_pattern(np.array([1, 1, 0], bool)) == "right padding: 2 valid, 1 padded"
    assert padding_pattern(np.array([0, 1, 1], bool)) == "left padding: 1 padded, 2 valid"
    assert padding_pattern(np.array([1, 0, 1, 1, 0, 1], bool)) == "holes: valid steps 0, 2-3, 5 of 6"


def _functional(layers: list[dict]) -> dict:
    return {"class_name": "Functional", "config": {"name": "m", "layers": layers}}


def _k3(name: str, cls: str, inbound: list, config: dict | None = None, module: str = "keras.layers") -> dict:
    return {"module": module, "class_name": cls, "name": name, "config": {"name": name, **(config or {})},
            "inbound_nodes": inbound}


def _t(source: str, shape: list) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": shape, "dtype": "float32",
                                                         "keras_history": [source, 0, 0]}}


def test_mask_sources_read_from_the_config() -> None:
    lstm = {"units": 2, "return_sequences": True}
    layers = [
        _k3("x", "InputLayer", []),
        _k3("m", "InputLayer", []),
        _k3("masking", "Masking", [{"args": [_t("x", [None, 5, 3])], "kwargs": {}}], {"mask_value": -1.0}),
        _k3("not_equal", "NotEqual", [{"args": [_t("x", [None, 5, 3]), -1.0], "kwargs": {}}], module="keras.src.ops.numpy"),
        _k3("any", "Any", [{"args": [_t("not_equal", [None, 5, 3])], "kwargs": {"axis": -1}}], module="keras.src.ops.numpy"),
        _k3("a", "LSTM", [{"args": [_t("masking", [None, 5, 3])], "kwargs": {"mask": _t("any", [None, 5])}}], lstm),
        _k3("b", "LSTM", [{"args": [_t("a", [None, 5, 2])], "kwargs": {"mask": _t("m", [None, 5])}}], lstm),
        _k3("c", "LSTM", [{"args": [_t("b", [None, 5, 2])], "kwargs": {}}], lstm),
    ]
    entries = model_layers(_functional(layers), "m.keras")
    by = {e.name: e for e in entries}
    assert mask_source(entries, by["a"]) == "mask from masking: Masking(mask_value=-1.0)"
    assert mask_source(entries, by["b"]) == "mask from model input 'm' (an explicit mask input)"
    assert mask_source(entries, by["c"]) == "no mask"


def test_mask_sources_of_keras2_configs_follow_propagation() -> None:
    def k2(name: str, cls: str, source: str | None, config: dict | None = None) -> dict:
        return {"class_name": cls, "name": name, "config": {"name": name, **(config or {})},
                "inbound_nodes": [[[source, 0, 0, {}]]] if source else []}

    layers = [k2("tok", "InputLayer", None), k2("emb", "Embedding", "tok", {"mask_zero": True}),
              k2("drop", "Dropout", "emb"),
              k2("bi", "Bidirectional", "drop", {"layer": {"class_name": "LSTM", "config": {"units": 2, "return_sequences": True}}}),
              k2("last", "LSTM", "bi", {"units": 2}),
              k2("conv", "Conv1D", "emb"), k2("after_conv", "LSTM", "conv", {"units": 2})]
    entries = model_layers({"class_name": "Model", "config": {"layers": layers}}, "m.h5")
    by = {e.name: e for e in entries}
    assert mask_source(entries, by["bi"]) == "mask from emb: Embedding(mask_zero=True) (through drop)"
    assert mask_source(entries, by["last"]) == "mask from emb: Embedding(mask_zero=True) (through bi, drop)"
    assert mask_source(entries, by["after_conv"]) == "no mask"
