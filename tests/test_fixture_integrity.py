"""Fixture integrity: every tampering case of the integrity checks (docs/fixtures.md#integrity-checks-on-read), without Keras.

A valid fixture is written first (a matrix case, with the reference's own answers, cast to
float32 as Keras's would be, standing in for Keras's: these tests are about the container, not
the numbers), then mutated. Payload mutations are re-sealed (the manifest's payload name, size
and sha256 updated) whenever the row is about a check *behind* the file-level sha256, so that
the check under test is the one that fires.

Every failure must be the stated ``BilstmRefError`` subclass, and its message must name the file
(and the member or manifest key) and say what was expected and what was found.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import re
import shutil
import struct
import tracemalloc
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.errors import (
    BilstmRefError,
    CorruptFileError,
    DTypeMismatchError,
    FixtureIntegrityError,
    ResourceLimitError,
    ShapeMismatchError,
)
from bilstm_ref.fixtures import SCHEMA_VERSION, Fixture, read_fixture, scan, verify_fixture, write_fixture
from bilstm_ref.loaders import limits
from bilstm_ref.fixtures.record import fixture_for_case
from bilstm_ref.conformance.judge import run_impl

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "fixtures"
#: Stateful, masked, with initial states and return_state: every kind of array a fixture holds
#: (weights, x, a bool mask, initial states, several outputs, stacked over four calls).
CASE_ID = "bidi-concat-seq-state-mask_right-init-stateful"


# --- builders -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def source_fixture() -> Fixture:
    """The fixture of CASE_ID with the reference's answers (float32, like Keras's) for Keras's."""
    case = matrix.by_id()[CASE_ID]
    outputs = [{k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
               for out in run_impl(case, case.reference())]
    return fixture_for_case(case, outputs, {"keras": "test", "backend": "none"})


@dataclasses.dataclass
class Placed:
    """One fixture written into a directory of its own."""

    dir: Path
    id: str

    @property
    def manifest_path(self) -> Path:
        return self.dir / f"{self.id}.json"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())

    @property
    def payload(self) -> Path:
        return self.dir / self.manifest()["payload"]["file"]

    def members(self) -> dict[str, bytes]:
        """The payload's members (name -> bytes), in archive order."""
        with zipfile.ZipFile(self.payload) as z:
            return {i.filename: z.read(i) for i in z.infolist()}

    def write_manifest(self, m: Any) -> None:
        self.manifest_path.write_text(json.dumps(m, indent=1, sort_keys=True))

    def reseal(self, payload: bytes, edit: Optional[Callable[[dict[str, Any]], None]] = None) -> Path:
        """Replace the payload by ``payload`` and update the manifest so the *file-level* check passes
        (content-addressed name, size, sha256); returns the new payload's path."""
        m = self.manifest()
        digest = hashlib.sha256(payload).hexdigest()
        (self.dir / m["payload"]["file"]).unlink()
        name = f"{self.id}.{digest[:12]}.npz"
        (self.dir / name).write_bytes(payload)
        m["payload"] = {"file": name, "sha256": digest, "bytes": len(payload)}
        if edit is not None:
            edit(m)
        self.write_manifest(m)
        return self.dir / name

    def replace_members(self, **changes: Optional[bytes]) -> Path:
        """Re-seal with members changed (``name_npy=bytes``; None drops the member)."""
        members = self.members()
        for key, data in changes.items():
            name = key.replace("__", ".")
            if data is None:
                members.pop(name)
            else:
                members[name] = data
        return self.reseal(zip_bytes(list(members.items())))


@pytest.fixture
def placed(tmp_path: Path) -> Placed:
    d = tmp_path / "fx"
    d.mkdir()
    assert write_fixture(d, source_fixture()) == "written"
    p = Placed(d, CASE_ID)
    read_fixture(p.manifest_path)  # the unmutated fixture is valid
    return p


def committed_copy(tmp_path: Path, fid: str = CASE_ID) -> Placed:
    """A Keras-recorded fixture from fixtures/, copied (the committed files are never touched)."""
    src = COMMITTED / f"{fid}.json"
    if not src.exists():
        pytest.skip(f"committed fixture {src} is absent")
    d = tmp_path / "committed"
    d.mkdir()
    shutil.copy2(src, d / src.name)
    payload = json.loads(src.read_text())["payload"]["file"]
    shutil.copy2(COMMITTED / payload, d / payload)
    return Placed(d, fid)


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def npy_raw(header: str, body: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A hand-made ``.npy``: magic, version, header (padded as numpy pads it), body."""
    h = header.encode("latin1")
    size = 4 if version[0] >= 2 else 2
    pad = -(6 + 2 + size + len(h) + 1) % 64
    h = h + b" " * pad + b"\n"
    fmt = "<I" if size == 4 else "<H"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(h)) + h + body


def zip_bytes(members: list[tuple[str, bytes]], deflate: tuple[str, ...] = ()) -> bytes:
    """A zip of ``members`` (duplicates allowed); STORED unless named in ``deflate``."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names: wanted here
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
                z.writestr(info, data)
    return buf.getvalue()


def member_array(p: Placed, name: str) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(p.members()[f"{name}.npy"]), allow_pickle=False)


def named(path: Path) -> str:
    """Regex for the file as messages name it (``repr`` of the path)."""
    return re.escape(repr(str(path)))


def member(payload: Path, name: str) -> str:
    return re.escape(f"{str(payload)!r} member '{name}'")


