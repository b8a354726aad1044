#!/usr/bin/env python
"""Fuzz campaign of the loaders: mutated model files, fixtures and converted weight files, each loaded in
a child process of its own, with a report per format.

    python benchmarks/fuzz.py --count 100000 --workers 2 --seed 1 --out fuzz-out
                              [--timeout 20] [--memory-mb 2048] [--formats keras,legacy-h5-k2,...]
    python benchmarks/fuzz.py --replay fuzz-out/findings   # re-run each saved finding, print its outcome now

Not part of the test run: ``tests/security/test_fuzz_campaign.py`` runs a short campaign and checks the
harness itself. Keras and TensorFlow are never imported (the seeds are committed files:
``tests/data/fuzz/seeds``, written by ``tests/data/fuzz/generate.py``, the real Keras 2 files of
``tests/data/keras2`` and the committed ``fixtures``).

Targets (``--formats``), each a load function and its seeds:

* ``keras``: ``.keras`` archives (Keras 3; Sequential, Embedding(mask_zero) -> Bidirectional -> LSTM and a
  nested model). A fifth of the inputs mutate the archive's bytes; the rest mutate one member
  (``model.weights.h5``, ``config.json``, ``metadata.json``) or the member list and re-zip, so the CRCs
  are valid and the parsers behind the zip reader see the damage.
* ``legacy-h5-k2`` / ``legacy-h5-k3``: full-model ``.h5`` written by tf_keras / by Keras 3.
* ``weights-h5``: a Keras 3 ``.weights.h5`` with its ``model.to_json()`` file as ``config=`` (the weights
  file mutated, sometimes the JSON).
* ``fixture``: a committed fixture's manifest or its ``.npz`` payload; payload members are also mutated
  and "re-signed" (the manifest's sha256 updated), so the ``.npy`` parser is reached.
* ``converted``: ``.onnx`` (tf2onnx) and ``.npz`` (ONNX W/R/B, torch state_dict) read by
  ``bilstm_ref.convert.files.read_weight_set``; skipped, with the reason printed, without ``onnx``.

Model files are loaded with ``load_spec``, inspected with ``inspect_file`` and run forward (two short
calls, one masked) so damaged weight values are exercised; fixtures are read and verified; weight sets
are read and run forward.

Mutations (1-4 stacked): bit flips (anywhere, or in the metadata-dense first 4 KiB), bytes and 2/4/8-byte
little-endian integers set to interesting values or nudged, truncation, insertion, deletion, block
duplication, splices from another seed of the same format, HDF5-aware writes within 64 bytes of an
object header, a ``TREE``/``HEAP``/``SNOD``/``GCOL``/... signature or the superblock (addresses pointed
at other structures, "undefined", past the end), float writes (NaN, Inf, huge, subnormal) into weight
data, HDF5 attributes rewritten (``model_config`` JSON, ``layer_names``, ``weight_names``, ``name``,
versions), and JSON-aware edits (values replaced, numbers nudged, keys deleted, subtrees grafted, deep
nesting). Input ``i`` is target ``formats[i % len(formats)]`` mutated by
``random.Random(f"{seed}:{target}:{i}")``: any input can be regenerated from ``--seed``, ``--formats``
and its index (:func:`make_input`).

Isolation: ``--workers`` processes (forked once, numpy, h5py and bilstm_ref imported, the loaders warmed
up) take interleaved indices. Each input runs in a child forked from its worker, in a process group of
its own, with ``RLIMIT_AS`` = ``--memory-mb`` (the whole address space) and no core dumps; the worker
sends ``SIGABRT`` at the ``--timeout`` deadline (``faulthandler`` writes where the child was) and then
``SIGKILL``s the child's group. The child reports through a pipe. A worker reaps what its children leave
behind (``PR_SET_CHILD_SUBREAPER``: the loaders' HDF5 prober of a finished input). Ctrl-C: the workers are
told to stop (each kills its current child within 0.1 s) and the summary of what ran is still written.

Outcomes: ``loaded``, ``refused`` (a ``BilstmRefError``, counted per class) and the findings: ``escape``
(any other exception), ``hang`` (killed at the deadline), ``crash`` (died from a signal, or exited without
reporting) and ``warning`` (a Python warning during the load, e.g. a NumPy ``RuntimeWarning``). Each
finding is saved as ``OUT/findings/<outcome>/<target>-<index>.<ext>`` (``.config.json`` /
``.payload.npz`` / ``.manifest.json`` beside it for multi-file inputs) with a ``<target>-<index>.json``
record (target, seed file, mutation, message, traceback) that ``--replay`` reads. ``OUT/findings`` is
emptied when a campaign starts. The table per format (tried, loaded, refused, findings, p50/p99/max time
per input) is printed and written to ``OUT/summary.json``. Exit status 1 when there is any finding,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import faulthandler
import functools
import hashlib
import importlib
import io
import json
import math
import multiprocessing
import os
import random
import re
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Optional, Sequence

if __name__ == "__main__":  # one BLAS thread per input process; before NumPy is imported
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import bilstm_ref  # noqa: E402
from bilstm_ref import errors as _errors  # noqa: E402
from bilstm_ref.errors import BilstmRefError  # noqa: E402

__all__ = ["FORMATS", "OUTCOMES", "FINDINGS", "Anatomy", "Seed", "Case", "Target", "Input", "Result", "Summary",
           "FormatStats", "default_targets", "make_input", "run_isolated", "run_campaign", "replay", "main"]

SEEDS = ROOT / "tests" / "data" / "fuzz" / "seeds"
FIXTURES = ROOT / "fixtures"
KERAS2_DATA = ROOT / "tests" / "data" / "keras2"

FORMATS = ("keras", "legacy-h5-k2", "legacy-h5-k3", "weights-h5", "fixture", "converted")
OUTCOMES = ("loaded", "refused", "escape", "hang", "crash", "warning")
FINDINGS = ("escape", "hang", "crash", "warning")
RECORD_KIND = "bilstm_ref.fuzz-finding"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
#: Signatures of HDF5 structures (v1 B-trees, local / global heaps, symbol nodes; v2 object headers,
#: fractal heaps, free-space managers, object header message tables, v2 B-trees).
HDF5_SIGNATURES = (b"TREE", b"HEAP", b"SNOD", b"GCOL", b"OHDR", b"OCHK", b"FRHP", b"FHDB", b"FHIB", b"FSHD",
                   b"FSSE", b"SMTB", b"SMLI", b"BTHD", b"BTIN", b"BTLF")
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
NEAR = 64  # structure-aware writes land within this many bytes after a structure's start
HEAD = 4096  # the metadata-dense head of a file
MAX_STACK = 4
MAX_TEXT = 20_000  # characters of a message or traceback kept in a record

INTERESTING_8 = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0x10, 0x40, 0xFE)
INTERESTING_INTS = (0, 1, 2, 4, 8, 16, 64, 100, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x1000, 0x7FFF, 0x8000, 0xFFFF,
                    0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63,
                    (1 << 64) - 1)
INTERESTING_FLOATS = (float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 3.4e38, -3.4e38, 1e-45, 65504.0,
                      1e30, 88.8, -1e4)
JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, 1, -1, 2, 3, 255, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63, -(2**63), 10**30, 0.5,
    -0.0, 1e-300, 1e308, float("nan"), float("inf"), float("-inf"), "", "0", [], {}, [None], [[]], [0, 0, 0],
    {"class_name": None}, {"class_name": "LSTM", "config": {}}, {"module": "os", "class_name": "system"})
JSON_STRINGS = (
    "LSTM", "Bidirectional", "GRU", "SimpleRNN", "CuDNNLSTM", "Lambda", "TFOpLambda", "Sequential", "Functional",
    "Model", "InputLayer", "Embedding", "Dense", "Masking", "__keras_tensor__", "tanh", "sigmoid", "hard_sigmoid",
    "relu", "linear", "softmax", "swish", "no_such_activation", "float16", "float64", "mixed_float16",
    "mixed_bfloat16", "int8", "keras", "keras.layers", "keras.src.models.functional", "builtins", "os", "__main__",
    "Custom>Layer", "concat", "sum", "mul", "ave", "max", "1.0.0", "2.15.0", "3.15.1", "99.0", "bilstm", "lstm",
    "forward_lstm", "backward_lstm", "bilstm/lstm", "../../etc/passwd", "a" * 300, "\x00", "\u00fc", "\udcff")
_DEEP = "\x00bilstm-ref-fuzz-deep\x00"  # placeholder replaced by deeply nested JSON text
_stopping = False  # set by SIGTERM in a worker: finish the current input (its child killed) and exit


# --- seeds and inputs ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Anatomy:
    """Where a file's structure lives, for the structure-aware mutations.

    Attributes:
        hot: offsets of structures: HDF5 object headers, signatures and the superblock; zip headers;
            the ``.npy`` header.
        data: ``(offset, bytes, itemsize)`` of float weight data (contiguous HDF5 datasets, ``.npy``
            bodies, ONNX ``raw_data``).
        attrs: ``(object path, attribute name)`` of every HDF5 attribute.
    """

    hot: tuple[int, ...] = ()
    data: tuple[tuple[int, int, int], ...] = ()
    attrs: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Seed:
    """One valid input of a target.

    Attributes:
        name: where it came from, relative to the repository (for records).
        files: every file of the input by file name; the first is handed to the load function as its path.
        config: the file handed as ``config=``, if any.
        layers: the layer names an input may ask for (one is drawn per input; None: the only one).
        anatomy: per file name (``archive!member`` for a zip member), where its structure lives.
    """

    name: str
    files: Mapping[str, bytes]
    config: Optional[str] = None
    layers: tuple[Optional[str], ...] = (None,)
    anatomy: Mapping[str, Anatomy] = dataclasses.field(default_factory=dict)

    @property
    def main(self) -> str:
        return next(iter(self.files))


@dataclasses.dataclass(frozen=True)
class Case:
    """What a load function gets: the input's files written to disk."""

    path: Path
    config: Optional[Path] = None
    layer: Optional[str] = None


