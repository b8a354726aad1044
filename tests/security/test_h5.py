"""Table B of the hostile-input cases: hostile Keras 3 ``.weights.h5`` (+ model JSON) and legacy Keras 2 ``.h5``.

Each row runs against both layouts where it applies (``kind`` = ``weights.h5`` or ``legacy``),
inside ``no_side_effects()`` (the side-effect guard).
"""

from __future__ import annotations

import json
import os
import re
import stat

import h5py
import numpy as np
import pytest

import bilstm_ref
from bilstm_ref import (
    CorruptFileError,
    DTypeMismatchError,
    ResourceLimitError,
    ShapeMismatchError,
    UnsafeModelError,
    UnsupportedModelError,
)

KEYS = {
    "weights.h5": {
        "k0": "layers/bidirectional/forward_layer/cell/vars/0",
        "r0": "layers/bidirectional/forward_layer/cell/vars/1",
        "b1": "layers/bidirectional/backward_layer/cell/vars/2",
        "group": "layers/bidirectional/forward_layer/cell",
        "layer": "layers/bidirectional",
    },
    "legacy": {
        "k0": "model_weights/bidirectional/bidirectional/forward_lstm_26/lstm_cell/kernel:0",
        "r0": "model_weights/bidirectional/bidirectional/forward_lstm_26/lstm_cell/recurrent_kernel:0",
        "b1": "model_weights/bidirectional/bidirectional/backward_lstm_26/lstm_cell/bias:0",
        "group": "model_weights/bidirectional/bidirectional/forward_lstm_26/lstm_cell",
        "layer": "model_weights/bidirectional",
    },
}


def rx(path) -> str:
    return re.escape(str(path))


class Target:
    """One file layout: build a (possibly hooked) file and load it."""

    def __init__(self, kind, build, kb):
        self.kind, self.build, self.kb = kind, build, kb
        self.keys = KEYS[kind]
        self.json = build.model_json() if kind == "weights.h5" else None

    def make(self, hook=None, weights=None, name=None):
        if self.kind == "weights.h5":
            return self.build.weights_h5(name or "model.weights.h5", weights=weights, hook=hook)
        return self.build.legacy_h5(name or "legacy.h5", weights=weights, hook=hook)

    def load(self, path, **kw):
        return bilstm_ref.load_spec(path, config=self.json, **kw)

    def raw(self, hook=None):
        return self.make(hook, name="raw-" + ("w.weights.h5" if self.kind == "weights.h5" else "l.h5")).read_bytes()


@pytest.fixture(params=["weights.h5", "legacy"])
def target(request, build, kb):
    return Target(request.param, build, kb)


def replace(path, make):
    """Hook: delete the dataset at ``path`` and call ``make(h5, path, old_values)``."""
    def hook(h5):
        old = h5[path][()]
        del h5[path]
        make(h5, path, old)
    return hook


# --- B1 / B2 / B3 / B4: signature, truncation, bit flips ------------------------------------------
@pytest.mark.parametrize("content,found", [
    (b"", "an empty file"),
    (bytes(np.random.default_rng(3).integers(0, 256, 2048, dtype=np.uint8)), "unrecognized bytes"),
    (b"PK\x03\x04" + b"\0" * 100, r"a zip signature \(a \.keras archive\); it is a \.keras archive, name it \*\.keras"),
])
def test_b1_wrong_signature(build, no_side_effects, content, found):
    path = build.write("model.h5", content)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' is not a HDF5 file: expected its signature at "
                                                   rf"offset 0, found {found}"):
            bilstm_ref.load_spec(path)


def test_b1_signature_then_junk(build, no_side_effects):
    path = build.write("model.h5", b"\x89HDF\r\n\x1a\n" + b"\xa5" * 4096)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': damaged HDF5 file \(.+\)"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("cut", [1, 100, "half"])
def test_b2_truncated(target, build, no_side_effects, cut):
    raw = target.raw()
    raw = raw[: len(raw) // 2] if cut == "half" else raw[:-cut]
    path = build.write("cut.h5", raw)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': truncated HDF5 file \(.*eof"):
            target.load(path)


@pytest.mark.parametrize("relpath", ["keras-2.15/bidi_hard_sigmoid_concat.h5", "keras-2.12/bidi_hard_sigmoid_concat.h5",
                                     "keras-2.15/bidi_custom_backward_mul.weights-only.h5"])
def test_b2_real_keras2_file_truncated_by_one_byte(build, no_side_effects, relpath):
    path = build.copy_keras2(relpath)
    raw = path.read_bytes()
    path.write_bytes(raw[:-1])
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': truncated HDF5 file \(.*eof = {len(raw) - 1}.*"
                                                   rf"stored_eof = {len(raw)}"):
            bilstm_ref.load_spec(path, layer="bidirectional")


