"""Regression fixtures: Keras's answers recorded with provenance, verified anywhere NumPy runs.

Format (schema 1), one fixture per case, two files in a flat directory:

``<id>.json``, the manifest: human-readable JSON and the fixture's commit record. It holds
``schema_version``, ``id``, ``flags``, the layer (class, config, semantics), the calls (which
arrays are the input, mask and initial states of each call, whether ``reset_state()`` precedes
it, which arrays are Keras's outputs by name), the tolerance policy, provenance (bilstm_ref,
Keras, backend and versions, numpy, Python, platform, device, seed, code path), the known Keras
deviation the case is under (if any), the payload's file name, size and sha256, and the dtype,
shape and sha256 of every array.

``<id>.<sha256[:12]>.npz``, the payload: a plain ``.npz`` (zip, STORED, fixed timestamps, so
regenerating unchanged answers rewrites identical bytes) of little-endian C-order arrays, no
objects. It is named by its content, so a new payload never overwrites the one an existing
manifest points to; the manifest is written last and switched atomically.

Reading trusts nothing before checking it: the manifest is parsed strictly and validated
against the schema, the payload's sha256 is checked before it is parsed, its members must be
exactly the manifest's arrays, each ``.npy`` header is parsed without allocating (dtype, shape,
order, size), and each array's sha256 is checked. Every failure is a ``BilstmRefError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from .compare import OutputResult, Tolerance, TolerancePolicy, compare
from .errors import (
    BilstmRefError,
    CorruptFileError,
    DTypeMismatchError,
    FixtureExistsError,
    FixtureIntegrityError,
    FixtureLockError,
    ResourceLimitError,
    ShapeMismatchError,
)
from .loaders import limits
from .loaders._io import SafeZip, open_local_file, parse_json, read_bounded, read_npy_header
from .runner import call_label, crash_report, implementation_frames, run_calls
from .spec import LayerSpec, build, output_names, reference_factory

__all__ = [
    "SCHEMA_VERSION", "Call", "Fixture", "FixtureResult", "write_fixture", "read_fixture", "scan",
    "verify_fixture", "diff_fixtures", "Factory",
]

SCHEMA_VERSION = 1
#: The verdict on a fixture recorded under a known Keras deviation whose buggy answer the
#: implementation reproduces: reported, and failing ``fixtures verify``, never a silent pass.
UNEXPECTED_PASS = "xpass"
TMP_PREFIX = ".bilstm_ref-tmp-"
LOCK_NAME = ".bilstm_ref.lock"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_ARRAY = re.compile(r"^[A-Za-z0-9_.]{1,100}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_DTYPES = {"<f2", "<f4", "<f8", "|b1"}
#: Largest tolerance a manifest may carry: beyond it every comparison would pass.
MAX_TOLERANCE = 1.0
#: The precision Keras computes in under each policy (ULPs are counted in it).
_ULP_DTYPES = {"float64": "float64", "float32": "float32", "mixed_float16": "float16", "float16": "float16",
               "mixed_bfloat16": "float32", "bfloat16": "float32"}
#: Policies under which Keras's outputs are half precision (and must be, to pass).
HALF_OUTPUT_POLICIES = frozenset({"mixed_float16", "mixed_bfloat16", "float16", "bfloat16"})
#: Largest array a fixture may declare (bytes).
MAX_ARRAY_BYTES = 256 * 1024**2

Factory = Callable[[LayerSpec], Any]
PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a fixture: inputs and Keras's outputs by name."""

    x: np.ndarray  # (B, T, D)
    mask: Optional[np.ndarray]  # (B, T) bool
    initial_state: Optional[tuple[np.ndarray, ...]]  # each (B, units)
    expected: dict[str, np.ndarray]  # output name -> Keras's answer
    reset_before: bool = False


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A recorded case: the layer, the calls with Keras's answers, the tolerance, provenance."""

    id: str
    spec: LayerSpec
    calls: tuple[Call, ...]
    output_names: tuple[str, ...]
    tolerance: Tolerance
    tolerance_policy: str
    flags: dict[str, Any]
    provenance: dict[str, Any]
    deviation: Optional[dict[str, str]] = None  # {"name", "quirk", "reason"} when Keras is under one