Mutate = Callable[[Seed, random.Random, Sequence[Seed]], tuple[dict[str, bytes], str]]


@dataclasses.dataclass(frozen=True)
class Input:
    """One generated input: its files (the main file first) and how it was made."""

    target: str
    index: int
    seed: str
    files: dict[str, bytes]
    config: Optional[str]
    layer: Optional[str]
    mutation: str

    def write(self, directory: Path) -> Case:
        for name, data in self.files.items():
            (directory / name).write_bytes(data)
        main = next(iter(self.files))
        return Case(directory / main, directory / self.config if self.config else None, self.layer)


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return path.name


def _scan(raw: bytes, signatures: Sequence[bytes]) -> set[int]:
    found = set()
    for sig in signatures:
        at = raw.find(sig)
        while at != -1:
            found.add(at)
            at = raw.find(sig, at + 1)
    return found


def hdf5_anatomy(raw: bytes) -> Anatomy:
    """Object headers, signatures, the superblock, contiguous float data and attributes of an HDF5 file."""
    hot = {0, 64} | _scan(raw, HDF5_SIGNATURES)
    data: list[tuple[int, int, int]] = []
    attrs: list[tuple[str, str]] = []

    def visit(name: str, obj: Any) -> None:
        hot.add(h5py.h5o.get_info(obj.id).addr)
        attrs.extend((obj.name, key) for key in obj.attrs)
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
            offset = obj.id.get_offset()
            if offset is not None:
                data.append((int(offset), int(obj.id.get_storage_size()), obj.dtype.itemsize))

    with contextlib.suppress(Exception), h5py.File(io.BytesIO(raw), "r") as h5:  # a seed HDF5 cannot read: bytes only
        visit("/", h5)
        h5.visititems(visit)
    return Anatomy(tuple(sorted(hot)), tuple(sorted(data)), tuple(attrs))


def npy_header(raw: bytes) -> tuple[int, np.dtype]:
    """(where the data starts, dtype) of a ``.npy`` member; ValueError when its header cannot be read."""
    f = io.BytesIO(raw)
    with warnings.catch_warnings():  # the harness reads mutated headers too; what numpy says of them is not a finding
        warnings.simplefilter("ignore")
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read(f)
    return f.tell(), dtype


def npy_anatomy(raw: bytes) -> Anatomy:
    """The header and the float body of one ``.npy`` member."""
    with contextlib.suppress(Exception):
        start, dtype = npy_header(raw)
        if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
            return Anatomy((0,), ((start, len(raw) - start, dtype.itemsize),))
    return Anatomy((0,))


def onnx_anatomy(raw: bytes) -> Anatomy:
    """Where each float initializer's ``raw_data`` sits in an ``.onnx`` file (needs ``onnx``)."""
    data = []
    with contextlib.suppress(Exception):
        import onnx

        model = onnx.load_model_from_string(raw)
        for t in model.graph.initializer:
            itemsize = {1: 4, 10: 2, 11: 8}.get(t.data_type)
            at = raw.find(t.raw_data) if itemsize and len(t.raw_data) >= 8 else -1
            if at != -1:
                data.append((at, len(t.raw_data), itemsize))
    return Anatomy((0,), tuple(sorted(data)))


