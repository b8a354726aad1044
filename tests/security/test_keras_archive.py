"""Table A of the hostile-input cases: hostile ``.keras`` archives.

Every hostile load runs inside ``no_side_effects()`` (the side-effect guard): no marker, no new
module, nothing written under tmp_path, bounded time (and memory for the bombs).
"""

from __future__ import annotations

import base64
import copy
import io
import json
import marshal
import os
import re
import stat
import sys
import types
import zipfile

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

K0 = "layers/bidirectional/forward_layer/cell/vars/0"


def rx(path) -> str:
    return re.escape(str(path))


def wrx(path) -> str:
    """How the loader names the weights member of a .keras archive."""
    return re.escape(f"{path}!model.weights.h5")


# --- hostile config entries -----------------------------------------------------------------------
def marshalled_payload(marker) -> str:
    """base64(marshal(code)) of a function that creates ``marker`` (the CVE-2024-3660 Lambda payload)."""
    src = f"def payload(x):\n    with open({str(marker)!r}, 'w') as f:\n        f.write('pwned')\n    return x\n"
    ns: dict = {}
    exec(src, ns)
    return base64.b64encode(marshal.dumps(ns["payload"].__code__)).decode()


def lambda_entry(name: str, function) -> dict:
    return {
        "module": "keras.layers", "class_name": "Lambda",
        "config": {"name": name, "trainable": True,
                   "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                             "registered_name": None},
                   "function": function, "arguments": {}},
        "registered_name": None, "build_config": {"input_shape": [None, 5, 8]},
        "name": name, "inbound_nodes": [],
    }


def layer_entry(class_name: str, name: str, config: dict | None = None, module: str = "keras.layers",
                registered_name=None) -> dict:
    cfg = {"name": name, "trainable": True}
    cfg.update(config or {})
    return {"module": module, "class_name": class_name, "config": cfg, "registered_name": registered_name,
            "name": name, "inbound_nodes": []}


# --- A1 -------------------------------------------------------------------------------------------
@pytest.fixture
def lambda_archive(build, kb, marker, tmp_path):
    code = marshalled_payload(marker)
    # The payload is live: executed, it writes its marker (checked on a throwaway path first).
    probe = tmp_path / "probe-marker"
    live = types.FunctionType(marshal.loads(base64.b64decode(marshalled_payload(probe))), {})
    live(1)
    assert probe.exists()
    probe.unlink()
    lam = lambda_entry("lam", {"class_name": "__lambda__", "config": {"code": code, "defaults": None,
                                                                      "closure": None}})
    cfg = kb.keras3_model_config(extra_layers=(lam,))
    weights = kb.make_weights(seed=11)
    path = build.keras(config=cfg, weights=weights, extra_keys=(("lambda", "lam"),))
    return path, weights


def test_a1_lambda_layer_is_refused(lambda_archive, no_side_effects):
    path, _ = lambda_archive
    with no_side_effects():
        with pytest.raises(UnsafeModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[2\] 'lam': Lambda layers carry code"):
            bilstm_ref.load_spec(path, layer="lam")


def test_a1_bidirectional_beside_lambda_loads_without_running_it(lambda_archive, no_side_effects):
    path, weights = lambda_archive
    with no_side_effects():
        spec = bilstm_ref.load_spec(path, layer="bidirectional")
        default = bilstm_ref.load_spec(path)  # the only LSTM/Bidirectional layer
        layer = bilstm_ref.load(path, layer="bidirectional")
        info = bilstm_ref.inspect_file(path)
    for got, want in zip(spec.weights, weights):
        np.testing.assert_array_equal(got, want)
    assert default.provenance["layer"] == "bidirectional"
    assert layer(np.ones((1, 5, 3))).shape == (1, 5, 8)
    rows = {r["name"]: r for r in info["layers"]}
    assert rows["lam"]["supported"] is False and "Lambda" in rows["lam"]["reason"]
    assert rows["bidirectional"]["supported"] is True


@pytest.mark.parametrize("where", ["activation", "kernel_initializer"])
@pytest.mark.parametrize("style", ["keras3", "keras2"])
def test_a1_lambda_code_nested_in_the_target_config(build, kb, marker, no_side_effects, where, style):
    code = marshalled_payload(marker)
    cfg = kb.keras3_model_config()
    if style == "keras3":
        payload = {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}
    else:  # Keras 2's Lambda serialization: function + function_type
        payload = {"function": [code, None, None], "function_type": "lambda"}
    kb.lstm_entry_of(cfg)[where] = payload
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[1\]\.config\.layer\.config\.{where}: "
                                 r"(Lambda|embedded)"):
            bilstm_ref.load_spec(path)


# --- A2 -------------------------------------------------------------------------------------------
EVIL_SPOTS = {
    "kernel_initializer": ("layer", "kernel_initializer"),
    "kernel_regularizer": ("layer", "kernel_regularizer"),
    "recurrent_constraint": ("layer", "recurrent_constraint"),
    "activation": ("layer", "activation"),
    "backward_bias_initializer": ("backward_layer", "bias_initializer"),
}