def test_b3_bit_flipped_metadata_sweep(target, build, tmp_path, no_side_effects):
    """Flip every byte of the superblock region: each load succeeds or raises a bilstm_ref error."""
    raw = target.raw()
    flips = tmp_path / "flips"
    flips.mkdir()
    paths = []
    for at in range(8, 96):
        paths.append(flips / f"flip{at:03d}.h5")
        paths[-1].write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    outcomes: dict[str, int] = {}
    with no_side_effects(seconds=10):
        for path in paths:
            try:
                target.load(path)
                outcomes["loaded"] = outcomes.get("loaded", 0) + 1
            except bilstm_ref.BilstmRefError as e:
                outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
                assert str(path) in str(e), e
    assert outcomes.get("CorruptFileError", 0) >= 20, outcomes


def test_b3_flipped_superblock_version(target, build, no_side_effects):
    raw = bytearray(target.raw())
    raw[8] = 0x7F  # superblock version
    path = build.write("flip.h5", bytes(raw))
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': damaged HDF5 file"):
            target.load(path)


def test_b4_flipped_weight_bytes_are_undetectable_and_documented(target, build, kb, no_side_effects):
    """HDF5 has no checksum on raw data: a flipped weight byte loads as a different value (row B4)."""
    weights = kb.make_weights(seed=8)
    path = target.make(weights=weights)
    with h5py.File(path, "r") as h5:
        offset = h5[target.keys["k0"]].id.get_offset()
    raw = bytearray(path.read_bytes())
    raw[offset + 3] ^= 0x40  # high byte of element [0, 0]'s exponent (little-endian float32)
    path.write_bytes(bytes(raw))
    with no_side_effects():
        spec = target.load(path)
    diff = spec.weights[0] != weights[0]
    assert diff.sum() == 1 and diff[0, 0]
    for got, want in zip(spec.weights[1:], weights[1:]):
        np.testing.assert_array_equal(got, want)


# --- B5 / B6 / B7: external storage, links, virtual datasets ---------------------------------------
@pytest.fixture
def outside(tmp_path):
    """A real HDF5 file outside the model, holding plausible weights: following a link would succeed."""
    path = tmp_path / "outside.h5"
    with h5py.File(path, "w") as h5:
        h5["k"] = np.ones((3, 16), np.float32)
        h5["cell/vars/0"] = np.ones((3, 16), np.float32)
        h5.create_group("vars").attrs["name"] = "bidirectional"
    return path


@pytest.mark.parametrize("target_file", ["nonexistent", "existing raw floats"])
def test_b5_external_storage(target, build, tmp_path, no_side_effects, target_file):
    host = tmp_path / ("missing.bin" if target_file == "nonexistent" else "host.bin")
    if target_file != "nonexistent":
        host.write_bytes(np.ones((3, 16), "<f4").tobytes())
    hook = replace(target.keys["k0"], lambda h, p, o: h.create_dataset(p, shape=o.shape, dtype="<f4",
                                                                       external=[(str(host), 0, o.nbytes)]))
    path = target.make(hook)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': /{rx(target.keys['k0'])}: uses external storage "
                                                   r"\(data in another file\); refused"):
            target.load(path)


LINKS = {
    "soft link to a dataset": ("k0", lambda h, p, o, out: (h.create_dataset("stash", data=o),
                                                           h.__setitem__(p, h5py.SoftLink("/stash"))), "a soft link"),
    "dangling soft link": ("k0", lambda h, p, o, out: h.__setitem__(p, h5py.SoftLink("/nowhere")), "a soft link"),
    "external link to a dataset": ("k0", lambda h, p, o, out: h.__setitem__(p, h5py.ExternalLink(str(out), "/k")),
                                   "an external link"),
    "dangling external link": ("k0", lambda h, p, o, out: h.__setitem__(p, h5py.ExternalLink("/nonexistent.h5", "/k")),
                               "an external link"),
}


@pytest.mark.parametrize("case", sorted(LINKS))
def test_b6_dataset_links(target, outside, no_side_effects, case):
    key, make, kind = LINKS[case]
    path = target.make(replace(target.keys[key], lambda h, p, o: make(h, p, o, outside)))
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': /{rx(target.keys[key])} is {kind}; links are "
                                                   r"not followed"):
            target.load(path)