def zip_members(raw: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def make_zip(members: Sequence[tuple[str, bytes, int]]) -> bytes:
    """A zip of ``(name, data, compress_type)`` in order, fixed timestamps (duplicate names allowed)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" when a mutation duplicates a member
        with zipfile.ZipFile(buf, "w") as z:
            for name, data, compression in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = compression
                info.external_attr = 0o644 << 16
                z.writestr(info, data)
    return buf.getvalue()


def anatomy_of(name: str, raw: bytes) -> dict[str, Anatomy]:
    """The anatomy of a file and, for a zip, of its HDF5 and ``.npy`` members."""
    if raw.startswith(HDF5_MAGIC):
        return {name: hdf5_anatomy(raw)}
    if name.endswith(".onnx"):
        return {name: onnx_anatomy(raw)}
    if not raw.startswith(ZIP_MAGIC):
        return {}
    out = {name: Anatomy(tuple(sorted(_scan(raw, ZIP_SIGNATURES))))}
    for member, data in zip_members(raw).items():
        if data.startswith(HDF5_MAGIC):
            out[f"{name}!{member}"] = hdf5_anatomy(data)
        elif member.endswith(".npy"):
            out[f"{name}!{member}"] = npy_anatomy(data)
    return out


def make_seed(name: str, files: Mapping[str, bytes], config: Optional[str] = None,
              layers: Sequence[Optional[str]] = (None,)) -> Seed:
    """A seed with the anatomy of each of its files worked out."""
    anatomy: dict[str, Anatomy] = {}
    for fname, raw in files.items():
        anatomy.update(anatomy_of(fname, raw))
    return Seed(name, dict(files), config, tuple(layers), anatomy)


def corpus_seeds(target: str, directory: Path = SEEDS) -> list[Seed]:
    """The committed seeds of ``target`` listed in ``seeds.json``."""
    listing = json.loads((directory / "seeds.json").read_text(encoding="utf-8"))["seeds"]
    out = []
    for entry in listing:
        if entry["target"] != target:
            continue
        path = directory / entry["file"]
        files = {path.name: path.read_bytes()}
        if entry.get("config"):
            files[entry["config"]] = (directory / entry["config"]).read_bytes()
        out.append(make_seed(_rel(path), files, entry.get("config"), entry.get("layers") or [None]))
    return out


def keras2_seeds(directory: Path = KERAS2_DATA) -> list[Seed]:
    """The real Keras 2.12 / 2.15 full-model ``.h5`` files of ``tests/data/keras2`` (CuDNNLSTM included)."""
    out = []
    for manifest in sorted(directory.glob("*/manifest.json")):
        for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"].values():
            path = manifest.parent / entry["h5"]
            layers = [layer["name"] for layer in entry["checked_layers"]] or [None]
            out.append(make_seed(_rel(path), {path.name: path.read_bytes()}, None, layers))
    return out


def fixture_seeds(directory: Path = FIXTURES) -> list[Seed]:
    """Every committed fixture: its manifest (the main file) and its payload."""
    out = []
    for manifest in sorted(directory.glob("*.json")):
        raw = manifest.read_bytes()
        payload = directory / json.loads(raw)["payload"]["file"]
        if payload.is_file():
            out.append(make_seed(_rel(manifest), {manifest.name: raw, payload.name: payload.read_bytes()}))
    return out


# --- mutations -----------------------------------------------------------------------------------
Donors = Sequence[tuple[str, bytes]]
Op = Callable[[bytearray, random.Random, Anatomy, Donors], str]


def _put(buf: bytearray, at: int, chunk: bytes) -> None:
    """Overwrite ``buf`` at ``at`` with ``chunk``, never changing its length (nothing past its end)."""
    end = min(len(buf), at + len(chunk))
    if at < end:
        buf[at:end] = chunk[: end - at]


def _op_flip(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    if not buf:
        return _op_insert(buf, r, a, d)
    span = min(len(buf), HEAD) if r.random() < 0.5 else len(buf)
    flips = []
    for _ in range(r.randint(1, 4)):
        i, bit = r.randrange(span), 1 << r.randrange(8)
        buf[i] ^= bit
        flips.append(f"{i:#x}^{bit:#04x}")
    return "flip " + ",".join(flips)


def _op_byte(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    if not buf:
        return _op_insert(buf, r, a, d)
    i, v = r.randrange(len(buf)), r.choice(INTERESTING_8)
    buf[i] = v
    return f"byte [{i:#x}] = {v:#04x}"


def _int_at(buf: bytearray, r: random.Random, i: int, extra: Sequence[int] = ()) -> str:
    width = r.choice((2, 4, 8))
    old = int.from_bytes(bytes(buf[i:i + width]).ljust(width, b"\0"), "little")
    if r.random() < 0.6:
        value = r.choice(INTERESTING_INTS + tuple(extra))
        how = f"= {value:#x}"
    else:
        delta = r.choice((-1, 1)) * r.choice((1, 1, 2, 4, 8, 16, 64, 256, 4096))
        value, how = old + delta, f"{delta:+d}"
    _put(buf, i, (value % (1 << (8 * width))).to_bytes(width, "little"))
    return f"u{8 * width}le [{i:#x}] {how}"


def _op_int(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    if not buf:
        return _op_insert(buf, r, a, d)
    return _int_at(buf, r, r.randrange(len(buf)))


def _op_truncate(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    n = r.randrange(len(buf) + 1) if r.random() < 0.7 else max(0, len(buf) - r.randint(1, 64))
    del buf[n:]
    return f"truncate to {n}"


def _op_insert(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    i, n = r.randint(0, len(buf)), r.choice((1, 2, 4, 8, r.randint(1, 256)))
    if r.random() < 0.5:
        v = r.choice(INTERESTING_8)
        buf[i:i] = bytes([v]) * n
        return f"insert {n} x {v:#04x} @{i:#x}"
    buf[i:i] = r.randbytes(n)
    return f"insert {n} random bytes @{i:#x}"


def _op_delete(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    if not buf:
        return _op_insert(buf, r, a, d)
    i = r.randrange(len(buf))
    n = r.randint(1, min(256, len(buf) - i))
    del buf[i:i + n]
    return f"delete {n} @{i:#x}"


def _op_duplicate(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    if not buf:
        return _op_insert(buf, r, a, d)
    i = r.randrange(len(buf))
    block = bytes(buf[i:i + r.randint(1, 512)])
    j = r.randint(0, len(buf))
    if r.random() < 0.5:
        buf[j:j] = block
        return f"duplicate [{i:#x}:+{len(block)}] inserted @{j:#x}"
    _put(buf, j, block)
    return f"duplicate [{i:#x}:+{len(block)}] over @{j:#x}"


def _op_splice(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    if not d:
        return _op_flip(buf, r, a, d)
    name, other = d[r.randrange(len(d))]
    p = r.randint(0, len(buf))
    q = min(p, len(other)) if r.random() < 0.6 else r.randint(0, len(other))
    if r.random() < 0.5:
        buf[p:] = other[q:]
        return f"splice [{p:#x}:] <- {name}[{q:#x}:]"
    block = other[q:q + r.randint(1, 1024)]
    _put(buf, p, block)
    return f"splice [{p:#x}:+{len(block)}] <- {name}[{q:#x}:]"


def _op_structure(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    """A write within :data:`NEAR` bytes after a structure (HDF5 object header, signature, superblock,
    zip header, ``.npy`` header): a flipped bit, an interesting byte or an address / size changed (to
    "undefined", past the end, this structure or another one: cycles)."""
    if not buf:
        return _op_insert(buf, r, a, d)
    h = r.choice(a.hot)
    i = min(len(buf) - 1, h + r.randrange(NEAR))
    kind = r.randrange(3)
    if kind == 0:
        bit = 1 << r.randrange(8)
        buf[i] ^= bit
        what = f"flip {i:#x}^{bit:#04x}"
    elif kind == 1:
        v = r.choice(INTERESTING_8)
        buf[i] = v
        what = f"byte [{i:#x}] = {v:#04x}"
    else:
        what = _int_at(buf, r, i, (h, r.choice(a.hot), len(buf), len(buf) + 8))
    return f"{what} (structure @{h:#x})"


def _op_float(buf: bytearray, r: random.Random, a: Anatomy, d: Donors) -> str:
    offset, size, itemsize = r.choice(a.data)
    i = offset + itemsize * r.randrange(max(1, size // itemsize))
    v = r.choice(INTERESTING_FLOATS)
    with np.errstate(all="ignore"):  # 3.4e38 as float16 is inf: intended
        _put(buf, i, np.array(v).astype(f"<f{itemsize}").tobytes())
    return f"float{8 * itemsize} [{i:#x}] = {v!r}"


_GENERIC: tuple[tuple[Op, int], ...] = ((_op_flip, 18), (_op_byte, 10), (_op_int, 14), (_op_truncate, 6),
                                        (_op_insert, 8), (_op_delete, 8), (_op_duplicate, 8))


def _depth(r: random.Random) -> int:
    depth = 1
    while depth < MAX_STACK and r.random() < 0.45:
        depth += 1
    return depth


def mutate_bytes(data: bytes, r: random.Random, anatomy: Optional[Anatomy] = None, donors: Donors = ()
                 ) -> tuple[bytes, str]:
    """``data`` with 1-:data:`MAX_STACK` byte-level mutations; structure-aware ones where ``anatomy`` says
    where the structure is. Returns the bytes and what was done."""
    a = anatomy or Anatomy()
    ops = list(_GENERIC) + [(_op_splice, 8 if donors else 0), (_op_structure, 30 if a.hot else 0),
                            (_op_float, 12 if a.data else 0)]
    fns, weights = [f for f, _ in ops], [w for _, w in ops]
    buf = bytearray(data)
    steps = [r.choices(fns, weights)[0](buf, r, a, donors) for _ in range(_depth(r))]
    return bytes(buf), "; ".join(steps)


def _slots(doc: Any, path: str) -> Iterator[tuple[Any, Any, str]]:
    """(container, key, JSONPath) of every value below ``doc``."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
        yield doc, key, where
        yield from _slots(value, where)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _nudge(value: Any, r: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return r.choice((value + 1, value - 1, -value, 0, 2 * value, value * 1000, 2**31 - value))
    return r.choice((value * 2, -value, value + 1e-7, float("nan"), float("inf"), 0.0))


def mutate_json(data: bytes, r: random.Random) -> Optional[tuple[bytes, str]]:
    """One JSON-aware edit of a JSON document (None when ``data`` is not JSON)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    slots = list(_slots(doc, "$"))
    if not slots:
        return None
    container, key, where = slots[r.randrange(len(slots))]
    value = container[key]
    deep = ""
    op = r.randrange(8)
    if op == 0 or (op == 1 and not isinstance(value, (int, float))):
        new = r.choice(JSON_VALUES)
        what = f"{where} = {_short(new)}"
    elif op == 1:
        new = _nudge(value, r)
        what = f"{where}: {_short(value)} -> {_short(new)}"
    elif op in (2, 3) or isinstance(value, str):
        new = r.choice(JSON_STRINGS) if op != 3 or isinstance(value, str) else r.choice(JSON_VALUES)
        what = f"{where} = {_short(new)}"
    elif op == 4:
        del container[key]
        return json.dumps(doc).encode(), f"json delete {where}"
    elif op == 5 and isinstance(container, list):
        container.insert(key, container[key])
        return json.dumps(doc).encode(), f"json duplicate {where}"
    elif op == 6:
        holder, other, there = slots[r.randrange(len(slots))]
        new = json.loads(json.dumps(holder[other]))  # a copy of another subtree, not an alias of it
        what = f"{where} = copy of {there}"
    else:
        depth = r.choice((64, 1000, 10_000, 100_000))
        new, deep = _DEEP, "[" * depth + "0" + "]" * depth if r.random() < 0.8 else "9" * 5000
        what = f"{where} = {'[' * 3}...0...{']' * 3} ({depth} deep)" if deep.startswith("[") else f"{where} = 9 x 5000"
    container[key] = new
    text = json.dumps(doc)
    if deep:
        text = text.replace(json.dumps(_DEEP), deep)
    return text.encode(), f"json {what}"


def mutate_json_or_bytes(data: bytes, r: random.Random, donors: Donors = ()) -> tuple[bytes, str]:
    """Mostly JSON-aware edits (one or two), else byte mutations of a JSON document."""
    if r.random() < 0.75:
        done = mutate_json(data, r)
        if done is not None:
            if r.random() < 0.25:
                again = mutate_json(done[0], r)
                if again is not None:
                    return again[0], f"{done[1]}; {again[1]}"
            return done
    return mutate_bytes(data, r, None, donors)


def _attribute_value(old: Any, r: random.Random) -> tuple[Any, str]:
    """A mutated value for an HDF5 attribute holding ``old``."""
    if isinstance(old, (bytes, str)):
        text = old.decode("utf-8", "replace") if isinstance(old, bytes) else old
        done = mutate_json(text.encode(), r) if text.lstrip()[:1] in ("{", "[") else None
        if done is not None:
            new_text, what = done[0].decode("utf-8", "surrogatepass"), done[1]
        else:
            new_text = r.choice(JSON_STRINGS + ("", "2.15.0", "3.0.0", "1.2.3", "tensorflow", "jax", text * 2))
            what = f"= {_short(new_text)}"
        return (new_text.encode("utf-8", "surrogatepass") if isinstance(old, bytes) else new_text), what
    if isinstance(old, np.ndarray) and old.dtype.kind in "SOU" and old.ndim == 1:
        items = [x if isinstance(x, bytes) else str(x).encode() for x in old.tolist()]
        op = r.randrange(5)
        if op == 0 and items:
            what = f"drop {items.pop(r.randrange(len(items)))!r}"
        elif op == 1 and items:
            k = r.randrange(len(items))
            items.insert(k, items[k])
            what = f"duplicate {items[k]!r}"
        elif op == 2 and len(items) > 1:
            i, j = r.sample(range(len(items)), 2)
            items[i], items[j] = items[j], items[i]
            what = f"swap {i} and {j}"
        elif op == 3:
            items = []
            what = "empty list"
        else:
            new = r.choice(JSON_STRINGS).encode("utf-8", "surrogatepass")
            k = r.randrange(len(items) + 1)
            items[k:k + 1] = [new]
            what = f"[{k}] = {new[:40]!r}"
        return (np.array(items) if items else np.array([], dtype="S1")), what
    value = r.choice(INTERESTING_INTS[:12])
    return np.int64(value), f"= {value}"


def mutate_h5_attribute(raw: bytes, anatomy: Anatomy, r: random.Random) -> Optional[tuple[bytes, str]]:
    """An HDF5 file with one attribute rewritten through h5py (None when HDF5 will not write it)."""
    path, name = anatomy.attrs[r.randrange(len(anatomy.attrs))]
    f = io.BytesIO(raw)
    try:
        with h5py.File(f, "r+") as h5:
            holder = h5[path]
            new, what = _attribute_value(holder.attrs[name], r)
            holder.attrs[name] = new
    except Exception:  # noqa: BLE001 - a value HDF5 cannot store: the caller mutates bytes instead
        return None
    return f.getvalue(), f"attribute {path}:{name} {what}"


def mutate_hdf5(data: bytes, r: random.Random, anatomy: Optional[Anatomy], donors: Donors = ()) -> tuple[bytes, str]:
    """An HDF5 file: sometimes an attribute rewritten (then maybe bytes too), else byte mutations."""
    if anatomy is not None and anatomy.attrs and r.random() < 0.2:
        done = mutate_h5_attribute(data, anatomy, r)
        if done is not None:
            if r.random() < 0.3:
                more, what = mutate_bytes(done[0], r, None, donors)
                return more, f"{done[1]}; {what}"
            return done
    return mutate_bytes(data, r, anatomy, donors)


def _member_op(members: list[tuple[str, bytes, int]], r: random.Random) -> str:
    """Change a zip's member list: drop, duplicate, rename, deflate or reorder members."""
    k = r.randrange(len(members))
    name, data, compression = members[k]
    op = r.randrange(5)
    if op == 0:
        del members[k]
        return f"drop member {name}"
    if op == 1:
        members.append((name, data, compression))
        return f"duplicate member {name}"
    if op == 2:
        new = r.choice((name.upper(), "x/" + name, "../" + name, name + ".bak", "", name[:-1]))
        members[k] = (new, data, compression)
        return f"rename member {name} -> {new!r}"
    if op == 3:
        members[k] = (name, data, zipfile.ZIP_DEFLATED)
        return f"deflate member {name}"
    r.shuffle(members)
    return "reorder members " + ",".join(m[0] for m in members)


def _zip_list(raw: bytes) -> list[tuple[str, bytes, int]]:
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return [(i.filename, z.read(i), i.compress_type) for i in z.infolist()]


def _donors(seeds: Sequence[Seed], seed: Seed, pick: Callable[[Seed], Optional[tuple[str, bytes]]]) -> Donors:
    out = []
    for s in seeds:
        if s is not seed:
            got = pick(s)
            if got is not None:
                out.append(got)
    return out


def _main_file(s: Seed) -> tuple[str, bytes]:
    return s.name, s.files[s.main]


def mutate_main(seed: Seed, r: random.Random, seeds: Sequence[Seed]) -> tuple[dict[str, bytes], str]:
    """The main file mutated (HDF5-aware where it is HDF5), the other files as they are."""
    files = dict(seed.files)
    files[seed.main], what = mutate_hdf5(files[seed.main], r, seed.anatomy.get(seed.main),
                                         _donors(seeds, seed, _main_file))
    return files, what


def _mutate_zip_member(seed: Seed, archive: str, r: random.Random, seeds: Sequence[Seed],
                       weights: Mapping[str, int]) -> tuple[bytes, str]:
    """The archive with one member mutated (JSON-aware, HDF5-aware, ``.npy``-aware) or its member
    list changed, re-zipped: the CRCs are valid."""
    members = _zip_list(seed.files[archive])
    if r.random() < 0.08:
        return make_zip(members), _member_op(members, r)
    names = [m[0] for m in members]
    wanted = [n for n in weights if n in names]
    name = r.choices(wanted, [weights[n] for n in wanted])[0] if wanted else r.choice(names)
    k = names.index(name)
    data = members[k][1]

    def same_member(s: Seed) -> Optional[tuple[str, bytes]]:
        raw = s.files.get(s.main, b"")
        with contextlib.suppress(Exception):
            return f"{s.name}!{name}", zip_members(raw)[name]
        return None

    donors = _donors(seeds[:16], seed, same_member)  # splice donors: a few archives are plenty
    anatomy = seed.anatomy.get(f"{archive}!{name}")
    if name.endswith(".json"):
        new, what = mutate_json_or_bytes(data, r, donors)
    elif data.startswith(HDF5_MAGIC):
        new, what = mutate_hdf5(data, r, anatomy, donors)
    else:
        new, what = mutate_bytes(data, r, anatomy, donors)
    members[k] = (name, new, members[k][2])
    return make_zip(members), f"member {name}: {what}"


def mutate_keras(seed: Seed, r: random.Random, seeds: Sequence[Seed]) -> tuple[dict[str, bytes], str]:
    """A ``.keras`` archive: a fifth raw (zip-header-aware), the rest one member or the member list."""
    archive = seed.main
    if r.random() < 0.2:
        data, what = mutate_bytes(seed.files[archive], r, seed.anatomy.get(archive), _donors(seeds, seed, _main_file))
        return {archive: data}, f"archive: {what}"
    data, what = _mutate_zip_member(seed, archive, r, seeds,
                                    {"model.weights.h5": 50, "config.json": 35, "metadata.json": 15})
    return {archive: data}, what


def mutate_weights_h5(seed: Seed, r: random.Random, seeds: Sequence[Seed]) -> tuple[dict[str, bytes], str]:
    """A ``.weights.h5`` + model JSON: the weights file (4 in 5), else the JSON."""
    if seed.config is None or r.random() < 0.8:
        return mutate_main(seed, r, seeds)
    files = dict(seed.files)

    def config_of(s: Seed) -> Optional[tuple[str, bytes]]:
        return (s.config, s.files[s.config]) if s.config else None

    files[seed.config], what = mutate_json_or_bytes(files[seed.config], r, _donors(seeds, seed, config_of))
    return files, f"config {seed.config}: {what}"


def _resign(seed: Seed, r: random.Random) -> tuple[dict[str, bytes], str]:
    """A fixture whose payload member is mutated and whose manifest is updated to match: the payload's
    name, size and sha256, and mostly the array's sha256 too, so the ``.npy`` parser sees the damage."""
    manifest_name, payload_name = list(seed.files)[:2]
    members = _zip_list(seed.files[payload_name])
    k = r.randrange(len(members))
    name, data, compression = members[k]
    anatomy = seed.anatomy.get(f"{payload_name}!{name}", Anatomy())
    if anatomy.data and r.random() < 0.4:  # damaged values that still parse: the reference computes with them
        buf = bytearray(data)
        what = "; ".join(_op_float(buf, r, anatomy, ()) for _ in range(r.randint(1, 3)))
        new = bytes(buf)
    else:
        new, what = mutate_bytes(data, r, anatomy)
    members[k] = (name, new, compression)
    payload = make_zip(members)
    sha = hashlib.sha256(payload).hexdigest()
    m = json.loads(seed.files[manifest_name])
    new_name = f"{m['id']}.{sha[:12]}.npz"
    m["payload"] = {"file": new_name, "sha256": sha, "bytes": len(payload)}
    how = "payload re-signed"
    array = name[:-4] if name.endswith(".npy") else name
    if r.random() < 0.85 and array in m["arrays"]:
        with contextlib.suppress(Exception):
            start, _ = npy_header(new)
            m["arrays"][array]["sha256"] = hashlib.sha256(new[start:]).hexdigest()
            how = "payload and array re-signed"
    manifest = json.dumps(m, indent=1, sort_keys=True).encode()
    return {manifest_name: manifest, new_name: payload}, f"payload member {name} ({how}): {what}"


def mutate_fixture(seed: Seed, r: random.Random, seeds: Sequence[Seed]) -> tuple[dict[str, bytes], str]:
    """A fixture: the manifest (JSON-aware mostly), the payload's bytes, or a payload member re-signed."""
    manifest, payload = list(seed.files)[:2]
    files = dict(seed.files)
    x = r.random()
    if x < 0.45:
        donor = seeds[r.randrange(len(seeds))]
        files[manifest], what = mutate_json_or_bytes(files[manifest], r, [_main_file(donor)])
        return files, f"manifest: {what}"
    if x < 0.55:
        files[payload], what = mutate_bytes(files[payload], r, seed.anatomy.get(payload))
        return files, f"payload: {what}"
    return _resign(seed, r)


def mutate_converted(seed: Seed, r: random.Random, seeds: Sequence[Seed]) -> tuple[dict[str, bytes], str]:
    """A weight file: an ``.npz`` member (re-zipped) or the member list, else the file's bytes."""
    name = seed.main
    if name.endswith(".npz") and r.random() < 0.7:
        data, what = _mutate_zip_member(seed, name, r, seeds, {})
        return {name: data}, what
    same_kind = [s for s in seeds if Path(s.main).suffix == Path(name).suffix]
    data, what = mutate_bytes(seed.files[name], r, seed.anatomy.get(name), _donors(same_kind, seed, _main_file))
    return {name: data}, what


# --- targets -------------------------------------------------------------------------------------
_FORWARD_MASK = np.array([[True, True, False], [True, False, False]])


def _forward(layer: Any, dim: int) -> None:
    """Two short calls (the second masked) on a fixed input of ``dim`` features."""
    x = np.linspace(-2.0, 2.0, 2 * 3 * dim).reshape(2, 3, dim)
    layer(x)
    layer(x, mask=_FORWARD_MASK)


def load_model_file(case: Case) -> None:
    """``load_spec``, ``inspect_file`` and a forward pass of the loaded layer."""
    spec = bilstm_ref.load_spec(case.path, layer=case.layer, config=case.config)
    bilstm_ref.inspect_file(case.path, config=case.config)
    _forward(bilstm_ref.build(spec), spec.weights[0].shape[0])


class VerifyCrash(Exception):
    """``verify_fixture`` reported an ``error`` verdict raised by something other than a BilstmRefError."""


def load_fixture(case: Case) -> None:
    """``read_fixture`` and ``verify_fixture``; an ``error`` verdict is raised again as what it was."""
    from bilstm_ref.fixtures import read_fixture, verify_fixture

    result = verify_fixture(read_fixture(case.path))
    if result.status == "error":
        cls = getattr(_errors, result.message.split(":", 1)[0], None)
        if isinstance(cls, type) and issubclass(cls, BilstmRefError):
            raise cls(result.message)
        raise VerifyCrash(f"{result.message}\n{result.traceback or ''}")


def load_weight_file(case: Case) -> None:
    """``read_weight_set`` and, when both directions agree in shape, a forward pass of those weights."""
    from bilstm_ref.convert.files import read_weight_set
    from bilstm_ref.convert.layouts import split_directions

    ws = read_weight_set(case.path, layer=case.layer)
    dirs = split_directions(ws.weights)
    first = dirs[0]
    if all(d.units == first.units and d.input_dim == first.input_dim and (d.bias is None) == (first.bias is None)
           for d in dirs):
        cell = bilstm_ref.LSTM(first.units, use_bias=first.bias is not None, return_sequences=True)
        layer: Any = bilstm_ref.Bidirectional(cell) if len(dirs) == 2 else cell
        layer.set_weights(ws.weights)
        _forward(layer, first.input_dim)


@dataclasses.dataclass(frozen=True)
class Target:
    """A named format: its load function, its seeds and how its inputs are mutated.

    Attributes:
        load: called in the child with the input's :class:`Case`; returns (loaded) or raises.
        seeds: the seeds, read once in the parent before the workers are forked.
        mutate: ``(seed, rng, all seeds) -> (files, description)``; the main file first.
        requires: modules that must be importable, else the target is skipped with the reason.
        warm: load the first seed once in the parent, so lazily imported modules are imported before
            the workers fork (the default targets; never for test targets that crash on purpose).
    """

    name: str
    load: Callable[[Case], None]
    seeds: Callable[[], Sequence[Seed]]
    mutate: Mutate = mutate_main
    requires: tuple[str, ...] = ()
    warm: bool = False

    def unavailable(self) -> Optional[str]:
        """Why this target cannot run here, or None."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as e:
                return f"{module!r} is not importable ({e})"
        return None


def default_targets() -> list[Target]:
    """The six formats of :data:`FORMATS`."""
    return [
        Target("keras", load_model_file, lambda: corpus_seeds("keras"), mutate_keras, warm=True),
        Target("legacy-h5-k2", load_model_file, lambda: corpus_seeds("legacy-h5-k2") + keras2_seeds(), warm=True),
        Target("legacy-h5-k3", load_model_file, lambda: corpus_seeds("legacy-h5-k3"), warm=True),
        Target("weights-h5", load_model_file, lambda: corpus_seeds("weights-h5"), mutate_weights_h5, warm=True),
        Target("fixture", load_fixture, fixture_seeds, mutate_fixture, warm=True),
        Target("converted", load_weight_file, lambda: corpus_seeds("converted"), mutate_converted,
               requires=("onnx",), warm=True),
    ]


def make_input(target: Target, seeds: Sequence[Seed], campaign_seed: int, index: int) -> Input:
    """Input ``index`` of ``target`` in the campaign of ``campaign_seed``: the same bytes every time."""
    r = random.Random(f"{campaign_seed}:{target.name}:{index}")
    seed = seeds[r.randrange(len(seeds))]
    layer = seed.layers[r.randrange(len(seed.layers))]
    files, mutation = target.mutate(seed, r, seeds)
    config = seed.config if seed.config in files else None
    return Input(target.name, index, seed.name, files, config, layer, mutation)


# --- one input in a child process ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Result:
    """What one input did.

    Attributes:
        outcome: one of :data:`OUTCOMES`.
        error_class: the exception's class (refused, escape; also a warning's load that was refused).
        message: the exception or the warnings, or how the child ended (hang, crash).
        traceback: the exception's traceback, or what faulthandler wrote (crash, hang).
        seconds: the load's own time, measured in the child (None: it never reported).
        warnings: each warning as ``Category: message (file:line)``.
    """

    outcome: str
    error_class: Optional[str] = None
    message: str = ""
    traceback: str = ""
    seconds: Optional[float] = None
    warnings: tuple[str, ...] = ()


def _tidy(text: str, work: Optional[Path] = None) -> str:
    """``text`` without this machine's paths: the input folder's and the repository's prefixes dropped,
    Python's own installation shown as ``<python>``."""
    python = "<python>" + os.sep
    for prefix, short in ((work, ""), (ROOT, ""), (Path(sys.prefix), python), (Path(sys.base_prefix), python)):
        if prefix is not None:
            text = text.replace(str(prefix) + os.sep, short)
    return text[:MAX_TEXT]


def _report(load: Callable[[Case], None], case: Case, relax: Callable[[], None]) -> dict[str, Any]:
    """Run ``load`` under recorded warnings and describe what happened (in the child). ``relax`` lifts the
    memory bound once the load is over, so a MemoryError can still be described."""
    error: Optional[tuple[str, str, str, bool]] = None
    raised: Optional[BaseException] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            load(case)
        except BaseException as e:  # noqa: BLE001 - everything that is not a BilstmRefError is the finding
            raised = e
        seconds = time.perf_counter() - t0
        relax()
        if raised is not None:
            error = (type(raised).__name__, f"{type(raised).__name__}: {raised}",
                     "".join(traceback.format_exception(raised)), isinstance(raised, BilstmRefError))
            del raised  # what its frames hold goes now, inside the recorded block (a ResourceWarning counts)
    work = case.path.parent
    noted = [_tidy(f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})", work) for w in caught]
    out: dict[str, Any] = {"seconds": seconds, "warnings": noted[:20]}
    if error is not None:
        name, message, trace, refused = error
        out.update(outcome="refused" if refused else "escape", error_class=name, message=_tidy(message, work),
                   traceback=_tidy(trace, work) if not refused else "")
    else:
        out["outcome"] = "loaded"
    if noted and out["outcome"] != "escape":
        out.update(outcome="warning", message="; ".join(noted)[:MAX_TEXT])
    return out


def _child(load: Callable[[Case], None], case: Case, fd: int, memory_bytes: Optional[int], timeout: float,
           faults: Optional[IO[bytes]]) -> None:
    """The child's side: its own process group, bounds, the load, the report on ``fd``."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the campaign's to handle
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(math.ceil(timeout) + 30)  # a backstop should the worker be gone: SIGALRM's default ends the process
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if faults is not None:
        faulthandler.enable(faults, all_threads=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes if hard == resource.RLIM_INFINITY
                                                else min(memory_bytes, hard), hard))
    report = _report(load, case, lambda: resource.setrlimit(resource.RLIMIT_AS, (soft, hard)))
    data = json.dumps(report).encode()
    view = memoryview(struct.pack("!I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _complete(buf: bytearray) -> bool:
    return len(buf) >= 4 and len(buf) >= 4 + struct.unpack("!I", buf[:4])[0]


def _reap(pid: int, pidfd: Optional[int], grace: float) -> Optional[int]:
    """The child's wait status within ``grace`` seconds, or None."""
    end = time.monotonic() + grace
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        left = end - time.monotonic()
        if left <= 0:
            return None
        if pidfd is not None:
            select.select([pidfd], [], [], left)
        else:
            time.sleep(min(left, 0.01))


def _kill(pid: int, pidfd: Optional[int]) -> int:
    """SIGABRT (faulthandler writes the stack), then SIGKILL to the child's whole group; its wait status."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGABRT)
    status = _reap(pid, pidfd, 0.5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return status if status is not None else os.waitpid(pid, 0)[1]


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by signal {signal.Signals(sig).name}"
        return f"killed by signal {sig}"
    return f"exited with status {os.waitstatus_to_exitcode(status)} without reporting"


def run_isolated(load: Callable[[Case], None], case: Case, timeout: float, memory_bytes: Optional[int] = None,
                 faults: Optional[IO[bytes]] = None) -> Result:
    """Run ``load(case)`` in a forked child bounded by ``memory_bytes`` (``RLIMIT_AS``) and ``timeout``
    seconds of wall time; its :class:`Result`. ``faults``: a file for faulthandler's report of a crash
    or a hang (read back into the result)."""
    if faults is not None:
        faults.seek(0)
        faults.truncate()
    r, w = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns on fork in a threaded process; the child runs none
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's side
        code = 0
        try:
            os.close(r)
            _child(load, case, w, memory_bytes, timeout, faults)
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    status: Optional[int] = None
    pidfd: Optional[int] = None
    buf = bytearray()
    hung = False
    try:
        os.close(w)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also here: no race with a kill before the child has run
        pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        deadline = time.monotonic() + timeout
        watched = [r] + ([pidfd] if pidfd is not None else [])
        while not _complete(buf):
            if _stopping:
                raise SystemExit(128 + signal.SIGTERM)
            left = deadline - time.monotonic()
            if left <= 0:
                hung = True
                break
            ready = select.select(watched, [], [], min(left, 0.1))[0]
            if r in ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                buf += chunk
            elif ready:  # the child is gone; what it wrote is in the pipe already
                while select.select([r], [], [], 0)[0]:
                    chunk = os.read(r, 1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                break
        status = _kill(pid, pidfd) if hung else os.waitpid(pid, 0)[1]
    finally:
        if status is None:  # interrupted (the worker is being stopped): take the child down too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os.close(r)
        if pidfd is not None:
            os.close(pidfd)
    fault_text = ""
    if faults is not None and (hung or not _complete(buf)):
        faults.seek(0)
        fault_text = _tidy(faults.read().decode("utf-8", "replace"), case.path.parent)
    if hung:
        return Result("hang", message=f"no outcome after {timeout:g} s: killed", traceback=fault_text)
    if not _complete(buf):
        return Result("crash", message=_describe_status(status), traceback=fault_text)
    report = json.loads(bytes(buf[4:]))
    return Result(report["outcome"], report.get("error_class"), report.get("message", ""),
                  report.get("traceback", ""), report["seconds"], tuple(report.get("warnings", ())))


# --- findings ------------------------------------------------------------------------------------
_FRAME = re.compile(r'File "([^"]+)", line (\d+),? in (\S+)')


def signature(result: Result) -> str:
    """What tells findings apart: the outcome, the exception / warning / signal, and the innermost frame of
    bilstm_ref (else the innermost frame) where it was raised, warned or stuck."""
    if result.outcome == "warning":
        return "warning " + re.sub(r": .*\(", " (", result.warnings[0]) if result.warnings else "warning"
    frames = _FRAME.findall(result.traceback)
    if result.outcome == "escape":
        frames = frames[::-1]  # a Python traceback lists the innermost frame last; faulthandler first
    ours = [f for f in frames if f[0].startswith("bilstm_ref")]
    where = (ours or frames or [None])[0]
    what = result.error_class if result.outcome == "escape" else result.message if result.outcome == "crash" else ""
    at = f" at {where[0]}:{where[1]} ({where[2]})" if where else ""
    return f"{result.outcome} {what}".rstrip() + at


def _suffix(name: str) -> str:
    return ".weights.h5" if name.endswith(".weights.h5") else (Path(name).suffix or ".bin")


def save_finding(out: Path, inp: Input, result: Result, campaign: Mapping[str, Any]) -> Path:
    """Write the input and its record under ``out/findings/<outcome>/``; the record's path."""
    folder = out / "findings" / result.outcome
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{inp.target}-{inp.index}"
    files = []
    for k, (name, data) in enumerate(inp.files.items()):
        role = "main" if k == 0 else "config" if name == inp.config else "payload"
        suffix = _suffix(name)
        if role == "main":  # a fixture's manifest is JSON, like the record: told apart by name
            saved = f"{stem}.manifest{suffix}" if suffix == ".json" else f"{stem}{suffix}"
        else:
            saved = f"{stem}.{role}{suffix}"
        (folder / saved).write_bytes(data)
        files.append({"saved": saved, "name": name, "role": role})
    record = {
        "kind": RECORD_KIND,
        "target": inp.target, "index": inp.index, "campaign_seed": campaign.get("seed"),
        "formats": campaign.get("formats"), "seed_file": inp.seed, "layer": inp.layer, "mutation": inp.mutation,
        "outcome": result.outcome, "signature": signature(result), "error_class": result.error_class,
        "message": result.message,
        "traceback": result.traceback, "warnings": list(result.warnings), "seconds": result.seconds,
        "timeout": campaign.get("timeout"), "memory_mb": campaign.get("memory_mb"), "files": files,
    }
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


# --- workers -------------------------------------------------------------------------------------
def _stop(signum: int, frame: Any) -> None:
    """SIGTERM in a worker. Raising here could land in a fork hook, which swallows it; a flag cannot be
    lost, and the worker looks at it at least every 0.1 s."""
    global _stopping
    _stopping = True


def _adopt_orphans() -> None:
    """Make this worker the reaper of its descendants' orphans (Linux ``PR_SET_CHILD_SUBREAPER``): an
    input's child may leave a process behind (the loaders' HDF5 prober ends when that child is gone), and
    PID 1 of a container may never reap it."""
    with contextlib.suppress(Exception):  # elsewhere orphans go to init, as usual
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # 36: PR_SET_CHILD_SUBREAPER


def _reap_orphans() -> None:
    """Collect every adopted orphan that has ended (the worker's own children are reaped already)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _worker(wid: int, plan: Sequence[Target], seeds: Mapping[str, Sequence[Seed]], config: Mapping[str, Any],
            conn: Connection) -> None:
    """Inputs ``wid``, ``wid + workers``, ... each in a child; batches of records sent on ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the campaign's parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, _stop)
    _adopt_orphans()
    out = Path(config["out"])
    memory = config["memory_mb"] * 1024**2 if config["memory_mb"] else None
    batch: list[tuple[Any, ...]] = []
    sent = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bilstm-ref-fuzz-") as tmp, tempfile.TemporaryFile() as faults:
            work = Path(tmp)
            for index in range(wid, config["count"], config["workers"]):
                if _stopping:
                    break
                t0 = time.perf_counter()
                target = plan[index % len(plan)]
                inp = make_input(target, seeds[target.name], config["seed"], index)
                case = inp.write(work)
                result = run_isolated(target.load, case, config["timeout"], memory, faults)
                for name in inp.files:
                    with contextlib.suppress(FileNotFoundError):
                        (work / name).unlink()
                _reap_orphans()
                record = None
                if result.outcome in FINDINGS:
                    record = str(save_finding(out, inp, result, config).relative_to(out))
                elapsed = time.perf_counter() - t0
                batch.append((target.name, index, result.outcome, result.error_class, elapsed, result.seconds,
                              record, signature(result) if record else ""))
                if len(batch) >= 256 or time.monotonic() - sent > 0.5:
                    conn.send(("batch", batch))
                    batch, sent = [], time.monotonic()
        conn.send(("batch", batch))
        conn.send(("done", wid))
    except (BrokenPipeError, SystemExit):
        return
    except BaseException:  # noqa: BLE001 - a bug of the harness: the parent reports it
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        raise


# --- the campaign --------------------------------------------------------------------------------
@dataclasses.dataclass
class FormatStats:
    """Counts and times of one format (or of all: :attr:`Summary.total`)."""

    outcomes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    refused_by_class: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    times: list[float] = dataclasses.field(default_factory=list)  # seconds per input, in the worker
    loads: list[float] = dataclasses.field(default_factory=list)  # the load's own seconds (child-reported)
    loads_elapsed: list[float] = dataclasses.field(default_factory=list)  # the worker's seconds for those inputs

    @property
    def tried(self) -> int:
        return len(self.times)

    def add(self, outcome: str, error_class: Optional[str], elapsed: float, load: Optional[float]) -> None:
        self.outcomes[outcome] += 1
        if outcome == "refused" and error_class:
            self.refused_by_class[error_class] += 1
        self.times.append(elapsed)
        if load is not None:
            self.loads.append(load)
            self.loads_elapsed.append(elapsed)

    def merge(self, other: "FormatStats") -> None:
        self.outcomes.update(other.outcomes)
        self.refused_by_class.update(other.refused_by_class)
        self.times += other.times
        self.loads += other.loads
        self.loads_elapsed += other.loads_elapsed

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.times, q)) * 1000 if self.times else 0.0

    @property
    def overhead_ms(self) -> float:
        """Mean time per input beyond the load itself (generating, writing, forking, reaping), ms."""
        if not self.loads:
            return 0.0
        return (sum(self.loads_elapsed) - sum(self.loads)) / len(self.loads) * 1000

    def to_json(self) -> dict[str, Any]:
        return {"tried": self.tried, **{o: self.outcomes[o] for o in OUTCOMES},
                "refused_by_class": dict(self.refused_by_class.most_common()),
                "p50_ms": round(self.percentile_ms(50), 3), "p99_ms": round(self.percentile_ms(99), 3),
                "max_ms": round(max(self.times, default=0.0) * 1000, 3),
                "mean_load_ms": round(sum(self.loads) / len(self.loads) * 1000, 3) if self.loads else None,
                "mean_overhead_ms": round(self.overhead_ms, 3)}