@pytest.fixture
def evil_module(tmp_path, marker, monkeypatch):
    """``evil_marker.py`` on sys.path: importing it writes the marker."""
    lib = tmp_path / "pylib"
    lib.mkdir()
    (lib / "evil_marker.py").write_text(
        f"with open({str(marker)!r}, 'w') as f:\n    f.write('imported')\nclass Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "evil_marker", raising=False)
    return {"module": "evil_marker", "class_name": "Evil", "config": {}, "registered_name": None}


@pytest.mark.parametrize("spot", sorted(EVIL_SPOTS))
def test_a2_non_keras_module_in_nested_object(build, kb, evil_module, no_side_effects, spot):
    direction, key = EVIL_SPOTS[spot]
    cfg = kb.keras3_model_config()
    kb.lstm_entry_of(cfg, direction)[key] = copy.deepcopy(evil_module)
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[1\]\.config\.{direction}\.config\.{key}: "
                                 r"names module 'evil_marker'"):
            bilstm_ref.load_spec(path, layer="bidirectional")
    assert "evil_marker" not in sys.modules


@pytest.mark.parametrize("spot", ["bidirectional dtype policy", "wrapped layer entry"])
def test_a2_non_keras_module_in_the_wrapper(build, kb, evil_module, no_side_effects, spot):
    cfg = kb.keras3_model_config()
    bidi = kb.bidi_config_of(cfg)
    if spot == "bidirectional dtype policy":
        bidi["dtype"]["module"] = "evil_marker"
        where = r"\$\.config\.layers\[1\]\.config\.dtype"
    else:
        bidi["layer"]["module"] = "evil_marker"
        where = r"\$\.config\.layers\[1\]\.config\.layer"
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}.*{where}: names module 'evil_marker'"):
            bilstm_ref.load_spec(path)
    assert "evil_marker" not in sys.modules


@pytest.mark.parametrize("spot", ["target layer entry", "model root"])
def test_a2_non_keras_module_on_target_entry_or_model(build, kb, evil_module, no_side_effects, spot):
    cfg = kb.keras3_model_config()
    if spot == "target layer entry":
        cfg["config"]["layers"][1]["module"] = "evil_marker"
    else:
        cfg["module"] = "evil_marker"
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}.*\$.*names module 'evil_marker'"):
            bilstm_ref.load_spec(path, layer="bidirectional")


def test_a2_custom_registered_object_in_target(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    kb.lstm_entry_of(cfg)["kernel_initializer"]["registered_name"] = "Custom>EvilInit"
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}.*kernel_initializer: custom registered object "
                                                   r"'Custom>EvilInit'"):
            bilstm_ref.load_spec(path)


def test_a2_evil_module_on_another_layer_is_never_imported(build, kb, evil_module, no_side_effects):
    """Layers other than the requested one are listed, never resolved: loading beside them is fine."""
    other = layer_entry("Evil", "evil", module="evil_marker")
    cfg = kb.keras3_model_config(extra_layers=(other,))
    path = build.keras(config=cfg, extra_keys=(("evil", "evil"),))
    with no_side_effects():
        spec = bilstm_ref.load_spec(path, layer="bidirectional")
        with pytest.raises((UnsupportedModelError, UnsafeModelError), match=rf"{rx(path)}.*\$\.config\.layers\[2\]"):
            bilstm_ref.load_spec(path, layer="evil")
        bilstm_ref.inspect_file(path)
    assert spec.class_name == "Bidirectional"
    assert "evil_marker" not in sys.modules


# --- A3 -------------------------------------------------------------------------------------------
A3_LAYERS = {
    "Dense": layer_entry("Dense", "dense", {"units": 3, "activation": "linear"}),
    "custom registered": layer_entry("MyLayer", "mine", registered_name="Custom>MyLayer"),
    "keras_hub class": layer_entry("BertBackbone", "bert", module="keras_hub.src.models.bert.bert_backbone",
                                   registered_name="keras_hub>BertBackbone"),
    "nested Functional": {"module": "keras.src.models.functional", "class_name": "Functional",
                          "config": {"name": "inner", "layers": []}, "registered_name": "Functional",
                          "name": "inner", "inbound_nodes": []},
}


@pytest.mark.parametrize("kind", sorted(A3_LAYERS))
def test_a3_layer_class_not_allowlisted(build, kb, no_side_effects, kind):
    entry = A3_LAYERS[kind]
    cfg = kb.keras3_model_config(extra_layers=(entry,))
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[2\]: layer '{entry['name']}' is a "
                                 rf"{entry['class_name']}: .*only LSTM and Bidirectional\(LSTM\) layers are loaded"):
            bilstm_ref.load_spec(path, layer=entry["name"])
        # ... and it does not stop the supported layer beside it from loading.
        assert bilstm_ref.load_spec(path, layer="bidirectional").class_name == "Bidirectional"


def test_a3_non_lstm_inside_bidirectional(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    kb.bidi_config_of(cfg)["layer"]["class_name"] = "GRU"
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError, match=rf"{rx(path)}.*\$\.config\.layers\[1\]\.config\.layer: "
                                                        r"only LSTM .*supported inside Bidirectional, got 'GRU'"):
            bilstm_ref.load_spec(path)