@pytest.mark.parametrize("level", ["group", "layer"])
@pytest.mark.parametrize("link", ["soft", "external"])
def test_b6_group_links(target, outside, no_side_effects, level, link):
    key = target.keys[level]

    def hook(h5):
        h5.move(key, "/moved_away")
        h5[key] = h5py.SoftLink("/moved_away") if link == "soft" else h5py.ExternalLink(str(outside), "/")

    path = target.make(hook)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': /{rx(key)} is an? {link} link; links are not "
                                                   r"followed"):
            target.load(path)


def test_b6_external_link_beside_the_layer_is_never_opened(build, kb, tmp_path, no_side_effects):
    """Finding ``layers/<key>`` by its recorded name must not follow a sibling's external link: it points
    at a FIFO with no writer, so opening it would hang (and the alarm would fail the test)."""
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)

    def hook(h5):
        h5["layers/aaa_first"] = h5py.ExternalLink(str(fifo), "/")
        h5["layers/zzz_last"] = h5py.SoftLink("/layers/bidirectional")

    path = build.weights_h5(hook=hook)
    config = build.model_json()
    with no_side_effects(seconds=2):
        spec = bilstm_ref.load_spec(path, config=config)
        bilstm_ref.inspect_file(path, config=config)
    assert spec.class_name == "Bidirectional"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_b7_virtual_dataset(target, tmp_path, no_side_effects):
    def make(h5, p, old):
        layout = h5py.VirtualLayout(shape=old.shape, dtype="f4")
        layout[...] = h5py.VirtualSource(str(tmp_path / "source-that-does-not-exist.h5"), "k", shape=old.shape)
        h5.create_virtual_dataset(p, layout)

    path = target.make(replace(target.keys["k0"], make))
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': /{rx(target.keys['k0'])}: is a virtual dataset"):
            target.load(path)


# --- B8: shape bombs -------------------------------------------------------------------------------
def test_b8_shape_bomb_small_limits(target, small_limits, no_side_effects):
    hook = replace(target.keys["k0"], lambda h, p, o: h.create_dataset(p, shape=o.shape, dtype="f4", chunks=o.shape,
                                                                       compression="gzip"))
    path = target.make(hook)
    small_limits(STORAGE_RATIO_FLOOR_BYTES=0, MAX_STORAGE_RATIO=2)
    with no_side_effects(max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': /{rx(target.keys['k0'])}: declares 192 bytes but "
                                                     r"stores 0 \(ratio above 2\); refusing a possible shape bomb"):
            target.load(path)


def _bomb_file(build, kb, kind: str, units: int, dim: int):
    """A model whose kernel (dim, 4*units) float32 is declared, chunked+gzip, and never written (fill value)."""
    def bomb_tree(h5, prefix_paths):
        for p, shape in prefix_paths:
            if p in h5:
                del h5[p]
            h5.create_dataset(p, shape=shape, dtype="f4", chunks=tuple(min(s, 1024) for s in shape),
                              compression="gzip")

    shapes = [(dim, 4 * units), (units, 4 * units), (4 * units,)] * 2
    small = kb.make_weights(units=1, dim=1)  # placeholders, replaced by the hook
    if kind == "weights.h5":
        paths = [f"layers/bidirectional/{d}_layer/cell/vars/{i}" for d in ("forward", "backward") for i in range(3)]
        cfg = kb.keras3_model_config(units=units, dim=dim)
        path = build.weights_h5(weights=small, hook=lambda h5: bomb_tree(h5, list(zip(paths, shapes))))
        return path, {"config": build.model_json(config=cfg)}, "/" + paths[0]
    paths = [f"model_weights/bidirectional/{w}" for w in kb.LEGACY_WEIGHT_NAMES]
    cfg = kb.legacy_model_config(units=units)
    cfg["config"]["layers"][0]["config"]["batch_input_shape"] = [None, 5, dim]
    path = build.legacy_h5(config=cfg, weights=small, hook=lambda h5: bomb_tree(h5, list(zip(paths, shapes))))
    return path, {}, "/" + paths[0]


@pytest.mark.parametrize("kind", ["weights.h5", "legacy"])
def test_b8_shape_bomb_16gib_default_limits(build, kb, no_side_effects, kind):
    """Declared (1048576, 4096) float32 = 16 GiB in a few KB: refused from metadata with the shipped limits."""
    path, kw, k0 = _bomb_file(build, kb, kind, units=1024, dim=1024**2)
    assert path.stat().st_size < 64 * 1024
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': {re.escape(k0)}: declares 17179869184 bytes, "
                                                     r"exceeds the limit of 2147483648"):
            bilstm_ref.load_spec(path, **kw)