@dataclasses.dataclass
class Summary:
    """A campaign's result: counts per format, the findings (records relative to ``out``), the time."""

    count: int
    seed: int
    workers: int
    timeout: float
    memory_mb: Optional[int]
    out: Path
    formats: dict[str, FormatStats]
    skipped: dict[str, str]
    findings: list[dict[str, Any]]
    wall_seconds: float
    interrupted: bool = False

    @property
    def total(self) -> FormatStats:
        total = FormatStats()
        for stats in self.formats.values():
            total.merge(stats)
        return total

    @property
    def finding_count(self) -> int:
        return sum(self.total.outcomes[o] for o in FINDINGS)

    def table(self) -> str:
        """The per-format table, totals, time, refusals by class and the findings, as text."""
        head = (f"{'format':<14}{'tried':>8}{'loaded':>8}{'refused':>9}{'escape':>8}{'hang':>6}{'crash':>7}"
                f"{'warning':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
        lines = [head, "-" * len(head)]
        rows = list(self.formats.items()) + [("total", self.total)]
        for k, (name, s) in enumerate(rows):
            if k == len(rows) - 1:
                lines.append("-" * len(head))
            o = s.outcomes
            lines.append(f"{name:<14}{s.tried:>8}{o['loaded']:>8}{o['refused']:>9}{o['escape']:>8}{o['hang']:>6}"
                         f"{o['crash']:>7}{o['warning']:>9}{s.percentile_ms(50):>9.1f}{s.percentile_ms(99):>9.1f}"
                         f"{max(s.times, default=0.0) * 1000:>9.1f}")
        total = self.total
        rate = total.tried / self.wall_seconds if self.wall_seconds else 0.0
        per_input = self.wall_seconds * self.workers / max(1, total.tried) * 1000
        lines.append(f"wall {self.wall_seconds:.1f} s, {self.workers} worker(s): {rate:.1f} inputs/s; per input "
                     f"{per_input:.1f} ms of a worker, of which the load "
                     f"{sum(total.loads) / max(1, len(total.loads)) * 1000:.1f} ms and the harness "
                     f"{total.overhead_ms:.1f} ms (generate, write, fork, reap)"
                     + ("; INTERRUPTED" if self.interrupted else ""))
        for name, reason in self.skipped.items():
            lines.append(f"{name}: skipped ({reason})")
        lines.append("refused, by class:")
        for name, s in self.formats.items():
            classes = ", ".join(f"{c} {n}" for c, n in s.refused_by_class.most_common())
            lines.append(f"  {name}: {classes or '-'}")
        groups = self.distinct()
        lines.append(f"findings: {self.finding_count}, {len(groups)} distinct"
                     + (f" (records under {self.out / 'findings'})" if groups else ""))
        for sig, found in groups.items():
            targets = collections.Counter(f["target"] for f in found)
            lines.append(f"  {len(found):>6} x {sig}  [{', '.join(f'{t} {n}' for t, n in targets.items())}; "
                         f"e.g. {found[0]['record']}]")
        return "\n".join(lines)

    def distinct(self) -> dict[str, list[dict[str, Any]]]:
        """The findings grouped by :func:`signature`, the most frequent first."""
        groups: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for f in self.findings:
            groups[f["signature"]].append(f)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count, "seed": self.seed, "workers": self.workers, "timeout": self.timeout,
            "memory_mb": self.memory_mb, "wall_seconds": round(self.wall_seconds, 3),
            "interrupted": self.interrupted, "finding_count": self.finding_count,
            "formats": {name: s.to_json() for name, s in self.formats.items()}, "total": self.total.to_json(),
            "skipped": self.skipped,
            "distinct_findings": [{"signature": sig, "count": len(found), "records": [f["record"] for f in found]}
                                  for sig, found in self.distinct().items()],
            "findings": self.findings,
            "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "h5py": h5py.__version__,
                         "hdf5": h5py.version.hdf5_version, "bilstm_ref": bilstm_ref.__version__},
        }