def test_a3_model_class_not_allowlisted(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    cfg["class_name"] = "MyCustomModel"
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError, match=rf"{rx(path)}.*\$: model class 'MyCustomModel' is not "
                                                        r"supported; expected one of \['Functional', 'Model', "
                                                        r"'Sequential'\]"):
            bilstm_ref.load_spec(path)


# --- A4 / A5 / A6 ---------------------------------------------------------------------------------
GADGETS = {
    "enable_unsafe_deserialization": {"module": "keras.config", "class_name": "function",
                                      "config": "enable_unsafe_deserialization", "registered_name": "function"},
    "get_file": {"module": "keras.utils", "class_name": "function", "config": "get_file",
                 "registered_name": "function"},
    "load_model": {"module": "keras.models", "class_name": "function", "config": "load_model",
                   "registered_name": "function"},
}


@pytest.mark.parametrize("gadget", sorted(GADGETS))
def test_a4_keras_api_gadget_as_lambda_function(build, kb, no_side_effects, gadget):
    cfg = kb.keras3_model_config(extra_layers=(lambda_entry("gadget", GADGETS[gadget]),))
    path = build.keras(config=cfg, extra_keys=(("lambda", "gadget"),))
    with no_side_effects():
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}.*\$\.config\.layers\[2\] 'gadget': Lambda"):
            bilstm_ref.load_spec(path, layer="gadget")
        assert bilstm_ref.load_spec(path, layer="bidirectional").class_name == "Bidirectional"


@pytest.mark.parametrize("gadget", sorted(GADGETS))
def test_a4_keras_api_gadget_inside_the_target_never_runs(build, kb, no_side_effects, gadget):
    """A Keras API named where an activation or initializer goes: refused, or (initializers, which do
    not affect the forward pass) ignored as data; never resolved either way."""
    for key in ("activation", "kernel_initializer"):
        cfg = kb.keras3_model_config()
        kb.lstm_entry_of(cfg)[key] = copy.deepcopy(GADGETS[gadget])
        path = build.keras(name=f"{key}.keras", config=cfg)
        with no_side_effects():
            if key == "activation":
                with pytest.raises((UnsupportedModelError, UnsafeModelError), match=gadget):
                    bilstm_ref.load_spec(path)
            else:
                try:
                    bilstm_ref.load_spec(path)
                except (UnsupportedModelError, UnsafeModelError) as e:
                    assert "kernel_initializer" in str(e)


@pytest.fixture
def fifo(tmp_path):
    """A FIFO with no writer: opening it for reading blocks forever, so any open shows up as a hang."""
    path = tmp_path / "fifo-with-no-writer"
    os.mkfifo(path)
    return path


def test_a5_tfsmlayer_refused_and_its_path_never_opened(build, kb, fifo, no_side_effects):
    entry = layer_entry("TFSMLayer", "tfsm", {"filepath": str(fifo), "call_endpoint": "serve",
                                              "call_training_endpoint": None})
    cfg = kb.keras3_model_config(extra_layers=(entry,))
    path = build.keras(config=cfg, extra_keys=(("tfsm_layer", "tfsm"),))
    with no_side_effects(seconds=5):
        with pytest.raises(UnsafeModelError, match=rf"{rx(path)}.*\$\.config\.layers\[2\] 'tfsm': TFSMLayer"):
            bilstm_ref.load_spec(path, layer="tfsm")
        assert bilstm_ref.load_spec(path, layer="bidirectional").class_name == "Bidirectional"
        info = bilstm_ref.inspect_file(path)
    assert [r["supported"] for r in info["layers"] if r["name"] == "tfsm"] == [False]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a5_torch_module_wrapper_refused(build, kb, marker, no_side_effects):
    pickled = base64.b64encode(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()).decode()
    entry = layer_entry("TorchModuleWrapper", "torchw", {"module": pickled})
    cfg = kb.keras3_model_config(extra_layers=(entry,))
    path = build.keras(config=cfg, extra_keys=(("torch_module_wrapper", "torchw"),))
    with no_side_effects():
        with pytest.raises(UnsafeModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[2\] 'torchw': TorchModuleWrapper"):
            bilstm_ref.load_spec(path, layer="torchw")
        assert bilstm_ref.load_spec(path, layer="bidirectional").class_name == "Bidirectional"


@pytest.mark.parametrize("class_name", ["StringLookup", "TextVectorization"])
def test_a6_lookup_with_path_vocabulary_refused_and_not_opened(build, kb, fifo, no_side_effects, class_name):
    entry = layer_entry(class_name, "lookup", {"vocabulary": str(fifo)})
    cfg = kb.keras3_model_config(extra_layers=(entry,))
    path = build.keras(config=cfg)
    with no_side_effects(seconds=5):
        with pytest.raises(UnsupportedModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[2\]: layer 'lookup' is a {class_name}"):
            bilstm_ref.load_spec(path, layer="lookup")
        assert bilstm_ref.load_spec(path, layer="bidirectional").class_name == "Bidirectional"
        bilstm_ref.inspect_file(path)


# --- A7 / A8 / A16: not a zip, damaged, junk ------------------------------------------------------
def test_a7_hdf5_bytes_named_keras(build, no_side_effects):
    path = build.write("model.keras", build.weights_h5("w.weights.h5").read_bytes())
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' is not a \.keras \(zip\) archive: expected its "
                                                   r"signature at offset 0, found an HDF5 signature.*name it \*\.h5"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("content,found", [
    (b"", "an empty file"),
    (bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8)), "unrecognized bytes"),
    (b'{"class_name": "Sequential"}', "JSON text"),
])
def test_a7_not_a_zip(build, no_side_effects, content, found):
    path = build.write("model.keras", content)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' is not a \.keras \(zip\) archive.*found {found}"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("cut", ["half", "central directory removed", "end record removed"])