@pytest.mark.parametrize("kind", ["weights.h5", "legacy"])
def test_b8_shape_bomb_1gib_ratio_default_limits(build, kb, no_side_effects, kind):
    """Declared 1 GiB (under the 2 GiB cap) storing nothing: the declared/stored ratio refuses it."""
    path, kw, k0 = _bomb_file(build, kb, kind, units=256, dim=256 * 1024)
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': {re.escape(k0)}: declares 1073741824 bytes but "
                                                     r"stores 0 \(ratio above 1000\); refusing a possible shape bomb"):
            bilstm_ref.load_spec(path, **kw)


# --- B9 / B10: dtypes ------------------------------------------------------------------------------
DTYPES = {
    "int64": (lambda o: o.astype(np.int64), "int64"),
    "S3": (lambda o: np.full(o.shape, b"abc", dtype="S3"), r"\|S3"),
    "vlen str": (lambda o: np.full(o.shape, "abc", dtype=object), "object"),
    "compound": (lambda o: np.zeros(o.shape, dtype=[("a", "<f4"), ("b", "<f4")]), r"\[\('a', '<f4'\)"),
    "complex64": (lambda o: o.astype(np.complex64), "complex64"),
    "bool": (lambda o: o > 0, "bool"),
    "uint8": (lambda o: (o * 0).astype(np.uint8), "uint8"),
}


@pytest.mark.parametrize("case", sorted(DTYPES))
def test_b9_wrong_dtype(target, no_side_effects, case):
    convert, shown = DTYPES[case]

    def make(h5, p, old):
        data = convert(old)
        kw = {"dtype": h5py.string_dtype()} if data.dtype == object else {}
        h5.create_dataset(p, data=data, **kw)

    path = target.make(replace(target.keys["k0"], make))
    with no_side_effects():
        with pytest.raises(DTypeMismatchError, match=rf"{rx(path)}': /{rx(target.keys['k0'])}: expected "
                                                     rf"float16/32/64, got {shown}"):
            target.load(path)


@pytest.mark.parametrize("dtype", [">f4", "<f2", ">f8"])
def test_b10_big_endian_and_float16_accepted_and_converted(target, kb, no_side_effects, dtype):
    weights = [w.astype(dtype) for w in kb.make_weights(seed=12)]
    path = target.make(weights=weights)
    with no_side_effects():
        spec = target.load(path)
    for got, want in zip(spec.weights, weights):
        assert got.dtype == np.float64 and got.dtype.isnative
        np.testing.assert_array_equal(got, want.astype(np.float64))
    want = np.dtype(dtype)
    assert spec.provenance["weight_dtypes"] == [want.name if want.isnative else want.str]


def test_b10_big_endian_original_dtype_recorded(target, kb, no_side_effects):
    weights = [w.astype(">f4") for w in kb.make_weights(seed=12)]
    path = target.make(weights=weights)
    with no_side_effects():
        spec = target.load(path)
    assert spec.provenance["weight_dtypes"] == [">f4"]


def test_b10_mixed_dtypes_recorded(target, kb, no_side_effects):
    weights = kb.make_weights(seed=13)
    weights[1] = weights[1].astype(np.float16)
    path = target.make(weights=weights)
    with no_side_effects():
        spec = target.load(path)
    assert spec.provenance["weight_dtypes"] == ["float16", "float32"]


# --- B11 / B12: shapes -----------------------------------------------------------------------------
def test_b11_kernel_with_one_more_row(target, kb, no_side_effects):
    """Forward kernel (D+1, 4n): the Keras 3 layer's build shape says D=3, and so does the legacy model's
    InputLayer; the first kernel disagrees."""
    path = target.make(replace(target.keys["k0"], lambda h, p, o: h.create_dataset(p, data=np.zeros((4, 16), "f4"))))
    # Both layouts know D=3: the Keras 3 layer's build shape, the legacy model's InputLayer.
    expected = rf"/{rx(target.keys['k0'])}: expected input_dim 3 \(the config's build shape\), kernel has 4 rows"
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': {expected}"):
            target.load(path)


def test_b11_all_kernels_one_row_too_many_vs_input_layer(build, kb, no_side_effects):
    path = build.legacy_h5(weights=kb.make_weights(dim=4))
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}'.*input_dim 3"):
            bilstm_ref.load_spec(path)