def _address_space() -> int:
    """This process's address space in bytes (0 where /proc does not say)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _warm(target: Target, seeds: Sequence[Seed]) -> None:
    """Load ``target``'s first seed here, so the modules a load imports lazily are imported before forking."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seed = seeds[0]
        inp = Input(target.name, -1, seed.name, dict(seed.files), seed.config, seed.layers[0], "none")
        with contextlib.suppress(Exception):
            target.load(inp.write(Path(tmp)))


def _choose(targets: Sequence[Target], formats: Optional[Sequence[str]]) -> list[Target]:
    by_name = {t.name: t for t in targets}
    if formats is None:
        return list(targets)
    unknown = [f for f in formats if f not in by_name]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; expected some of {sorted(by_name)}")
    return [by_name[f] for f in formats]


def run_campaign(count: int, seed: int, workers: int, out: os.PathLike[str] | str, timeout: float = 20.0,
                 memory_mb: Optional[int] = 2048, formats: Optional[Sequence[str]] = None,
                 targets: Optional[Sequence[Target]] = None, *, progress_every: float = 10.0,
                 echo: Optional[Callable[[str], None]] = print) -> Summary:
    """Run ``count`` inputs over ``formats`` (default: every target) in ``workers`` processes.

    Args:
        count, seed: how many inputs; the campaign's seed (with an input's index it fixes the input).
        workers: worker processes (each runs every input in a child of its own).
        out: the output folder: ``findings/`` (emptied first) and ``summary.json``.
        timeout: seconds of wall time per input before the child is killed (a hang).
        memory_mb: the child's address-space bound (``RLIMIT_AS``, the whole process); None: unbounded.
        formats: target names, in the order inputs cycle through them.
        targets: the targets to choose from (default :func:`default_targets`); tests inject their own.
        progress_every: seconds between progress lines (0: none).
        echo: where progress, skipped targets and the table go (None: nowhere).
    Returns:
        The :class:`Summary` (also written to ``out/summary.json``); ``interrupted`` after Ctrl-C.
    """
    say = echo or (lambda text: None)
    if not hasattr(os, "fork"):
        raise RuntimeError("the fuzz campaign needs os.fork (Linux, macOS)")
    out = Path(out)
    chosen = _choose(default_targets() if targets is None else targets, formats)
    skipped: dict[str, str] = {}
    plan: list[Target] = []
    seeds: dict[str, Sequence[Seed]] = {}
    for target in chosen:
        reason = target.unavailable()
        found = list(target.seeds()) if reason is None else []
        if reason is None and not found:
            reason = "no seeds"
        if reason is not None:
            skipped[target.name] = reason
            say(f"{target.name}: skipped ({reason})")
            continue
        plan.append(target)
        seeds[target.name] = found
    if not plan:
        raise ValueError("no target to run" + (f" (skipped: {skipped})" if skipped else ""))
    for target in plan:
        if target.warm:
            _warm(target, seeds[target.name])
    if memory_mb is not None and memory_mb * 1024**2 < _address_space() + 64 * 1024**2:
        raise ValueError(f"memory bound {memory_mb} MiB: a worker's address space is already "
                         f"{_address_space() // 1024**2} MiB; give at least 64 MiB more")
    shutil.rmtree(out / "findings", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, count))
    config = {"count": count, "seed": seed, "workers": workers, "timeout": timeout, "memory_mb": memory_mb,
              "out": str(out), "formats": [t.name for t in plan]}
    stats = {t.name: FormatStats() for t in plan}
    findings: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("fork")
    procs: dict[Connection, Any] = {}
    t0 = time.monotonic()
    interrupted = False
    errors: list[str] = []
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns on fork in a threaded parent; workers run no threads
            warnings.simplefilter("ignore", DeprecationWarning)
            for wid in range(workers):
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(wid, plan, seeds, config, send), name=f"fuzz-worker-{wid}",
                                   daemon=True)
                proc.start()
                send.close()
                procs[receive] = proc
        done = 0
        next_progress = t0 + progress_every
        pending = dict(procs)
        while pending:
            for conn in wait(list(pending), timeout=1.0):
                try:
                    kind, payload = conn.recv()
                except EOFError:
                    proc = pending.pop(conn)
                    proc.join()
                    if proc.exitcode != 0 and not errors:
                        errors.append(f"{proc.name} ended with exit code {proc.exitcode}")
                    continue
                if kind == "batch":
                    for name, index, outcome, error_class, elapsed, load, record, sig in payload:
                        stats[name].add(outcome, error_class, elapsed, load)
                        if record is not None:
                            findings.append({"outcome": outcome, "target": name, "index": index, "record": record,
                                             "signature": sig})
                    done += len(payload)
                elif kind == "error":
                    errors.append(payload)
            if errors:
                break
            now = time.monotonic()
            if progress_every and now >= next_progress:
                next_progress = now + progress_every
                found = collections.Counter(f["outcome"] for f in findings)
                say(f"[{now - t0:7.1f} s] {done}/{count} inputs, {done / (now - t0):.1f}/s, findings {len(findings)} "
                    f"({', '.join(f'{o} {found[o]}' for o in FINDINGS)})")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for conn in procs:  # first, so a worker blocked sending a batch gets EPIPE, not a wait
            conn.close()
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in procs.values():
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
    if errors:
        raise RuntimeError("a fuzz worker failed:\n" + "\n".join(errors))
    findings.sort(key=lambda f: (f["outcome"], f["target"], f["index"]))
    summary = Summary(count, seed, workers, timeout, memory_mb, out, stats, skipped, findings,
                      time.monotonic() - t0, interrupted)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1) + "\n", encoding="utf-8")
    say(summary.table())
    return summary