@dataclasses.dataclass
class FixtureResult:
    """Verdict on one fixture: ``status`` pass / fail / known-deviation / error / integrity."""

    id: str
    status: str
    outputs: list[OutputResult]
    file: str = ""
    message: str = ""
    deviation: Optional[str] = None
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    traceback: str = ""  # the whole traceback when the implementation raised
    diagnosis: str = ""  # for a failing implementation: the known fault that explains it, in one line

    @property
    def failures(self) -> list[OutputResult]:
        return [o for o in self.outputs if not o.ok]

    def describe(self) -> str:
        head = f"{self.id}: {self.status}" + (f" ({self.message})" if self.message else "")
        diagnosis = [f"  diagnosis: {self.diagnosis}"] if self.diagnosis else []
        return "\n".join([head] + diagnosis + ["  " + o.describe() for o in self.failures]
                          + implementation_frames(self.traceback))


# --- encoding -----------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """Config values as plain JSON (tuples to lists), refusing anything else."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise FixtureIntegrityError(f"fixture config value {value!r} ({type(value).__name__}) is not JSON data")


def _canonical(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "b":
        return np.ascontiguousarray(a, dtype=np.bool_)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        raise DTypeMismatchError(f"fixture arrays must be float or bool, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))


def _compact(a: np.ndarray) -> np.ndarray:
    """float32 where that is lossless (Keras float32 / float16 / bfloat16 answers), else as is."""
    a = np.asarray(a)
    if a.dtype == np.float64:
        f32 = a.astype(np.float32)
        if np.array_equal(f32.astype(np.float64), a, equal_nan=True):
            return f32
    return a


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(fixture: Fixture) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(manifest without ``payload``, arrays by name), validated: what :func:`write_fixture` writes."""
    if not _ID.fullmatch(fixture.id):
        raise FixtureIntegrityError(f"fixture id {fixture.id!r}: expected letters, digits, '_', '-', '.'")
    arrays: dict[str, np.ndarray] = {}
    weights = []
    for i, w in enumerate(fixture.spec.weights):
        arrays[f"weight{i}"] = _canonical(_compact(w))
        weights.append(f"weight{i}")
    calls_in = fixture.calls
    masked = [c.mask is not None for c in calls_in]
    if any(masked) and not all(masked):
        raise FixtureIntegrityError(f"fixture {fixture.id}: either every call has a mask or none")
    # Arrays are stacked over calls (first axis = call index): fewer members, a smaller suite.
    arrays["x"] = _canonical(np.stack([np.asarray(c.x) for c in calls_in]))
    inputs: dict[str, Any] = {"x": "x", "mask": None}
    if all(masked) and calls_in:
        arrays["mask"] = _canonical(np.stack([np.asarray(c.mask, dtype=bool) for c in calls_in]))
        inputs["mask"] = "mask"
    calls = []
    for k, call in enumerate(calls_in):
        entry: dict[str, Any] = {"reset_before": bool(call.reset_before), "initial_state": None}
        if call.initial_state is not None:
            entry["initial_state"] = []
            for j, st in enumerate(call.initial_state):
                arrays[f"call{k}.init{j}"] = _canonical(_compact(np.asarray(st)))
                entry["initial_state"].append(f"call{k}.init{j}")
        if tuple(call.expected) != tuple(fixture.output_names):
            raise FixtureIntegrityError(
                f"fixture {fixture.id}: call {k} outputs {tuple(call.expected)} != {fixture.output_names}"
            )
        calls.append(entry)
    expected = {}
    for name in fixture.output_names:
        arrays[f"out.{name}"] = _canonical(_compact(np.stack([np.asarray(c.expected[name]) for c in calls_in])))
        expected[name] = f"out.{name}"
    tol = {"atol": float(fixture.tolerance.atol), "rtol": float(fixture.tolerance.rtol),
           "policy": fixture.tolerance_policy}
    _check_tolerance(tol, fixture.id)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": "bilstm_ref.fixture",
        "id": fixture.id,
        "flags": _jsonable(fixture.flags),
        "layer": {
            "class_name": fixture.spec.class_name,
            "config": _jsonable(fixture.spec.config),
            "semantics": fixture.spec.semantics,
            "weights": weights,
        },
        "output_names": list(fixture.output_names),
        "inputs": inputs,
        "expected": expected,
        "calls": calls,
        "tolerance": tol,
        "deviation": fixture.deviation,
        "provenance": _jsonable(fixture.provenance),
        "arrays": {
            name: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": _sha(a.tobytes())}
            for name, a in sorted(arrays.items())
        },
    }
    try:
        json.dumps(manifest, allow_nan=False)  # fails now, before anything is written
    except ValueError as e:
        raise FixtureIntegrityError(f"fixture {fixture.id}: manifest is not plain JSON ({e}; NaN or Inf in "
                                    "config, flags or provenance?)") from None
    return manifest, arrays


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic STORED zip of ``.npy`` members (fixed timestamps, sorted names)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, arrays[name], allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            z.writestr(info, npy.getvalue())
    return buf.getvalue()


# --- atomic writing -----------------------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(directory: Path, name: str, data: bytes, replace: bool) -> None:
    """Write ``data`` to ``directory/name`` atomically: temp file, fsync, then rename or link.

    ``replace=False`` publishes with ``os.link``, which fails if the name exists (a planted
    symlink included) instead of following or clobbering it.
    """
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        target = directory / name
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise FixtureExistsError(f"{str(target)!r} exists; pass --force (force=True) to overwrite") from None
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock on a fixture directory (``O_CREAT | O_EXCL``), so parallel writers never interleave."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:
        raise FixtureLockError(
            f"{str(path)!r} exists: another run is writing fixtures here (delete it if no run is active)"
        ) from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def clean_stale_temps(directory: Path) -> list[str]:
    """Remove what interrupted runs left (call while holding the lock): temp files, and payloads
    superseded by a ``--force`` run that stopped before its manifest switch. Returns their names."""
    removed = []
    for p in directory.glob(f"{TMP_PREFIX}*"):
        if p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p.name)
    for p in directory.glob("*.npz"):
        m = re.fullmatch(r"(.+)\.[0-9a-f]{12}\.npz", p.name)
        manifest = directory / f"{m.group(1)}.json" if m else None
        if manifest is not None and manifest.is_file() and _referenced_payload(manifest) not in (None, p.name):
            p.unlink()
            removed.append(p.name)
    return removed


def write_fixture(directory: PathLike, fixture: Fixture, force: bool = False) -> str:
    """Write ``fixture`` into ``directory``; returns ``"written"``, ``"replaced"`` or ``"unchanged"``.

    Validates everything first, then writes the payload (content-addressed, so the old one stays
    valid), then the manifest last with an atomic rename; the old payload is removed only after
    the switch. Without ``force`` an existing fixture raises :class:`FixtureExistsError` and
    nothing is written. Call under :func:`directory_lock` when other writers may run.
    """
    directory = Path(directory)
    manifest, arrays = encode(fixture)
    payload = _npz_bytes(arrays)
    digest = _sha(payload)
    payload_name = f"{fixture.id}.{digest[:12]}.npz"
    manifest["payload"] = {"file": payload_name, "sha256": digest, "bytes": len(payload)}
    text = (json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    manifest_path = directory / f"{fixture.id}.json"
    old_payload = None
    existed = manifest_path.exists() or manifest_path.is_symlink()
    if existed:
        if not force:
            raise FixtureExistsError(f"{str(manifest_path)!r} exists; pass --force (force=True) to overwrite")
        if not manifest_path.is_symlink():
            with contextlib.suppress(OSError, BilstmRefError):
                old = parse_json(manifest_path.read_bytes(), repr(str(manifest_path)))
                current = directory / payload_name
                if (_same_answers(old, manifest) and current.is_file() and not current.is_symlink()
                        and _sha(current.read_bytes()) == digest):
                    return "unchanged"  # keep the old files, their generation time included
                name = old.get("payload", {}).get("file") if isinstance(old, dict) else None
                if isinstance(name, str) and _payload_of(fixture.id, name):
                    old_payload = name  # only ever this fixture's own payload is removed
    target = directory / payload_name
    if not (target.is_file() and not target.is_symlink() and _sha(target.read_bytes()) == digest):
        _publish(directory, payload_name, payload, replace=True)
    _publish(directory, manifest_path.name, text, replace=force)
    _fsync_dir(directory)
    if old_payload and old_payload != payload_name:
        with contextlib.suppress(FileNotFoundError):
            (directory / old_payload).unlink()
    return "replaced" if existed else "written"


def _payload_of(fid: str, name: str) -> bool:
    """Whether ``name`` is a payload file name of fixture ``fid`` (``<fid>.<12 hex>.npz``)."""
    return re.fullmatch(re.escape(fid) + r"\.[0-9a-f]{12}\.npz", name) is not None


def _same_answers(old: Any, new: dict[str, Any]) -> bool:
    """Manifests equal except for when they were generated."""
    if not isinstance(old, dict) or not isinstance(old.get("provenance"), dict):
        return False
    strip = lambda m: {**m, "provenance": {k: v for k, v in m["provenance"].items() if k != "generated"}}  # noqa: E731
    return strip(old) == strip(json.loads(json.dumps(new)))


# --- reading ------------------------------------------------------------------------------------
_TOP_KEYS = {"schema_version", "kind", "id", "flags", "layer", "output_names", "inputs", "expected", "calls",
             "tolerance", "deviation", "provenance", "arrays", "payload"}


def _fail(where: str, what: str) -> FixtureIntegrityError:
    return FixtureIntegrityError(f"{where}: {what}")


def _check_tolerance(tol: Any, where: str) -> None:
    if not isinstance(tol, dict) or set(tol) != {"atol", "rtol", "policy"}:
        raise _fail(where, f"tolerance: expected {{atol, rtol, policy}}, got {tol!r}")
    for key in ("atol", "rtol"):
        v = tol[key]
        try:
            finite = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite or not 0 <= v <= MAX_TOLERANCE:
            raise _fail(where, f"tolerance {key}: expected a finite number in [0, {MAX_TOLERANCE}], got {v!r}")
    if not isinstance(tol["policy"], str):
        raise _fail(where, f"tolerance policy: expected a string, got {tol['policy']!r}")


def _validate_manifest(m: Any, where: str, file_id: str) -> None:
    if not isinstance(m, dict):
        raise _fail(where, "manifest: expected a JSON object")
    version = m.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _fail(where, f"schema_version: expected an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise _fail(where, f"fixture schema {version} > supported {SCHEMA_VERSION}; upgrade bilstm_ref")
    if version < 1:
        raise _fail(where, f"schema_version {version} is not a valid schema")
    keys = set(m)
    if keys != _TOP_KEYS:
        raise _fail(where, f"manifest keys: missing {sorted(_TOP_KEYS - keys)}, unknown {sorted(keys - _TOP_KEYS)}")
    if m["kind"] != "bilstm_ref.fixture":
        raise _fail(where, f"kind: expected 'bilstm_ref.fixture', got {m['kind']!r}")
    if m["id"] != file_id:
        raise _fail(where, f"id {m['id']!r} does not match the file name ({file_id!r})")
    _check_tolerance(m["tolerance"], where)
    payload = m["payload"]
    if not isinstance(payload, dict) or set(payload) != {"file", "sha256", "bytes"}:
        raise _fail(where, "payload: expected {file, sha256, bytes}")
    name = payload["file"]
    if (not isinstance(name, str) or name != os.path.basename(name) or "\\" in name
            or not _payload_of(file_id, name)):
        raise _fail(where, f"payload file {name!r}: expected '{file_id}.<sha256 prefix>.npz' in the same directory")
    if not isinstance(payload["sha256"], str) or not _SHA.fullmatch(payload["sha256"]) or not name.endswith(
            f".{payload['sha256'][:12]}.npz"):
        raise _fail(where, "payload sha256: expected 64 hex digits matching the file name")
    if isinstance(payload["bytes"], bool) or not isinstance(payload["bytes"], int) or payload["bytes"] < 0:
        raise _fail(where, f"payload bytes: expected a non-negative integer, got {payload['bytes']!r}")
    arrays = m["arrays"]
    if not isinstance(arrays, dict) or not arrays:
        raise _fail(where, "arrays: expected a non-empty object")
    for aname, meta in arrays.items():
        if not _ARRAY.fullmatch(aname):
            raise _fail(where, f"array name {aname!r}: expected letters, digits, '_' and '.'")
        if not isinstance(meta, dict) or set(meta) != {"dtype", "shape", "sha256"}:
            raise _fail(where, f"arrays.{aname}: expected {{dtype, shape, sha256}}")
        if not isinstance(meta["dtype"], str) or meta["dtype"] not in _DTYPES:
            raise _fail(where, f"arrays.{aname}.dtype: expected one of {sorted(_DTYPES)}, got {meta['dtype']!r}")
        shape = meta["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise _fail(where, f"arrays.{aname}.shape: expected a list of non-negative integers, got {shape!r}")
        if not isinstance(meta["sha256"], str) or not _SHA.fullmatch(meta["sha256"]):
            raise _fail(where, f"arrays.{aname}.sha256: expected 64 hex digits")
    layer = m["layer"]
    if (not isinstance(layer, dict) or set(layer) != {"class_name", "config", "semantics", "weights"}
            or layer["class_name"] not in ("LSTM", "Bidirectional") or not isinstance(layer["config"], dict)
            or layer["semantics"] not in ("keras2", "keras3") or not isinstance(layer["weights"], list)):
        raise _fail(where, "layer: expected {class_name: LSTM|Bidirectional, config, semantics, weights}")
    names = m["output_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _fail(where, "output_names: expected a non-empty list of names")
    calls = m["calls"]
    if not isinstance(calls, list) or not calls:
        raise _fail(where, "calls: expected a non-empty list")
    inputs, expected = m["inputs"], m["expected"]
    if not isinstance(inputs, dict) or set(inputs) != {"x", "mask"}:
        raise _fail(where, "inputs: expected {x, mask}")
    if not isinstance(expected, dict) or set(expected) != set(names):
        raise _fail(where, f"expected: expected the outputs {names}")
    stacked = [inputs["x"], *expected.values()] + ([inputs["mask"]] if inputs["mask"] is not None else [])
    referenced = list(layer["weights"]) + stacked
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or set(call) != {"reset_before", "initial_state"} or not isinstance(
                call["reset_before"], bool):
            raise _fail(where, f"calls[{k}]: expected {{reset_before: bool, initial_state: null or names}}")
        init = call["initial_state"]
        if init is not None and not isinstance(init, list):
            raise _fail(where, f"calls[{k}].initial_state: expected null or a list of array names")
        referenced += list(init or [])
    missing = sorted({repr(r) for r in referenced if not isinstance(r, str) or r not in arrays})
    if missing:
        raise _fail(where, f"references arrays not listed in 'arrays': [{', '.join(missing)}]")
    for ref in stacked:
        shape = arrays[ref]["shape"]
        if not shape or shape[0] != len(calls):
            raise _fail(where, f"arrays.{ref}: expected one entry per call ({len(calls)}) on the first axis, "
                               f"shape {shape}")
    dev = m["deviation"]
    if dev is not None and (not isinstance(dev, dict) or set(dev) != {"name", "quirk", "reason"}):
        raise _fail(where, "deviation: expected null or {name, quirk, reason}")


def _parse_npy(data: bytes, where: str, meta: dict[str, Any]) -> np.ndarray:
    """An array from ``.npy`` bytes: header parsed without allocating, then checked against the manifest."""
    f = io.BytesIO(data)
    shape, fortran, dtype = read_npy_header(f, where, versions=((1, 0), (2, 0)), max_header=10000)
    if dtype.hasobject:
        raise FixtureIntegrityError(f"{where}: object (pickled) array refused")
    if any(d < 0 for d in shape):
        raise CorruptFileError(f"{where}: negative dimension in shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    if declared > MAX_ARRAY_BYTES:
        raise ResourceLimitError(f"{where}: header declares {declared} bytes, over the limit of {MAX_ARRAY_BYTES}")
    if dtype.str != meta["dtype"]:
        raise DTypeMismatchError(f"{where}: dtype {dtype.str}, the manifest says {meta['dtype']}")
    if fortran and len(shape) > 1:
        raise ShapeMismatchError(f"{where}: Fortran-order array; fixtures are C-order")
    if list(shape) != meta["shape"]:
        raise ShapeMismatchError(f"{where}: shape {list(shape)}, the manifest says {meta['shape']}")
    body = data[f.tell():]
    if len(body) != declared:
        raise CorruptFileError(f"{where}: payload has {len(body)} bytes, header implies {declared}")
    if _sha(body) != meta["sha256"]:
        raise FixtureIntegrityError(
            f"{where}: sha256 mismatch (manifest {meta['sha256'][:12]}…, data {_sha(body)[:12]}…)"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def read_fixture(manifest_path: PathLike) -> Fixture:
    """Read and integrity-check one fixture from its manifest path (``<dir>/<id>.json``)."""
    manifest_path = Path(manifest_path)
    where = repr(str(manifest_path))
    file_id = manifest_path.name[: -len(".json")] if manifest_path.name.endswith(".json") else manifest_path.name
    with open_local_file(manifest_path) as f:
        data = read_bounded(f, limits.MAX_JSON_BYTES, where)
    try:
        m = parse_json(data, where)
    except BilstmRefError as e:
        raise FixtureIntegrityError(str(e)) from None
    _validate_manifest(m, where, file_id)
    payload_path = manifest_path.parent / m["payload"]["file"]
    pwhere = repr(str(payload_path))
    if payload_path.is_symlink():
        raise FixtureIntegrityError(f"{pwhere}: is a symbolic link; fixtures are regular files")
    if not payload_path.exists():
        raise FixtureIntegrityError(f"{pwhere}: missing payload named by {where}")
    with open_local_file(payload_path) as f:
        raw = read_bounded(f, limits.MAX_MEMBER_BYTES, pwhere)
        if len(raw) != m["payload"]["bytes"] or _sha(raw) != m["payload"]["sha256"]:
            raise FixtureIntegrityError(
                f"{pwhere}: sha256 mismatch (manifest {m['payload']['sha256'][:12]}…, file {_sha(raw)[:12]}…, "
                f"{len(raw)} bytes, manifest says {m['payload']['bytes']})"
            )
        z = SafeZip(io.BytesIO(raw), str(payload_path))
        members = set(z.names)
        wanted = {f"{n}.npy" for n in m["arrays"]}
        if members != wanted:
            raise FixtureIntegrityError(
                f"{pwhere}: members differ from the manifest: missing {sorted(wanted - members)}, "
                f"extra {sorted(members - wanted)}"
            )
        arrays = {
            name: _parse_npy(z.read(f"{name}.npy", MAX_ARRAY_BYTES + 20000), f"{pwhere} member '{name}.npy'", meta)
            for name, meta in m["arrays"].items()
        }
    layer = m["layer"]
    x = arrays[m["inputs"]["x"]]
    mask = arrays[m["inputs"]["mask"]] if m["inputs"]["mask"] is not None else None
    calls = tuple(
        Call(
            x=x[k],
            mask=None if mask is None else mask[k],
            initial_state=tuple(arrays[s] for s in c["initial_state"]) if c["initial_state"] else None,
            expected={name: arrays[m["expected"][name]][k] for name in m["output_names"]},
            reset_before=c["reset_before"],
        )
        for k, c in enumerate(m["calls"])
    )
    spec = LayerSpec(
        layer["class_name"], layer["config"], tuple(arrays[w] for w in layer["weights"]),
        {"source": f"fixture {m['id']}", "semantics": layer["semantics"]},
    )
    _check_output_names(spec, tuple(m["output_names"]), where)
    tol = m["tolerance"]
    return Fixture(m["id"], spec, calls, tuple(m["output_names"]), Tolerance(tol["atol"], tol["rtol"]),
                   tol["policy"], m["flags"], m["provenance"], m["deviation"])


def _check_output_names(spec: LayerSpec, names: tuple[str, ...], where: str) -> None:
    """The recorded outputs must be the ones the layer's config returns (return_state, merge_mode=None)."""
    cfg = spec.config
    inner = cfg.get("layer", {}).get("config") if spec.class_name == "Bidirectional" and isinstance(
        cfg.get("layer"), dict) else cfg
    if not isinstance(inner, dict):
        return  # building the layer reports the malformed config
    states = 2 if spec.class_name == "LSTM" else 4
    n = (2 if spec.class_name == "Bidirectional" and cfg.get("merge_mode", "concat") is None else 1) + (
        states if inner.get("return_state") is True else 0)
    want = output_names(spec, n)
    if names != want:
        raise _fail(where, f"output_names: the layer's config returns {list(want)}, the manifest records {list(names)}")


def _referenced_payload(manifest: Path) -> Optional[str]:
    """The payload file a manifest names, read leniently (scan only; read_fixture validates)."""
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        name = m["payload"]["file"]
        return name if isinstance(name, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclasses.dataclass
class DirectoryScan:
    manifests: list[Path]
    problems: list[FixtureResult]  # incomplete fixtures (payload without manifest)
    warnings: list[str]  # stale temps, superseded payloads


def scan(directory: PathLike) -> DirectoryScan:
    """The fixtures in ``directory`` and what is wrong around them, without reading payloads."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FixtureIntegrityError(f"{str(directory)!r}: not a directory of fixtures")
    manifests = sorted((p for p in directory.glob("*.json") if not p.name.startswith(".")), key=lambda p: p.name[:-5])
    ids = {p.name[:-5] for p in manifests}
    problems, warnings = [], []
    for p in sorted(directory.glob("*.npz")):
        m = re.fullmatch(r"(.+)\.[0-9a-f]{12}\.npz", p.name)
        fid = m.group(1) if m else p.stem
        if fid not in ids:
            problems.append(FixtureResult(
                fid, "integrity", [], str(p),
                f"{str(p)!r}: no manifest {fid}.json: incomplete or interrupted fixture",
            ))
        elif p.name != _referenced_payload(directory / f"{fid}.json"):
            warnings.append(f"{p.name}: payload not referenced by {fid}.json (superseded by an interrupted "
                            "--force run; removed by the next generate)")
    for p in sorted(directory.glob(f"{TMP_PREFIX}*")):
        warnings.append(f"{p.name}: stale temp file from an interrupted run (removed by the next generate)")
    return DirectoryScan(manifests, problems, warnings)


# --- verifying ----------------------------------------------------------------------------------
def _run(fixture: Fixture, impl: Any) -> list[dict[str, np.ndarray]]:
    return run_calls(fixture.calls, fixture.output_names, impl)


def _half_representable(policy: str, value: np.ndarray) -> bool:
    """Whether ``value`` holds only numbers of the half format Keras returns under ``policy``."""
    a = np.asarray(value, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if "float16" in policy and "bfloat16" not in policy:
            return bool(np.array_equal(a.astype(np.float16).astype(np.float64), a, equal_nan=True))
        if "bfloat16" in policy:
            # Judged from the bits, never with the rounding code under test: a bfloat16 value is a
            # float32 whose low 16 bits are zero (or a non-finite value).
            f32 = a.astype(np.float32)
            low = np.ascontiguousarray(f32).view(np.uint32) & np.uint32(0xFFFF)
            return bool(np.array_equal(f32.astype(np.float64), a, equal_nan=True)
                        and np.all((low == 0) | ~np.isfinite(f32)))
    return True


def _compare(fixture: Fixture, actual: list[dict[str, np.ndarray]], tol: Tolerance) -> list[OutputResult]:
    out = []
    for k, (call, got) in enumerate(zip(fixture.calls, actual, strict=True)):
        for name in fixture.output_names:
            label = call_label(fixture.calls, k, name)
            result = compare(label, call.expected[name], got[name], tol)
            policy = fixture.tolerance_policy
            if result.ok and policy in HALF_OUTPUT_POLICIES and not _half_representable(policy, got[name]):
                # Keras returns half-precision outputs: an answer within tolerance but not rounded
                # to that format is a real difference the tolerance alone would hide.
                result = dataclasses.replace(
                    result, ok=False, note=f"not rounded to {policy.removeprefix('mixed_')} as Keras's outputs are"
                )
            out.append(result)
    return out


def verify_fixture(fixture: Fixture, factory: Optional[Factory] = None, dtype: Any = None,
                   tol: Any = None) -> FixtureResult:
    """Run the reference (or ``factory``'s implementation) on ``fixture`` and judge every output.

    A mismatch on a fixture recorded under a known Keras deviation counts as that deviation
    only when the reference with the deviation's quirk switched on reproduces Keras's answer.
    """
    if isinstance(tol, TolerancePolicy):
        base = dataclasses.replace(fixture.tolerance, ulp_dtype=_ULP_DTYPES.get(fixture.tolerance_policy, "float32"))
        tol = tol.with_base(base)
    tol = tol or fixture.tolerance
    try:
        impl = factory(fixture.spec) if factory else reference_factory(fixture.spec, dtype=dtype)
        actual = _run(fixture, impl)
        results = _compare(fixture, actual, tol)
        if all(r.ok for r in results):
            if fixture.deviation:
                # Keras answered under a documented bug; matching that answer means computing the bug.
                return FixtureResult(
                    fixture.id, UNEXPECTED_PASS, results, deviation=fixture.deviation["name"], flags=fixture.flags,
                    message=f"recorded under the known Keras deviation {fixture.deviation['name']}, yet the "
                            "implementation reproduces Keras's answer: it computes the bug, not the documented "
                            "semantics (or Keras was re-recorded without the bug)")
            return FixtureResult(fixture.id, "pass", results, flags=fixture.flags)
        if fixture.deviation:
            # Keras is under a documented bug here. The mismatch is that deviation only when Keras
            # equals the reference with the bug switched on AND the implementation computes the
            # documented semantics (equals the reference without it); anything else fails.
            quirky = build(fixture.spec, dtype=dtype, quirks=(fixture.deviation["quirk"],))
            keras_is_the_bug = all(r.ok for r in _compare(fixture, _run(fixture, quirky), tol))
            follows_semantics = factory is None or all(
                r.ok for r in _compare(_expecting(fixture, _run(fixture, build(fixture.spec, dtype=dtype))), actual,
                                       tol))
            if keras_is_the_bug and follows_semantics:
                return FixtureResult(fixture.id, "known-deviation", results, message=fixture.deviation["reason"],
                                     deviation=fixture.deviation["name"], flags=fixture.flags)
    except Exception as e:  # a crash (the implementation's, or the re-check's) is that fixture's verdict
        message, trace = crash_report(e)
        return FixtureResult(fixture.id, "error", [], message=message, flags=fixture.flags, traceback=trace)
    return FixtureResult(fixture.id, "fail", results, flags=fixture.flags)


def _expecting(fixture: Fixture, outputs: list[dict[str, np.ndarray]]) -> Fixture:
    """``fixture`` with other expected outputs (e.g. the reference's), same inputs."""
    calls = tuple(dataclasses.replace(c, expected=o) for c, o in zip(fixture.calls, outputs, strict=True))
    return dataclasses.replace(fixture, calls=calls)


@dataclasses.dataclass
class Drift:
    """How one fixture's recorded answers differ between two fixture sets."""

    id: str
    outputs: list[OutputResult]
    note: str = ""


def _same_call_inputs(a: Call, b: Call) -> bool:
    def same(u: Any, v: Any) -> bool:
        if u is None or v is None:
            return u is None and v is None
        return bool(np.array_equal(u, v))

    states_a, states_b = a.initial_state or (), b.initial_state or ()
    return (same(a.x, b.x) and same(a.mask, b.mask) and a.reset_before == b.reset_before
            and len(states_a) == len(states_b) and all(same(u, v) for u, v in zip(states_a, states_b, strict=True))
            and (a.initial_state is None) == (b.initial_state is None))


def diff_fixtures(old: PathLike, new: PathLike, tol: Optional[Tolerance] = None) -> tuple[list[Drift], list[str]]:
    """Compare the recorded answers of two fixture directories (e.g. before and after a Keras upgrade).

    Returns (drifted fixtures with per-output differences, notes on fixtures present on one side
    only or with different inputs). Inputs must be identical for answers to be comparable.
    """
    a, b = scan(old), scan(new)
    ida = {p.name[:-5]: p for p in a.manifests}
    idb = {p.name[:-5]: p for p in b.manifests}
    notes = [f"{i}: only in {str(old)!r}" for i in sorted(set(ida) - set(idb))]
    notes += [f"{i}: only in {str(new)!r}" for i in sorted(set(idb) - set(ida))]
    drifts = []
    for fid in sorted(set(ida) & set(idb)):
        fa, fb = read_fixture(ida[fid]), read_fixture(idb[fid])
        same_inputs = (
            len(fa.calls) == len(fb.calls) and len(fa.spec.weights) == len(fb.spec.weights)
            and fa.spec.config == fb.spec.config
            and all(_same_call_inputs(ca, cb) for ca, cb in zip(fa.calls, fb.calls, strict=True))
            and all(np.array_equal(wa, wb) for wa, wb in zip(fa.spec.weights, fb.spec.weights, strict=True))
        )
        if not same_inputs or fa.output_names != fb.output_names:
            notes.append(f"{fid}: inputs or outputs differ; answers not comparable")
            continue
        t = tol or fa.tolerance
        results = [
            compare(call_label(fa.calls, k, name), ca.expected[name], cb.expected[name], Tolerance(0.0, 0.0))
            for k, (ca, cb) in enumerate(zip(fa.calls, fb.calls, strict=True)) for name in fa.output_names
        ]
        changed = [r for r in results if r.max_abs > 0 or r.nan_mismatch]
        if changed:
            beyond = [r for r in results if not compare(r.name, np.zeros(1), np.array([r.max_abs]), t).ok]
            drifts.append(Drift(fid, changed, "beyond tolerance" if beyond else "within tolerance"))
    return drifts, notes


def provenance(keras_versions: dict[str, str], seed: Optional[int], code_path: str) -> dict[str, Any]:
    """What generated a fixture: versions, machine, seed, Keras code path, time."""
    from . import __version__

    return {
        "bilstm_ref": __version__,
        **{k: v for k, v in keras_versions.items()},
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": "CPU",
        "seed": seed,
        "code_path": code_path,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