def test_a8_truncated_archive(build, kb, no_side_effects, cut):
    raw = kb.zip_bytes(kb.keras_members())
    if cut == "half":
        raw = raw[: len(raw) // 2]
    elif cut == "central directory removed":
        raw = raw[: raw.find(b"PK\x01\x02")]
    else:
        raw = raw[: raw.rfind(b"PK\x05\x06")]
    path = build.write("model.keras", raw)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': damaged zip archive \(.+\)"):
            bilstm_ref.load_spec(path)


def test_a16_leading_junk(build, kb, no_side_effects):
    raw = kb.zip_bytes(kb.keras_members())
    assert zipfile.ZipFile(io.BytesIO(b"\0" * 2048 + raw)).testzip() is None  # zipfile itself accepts it
    path = build.write("model.keras", b"\0" * 2048 + raw)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' is not a \.keras \(zip\) archive: expected its "
                                                   r"signature at offset 0"):
            bilstm_ref.load_spec(path)


def test_a16_hdf5_zip_polyglot_named_keras(build, kb, no_side_effects):
    raw = build.weights_h5("w.weights.h5").read_bytes() + kb.zip_bytes(kb.keras_members())
    assert len(zipfile.ZipFile(io.BytesIO(raw)).namelist()) == 3  # a valid zip to zipfile
    path = build.write("model.keras", raw)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' is not a \.keras \(zip\) archive: expected its "
                                                   r"signature at offset 0, found an HDF5 signature"):
            bilstm_ref.load_spec(path)


# --- A9: CRC / declared sizes ----------------------------------------------------------------------
@pytest.mark.parametrize("member", ["config.json", "model.weights.h5", "metadata.json"])
@pytest.mark.parametrize("how", ["flipped data byte", "crc field", "declared size too small"])
def test_a9_crc_mismatch_or_lying_size(build, kb, no_side_effects, member, how):
    raw = kb.zip_bytes(kb.keras_members())
    if how == "flipped data byte":
        local = next(o for k, n, o in kb.zip_headers(raw) if k == "local" and n == member)
        at = local + 30 + len(member) + 20  # 20 bytes into the member's stored data
        raw = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]
    elif how == "crc field":
        raw = kb.patch_zip(raw, member, crc=kb.zip_field(raw, member, "crc") ^ 0xFFFF)
    else:
        raw = kb.patch_zip(raw, member, usize=kb.zip_field(raw, member, "usize") - 7,
                           csize=kb.zip_field(raw, member, "csize") - 7)
    path = build.write("model.keras", raw)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' member '{re.escape(member)}': cannot be read "
                                                   r"\(Bad CRC-32"):
            bilstm_ref.load_spec(path)


# --- A10 / A11 / A14: members ---------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["config.json", "model.weights.h5"])
def test_a10_missing_member(build, kb, no_side_effects, missing):
    members = [m for m in kb.keras_members() if m[0] != missing]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': missing archive member '{re.escape(missing)}'"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("dup", ["config.json", "model.weights.h5", "metadata.json"])
def test_a11_duplicate_member_never_last_wins(build, kb, no_side_effects, dup):
    members = kb.keras_members()
    other = dict(kb.keras_members(config=kb.keras3_model_config(units=2), weights=kb.make_weights(units=2)))
    members.append((dup, other[dup]))
    path = build.keras(members=members)
    assert [n for n in zipfile.ZipFile(path).namelist()].count(dup) == 2
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': archive member '{re.escape(dup)}' appears 2 times"):
            bilstm_ref.load_spec(path)


TRAVERSAL_NAMES = ["../../x", "/abs/x", "a\\..\\..\\b", "../model.weights.h5", "./config.json"]


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_a14_traversal_and_symlink_members_are_ignored(build, kb, tmp_path, no_side_effects):
    members = kb.keras_members()
    members += [(n, b"not used") for n in TRAVERSAL_NAMES]
    members.append((_symlink_info("evil_link"), b"/etc/passwd"))
    path = build.keras(members=members)
    with no_side_effects(watch=(tmp_path.parent, type(tmp_path)(os.getcwd()))):
        spec = bilstm_ref.load_spec(path)
        bilstm_ref.inspect_file(path)
    assert spec.class_name == "Bidirectional"