# --- replay --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Replayed:
    """A saved finding run again: its record, the outcome it had and the :class:`Result` now."""

    record: Path
    target: str
    was: str
    now: Result


def _records(path: Path) -> list[Path]:
    candidates = [path] if path.is_file() else sorted(path.rglob("*.json"))
    out = []
    for p in candidates:
        with contextlib.suppress(ValueError, OSError, UnicodeDecodeError):
            if json.loads(p.read_text(encoding="utf-8")).get("kind") == RECORD_KIND:
                out.append(p)
    return out


def replay(path: os.PathLike[str] | str, targets: Optional[Sequence[Target]] = None, timeout: Optional[float] = None,
           memory_mb: Optional[int] = None, echo: Optional[Callable[[str], None]] = print) -> list[Replayed]:
    """Run each finding saved under ``path`` (a findings folder, or one record) again, isolated as in the
    campaign (its recorded timeout and memory bound unless given), and say what it does now."""
    say = echo or (lambda text: None)
    by_name = {t.name: t for t in (default_targets() if targets is None else targets)}
    done = []
    for record_path in _records(Path(path)):
        rec = json.loads(record_path.read_text(encoding="utf-8"))
        target = by_name.get(rec["target"])
        if target is None:
            say(f"{record_path}: unknown target {rec['target']!r}; skipped")
            continue
        limit = rec.get("memory_mb") if memory_mb is None else memory_mb
        with tempfile.TemporaryDirectory(prefix="bilstm-ref-replay-") as tmp, tempfile.TemporaryFile() as faults:
            files = {Path(f["name"]).name: (record_path.parent / f["saved"]).read_bytes() for f in rec["files"]}
            config = next((Path(f["name"]).name for f in rec["files"] if f["role"] == "config"), None)
            inp = Input(rec["target"], rec["index"], rec["seed_file"], files, config, rec.get("layer"), rec["mutation"])
            now = run_isolated(target.load, inp.write(Path(tmp)), timeout or rec.get("timeout") or 20.0,
                               limit * 1024**2 if limit else None, faults)
        done.append(Replayed(record_path, rec["target"], rec["outcome"], now))
        detail = (now.message.splitlines() or [""])[0][:200]
        say(f"{record_path}: {rec['target']} #{rec['index']} ({rec['mutation'][:80]}): was {rec['outcome']}, "
            f"now {now.outcome}" + (f": {detail}" if detail else ""))
    say(f"{len(done)} finding(s) replayed, {sum(r.now.outcome in FINDINGS for r in done)} still findings")
    return done


