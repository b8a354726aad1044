"""Mutation fuzz (every loader failure is a BilstmRefError): flip / overwrite / truncate bytes of valid files,
load each, and require that whatever escapes is a :class:`bilstm_ref.BilstmRefError`.

Seeded (reproducible); ~150 mutations per format, each loaded with ``load_spec`` and ``inspect_file``.
A leak is reported with the format, the mutation and the traceback.

The fuzz found one leak, now fixed: a damaged object header / symbol table under ``layers/`` of a Keras 3
weights tree escaped as a raw ``KeyError`` / ``RuntimeError`` from ``files._keras3_layer_group``; the
crafted reproductions stay as ``test_damaged_layers_group_is_a_corrupt_file``.
"""

from __future__ import annotations

import io
import json
import sys
import traceback

import h5py
import numpy as np
import pytest

import bilstm_ref

SEED = 20261128
PER_CHUNK = 50  # 3 formats x 3 chunks x 50 = 450 mutated files (+50 .weights.h5), each loaded twice


def hot_offsets(raw: bytes) -> list[int]:
    """Where an HDF5 file's structure lives: object headers, B-tree / heap / symbol-node signatures."""
    if not raw.startswith(b"\x89HDF"):
        return []
    addrs: set[int] = set()
    with h5py.File(io.BytesIO(raw), "r") as h5:
        addrs.add(h5py.h5o.get_info(h5.id).addr)
        h5.visititems(lambda name, obj: addrs.add(h5py.h5o.get_info(obj.id).addr))
    for sig in (b"TREE", b"HEAP", b"SNOD", b"GCOL"):
        at = raw.find(sig)
        while at != -1:
            addrs.add(at)
            at = raw.find(sig, at + 1)
    return sorted(addrs)


def _mutate(raw: bytes, rng: np.random.Generator, hot: list[int] = ()) -> tuple[bytes, str]:
    out = bytearray(raw)
    op = int(rng.integers(0, 7 if hot else 5))
    if op >= 5:  # structure-aware: a byte within 64 of an object header / B-tree / heap
        i = min(len(out) - 1, hot[int(rng.integers(0, len(hot)))] + int(rng.integers(0, 64)))
        bit = int(rng.integers(0, 8))
        out[i] ^= 1 << bit
        return bytes(out), f"flip {i}^{1 << bit:#x} (near HDF5 structure)"
    if op == 0:
        flips = []
        for _ in range(int(rng.integers(1, 5))):
            i, bit = int(rng.integers(0, len(out))), int(rng.integers(0, 8))
            out[i] ^= 1 << bit
            flips.append(f"{i}^{1 << bit:#x}")
        return bytes(out), "flip " + ",".join(flips)
    if op == 1:
        i, v = int(rng.integers(0, len(out))), int(rng.integers(0, 256))
        out[i] = v
        return bytes(out), f"set [{i}]={v:#x}"
    if op == 2:
        n = int(rng.integers(0, len(out)))
        return bytes(out[:n]), f"truncate to {n}"
    if op == 3:  # the metadata-dense head of the file
        i, bit = int(rng.integers(0, min(len(out), 4096))), int(rng.integers(0, 8))
        out[i] ^= 1 << bit
        return bytes(out), f"flip {i}^{1 << bit:#x}"
    i, n = int(rng.integers(0, len(out))), int(rng.integers(1, 64))
    out[i:i + n] = b"\xff" * len(out[i:i + n])
    return bytes(out), f"fill [{i}:{i + n}] with 0xff"


@pytest.fixture
def no_foreign_imports(kb):
    """The fuzz writes files as it goes, so it checks only that nothing is imported on a file's say-so."""
    before = set(sys.modules)
    yield
    new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in kb.FORBIDDEN_MODULE_ROOTS)
    assert not new, new


@pytest.fixture(scope="module")
def bases(kb):
    members = kb.keras_members()
    legacy = kb.legacy_bytes()
    weights = dict(members)["model.weights.h5"]
    return {"keras": (kb.zip_bytes(members), members), "legacy": (legacy, hot_offsets(legacy)),
            "weights.h5": (weights, hot_offsets(weights))}


def _known_leak_raw(kb, how: str) -> bytes:
    """The Keras 3 weights tree with one structural defect under ``layers/bidirectional`` (see module doc)."""
    raw = dict(kb.keras_members())["model.weights.h5"]
    with h5py.File(io.BytesIO(raw), "r") as h5:
        addr = h5py.h5o.get_info(h5["layers/bidirectional"].id).addr
    out = bytearray(raw)
    if how == "object header version":
        out[addr] = 0xFF
    elif how == "B-tree signature":
        at = raw.find(b"TREE", addr)
        out[at:at + 4] = b"XXXX"
    else:  # local heap signature
        at = raw.find(b"HEAP", addr)
        out[at:at + 4] = b"XXXX"
    return bytes(out)