def test_b11_transposed_recurrent_kernel(target, no_side_effects):
    path = target.make(replace(target.keys["r0"], lambda h, p, o: h.create_dataset(p, data=o.T)))
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': /{rx(target.keys['r0'])}: expected shape "
                                                     r"\(4, 16\), got \(16, 4\)"):
            target.load(path)


def test_b11_backward_bias_wrong_length(target, no_side_effects):
    path = target.make(replace(target.keys["b1"], lambda h, p, o: h.create_dataset(p, data=np.zeros(12, "f4"))))
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': /{rx(target.keys['b1'])}: expected shape "
                                                     r"\(16,\), got \(12,\)"):
            target.load(path)


def test_b11_kernel_without_build_shape_checked_against_the_other_direction(build, kb, no_side_effects):
    """No build shape in the config: D comes from the first kernel, and the backward kernel must agree."""
    cfg = kb.legacy_model_config()
    del cfg["config"]["layers"][0]["config"]["batch_input_shape"]
    weights = kb.make_weights()
    weights[0] = np.zeros((4, 16), np.float32)
    path = build.legacy_h5(config=cfg, weights=weights)
    bk = "/model_weights/bidirectional/" + kb.LEGACY_WEIGHT_NAMES[3]
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': {re.escape(bk)}: expected shape \(4, 16\), "
                                                     r"got \(3, 16\)"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("change", ["missing bias", "extra dataset"])
def test_b11_keras3_wrong_number_of_vars(build, no_side_effects, change):
    vars_ = "layers/bidirectional/forward_layer/cell/vars"

    def hook(h5):
        if change == "missing bias":
            del h5[f"{vars_}/2"]
        else:
            h5[f"{vars_}/3"] = np.zeros(16, "f4")

    path = build.weights_h5(hook=hook)
    config = build.model_json()
    found = r"\['0', '1'\]" if change == "missing bias" else r"\['0', '1', '2', '3'\]"
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': /{vars_}: expected datasets \['0', '1', '2'\] "
                                                     rf"\(kernel, recurrent_kernel, bias\), found {found}"):
            bilstm_ref.load_spec(path, config=config)


@pytest.mark.parametrize("count", [5, 7])
def test_b11_legacy_wrong_number_of_weight_names(build, kb, no_side_effects, count):
    def hook(h5):
        g = h5["model_weights/bidirectional"]
        names = list(kb.LEGACY_WEIGHT_NAMES)
        if count == 7:
            names.append("bidirectional/extra:0")
            g["bidirectional/extra:0"] = np.zeros(3, "f4")
        g.attrs["weight_names"] = np.array([n.encode() for n in names[:count]])

    path = build.legacy_h5(hook=hook)
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': /model_weights/bidirectional attribute "
                                                     rf"'weight_names': expected 6 weights for Bidirectional "
                                                     rf"'bidirectional', found {count}"):
            bilstm_ref.load_spec(path)


SHAPES = {
    "scalar": (lambda o: np.float32(1.0), r"\(\)"),
    "empty (0, 16)": (lambda o: np.zeros((0, 16), "f4"), r"\(0, 16\)"),
    "rank 3": (lambda o: o[None], r"\(1, 3, 16\)|\(1, 16\)"),
    "null dataspace": (lambda o: h5py.Empty("f4"), "None"),
}


@pytest.mark.parametrize("case", sorted(SHAPES))
@pytest.mark.parametrize("which", ["k0", "b1"])
def test_b12_scalar_empty_rank3(target, no_side_effects, case, which):
    make, shown = SHAPES[case]
    path = target.make(replace(target.keys[which], lambda h, p, o: h.create_dataset(p, data=make(o))))
    expected = r"a kernel \(input_dim, 4\*units\)" if which == "k0" else r"shape \(16,\)"
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{rx(path)}': /{rx(target.keys[which])}: expected "
                                                     rf"{expected}, got (an empty \(null\) dataspace|{shown})"):
            target.load(path)


def test_b12_weight_is_a_group(target, no_side_effects):
    path = target.make(replace(target.keys["b1"], lambda h, p, o: h.create_group(p)))
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': /{rx(target.keys['b1'])}: expected a dataset, found "
                                                   r"a group"):
            target.load(path)