@pytest.mark.parametrize("required", ["config.json", "model.weights.h5"])
@pytest.mark.parametrize("alias", ["../{}", "/{}", "sub/../{}", "./{}"])
def test_a14_required_member_only_under_a_path_name(build, kb, no_side_effects, required, alias):
    members = [(alias.format(n) if n == required else n, d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}': missing archive member '{re.escape(required)}'"):
            bilstm_ref.load_spec(path)


def test_a14_symlink_typed_config_member_is_data_not_a_path(build, kb, no_side_effects):
    members = [(_symlink_info(n), b"/etc/passwd") if n == "config.json" else (n, d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' member 'config.json': invalid JSON"):
            bilstm_ref.load_spec(path)


# --- A12 / A13: bombs ------------------------------------------------------------------------------
def bomb_archive(kb, member: str, size: int, byte: bytes, prefix: bytes = b"") -> bytes:
    """A valid archive whose ``member`` is replaced by a deflated bomb of ``size`` bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in kb.keras_members():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            if name != member:
                z.writestr(info, data)
                continue
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w", force_zip64=size > 2**31) as f:
                f.write(prefix)
                chunk = byte * (1 << 20)
                left = size - len(prefix)
                while left > 0:
                    f.write(chunk[:left])
                    left -= len(chunk)
    return out.getvalue()


@pytest.fixture
def spy_zip_open(monkeypatch):
    """Names of the members the loader opened for reading."""
    opened: list[str] = []
    real = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def test_a12_config_bomb_small_limits(build, kb, small_limits, spy_zip_open, no_side_effects):
    raw = bomb_archive(kb, "config.json", 256 * 1024, b" ", prefix=json.dumps(kb.keras3_model_config()).encode())
    path = build.write("model.keras", raw)
    small_limits(MAX_JSON_BYTES=64 * 1024)
    with no_side_effects(max_mb=50):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}' member 'config.json': declares 262144 bytes "
                                                     r"uncompressed, exceeds the limit of 65536"):
            bilstm_ref.load_spec(path)
    assert "config.json" not in spy_zip_open  # refused from the ZipInfo, before any read


def test_a12_config_ratio_small_limits(build, kb, small_limits, spy_zip_open, no_side_effects):
    raw = bomb_archive(kb, "config.json", 256 * 1024, b" ", prefix=json.dumps(kb.keras3_model_config()).encode())
    path = build.write("model.keras", raw)
    small_limits(RATIO_FLOOR_BYTES=1024)
    with no_side_effects(max_mb=50):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}' member 'config.json': compression ratio \d+ "
                                                     r"exceeds the limit of 100 \(262144 bytes from \d+\)"):
            bilstm_ref.load_spec(path)
    assert "config.json" not in spy_zip_open


def test_a12_config_bomb_default_limits(build, kb, spy_zip_open, no_side_effects):
    """80 MiB of spaces in ~80 KB: over MAX_JSON_BYTES (64 MiB) with the shipped limits."""
    raw = bomb_archive(kb, "config.json", 80 * 1024**2, b" ", prefix=b"{")
    assert len(raw) < 200_000
    path = build.write("model.keras", raw)
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}' member 'config.json': declares 83886080 bytes "
                                                     r"uncompressed, exceeds the limit of 67108864"):
            bilstm_ref.load_spec(path)
    assert "config.json" not in spy_zip_open


def test_a13_weights_member_over_cap_small_limits(build, kb, small_limits, spy_zip_open, no_side_effects):
    path = build.keras()
    size = zipfile.ZipFile(path).getinfo("model.weights.h5").file_size
    small_limits(MAX_MEMBER_BYTES=4096)
    with no_side_effects(max_mb=50):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}' member 'model.weights.h5': declares {size} bytes "
                                                     r"uncompressed, exceeds the limit of 4096"):
            bilstm_ref.load_spec(path)
    assert "model.weights.h5" not in spy_zip_open


def test_a13_weights_member_ratio_default_limits(build, kb, spy_zip_open, no_side_effects):
    """16 MiB of zero padding deflates ~1000x: over MAX_COMPRESSION_RATIO (100) with the shipped limits."""
    raw = bomb_archive(kb, "model.weights.h5", 16 * 1024**2, b"\0")
    path = build.write("model.keras", raw)
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}' member 'model.weights.h5': compression ratio "
                                                     r"\d+ exceeds the limit of 100 \(16777216 bytes from \d+\); "
                                                     r"refusing a possible zip bomb"):
            bilstm_ref.load_spec(path)
    assert "model.weights.h5" not in spy_zip_open


@pytest.mark.parametrize("member,limit", [("model.weights.h5", 4 * 1024**3), ("config.json", 64 * 1024**2)])
def test_a13_declared_16gib_default_limits(build, kb, spy_zip_open, no_side_effects, member, limit):
    """A central directory (zip64) declaring 16 GiB for a few stored bytes: refused from the ZipInfo."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in kb.keras_members():
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        info = next(i for i in z.filelist if i.filename == member)
        info.file_size = 16 * 1024**3  # written into the zip64 extra field of the central directory
    path = build.write("model.keras", buf.getvalue())
    assert zipfile.ZipFile(path).getinfo(member).file_size == 16 * 1024**3
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}' member '{re.escape(member)}': declares "
                                                     rf"17179869184 bytes uncompressed, exceeds the limit of {limit}"):
            bilstm_ref.load_spec(path)
    assert member not in spy_zip_open


def test_a13_too_many_members_small_limits(build, kb, small_limits, no_side_effects):
    members = kb.keras_members() + [(f"assets/{i}", b"") for i in range(20)]
    path = build.keras(members=members)
    small_limits(MAX_ZIP_MEMBERS=10)
    with no_side_effects():
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}': 23 archive members exceeds the limit of 10"):
            bilstm_ref.load_spec(path)