def _load_all(path, config=None):
    bilstm_ref.load_spec(path, config=config)
    bilstm_ref.inspect_file(path, config=config)


@pytest.mark.parametrize("chunk", range(3))
@pytest.mark.parametrize("fmt", ["keras", "keras-member", "legacy"])
def test_mutation_fuzz_only_bilstm_ref_errors_escape(bases, kb, tmp_path, record_property,
                                                     no_foreign_imports, fmt, chunk):
    rng = np.random.default_rng([SEED, ["keras", "keras-member", "legacy"].index(fmt), chunk])
    leaks, outcomes = [], {}
    config = None
    for i in range(PER_CHUNK):
        if fmt == "keras":
            data, desc = _mutate(bases["keras"][0], rng)
            path = tmp_path / "m.keras"
        elif fmt == "keras-member":  # mutate one member, re-zip: CRCs valid, so the parsers see the damage
            members = bases["keras"][1]
            which = ["config.json", "model.weights.h5", "metadata.json", "model.weights.h5"][int(rng.integers(0, 4))]
            mutated, what = _mutate(dict(members)[which], rng,
                                    bases["weights.h5"][1] if which == "model.weights.h5" else ())
            data = kb.zip_bytes([(n, mutated if n == which else d) for n, d in members])
            desc = f"member {which}: {what}"
            path = tmp_path / "m.keras"
        else:
            data, desc = _mutate(bases["legacy"][0], rng, bases["legacy"][1])
            path = tmp_path / "m.h5"
        path.write_bytes(data)
        try:
            _load_all(path, config)
            outcomes["loaded"] = outcomes.get("loaded", 0) + 1
        except bilstm_ref.BilstmRefError as e:
            outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
        except Exception as e:  # noqa: BLE001 - this is what the fuzz is looking for
            leaks.append(f"#{i} {fmt} {desc}: {type(e).__name__}: {e}\n"
                         + "".join(traceback.format_exception(e)[-6:]))
    record_property("outcomes", outcomes)
    assert not leaks, f"{len(leaks)} non-bilstm_ref exceptions escaped (outcomes {outcomes}):\n" + "\n".join(leaks)
    assert sum(outcomes.values()) == PER_CHUNK


def test_mutation_fuzz_weights_h5_with_json_config(bases, kb, tmp_path, record_property,
                                                   no_foreign_imports):
    """The same fuzz on a Keras 3 .weights.h5 loaded with config=model.json."""
    rng = np.random.default_rng([SEED, 99])
    config = tmp_path / "model.json"
    config.write_text(json.dumps(kb.keras3_model_config()))
    leaks = []
    for i in range(PER_CHUNK):
        data, desc = _mutate(bases["weights.h5"][0], rng, bases["weights.h5"][1])
        path = tmp_path / "m.weights.h5"
        path.write_bytes(data)
        try:
            _load_all(path, config)
        except bilstm_ref.BilstmRefError:
            pass
        except Exception as e:  # noqa: BLE001
            leaks.append(f"#{i} {desc}: {type(e).__name__}: {e}\n" + "".join(traceback.format_exception(e)[-6:]))
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("how", ["object header version", "B-tree signature", "local heap signature"])
@pytest.mark.parametrize("container", [".keras", ".weights.h5"])
@pytest.mark.parametrize("api", ["load_spec", "inspect_file"])
def test_damaged_layers_group_is_a_corrupt_file(build, kb, no_side_effects, how, container, api):
    raw = _known_leak_raw(kb, how)
    if container == ".keras":
        members = [(n, raw if n == "model.weights.h5" else d) for n, d in kb.keras_members()]
        path, config = build.keras(members=members), None
    else:
        path, config = build.write("model.weights.h5", raw), build.model_json()
    fn = getattr(bilstm_ref, api)
    with no_side_effects():
        if api == "inspect_file":  # inspect reports a layer it cannot read instead of raising
            rows = [r for r in fn(path, config=config)["layers"] if r["class_name"] == "Bidirectional"]
            assert rows and not rows[0]["supported"] and "cannot be read" in rows[0]["reason"]
        else:
            with pytest.raises(bilstm_ref.CorruptFileError, match=r"layers"):
                fn(path, config=config)