# --- B13: NaN / Inf --------------------------------------------------------------------------------
def test_b13_nonfinite_weights_load_flagged_and_propagate(target, kb, no_side_effects):
    weights = kb.make_weights(seed=14)
    weights[0][1, 2] = np.nan
    weights[5][0] = np.inf
    path = target.make(weights=weights)
    with no_side_effects():
        spec = target.load(path)
        info = bilstm_ref.inspect_file(path, config=target.json)
    assert spec.provenance["nonfinite_weights"] == ["/" + target.keys["k0"], "/" + target.keys["b1"]]
    assert np.isnan(spec.weights[0][1, 2]) and np.isinf(spec.weights[5][0])
    warning = [w for w in info["warnings"] if "NaN or Inf" in w]
    assert warning and "/" + target.keys["k0"] in warning[0] and "/" + target.keys["b1"] in warning[0]
    y = bilstm_ref.build(spec)(np.ones((1, 5, 3)))
    assert np.isnan(y).any()  # propagated, not sanitised


# --- B14: legacy model_config ----------------------------------------------------------------------
def _set_model_config(value):
    def hook(h5):
        del h5.attrs["model_config"]
        if value is not None:
            if isinstance(value, tuple):  # (data, dtype)
                h5.attrs.create("model_config", data=value[0], dtype=value[1])
            else:
                h5.attrs["model_config"] = value
    return hook


MODEL_CONFIGS = {
    "missing": (None, r"legacy model file without a 'model_config' attribute"),
    "invalid UTF-8 (fixed-length bytes)": (np.bytes_(b'{"class_name": "\xff"}'),
                                           r"/ attribute 'model_config': not valid UTF-8"),
    "invalid UTF-8 (vlen str, surrogates)": ((b'{"class_name": "\xff"}', h5py.string_dtype("utf-8")),
                                             r"/ attribute 'model_config': not valid UTF-8"),
    "invalid JSON": ('{"class_name": ', r"attribute 'model_config': invalid JSON"),
    "NaN": ('{"class_name": "Sequential", "x": NaN}',
            r"attribute 'model_config': invalid JSON \(non-standard JSON constant NaN\)"),
    "not a model": ("[1, 2]", r"expected a serialized Keras model"),
    "an integer array": (np.arange(3), r"attribute 'model_config': expected strings, got an array of int64"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CONFIGS))
def test_b14_legacy_model_config(build, no_side_effects, case):
    value, message = MODEL_CONFIGS[case]
    path = build.legacy_h5(hook=_set_model_config(value))
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}.*({message})"):
            bilstm_ref.load_spec(path)


@pytest.fixture
def keras2_lambda(marker):
    import base64
    import marshal

    ns: dict = {}
    exec(f"def payload(x):\n    with open({str(marker)!r}, 'w') as f:\n        f.write('pwned')\n    return x\n", ns)
    code = base64.b64encode(marshal.dumps(ns["payload"].__code__)).decode()
    return {"class_name": "Lambda",
            "config": {"name": "lambda", "trainable": True, "dtype": "float32",
                       "function": [code, None, None], "function_type": "lambda", "module": "__main__",
                       "output_shape": None, "output_shape_type": "raw", "output_shape_module": None,
                       "arguments": {}}}


def test_b14_legacy_lambda_refused_and_bidirectional_beside_it_loads(build, kb, keras2_lambda, no_side_effects):
    """CVE-2025-9905: a legacy .h5 Lambda. Refused by name; never run; the Bidirectional beside it loads."""
    cfg = kb.legacy_model_config(extra_layers=(keras2_lambda,))
    weights = kb.make_weights(seed=15)
    path = build.legacy_h5(config=cfg, weights=weights)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': \$\.config\.layers\[2\] 'lambda': Lambda layers "
                                                   r"carry code"):
            bilstm_ref.load_spec(path, layer="lambda")
        spec = bilstm_ref.load_spec(path, layer="bidirectional")
        info = bilstm_ref.inspect_file(path)
    np.testing.assert_array_equal(spec.weights[0], weights[0])
    assert [r["supported"] for r in info["layers"] if r["name"] == "lambda"] == [False]


def test_b14_legacy_lambda_code_inside_the_lstm(build, kb, keras2_lambda, no_side_effects):
    cfg = kb.legacy_model_config(activation={"class_name": "__lambda__",
                                             "config": keras2_lambda["config"]["function"]})
    path = build.legacy_h5(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': \$\.config\.layers\[1\]\.config\.layer\.config\."
                                                   r"activation: embedded code"):
            bilstm_ref.load_spec(path)