def verify_cli(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["fixtures", "verify", str(directory)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --- C1: manifest missing -----------------------------------------------------------------------
def test_c1_payload_without_manifest_is_an_incomplete_fixture(placed: Placed, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    payload = placed.payload
    placed.manifest_path.unlink()
    found = scan(placed.dir)
    assert found.manifests == []
    assert len(found.problems) == 1
    problem = found.problems[0]
    assert (problem.id, problem.status, problem.file) == (CASE_ID, "integrity", str(payload))
    assert re.fullmatch(named(payload) + re.escape(f": no manifest {CASE_ID}.json: incomplete or interrupted fixture"),
                        problem.message), problem.message
    rc, out, _ = verify_cli(placed.dir, capsys)
    assert rc == 1
    assert payload.name in out and "incomplete or interrupted fixture" in out
    assert "integrity failures: 1" in out


def test_c1_an_unrecognised_npz_without_manifest_is_reported_too(placed: Placed) -> None:
    stray = placed.dir / "stray.npz"
    shutil.copy(placed.payload, stray)
    problems = scan(placed.dir).problems
    assert [(p.id, p.file) for p in problems] == [("stray", str(stray))]
    assert "incomplete or interrupted fixture" in problems[0].message


def test_manifest_without_payload_names_both_files(placed: Placed) -> None:
    payload = placed.payload
    payload.unlink()
    with pytest.raises(FixtureIntegrityError,
                       match=named(payload) + ": missing payload named by " + named(placed.manifest_path)):
        read_fixture(placed.manifest_path)


# --- C2: sha256 mismatch ------------------------------------------------------------------------
def test_c2_one_flipped_payload_byte_fails_the_file_sha256(placed: Placed, capsys: pytest.CaptureFixture[str]) -> None:
    payload = placed.payload
    m = placed.manifest()
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(FixtureIntegrityError, match=(
            named(payload) + re.escape(f": sha256 mismatch (manifest {m['payload']['sha256'][:12]}…, file {actual[:12]}…, "
                                       f"{len(data)} bytes, manifest says {m['payload']['bytes']})"))):
        read_fixture(placed.manifest_path)
    rc, out, _ = verify_cli(placed.dir, capsys)
    assert rc == 1
    assert payload.name in out and "sha256 mismatch" in out and "FixtureIntegrityError" in out


def test_c2_on_a_committed_keras_fixture_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = committed_copy(tmp_path)
    rc, out, _ = verify_cli(p.dir, capsys)
    assert rc == 0 and "passed: 1" in out
    data = bytearray(p.payload.read_bytes())
    data[-1] ^= 0xFF
    p.payload.write_bytes(bytes(data))
    rc, out, _ = verify_cli(p.dir, capsys)
    assert rc == 1
    assert f"{str(p.payload)!r}: sha256 mismatch" in out and "integrity failures: 1" in out


def test_c2_a_truncated_payload_fails_the_file_sha256_and_size(placed: Placed) -> None:
    payload = placed.payload
    size = payload.stat().st_size
    payload.write_bytes(payload.read_bytes()[: size // 2])
    with pytest.raises(FixtureIntegrityError,
                       match=named(payload) + r": sha256 mismatch .*" + re.escape(f"{size // 2} bytes, manifest says {size})")):
        read_fixture(placed.manifest_path)


def test_c2_a_member_changed_behind_an_updated_file_sha256_fails_the_array_sha256(placed: Placed) -> None:
    """The file hash is re-sealed; the archive is valid (CRCs right): only the per-array sha256 can tell."""
    out = member_array(placed, "out.output").copy()
    out.flat[7] = np.nextafter(out.flat[7], np.float32(np.inf))  # one ulp: a plausible "small" tamper
    meta = placed.manifest()["arrays"]["out.output"]
    payload = placed.replace_members(out__output__npy=npy(out))
    actual = hashlib.sha256(out.tobytes()).hexdigest()
    with pytest.raises(FixtureIntegrityError, match=member(payload, "out.output.npy") + re.escape(
            f": sha256 mismatch (manifest {meta['sha256'][:12]}…, data {actual[:12]}…)")):
        read_fixture(placed.manifest_path)


def test_c2_a_raw_byte_flip_behind_an_updated_file_sha256_is_still_caught(placed: Placed) -> None:
    """Flipping a data byte in place (file sha re-sealed) trips the zip CRC before the array sha256."""
    raw = bytearray(placed.payload.read_bytes())
    x = placed.members()["x.npy"]
    at = bytes(raw).find(x)
    assert at > 0
    raw[at + len(x) - 1] ^= 0x01
    payload = placed.reseal(bytes(raw))
    with pytest.raises(CorruptFileError, match=member(payload, "x.npy") + r": cannot be read \(Bad CRC-32"):
        read_fixture(placed.manifest_path)


# --- C3: members != manifest arrays -------------------------------------------------------------
def test_c3_an_extra_member_is_listed(placed: Placed) -> None:
    payload = placed.replace_members(evil__npy=npy(np.zeros(3, np.float32)))
    with pytest.raises(FixtureIntegrityError, match=named(payload) + re.escape(
            ": members differ from the manifest: missing [], extra ['evil.npy']")):
        read_fixture(placed.manifest_path)


def test_c3_a_missing_member_is_listed(placed: Placed) -> None:
    payload = placed.replace_members(mask__npy=None)
    with pytest.raises(FixtureIntegrityError, match=named(payload) + re.escape(
            ": members differ from the manifest: missing ['mask.npy'], extra []")):
        read_fixture(placed.manifest_path)


def test_c3_a_renamed_member_is_listed_both_ways(placed: Placed) -> None:
    members = placed.members()
    members = {("y.npy" if k == "x.npy" else k): v for k, v in members.items()}
    payload = placed.reseal(zip_bytes(list(members.items())))
    with pytest.raises(FixtureIntegrityError, match=named(payload) + re.escape(
            ": members differ from the manifest: missing ['x.npy'], extra ['y.npy']")):
        read_fixture(placed.manifest_path)


def test_c3_a_path_traversal_member_is_listed_never_extracted(placed: Placed, tmp_path: Path) -> None:
    members = list(placed.members().items()) + [("../escaped.npy", npy(np.zeros(2, np.float32)))]
    payload = placed.reseal(zip_bytes(members))
    with pytest.raises(FixtureIntegrityError, match=named(payload) + re.escape(
            ": members differ from the manifest: missing [], extra ['../escaped.npy']")):
        read_fixture(placed.manifest_path)
    assert not (tmp_path / "escaped.npy").exists()


def test_c3_a_duplicated_member_name_is_refused(placed: Placed) -> None:
    members = list(placed.members().items())
    members.append(("x.npy", npy(np.zeros((4, 3, 5, 3), np.float32))))
    payload = placed.reseal(zip_bytes(members))
    with pytest.raises(CorruptFileError, match=named(payload) + re.escape(": archive member 'x.npy' appears 2 times")):
        read_fixture(placed.manifest_path)


# --- C4: object arrays (pickles) ----------------------------------------------------------------
class _Marker:
    """Unpickling this object creates the file at ``path`` (the code-execution gadget)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def _pickled_npy(marker: Path) -> bytes:
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = _Marker(str(marker)), None
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_c4_the_pickle_gadget_is_live(tmp_path: Path) -> None:
    """Control: numpy with allow_pickle=True does run it, so the refusal below is meaningful."""
    control = tmp_path / "control-marker"
    loaded = np.load(io.BytesIO(_pickled_npy(control)), allow_pickle=True)
    loaded[0].close()
    assert control.exists()


def test_c4_an_object_member_is_refused_without_unpickling(placed: Placed, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-marker"
    payload = placed.replace_members(out__output__npy=_pickled_npy(marker))
    assert placed.manifest()["arrays"]["out.output"]["dtype"] == "<f4"  # the manifest itself is valid
    with pytest.raises(FixtureIntegrityError,
                       match=member(payload, "out.output.npy") + re.escape(": object (pickled) array refused")):
        read_fixture(placed.manifest_path)
    assert not marker.exists()


def test_c4_a_pickle_as_the_whole_payload_is_not_loaded(placed: Placed, tmp_path: Path) -> None:
    marker = tmp_path / "pwned-marker"
    payload = placed.reseal(_pickled_npy(marker))
    with pytest.raises(CorruptFileError, match=named(payload) + r" is not a .keras \(zip\) archive: expected the zip "
                                                                r"signature at offset 0, found unrecognized bytes"):
        read_fixture(placed.manifest_path)
    assert not marker.exists()


# --- C5: shape bomb in a .npy header ------------------------------------------------------------
def test_c5_a_header_declaring_a_terabyte_is_refused_from_the_header(placed: Placed, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % (1 << 40)
    payload = placed.replace_members(weight2__npy=npy_raw(header, b"\0" * 64))
    # Shrink the file-read caps so the peak measures the header handling, not read_fixture's
    # up-front read buffers (see test_reading_a_small_fixture_reads_only_its_size).
    monkeypatch.setattr(limits, "MAX_MEMBER_BYTES", 1024**2)
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 1024**2)
    tracemalloc.start()
    try:
        with pytest.raises(ResourceLimitError, match=member(payload, "weight2.npy") + re.escape(
                f": header declares {4 << 40} bytes, over the limit of {256 * 1024**2}")):
            read_fixture(placed.manifest_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2, f"peak {peak} bytes while refusing a shape bomb"


def test_reading_a_small_fixture_reads_only_its_size(placed: Placed, monkeypatch: pytest.MonkeyPatch) -> None:
    import bilstm_ref.fixtures.store as fixtures_module

    requested: list[tuple[str, int]] = []
    real = fixtures_module.open_local_file

    @contextlib.contextmanager
    def recording(path: Any) -> Iterator[Any]:
        with real(path) as f:
            class Reader:
                def read(self, n: int = -1) -> bytes:
                    requested.append((Path(path).name, n))
                    return f.read(n)

                def __getattr__(self, attr: str) -> Any:
                    return getattr(f, attr)

            yield Reader()

    monkeypatch.setattr(fixtures_module, "open_local_file", recording)
    read_fixture(placed.manifest_path)
    assert requested and all(n < 0 or n <= limits.MAX_JSON_BYTES + 1 for _, n in requested), requested


def test_c5_a_manifest_that_agrees_with_the_bomb_is_refused_too(placed: Placed) -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % (1 << 40)
    members = placed.members()
    members["weight2.npy"] = npy_raw(header, b"\0" * 64)

    def edit(m: dict[str, Any]) -> None:
        m["arrays"]["weight2"]["shape"] = [1 << 40]

    payload = placed.reseal(zip_bytes(list(members.items())), edit)
    with pytest.raises(ResourceLimitError, match=member(payload, "weight2.npy") + ": header declares"):
        read_fixture(placed.manifest_path)


# --- C6: zip bomb --------------------------------------------------------------------------------
def test_c6_a_deflated_zero_filled_member_trips_the_ratio_check(placed: Placed, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(limits, "RATIO_FLOOR_BYTES", 4096)
    bomb = npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % (1 << 18), b"\0" * (4 << 18))
    members = placed.members()
    members["x.npy"] = bomb
    payload = placed.reseal(zip_bytes(list(members.items()), deflate=("x.npy",)))
    with pytest.raises(ResourceLimitError, match=member(payload, "x.npy") + r": compression ratio \d+ exceeds the "
                                                 r"limit of 100 \(\d+ bytes from \d+\); refusing a possible zip bomb"):
        read_fixture(placed.manifest_path)


def test_c6_control_an_honestly_deflated_member_is_read(placed: Placed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ratio check, not the compression method, is what refuses the bomb above."""
    monkeypatch.setattr(limits, "RATIO_FLOOR_BYTES", 4096)
    placed.reseal(zip_bytes(list(placed.members().items()), deflate=("x.npy", "out.output.npy")))
    assert verify_fixture(read_fixture(placed.manifest_path)).status == "pass"


# --- C7: malformed .npy headers -----------------------------------------------------------------
_HEADERS = {
    "header-over-10000-chars": ("{'descr': '<f4', 'fortran_order': False, 'shape': (16,), }" + " " * 12000, (1, 0),
                                r"bad \.npy header \(Header info length \(\d+\) is large"),
    "header-over-10000-chars-v2": ("{'descr': '<f4', 'fortran_order': False, 'shape': (16,), }" + " " * 70000,
                                   (2, 0), r"bad \.npy header \(Header info length \(\d+\) is large"),
    "python-expression": ("{'descr': '<f4', 'fortran_order': False, 'shape': (__import__('os').getpid(),), }",
                          (1, 0), r"bad \.npy header \("),
    "arithmetic": ("{'descr': '<f4', 'fortran_order': False, 'shape': (8+8,), }", (1, 0), r"bad \.npy header \("),
    "negative-dim": ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", (1, 0),
                     re.escape("negative dimension in shape (-1,)")),
    "negative-dim-2d": ("{'descr': '<f4', 'fortran_order': False, 'shape': (-4, -4), }", (1, 0),
                        re.escape("negative dimension in shape (-4, -4)")),
    "not-a-dict": ("[1, 2, 3]", (1, 0), r"bad \.npy header \("),
    "missing-keys": ("{'descr': '<f4'}", (1, 0), r"bad \.npy header \("),
    "format-version-3": ("{'descr': '<f4', 'fortran_order': False, 'shape': (16,), }", (3, 0),
                         re.escape("bad .npy header (unsupported .npy format version (3, 0))")),
}


@pytest.mark.parametrize("kind", sorted(_HEADERS))
def test_c7_malformed_npy_headers_are_corrupt_files(placed: Placed, kind: str) -> None:
    header, version, pattern = _HEADERS[kind]
    payload = placed.replace_members(weight2__npy=npy_raw(header, np.zeros(16, "<f4").tobytes(), version))
    with pytest.raises(CorruptFileError, match=member(payload, "weight2.npy") + ": " + pattern):
        read_fixture(placed.manifest_path)


def test_c7_magic_only_member(placed: Placed) -> None:
    payload = placed.replace_members(weight2__npy=b"\x93NUMPY")
    with pytest.raises(CorruptFileError, match=member(payload, "weight2.npy") + r": bad \.npy header"):
        read_fixture(placed.manifest_path)


# --- C8: body size != header ----------------------------------------------------------------------
@pytest.mark.parametrize("delta", [-4, -1, +1, +8], ids=["truncated-4", "truncated-1", "garbage-1", "garbage-8"])
def test_c8_body_size_must_equal_what_the_header_implies(placed: Placed, delta: int) -> None:
    w = member_array(placed, "weight0")
    data = npy(w)
    data = data[:delta] if delta < 0 else data + b"GARBAGE!"[:delta]
    payload = placed.replace_members(weight0__npy=data)
    with pytest.raises(CorruptFileError, match=member(payload, "weight0.npy") + re.escape(
            f": payload has {w.nbytes + delta} bytes, header implies {w.nbytes}")):
        read_fixture(placed.manifest_path)


def test_c8_a_truncated_archive_behind_an_updated_sha256_is_corrupt(placed: Placed) -> None:
    raw = placed.payload.read_bytes()
    payload = placed.reseal(raw[: len(raw) - 40])  # cuts into the central directory
    with pytest.raises(CorruptFileError, match=named(payload) + r": damaged zip archive \("):
        read_fixture(placed.manifest_path)


def test_c8_trailing_bytes_after_the_archive_are_caught_by_the_file_sha256(placed: Placed) -> None:
    payload = placed.payload
    payload.write_bytes(payload.read_bytes() + b"\0trailing")
    with pytest.raises(FixtureIntegrityError, match=named(payload) + ": sha256 mismatch"):
        read_fixture(placed.manifest_path)


# --- C9: dtype / order / shape vs the manifest ----------------------------------------------------
def _c9_variants(w: np.ndarray) -> dict[str, tuple[bytes, type, str]]:
    return {
        "big-endian": (npy(w.astype(">f4")), DTypeMismatchError, re.escape(": dtype >f4, the manifest says <f4")),
        "float64": (npy(w.astype("<f8")), DTypeMismatchError, re.escape(": dtype <f8, the manifest says <f4")),
        "float16": (npy(w.astype("<f2")), DTypeMismatchError, re.escape(": dtype <f2, the manifest says <f4")),
        "complex": (npy(w.astype(np.complex64)), DTypeMismatchError, re.escape(": dtype <c8, the manifest says <f4")),
        "structured": (npy(np.zeros(w.shape, dtype=[("a", "<f4")])), DTypeMismatchError,
                       re.escape(": dtype |V4, the manifest says <f4")),
        "int32": (npy(w.astype("<i4")), DTypeMismatchError, re.escape(": dtype <i4, the manifest says <f4")),
        "fortran": (npy(np.asfortranarray(w)), ShapeMismatchError, re.escape(": Fortran-order array; fixtures are C-order")),
        "transposed": (npy(np.ascontiguousarray(w.T)), ShapeMismatchError,
                       re.escape(f": shape {list(w.T.shape)}, the manifest says {list(w.shape)}")),
        "flattened": (npy(w.ravel()), ShapeMismatchError,
                      re.escape(f": shape [{w.size}], the manifest says {list(w.shape)}")),
    }


@pytest.mark.parametrize("kind", ["big-endian", "float64", "float16", "complex", "structured", "int32", "fortran",
                                  "transposed", "flattened"])
def test_c9_member_dtype_order_shape_must_match_the_manifest(placed: Placed, kind: str) -> None:
    w = member_array(placed, "weight0")
    assert w.dtype.str == "<f4" and w.ndim == 2
    data, error, pattern = _c9_variants(w)[kind]
    payload = placed.replace_members(weight0__npy=data)
    assert placed.manifest()["arrays"]["weight0"]["dtype"] == "<f4"  # the manifest stays valid
    with pytest.raises(error, match=member(payload, "weight0.npy") + pattern):
        read_fixture(placed.manifest_path)


def test_c9_a_float_mask_where_the_manifest_says_bool(placed: Placed) -> None:
    mask = member_array(placed, "mask")
    payload = placed.replace_members(mask__npy=npy(mask.astype("<f4")))
    with pytest.raises(DTypeMismatchError, match=member(payload, "mask.npy") + re.escape(
            ": dtype <f4, the manifest says |b1")):
        read_fixture(placed.manifest_path)


def test_c9_the_manifest_cannot_declare_an_unsupported_dtype(placed: Placed) -> None:
    """Changing both sides (member <c8, manifest <c8) stops at the manifest's dtype allowlist."""
    w = member_array(placed, "weight0").astype(np.complex64)
    members = placed.members()
    members["weight0.npy"] = npy(w)

    def edit(m: dict[str, Any]) -> None:
        m["arrays"]["weight0"].update(dtype="<c8", sha256=hashlib.sha256(w.tobytes()).hexdigest())

    placed.reseal(zip_bytes(list(members.items())), edit)
    with pytest.raises(FixtureIntegrityError, match=named(placed.manifest_path) + re.escape(
            ": arrays.weight0.dtype: expected one of ['<f2', '<f4', '<f8', '|b1'], got '<c8'")):
        read_fixture(placed.manifest_path)


# --- C10: strict manifest JSON and schema -------------------------------------------------------
_LIT = "@@LITERAL@@"


def _lit(keys: tuple[Any, ...], literal: str) -> Callable[[dict[str, Any]], str]:
    """Set the value at ``keys`` to a raw JSON ``literal`` (NaN, 1e400, ...) json.dumps cannot write."""
    def edit(m: dict[str, Any]) -> str:
        node = m
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = _LIT
        return json.dumps(m, indent=1).replace(f'"{_LIT}"', literal)
    return edit


def _set(keys: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], str]:
    return _lit(keys, json.dumps(value))


def _delete(keys: tuple[Any, ...]) -> Callable[[dict[str, Any]], str]:
    def edit(m: dict[str, Any]) -> str:
        node = m
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
        return json.dumps(m, indent=1)
    return edit


def _text(fn: Callable[[str], str]) -> Callable[[dict[str, Any]], str]:
    return lambda m: fn(json.dumps(m, indent=1))


_TOL = r"tolerance {k}: expected a finite number in \[0, 1\.0\], got {v}"
_MANIFEST_CASES: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    # strict JSON
    "duplicate-key": (_text(lambda t: t.replace('"schema_version": 1,', '"schema_version": 1, "schema_version": 1,', 1)),
                      re.escape("invalid JSON (duplicate key 'schema_version'")),
    "duplicate-nested-key": (_text(lambda t: t.replace('"atol":', '"atol": 0.5, "atol":', 1)),
                             re.escape("invalid JSON (duplicate key 'atol'")),
    "atol-NaN": (_lit(("tolerance", "atol"), "NaN"), re.escape("invalid JSON (non-standard JSON constant NaN")),
    "atol-Infinity": (_lit(("tolerance", "atol"), "Infinity"),
                      re.escape("invalid JSON (non-standard JSON constant Infinity")),
    "rtol-minus-Infinity": (_lit(("tolerance", "rtol"), "-Infinity"),
                            re.escape("invalid JSON (non-standard JSON constant -Infinity")),
    "atol-1e400": (_lit(("tolerance", "atol"), "1e400"), re.escape("invalid JSON (number 1e400 overflows to inf")),
    "byte-order-mark": (_text(lambda t: "\ufeff" + t), "JSON starts with a UTF-8 byte-order mark"),
    "trailing-data": (_text(lambda t: t + "\n{}"), re.escape("invalid JSON (Extra data")),
    "empty": (_text(lambda t: ""), re.escape("invalid JSON (Expecting value")),
    "a-list": (_text(lambda t: "[" + t + "]"), "manifest: expected a JSON object"),
    # tolerance
    "atol-negative": (_set(("tolerance", "atol"), -1e-3), _TOL.format(k="atol", v=r"-0\.001")),
    "rtol-negative": (_set(("tolerance", "rtol"), -1e-9), _TOL.format(k="rtol", v=r"-1e-09")),
    "atol-1e9": (_set(("tolerance", "atol"), 1e9), _TOL.format(k="atol", v=r"1000000000\.0")),
    "rtol-2": (_set(("tolerance", "rtol"), 2), _TOL.format(k="rtol", v="2")),
    "atol-string": (_set(("tolerance", "atol"), "1e-5"), _TOL.format(k="atol", v="'1e-5'")),
    "atol-bool": (_set(("tolerance", "atol"), True), _TOL.format(k="atol", v="True")),
    "atol-null": (_set(("tolerance", "atol"), None), _TOL.format(k="atol", v="None")),
    "atol-list": (_set(("tolerance", "atol"), [0.1]), _TOL.format(k="atol", v=r"\[0\.1\]")),
    "tolerance-unknown-key": (_set(("tolerance", "skip"), True), r"tolerance: expected \{atol, rtol, policy\}, got"),
    "tolerance-missing-policy": (_delete(("tolerance", "policy")), r"tolerance: expected \{atol, rtol, policy\}, got"),
    "tolerance-not-object": (_set(("tolerance",), 1e-5), r"tolerance: expected \{atol, rtol, policy\}, got 1e-05"),
    "policy-not-string": (_set(("tolerance", "policy"), 32), "tolerance policy: expected a string, got 32"),
    # top level
    "unknown-top-key": (_set(("exec",), "import os"), re.escape("manifest keys: missing [], unknown ['exec']")),
    "missing-top-key": (_delete(("arrays",)), re.escape("manifest keys: missing ['arrays'], unknown []")),
    "kind": (_set(("kind",), "pickle"), "kind: expected 'bilstm_ref.fixture', got 'pickle'"),
    "id-mismatch": (_set(("id",), "other"), re.escape(f"id 'other' does not match the file name ('{CASE_ID}')")),
    # payload entry
    "payload-bytes-negative": (_set(("payload", "bytes"), -1), "payload bytes: expected a non-negative integer, got -1"),
    "payload-bytes-string": (_set(("payload", "bytes"), "11"), "payload bytes: expected a non-negative integer, got '11'"),
    "payload-bytes-float": (_set(("payload", "bytes"), 11.5), r"payload bytes: expected a non-negative integer, got 11\.5"),
    "payload-bytes-bool": (_set(("payload", "bytes"), True), "payload bytes: expected a non-negative integer, got True"),
    "payload-unknown-key": (_set(("payload", "url"), "http://x"), r"payload: expected \{file, sha256, bytes\}"),
    "payload-sha-not-hex": (_set(("payload", "sha256"), "Z" * 64), "payload sha256: expected 64 hex digits matching"),
    "payload-sha-not-the-name": (_set(("payload", "sha256"), "0" * 64), "payload sha256: expected 64 hex digits matching"),
    # arrays
    "arrays-empty": (_set(("arrays",), {}), "arrays: expected a non-empty object"),
    "array-unknown-key": (_set(("arrays", "x", "allow_pickle"), True), r"arrays\.x: expected \{dtype, shape, sha256\}"),
    "array-dtype-object": (_set(("arrays", "x", "dtype"), "|O"),
                           re.escape("arrays.x.dtype: expected one of ['<f2', '<f4', '<f8', '|b1'], got '|O'")),
    "array-dtype-big-endian": (_set(("arrays", "x", "dtype"), ">f4"), r"arrays\.x\.dtype: expected one of .*got '>f4'"),
    "array-shape-negative": (_set(("arrays", "weight2", "shape"), [-16]),
                             re.escape("arrays.weight2.shape: expected a list of non-negative integers, got [-16]")),
    "array-shape-float": (_set(("arrays", "weight2", "shape"), [16.0]),
                          re.escape("arrays.weight2.shape: expected a list of non-negative integers, got [16.0]")),
    "array-shape-bool": (_set(("arrays", "weight2", "shape"), [True]),
                         re.escape("arrays.weight2.shape: expected a list of non-negative integers, got [True]")),
    "array-shape-string": (_set(("arrays", "weight2", "shape"), "16"),
                           re.escape("arrays.weight2.shape: expected a list of non-negative integers, got '16'")),
    "array-sha-short": (_set(("arrays", "x", "sha256"), "abc"), r"arrays\.x\.sha256: expected 64 hex digits"),
    "array-name-traversal": (_text(lambda t: t.replace('"x": {', '"../x": {', 1)),
                             r"array name '\.\./x': expected letters, digits"),
    # layer, calls, inputs
    "layer-class": (_set(("layer", "class_name"), "Lambda"), r"layer: expected \{class_name: LSTM\|Bidirectional"),
    "layer-unknown-key": (_set(("layer", "module"), "os"), r"layer: expected \{class_name"),
    "layer-semantics": (_set(("layer", "semantics"), "keras4"), r"layer: expected \{class_name"),
    "layer-config-list": (_set(("layer", "config"), []), r"layer: expected \{class_name"),
    "output-names-empty": (_set(("output_names",), []), "output_names: expected a non-empty list of names"),
    "output-names-int": (_set(("output_names",), [1]), "output_names: expected a non-empty list of names"),
    "calls-empty": (_set(("calls",), []), "calls: expected a non-empty list"),
    "call-reset-string": (_set(("calls", 0, "reset_before"), "no"), r"calls\[0\]: expected \{reset_before: bool"),
    "call-unknown-key": (_set(("calls", 1, "eval"), "1"), r"calls\[1\]: expected \{reset_before: bool"),
    "call-initial-state-string": (_set(("calls", 0, "initial_state"), "call0.init0"),
                                  r"calls\[0\]\.initial_state: expected null or a list of array names"),
    "inputs-unknown-key": (_set(("inputs", "y"), "x"), r"inputs: expected \{x, mask\}"),
    "expected-names": (_delete(("expected", "c2")), r"expected: expected the outputs \["),
    "dangling-reference": (_set(("inputs", "x"), "nope"), re.escape("references arrays not listed in 'arrays': ['nope']")),
    "dangling-int-reference": (_set(("layer", "weights", 0), 5), re.escape("references arrays not listed in 'arrays': [5]")),
    "stacked-axis": (_set(("arrays", "x", "shape", 0), 5),
                     re.escape("arrays.x: expected one entry per call (4) on the first axis, shape [5, 3, 5, 3]")),
    "deviation-keys": (_set(("deviation",), {"name": "x"}), re.escape("deviation: expected null or {name, quirk, reason}")),
}


@pytest.mark.parametrize("kind", sorted(_MANIFEST_CASES))
def test_c10_bad_manifests_are_integrity_errors(placed: Placed, kind: str) -> None:
    edit, pattern = _MANIFEST_CASES[kind]
    placed.manifest_path.write_text(edit(placed.manifest()), encoding="utf-8")
    with pytest.raises(FixtureIntegrityError, match="^" + named(placed.manifest_path) + ": " + pattern):
        read_fixture(placed.manifest_path)


def test_c10_bytes_that_are_not_utf8(placed: Placed) -> None:
    placed.manifest_path.write_bytes(placed.manifest_path.read_bytes().replace(b'"kind"', b'"\xffkind"', 1))
    with pytest.raises(FixtureIntegrityError, match="^" + named(placed.manifest_path) + ": not valid UTF-8"):
        read_fixture(placed.manifest_path)


def test_c10_an_oversized_manifest_is_refused_before_parsing(placed: Placed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 1024)
    with pytest.raises(ResourceLimitError, match=named(placed.manifest_path) + r": \d+ bytes exceeds the "
                                                                              r"limit of 1024"):
        read_fixture(placed.manifest_path)


def test_c10_the_cli_reports_a_bad_manifest_and_checks_the_rest(placed: Placed, capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    good = dataclasses.replace(source_fixture(), id="good")
    write_fixture(placed.dir, good)
    placed.manifest_path.write_text(_lit(("tolerance", "atol"), "Infinity")(placed.manifest()))
    rc, out, _ = verify_cli(placed.dir, capsys)
    assert rc == 1
    assert "fixtures checked: 2  passed: 1" in out and "integrity failures: 1" in out
    assert placed.manifest_path.name in out and "non-standard JSON constant Infinity" in out


# Bugs: a manifest value of the right JSON shape but an unexpected Python type escapes as a
# non-BilstmRefError, and `bilstm-ref fixtures verify` (which catches BilstmRefError per fixture)
# dies with a traceback instead of reporting one integrity failure.
_CRASHING_MANIFESTS = {
    # _check_tolerance: math.isfinite(10**400) raises OverflowError: int too large to convert to float
    "atol-400-digit-integer": (_lit(("tolerance", "atol"), "1" + "0" * 400), "tolerance atol"),
    # _validate_manifest: {r for r in referenced if ...} hashes each reference: TypeError unhashable type: 'list'
    "inputs-x-is-a-list": (_set(("inputs", "x"), ["x"]), "references arrays not listed"),
    "weight-name-is-an-object": (_set(("layer", "weights", 0), {"name": "weight0"}), "references arrays not listed"),
    "initial-state-name-is-a-list": (_set(("calls", 0, "initial_state", 0), ["call0.init0"]),
                                     "references arrays not listed"),
    "expected-name-is-a-list": (_set(("expected", "output"), ["out.output"]), "references arrays not listed"),
}


@pytest.mark.parametrize("kind", sorted(_CRASHING_MANIFESTS))
def test_c10_wrong_python_types_escape_as_non_bilstm_errors(placed: Placed, kind: str) -> None:
    edit, pattern = _CRASHING_MANIFESTS[kind]
    placed.manifest_path.write_text(edit(placed.manifest()))
    with pytest.raises(FixtureIntegrityError, match=named(placed.manifest_path) + ": " + pattern):
        read_fixture(placed.manifest_path)


def test_c10_cli_verify_dies_on_a_huge_integer_tolerance(placed: Placed, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    placed.manifest_path.write_text(_lit(("tolerance", "atol"), "1" + "0" * 400)(placed.manifest()))
    rc, out, _ = verify_cli(placed.dir, capsys)
    assert rc == 1 and placed.manifest_path.name in out


# --- C11: schema version ------------------------------------------------------------------------
@pytest.mark.parametrize("value, pattern", [
    (3, re.escape(f"fixture schema 3 > supported {SCHEMA_VERSION}; upgrade bilstm_ref")),
    (SCHEMA_VERSION + 1, re.escape(f"fixture schema {SCHEMA_VERSION + 1} > supported {SCHEMA_VERSION}; upgrade bilstm_ref")),
    (0, "schema_version 0 is not a valid schema"),
    (-1, "schema_version -1 is not a valid schema"),
    ("1", "schema_version: expected an integer, got '1'"),
    (1.0, r"schema_version: expected an integer, got 1\.0"),
    (True, "schema_version: expected an integer, got True"),
    (None, "schema_version: expected an integer, got None"),
], ids=["3", "next", "0", "negative", "string", "float", "bool", "null"])
def test_c11_schema_version(placed: Placed, value: Any, pattern: str) -> None:
    placed.manifest_path.write_text(_set(("schema_version",), value)(placed.manifest()))
    with pytest.raises(FixtureIntegrityError, match="^" + named(placed.manifest_path) + ": " + pattern + "$"):
        read_fixture(placed.manifest_path)


def test_c11_schema_version_missing(placed: Placed) -> None:
    placed.manifest_path.write_text(_delete(("schema_version",))(placed.manifest()))
    with pytest.raises(FixtureIntegrityError,
                       match="^" + named(placed.manifest_path) + ": schema_version: expected an integer, got None$"):
        read_fixture(placed.manifest_path)


def test_c11_a_newer_schema_is_refused_before_anything_else_is_judged(placed: Placed) -> None:
    """A schema-3 manifest may have other keys: the message must be about the version, not the keys."""
    m = placed.manifest()
    m.update(schema_version=3, new_field={"x": 1})
    placed.write_manifest(m)
    with pytest.raises(FixtureIntegrityError, match="fixture schema 3 > supported"):
        read_fixture(placed.manifest_path)


# --- C12: payload file names --------------------------------------------------------------------
def _decoy_names(p: Placed, tmp_path: Path) -> dict[str, str]:
    """Names that point at a genuine copy of the payload outside the fixture directory."""
    real = p.payload
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(real, outside / real.name)
    shutil.copy(real, tmp_path / real.name)
    (p.dir / "sub").mkdir(exist_ok=True)
    shutil.copy(real, p.dir / "sub" / real.name)
    return {
        "parent": f"../{real.name}",
        "parent-then-dir": f"../outside/{real.name}",
        "subdir": f"sub/{real.name}",
        "dot-slash": f"./{real.name}",
        "absolute": str(outside / real.name),
        "backslash": f"..\\{real.name}",
        "trailing-slash": f"{real.name}/",
        "dotdot": "..",
        "other-fixture-id": f"other.{real.name.split('.')[-2]}.npz",
        "newline": f"{real.name}\n",
    }


@pytest.mark.parametrize("kind", ["parent", "parent-then-dir", "subdir", "dot-slash", "absolute", "backslash",
                                  "trailing-slash", "dotdot", "other-fixture-id", "newline"])
def test_c12_payload_names_must_be_plain_basenames(placed: Placed, tmp_path: Path, kind: str) -> None:
    name = _decoy_names(placed, tmp_path)[kind]
    m = placed.manifest()
    m["payload"]["file"] = name
    placed.write_manifest(m)
    with pytest.raises(FixtureIntegrityError, match="^" + named(placed.manifest_path) + re.escape(
            f": payload file {name!r}: expected '{CASE_ID}.<sha256 prefix>.npz' in the same directory")):
        read_fixture(placed.manifest_path)


def test_c12_a_non_string_payload_name(placed: Placed) -> None:
    placed.manifest_path.write_text(_set(("payload", "file"), ["a", "b"])(placed.manifest()))
    with pytest.raises(FixtureIntegrityError, match=named(placed.manifest_path) + re.escape(
            ": payload file ['a', 'b']: expected")):
        read_fixture(placed.manifest_path)


# --- C13: provenance ----------------------------------------------------------------------------
def test_c13_other_versions_in_the_provenance_are_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    p = committed_copy(tmp_path)
    m = p.manifest()
    m["provenance"].update(keras="2.15.0", tensorflow="2.15.1", numpy="1.24.0", python="3.10.0", device="GPU:0",
                           tf32=True, cudnn=True, platform="Windows-10", backend="jax", extra={"note": "anything"})
    p.write_manifest(m)
    fixture = read_fixture(p.manifest_path)
    assert fixture.provenance["keras"] == "2.15.0" and fixture.provenance["device"] == "GPU:0"
    assert verify_fixture(fixture).status in ("pass", "known-deviation")
    rc, out, _ = verify_cli(p.dir, capsys)
    assert rc == 0 and "integrity failures: 0" in out


def test_c13_free_form_provenance_and_flags_are_data(placed: Placed) -> None:
    m = placed.manifest()
    m["provenance"] = {"anything": [1, {"nested": None}]}
    m["flags"] = {"custom": "x"}
    placed.write_manifest(m)
    assert verify_fixture(read_fixture(placed.manifest_path)).status == "pass"


# --- links and empty runs -----------------------------------------------------------------------
def test_a_symlinked_payload_is_refused(placed: Placed, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payload = placed.payload
    elsewhere = tmp_path / "elsewhere.npz"
    shutil.copy(payload, elsewhere)  # the link's target is the genuine payload: only the link is wrong
    payload.unlink()
    payload.symlink_to(elsewhere)
    with pytest.raises(FixtureIntegrityError,
                       match="^" + named(payload) + ": is a symbolic link; fixtures are regular files$"):
        read_fixture(placed.manifest_path)
    rc, out, _ = verify_cli(placed.dir, capsys)
    assert rc == 1 and "is a symbolic link" in out


def test_a_dangling_symlinked_payload_is_refused(placed: Placed, tmp_path: Path) -> None:
    payload = placed.payload
    payload.unlink()
    payload.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FixtureIntegrityError, match=named(payload) + ": is a symbolic link"):
        read_fixture(placed.manifest_path)


def test_a_payload_that_is_a_directory(placed: Placed) -> None:
    payload = placed.payload
    payload.unlink()
    payload.mkdir()
    with pytest.raises(BilstmRefError, match=named(payload) + ": is a directory, expected a regular file"):
        read_fixture(placed.manifest_path)


def test_verify_on_an_empty_directory_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = verify_cli(tmp_path, capsys)
    assert rc == 2
    assert f"no fixtures found in {str(tmp_path)!r}" in err


def test_verify_on_a_directory_without_fixtures_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    (tmp_path / "README.md").write_text("not a fixture")
    (tmp_path / ".bilstm_ref-tmp-abc").write_bytes(b"half")
    rc, _, err = verify_cli(tmp_path, capsys)
    assert rc == 2 and "no fixtures found" in err


def test_verify_with_a_filter_that_selects_nothing_fails_loudly(placed: Placed, capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    rc = main(["fixtures", "verify", str(placed.dir), "-k", "no-such-case"])
    err = capsys.readouterr().err
    assert rc == 2 and "no fixtures found" in err and "no-such-case" in err


def test_verify_on_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    rc, _, err = verify_cli(missing, capsys)
    assert rc == 2 and f"{str(missing)!r}: not a directory of fixtures" in err