# --- command line --------------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="inputs in all (default 1000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    parser.add_argument("--seed", type=int, default=1, help="the campaign's seed (default 1)")
    parser.add_argument("--out", default="fuzz-out", help="output folder: findings/ and summary.json")
    parser.add_argument("--timeout", type=float, help="seconds per input before it is a hang (default 20; "
                        "--replay: each record's)")
    parser.add_argument("--memory-mb", type=int, help="address-space bound of each input's process (MiB, the "
                        "whole process; 0: none; default 2048; --replay: each record's)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines (0: none)")
    parser.add_argument("--replay", metavar="DIR", help="re-run the findings saved under DIR (or one record)")
    args = parser.parse_args(argv)
    echo = functools.partial(print, flush=True)  # progress lines show up at once in a pipe or a CI log
    if args.replay:
        replayed = replay(args.replay, timeout=args.timeout, memory_mb=args.memory_mb, echo=echo)
        return 1 if any(r.now.outcome in FINDINGS for r in replayed) else 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    memory = 2048 if args.memory_mb is None else args.memory_mb or None
    try:
        summary = run_campaign(args.count, args.seed, args.workers, args.out,
                               20.0 if args.timeout is None else args.timeout, memory, formats,
                               progress_every=args.progress, echo=echo)
    except ValueError as e:
        parser.error(str(e))
    if summary.interrupted:
        return 130
    return 1 if summary.finding_count else 0


if __name__ == "__main__":
    sys.exit(main())