def test_b14_legacy_non_keras_module_in_lstm(build, kb, no_side_effects):
    cfg = kb.legacy_model_config(kernel_initializer={"module": "evil_marker", "class_name": "Evil", "config": {}})
    path = build.legacy_h5(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}': \$\.config\.layers\[1\]\.config\.layer\.config\."
                                                   r"kernel_initializer: names module 'evil_marker'"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("case", ["units 0", "time_major", "units huge"])
def test_b14_legacy_semantic_options(build, kb, no_side_effects, case):
    over = {"units 0": {"units": 0}, "time_major": {"time_major": True}, "units huge": {"units": 10**9}}[case]
    error = ResourceLimitError if case == "units huge" else UnsupportedModelError
    path = build.legacy_h5(config=kb.legacy_model_config(**over))
    with no_side_effects():
        with pytest.raises(error, match=rf"{rx(path)}': \$\.config\.layers\[1\]\.config\.layer\.config"):
            bilstm_ref.load_spec(path)


# --- B15: layer_names / weight_names ----------------------------------------------------------------
def _names(values):
    return np.array([v.encode() for v in values])


B15 = {
    "layer_names omits the layer": (
        lambda h5, kb: h5["model_weights"].attrs.__setitem__("layer_names", _names(["input_1"])),
        r"/model_weights attribute 'layer_names' does not list 'bidirectional' \(lists \['input_1'\]\)"),
    "layer_names missing": (
        lambda h5, kb: h5["model_weights"].attrs.__delitem__("layer_names"),
        r"/model_weights: missing attribute 'layer_names'"),
    "duplicate layer_names": (
        lambda h5, kb: h5["model_weights"].attrs.__setitem__("layer_names",
                                                             _names(["input_1", "bidirectional", "input_1"])),
        r"/model_weights attribute 'layer_names': duplicate names \['input_1'\]"),
    "duplicate weight_names": (
        lambda h5, kb: h5["model_weights/bidirectional"].attrs.__setitem__(
            "weight_names", _names(kb.LEGACY_WEIGHT_NAMES[:5] + kb.LEGACY_WEIGHT_NAMES[:1])),
        r"/model_weights/bidirectional attribute 'weight_names': duplicate names"),
    "dangling weight_name": (
        lambda h5, kb: h5["model_weights/bidirectional"].attrs.__setitem__(
            "weight_names", _names(kb.LEGACY_WEIGHT_NAMES[:5] + ["bidirectional/backward_lstm_26/lstm_cell/gone:0"])),
        r"missing /model_weights/bidirectional/bidirectional/backward_lstm_26/lstm_cell/gone:0"),
    "layer group missing": (
        lambda h5, kb: h5.__delitem__("model_weights/bidirectional"),
        r"missing /model_weights/bidirectional"),
    "layer_names not strings": (
        lambda h5, kb: h5["model_weights"].attrs.__setitem__("layer_names", np.arange(2)),
        r"/model_weights attribute 'layer_names': expected strings, got an array of int64"),
}


@pytest.mark.parametrize("case", sorted(B15))
def test_b15_legacy_names_inconsistent(build, kb, no_side_effects, case):
    edit, message = B15[case]
    path = build.legacy_h5(hook=lambda h5: edit(h5, kb))
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': {message}"):
            bilstm_ref.load_spec(path)


# --- B16: huge attributes ---------------------------------------------------------------------------
def test_b16_huge_fixed_length_attribute_small_limits(build, kb, small_limits, no_side_effects):
    text = json.dumps(kb.legacy_model_config()).encode()
    path = build.legacy_h5(hook=_set_model_config(np.bytes_(text)))
    small_limits(MAX_ATTR_BYTES=256)
    with no_side_effects(max_mb=50):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': / attribute 'model_config': {len(text)} bytes "
                                                     r"exceeds the limit of 256"):
            bilstm_ref.load_spec(path)


def test_b16_huge_layer_names_small_limits(build, kb, small_limits, no_side_effects):
    names = ["input_1", "bidirectional"] + [f"pad_{i:06d}" for i in range(200)]

    def hook(h5):
        h5["model_weights"].attrs["layer_names"] = _names(names)

    path = build.legacy_h5(hook=hook)
    small_limits(MAX_ATTR_BYTES=1024)
    with no_side_effects(max_mb=50):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': /model_weights attribute 'layer_names': 2\d\d\d "
                                                     r"bytes exceeds the limit of 1024"):
            bilstm_ref.load_spec(path)