# --- A15: zip features ------------------------------------------------------------------------------
@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
@pytest.mark.parametrize("feature", ["encrypted flag", "method 99 (AES)", "bzip2", "lzma"])
def test_a15_unsupported_zip_feature(build, kb, no_side_effects, member, feature):
    members = kb.keras_members()
    if feature in ("bzip2", "lzma"):
        method = zipfile.ZIP_BZIP2 if feature == "bzip2" else zipfile.ZIP_LZMA
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method if name == member else zipfile.ZIP_STORED
                z.writestr(info, data)
        raw = buf.getvalue()
        expected = rf"compression method {method} \(expected 0 stored or 8 deflated\)"
    elif feature == "encrypted flag":
        raw = kb.patch_zip(kb.zip_bytes(members), member, flags=0x1)
        expected = "encryption"
    else:
        raw = kb.patch_zip(kb.zip_bytes(members), member, method=99)
        expected = r"compression method 99"
    path = build.write("model.keras", raw)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' member '{re.escape(member)}': unsupported zip "
                                                   rf"feature: {expected}"):
            bilstm_ref.load_spec(path)


# --- A17: config.json as JSON ----------------------------------------------------------------------
def _json_variant(kb, kind: str) -> bytes:
    text = json.dumps(kb.keras3_model_config())
    if kind == "invalid UTF-8":
        return text.replace('"forward_lstm"', '"forward_\xff_lstm"').encode("latin-1")
    if kind == "BOM":
        return b"\xef\xbb\xbf" + text.encode()
    if kind == "duplicate keys":
        return ('{"class_name": "Sequential", ' + text[1:]).encode()
    if kind in ("NaN", "Infinity", "-Infinity"):
        return text.replace('"dropout": 0.0', f'"dropout": {kind}', 1).encode()
    if kind == "1e400":
        return text.replace('"dropout": 0.0', '"dropout": 1e400', 1).encode()
    if kind == "100k-deep nesting":
        return ('{"class_name": "Sequential", "config": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    if kind == "trailing comma":
        return (text[:-1] + ",}").encode()
    if kind == "truncated":
        return text[: len(text) // 2].encode()
    raise AssertionError(kind)


JSON_CASES = {
    "invalid UTF-8": r"not valid UTF-8",
    "BOM": r"JSON starts with a UTF-8 byte-order mark",
    "duplicate keys": r"invalid JSON \(duplicate key 'class_name'\)",
    "NaN": r"invalid JSON \(non-standard JSON constant NaN\)",
    "Infinity": r"invalid JSON \(non-standard JSON constant Infinity\)",
    "-Infinity": r"invalid JSON \(non-standard JSON constant -Infinity\)",
    "1e400": r"invalid JSON \(number 1e400 overflows",
    "100k-deep nesting": r"JSON nested too deeply",
    "trailing comma": r"invalid JSON",
    "truncated": r"invalid JSON",
}


@pytest.mark.parametrize("kind", sorted(JSON_CASES))
def test_a17_config_json_strict(build, kb, no_side_effects, kind):
    members = [(n, _json_variant(kb, kind) if n == "config.json" else d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' member 'config.json': {JSON_CASES[kind]}"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("kind", ["invalid UTF-8", "duplicate keys", "NaN"])
def test_a17_metadata_json_strict(build, kb, no_side_effects, kind):
    meta = {"invalid UTF-8": b'{"keras_version": "3.\xff"}', "duplicate keys": b'{"a": 1, "a": 2}',
            "NaN": b'{"keras_version": NaN}'}[kind]
    members = [(n, meta if n == "metadata.json" else d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}' member 'metadata.json': "):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("value", [[], "a string", {"no": "class_name"}])
def test_a17_config_json_not_a_model(build, kb, no_side_effects, value):
    members = [(n, json.dumps(value).encode() if n == "config.json" else d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{rx(path)}.*expected a serialized Keras model"):
            bilstm_ref.load_spec(path)


# --- A18: semantic options -------------------------------------------------------------------------
def _set_both(kb, cfg, **over):
    for d in ("layer", "backward_layer"):
        kb.lstm_entry_of(cfg, d).update(over)


UNITS_PATH = r"\$\.config\.layers\[1\]\.config\.layer\.config\.units"


@pytest.mark.parametrize("units", [0, -1, "4", 4.0, True, None])
def test_a18_units_invalid(build, kb, no_side_effects, units):
    cfg = kb.keras3_model_config()
    _set_both(kb, cfg, units=units)
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError,
                           match=rf"{rx(path)}.*{UNITS_PATH}: expected a positive integer, "
                                 rf"got {re.escape(repr(units))}"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("units", [10**9, 10**30, 8193])
def test_a18_units_absurd_is_a_resource_limit(build, kb, no_side_effects, units):
    cfg = kb.keras3_model_config()
    _set_both(kb, cfg, units=units)
    path = build.keras(config=cfg)
    with no_side_effects(max_mb=50):
        with pytest.raises(ResourceLimitError, match=rf"{rx(path)}.*{UNITS_PATH}: {units} units would need"):
            bilstm_ref.load_spec(path)


def test_a18_time_major(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    _set_both(kb, cfg, time_major=True)
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[1\]\.config\.layer\.config: option "
                                 r"'time_major=True' is not supported"):
            bilstm_ref.load_spec(path)


def test_a18_go_backwards_on_the_wrapped_layer(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    kb.lstm_entry_of(cfg)["go_backwards"] = True
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[1\]\.config\.layer: a wrapped layer with "
                                 r"go_backwards=True is not supported"):
            bilstm_ref.load_spec(path)


def test_a18_num_constants(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    kb.bidi_config_of(cfg)["num_constants"] = 1
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError,
                           match=rf"{rx(path)}.*\$\.config\.layers\[1\]\.config: option 'num_constants'"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("where", ["LSTM", "Bidirectional"])
def test_a18_unknown_option_is_named(build, kb, no_side_effects, where):
    cfg = kb.keras3_model_config()
    if where == "LSTM":
        _set_both(kb, cfg, foo=1)
    else:
        kb.bidi_config_of(cfg)["foo"] = 1
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(UnsupportedModelError, match=rf"{where} option 'foo'"):
            bilstm_ref.load_spec(path)


BUILD_TIME_REJECTIONS = {
    "unknown LSTM option": ("lstm", {"foo": 1}, "foo"),
    "unknown Bidirectional option": ("bidi", {"foo": 1}, "foo"),
    "unknown activation": ("lstm", {"activation": "evil_fn"}, "evil_fn"),
    "dropout out of range": ("lstm", {"dropout": 2.0}, "dropout"),
    "merge_mode unknown": ("bidi", {"merge_mode": "bogus"}, "merge_mode"),
}


@pytest.mark.parametrize("case", sorted(BUILD_TIME_REJECTIONS))
def test_a18_build_time_rejections_name_file_and_path(build, kb, no_side_effects, case):
    where, over, name = BUILD_TIME_REJECTIONS[case]
    cfg = kb.keras3_model_config()
    if where == "lstm":
        _set_both(kb, cfg, **over)
    else:
        kb.bidi_config_of(cfg).update(over)
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises(bilstm_ref.BilstmRefError, match=rf"{rx(path)}.*\$\.config\.layers\[1\].*{name}"):
            bilstm_ref.load_spec(path)


def _weights_tree_for(kb, use_bias: bool = True, units: int = 4, bw_units: int | None = None):
    fw = kb.make_weights(seed=5, units=units, use_bias=use_bias)
    bw = kb.make_weights(seed=6, units=bw_units or units, use_bias=use_bias)
    n = len(fw) // 2
    return fw[:n] + bw[n:]


IMPLEMENTED = {
    # name: (per-direction overrides, wrapper overrides, check(spec))
    "activation relu": ({"activation": "relu"}, {}, lambda s: s.config["layer"]["config"]["activation"] == "relu"),
    "recurrent_activation hard_sigmoid": (
        {"recurrent_activation": "hard_sigmoid"}, {},
        lambda s: s.config["layer"]["config"]["recurrent_activation"] == "hard_sigmoid"),
    "unroll": ({"unroll": True}, {}, lambda s: s.config["layer"]["config"]["unroll"] is True),
    "stateful": ({"stateful": True}, {}, lambda s: s.config["layer"]["config"]["stateful"] is True),
    "return_state": ({"return_state": True}, {}, lambda s: s.config["layer"]["config"]["return_state"] is True),
    "return_sequences False": ({"return_sequences": False}, {},
                               lambda s: s.config["layer"]["config"]["return_sequences"] is False),
    "dropout (inference no-op)": ({"dropout": 0.5, "recurrent_dropout": 0.25}, {},
                                  lambda s: s.config["layer"]["config"]["dropout"] == 0.5),
    "merge_mode mul": ({}, {"merge_mode": "mul"}, lambda s: s.config["merge_mode"] == "mul"),
    "merge_mode ave": ({}, {"merge_mode": "ave"}, lambda s: s.config["merge_mode"] == "ave"),
    "merge_mode None": ({}, {"merge_mode": None}, lambda s: s.config["merge_mode"] is None),
}


@pytest.mark.parametrize("case", sorted(IMPLEMENTED))
def test_a18_implemented_options_are_carried_not_ignored(build, kb, no_side_effects, case):
    per_dir, wrapper, check = IMPLEMENTED[case]
    cfg = kb.keras3_model_config()
    _set_both(kb, cfg, **per_dir)
    kb.bidi_config_of(cfg).update(wrapper)
    path = build.keras(config=cfg)
    with no_side_effects():
        spec = bilstm_ref.load_spec(path)
    assert check(spec), spec.config
    bilstm_ref.build(spec)  # the reference accepts it


def test_a18_use_bias_false(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    _set_both(kb, cfg, use_bias=False)
    weights = _weights_tree_for(kb, use_bias=False)
    path = build.keras(config=cfg, weights=weights)
    with no_side_effects():
        spec = bilstm_ref.load_spec(path)
    assert spec.config["layer"]["config"]["use_bias"] is False
    assert len(spec.weights) == 4
    # ... and a use_bias=False config with bias datasets still present is a mismatch, not a silent drop.
    path2 = build.keras(name="bias.keras", config=cfg)
    with no_side_effects():
        with pytest.raises(ShapeMismatchError, match=rf"{wrx(path2)}.*/forward_layer/cell/vars: expected datasets "
                                                     r"\['0', '1'\].*found \['0', '1', '2'\]"):
            bilstm_ref.load_spec(path2)


def test_a18_custom_backward_layer_is_used(build, kb, no_side_effects):
    cfg = kb.keras3_model_config()
    kb.lstm_entry_of(cfg, "backward_layer").update(activation="relu", units=2)
    weights = _weights_tree_for(kb, units=4, bw_units=2)
    path = build.keras(config=cfg, weights=weights)
    with no_side_effects():
        spec = bilstm_ref.load_spec(path)
    assert spec.config["backward_layer"]["config"]["activation"] == "relu"
    assert spec.config["backward_layer"]["config"]["units"] == 2
    assert spec.config["layer"]["config"]["activation"] == "tanh"
    assert bilstm_ref.build(spec)(np.ones((1, 5, 3))).shape == (1, 5, 6)


# --- A19: weights inside the archive fail B-row checks ---------------------------------------------
def _replace(path, make):
    def hook(h5):
        old = h5[path][()]
        del h5[path]
        make(h5, path, old)
    return hook


A19_HOOKS = {
    "soft link": (_replace(K0, lambda h, p, o: (h.create_dataset("stash", data=o),
                                                h.__setitem__(p, h5py.SoftLink("/stash")))),
                  UnsafeModelError, "is a soft link; links are not followed"),
    "external storage": (_replace(K0, lambda h, p, o: h.create_dataset(
                             p, shape=o.shape, dtype="f4", external=[("/nonexistent/host.bin", 0, o.nbytes)])),
                         UnsafeModelError, r"uses external storage"),
    "int64 dtype": (_replace(K0, lambda h, p, o: h.create_dataset(p, data=o.astype(np.int64))),
                    DTypeMismatchError, r"expected float16/32/64, got int64"),
    "transposed recurrent kernel": (_replace("layers/bidirectional/forward_layer/cell/vars/1",
                                             lambda h, p, o: h.create_dataset(p, data=o.T)),
                                    ShapeMismatchError, r"expected shape \(4, 16\), got \(16, 4\)"),
}


@pytest.mark.parametrize("case", sorted(A19_HOOKS))
def test_a19_weights_member_gets_the_b_row_checks(build, no_side_effects, case):
    hook, error, message = A19_HOOKS[case]
    path = build.keras(hook=hook)
    with no_side_effects():
        with pytest.raises(error, match=rf"{wrx(path)}': /layers/bidirectional/forward_layer/cell/vars/[01]:? "
                                        rf"{message}"):
            bilstm_ref.load_spec(path)


def test_a19_weights_member_not_hdf5(build, kb, no_side_effects):
    members = [(n, b"PK\x03\x04 not hdf5" if n == "model.weights.h5" else d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{wrx(path)}' is not an HDF5 file: expected the HDF5 signature"):
            bilstm_ref.load_spec(path)


def test_a19_weights_member_truncated_hdf5(build, kb, no_side_effects):
    members = [(n, d[:-1] if n == "model.weights.h5" else d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects():
        with pytest.raises(CorruptFileError, match=rf"{wrx(path)}': truncated HDF5 file"):
            bilstm_ref.load_spec(path)


@pytest.mark.parametrize("case", ["Lambda", "units 0"])
def test_config_errors_name_the_config_json_member(build, kb, no_side_effects, case):
    cfg = kb.keras3_model_config(extra_layers=(lambda_entry("lam", {"class_name": "__lambda__",
                                                                    "config": {"code": "AA=="}}),))
    layer = "lam"
    if case == "units 0":
        _set_both(kb, cfg, units=0)
        layer = "bidirectional"
    path = build.keras(config=cfg)
    with no_side_effects():
        with pytest.raises((UnsafeModelError, UnsupportedModelError), match=rf"{rx(path)}.*config\.json.*\$\.config"):
            bilstm_ref.load_spec(path, layer=layer)