@pytest.fixture(scope="module")
def huge_vlen_model_config(tmp_path_factory, kb):
    """An 80 MiB model_config stored as Keras 2 stores it (a variable-length str attribute)."""
    path = tmp_path_factory.mktemp("huge") / "huge.h5"
    kb.write_legacy_h5(path, hook=_set_model_config("[" + " " * (80 * 1024**2) + "]"))
    return path


def test_b16_huge_vlen_model_config_default_limits(huge_vlen_model_config, no_side_effects):
    """A variable-length str attribute (the form Keras 2 writes model_config in) has a storage size of one heap
    reference, so only reading it tells its length: the HDF5 prober reads it in its own process and the loader
    refuses the file without reading it (this was a known limitation, ~160 MiB traced, before the prober)."""
    path = huge_vlen_model_config
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': / attribute 'model_config': 83886082 characters "
                                                     r"exceeds the limit of 67108864"):
            bilstm_ref.load_spec(path)


def test_b16_huge_vlen_model_config_without_the_prober(huge_vlen_model_config, no_side_effects, monkeypatch):
    """With the prober switched off (BILSTM_REF_HDF5_SECONDS=0) the loader's own check still refuses it, after reading."""
    monkeypatch.setenv("BILSTM_REF_HDF5_SECONDS", "0")
    path = huge_vlen_model_config
    with no_side_effects(seconds=5):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': / attribute 'model_config': 83886082 characters "
                                                     r"exceeds the limit of 67108864"):
            bilstm_ref.load_spec(path)


# --- B17: filters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("filter_id", [32004, 32015])  # LZ4, Zstandard: registered ids, no plugin loaded here
def test_b17_unavailable_filter(target, no_side_effects, filter_id):
    if h5py.h5z.filter_avail(filter_id):
        pytest.skip(f"filter {filter_id} is available in this environment")
    hook = replace(target.keys["k0"], lambda h, p, o: h.create_dataset(p, shape=o.shape, dtype="f4", chunks=o.shape,
                                                                       compression=filter_id,
                                                                       allow_unknown_filter=True))
    path = target.make(hook)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': /{rx(target.keys['k0'])}: HDF5 filter {filter_id} "
                                                   r"is not available; plugins are not loaded"):
            target.load(path)


# --- weights-only files and config= ------------------------------------------------------------------
def test_weights_only_without_config_is_refused(build, no_side_effects):
    path = build.weights_h5()
    with no_side_effects():
        with pytest.raises(UnsupportedModelError, match=rf"{rx(path)}': a weights-only file \(\.weights\.h5\) needs "
                                                        r"the architecture: pass config="):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("kind", ["invalid JSON", "Lambda target", "HDF5 without model_config"])
def test_config_file_hostile(build, kb, marker, no_side_effects, kind):
    weights = build.weights_h5()
    if kind == "invalid JSON":
        config = build.write("model.json", b'{"class_name": "Sequential", "config": NaN}')
        error, message = CorruptFileError, rf"{rx(config)}': invalid JSON \(non-standard JSON constant NaN\)"
    elif kind == "Lambda target":
        cfg = kb.keras3_model_config()
        kb.lstm_entry_of(cfg)["activation"] = {"class_name": "__lambda__", "config": {"code": "AA=="}}
        config = build.model_json(config=cfg)
        error, message = UnsafeModelError, rf"{rx(config)}'.*\$\.config\.layers\[1\]\.config\.layer\.config\.activation"
    else:
        config = build.weights_h5(name="other.weights.h5")
        error, message = CorruptFileError, rf"{rx(config)}': no 'model_config' attribute"
    with no_side_effects():
        with pytest.raises(error, match=message):
            bilstm_ref.load_spec(weights, config=config)


def test_model_json_config_read_allocates_its_size_not_the_limit(build, no_side_effects):
    """A 4 KB model JSON costs about 4 KB: not a MAX_JSON_BYTES (64 MiB) read buffer (CPython's
    BufferedReader.read(n) allocates n up front)."""
    path, config = build.weights_h5(), build.model_json()
    with no_side_effects(max_mb=16):
        bilstm_ref.load_spec(path, config=config)


def test_model_json_config_over_limit_small_limits(build, small_limits, no_side_effects):
    path, config = build.weights_h5(), build.model_json()
    small_limits(MAX_JSON_BYTES=1024)
    with no_side_effects():
        with pytest.raises(ResourceLimitError, match=rf"{rx(config)}': {config.stat().st_size} bytes exceeds the "
                                                     r"limit of 1024"):
            bilstm_ref.load_spec(path, config=config)
