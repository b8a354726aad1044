"""Reading untrusted bytes safely: local files, strict JSON, zip members, HDF5 datasets and attributes.

Every failure becomes a :class:`~bilstm_ref.errors.BilstmRefError` subclass naming the file,
the member or dataset path, and expected vs actual. Nothing is extracted, executed or followed.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import re
import stat
import tokenize
import warnings
import zipfile
from typing import IO, Any, Iterator, Optional, Union

import h5py
import numpy as np

from ..errors import (
    CorruptFileError,
    DTypeMismatchError,
    FileAccessError,
    ResourceLimitError,
    ShapeMismatchError,
    UnsafeModelError,
)
from . import limits
from ._isolate import probe_hdf5

PathLike = Union[str, "os.PathLike[str]"]

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def describe_magic(head: bytes) -> str:
    """What a file's first bytes say it is, for error messages."""
    if head.startswith(ZIP_MAGIC):
        return "a zip signature (a .keras archive)"
    if head.startswith(HDF5_MAGIC):
        return "an HDF5 signature (a .h5 / .weights.h5 file)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON text"
    if not head:
        return "an empty file"
    return f"unrecognized bytes {head[:8]!r}"


@contextlib.contextmanager
def open_local_file(path: PathLike) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading if it is a local regular file within :data:`limits.MAX_FILE_BYTES`.

    URLs, directories, FIFOs and devices are refused before any read (a FIFO is opened
    non-blocking, so it cannot hang).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise FileAccessError(f"model path: expected a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, str) and _URL.match(text):
        raise FileAccessError(f"{text!r}: remote paths are not read; download the file and pass a local path")
    try:
        fd = os.open(text, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileAccessError(f"{text!r}: no such file") from None
    except IsADirectoryError:
        raise FileAccessError(f"{text!r}: is a directory, expected a regular file") from None
    except OSError as e:
        raise FileAccessError(f"{text!r}: cannot open ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO, device or socket"
            raise FileAccessError(f"{text!r}: is {kind}, expected a regular file")
        if st.st_size > limits.MAX_FILE_BYTES:
            raise ResourceLimitError(
                f"{text!r}: {st.st_size} bytes exceeds the limit of {limits.MAX_FILE_BYTES} "
                "(bilstm_ref.loaders.limits.MAX_FILE_BYTES)"
            )
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_bounded(f: IO[bytes], limit: int, where: str) -> bytes:
    """The whole of an opened regular file, refused above ``limit`` bytes; reads only its real size."""
    size = os.fstat(f.fileno()).st_size
    if size > limit:
        raise ResourceLimitError(f"{where}: {size} bytes exceeds the limit of {limit}")
    data = f.read(size + 1)
    if len(data) > limit:
        raise ResourceLimitError(f"{where}: more than {limit} bytes")
    return data


def read_head(f: IO[bytes], n: int = 8) -> bytes:
    f.seek(0)
    head = f.read(n)
    f.seek(0)
    return head


# --- strict JSON ----------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} overflows to {value}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(data: Union[bytes, str], where: str) -> Any:
    """Parse JSON strictly as data: UTF-8 without BOM, no duplicate keys, no NaN/Infinity, no overflow."""
    if len(data) > limits.MAX_JSON_BYTES:
        raise ResourceLimitError(
            f"{where}: {len(data)} bytes of JSON exceeds the limit of {limits.MAX_JSON_BYTES} "
            "(bilstm_ref.loaders.limits.MAX_JSON_BYTES)"
        )
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            raise CorruptFileError(f"{where}: JSON starts with a UTF-8 byte-order mark; expected plain UTF-8")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptFileError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    else:
        text = data
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
            raise CorruptFileError(f"{where}: not valid UTF-8 (lone surrogates in the decoded text)")
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise CorruptFileError(f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # json.JSONDecodeError is a ValueError, as are the hooks' errors
        raise CorruptFileError(f"{where}: invalid JSON ({e})") from None


# --- zip archives -------------------------------------------------------------------------------
class SafeZip:
    """A ``.keras`` archive read member by member: never extracted, bounded, duplicates rejected."""

    def __init__(self, f: IO[bytes], name: str) -> None:
        self.name = name
        head = read_head(f, 8)
        if not head.startswith(ZIP_MAGIC):
            raise CorruptFileError(
                f"{name!r} is not a .keras (zip) archive: expected the zip signature at offset 0, "
                f"found {describe_magic(head)}"
                + ("; load it as a .h5 file" if head.startswith(HDF5_MAGIC) else "")
            )
        try:
            self._zip = zipfile.ZipFile(f)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
            raise CorruptFileError(f"{name!r}: damaged zip archive ({e})") from None
        if len(infos) > limits.MAX_ZIP_MEMBERS:
            raise ResourceLimitError(
                f"{name!r}: {len(infos)} archive members exceeds the limit of {limits.MAX_ZIP_MEMBERS}"
            )
        self._infos: dict[str, list[zipfile.ZipInfo]] = {}
        for info in infos:
            self._infos.setdefault(info.filename, []).append(info)

    @property
    def names(self) -> list[str]:
        return list(self._infos)

    def has(self, member: str) -> bool:
        return member in self._infos

    def read(self, member: str, limit: int) -> bytes:
        """The bytes of ``member``, checked against ``limit`` and the compression ratio before reading."""
        where = f"{self.name!r} member {member!r}"
        stream = self.open(member, limit)
        try:
            with stream as fh:
                data = fh.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
            raise CorruptFileError(f"{where}: cannot be read ({e})") from None
        except Exception as e:  # zlib.error and friends
            raise CorruptFileError(f"{where}: cannot be read ({type(e).__name__}: {e})") from None
        if len(data) > limit:
            raise ResourceLimitError(f"{where}: more than {limit} bytes uncompressed")
        return data

    def open(self, member: str, limit: int) -> IO[bytes]:
        """A stream of ``member``, after the checks :meth:`read` makes (for members read in pieces)."""
        where = f"{self.name!r} member {member!r}"
        entries = self._infos.get(member, [])
        if not entries:
            raise CorruptFileError(f"{self.name!r}: missing archive member {member!r} (members: {self.names})")
        if len(entries) > 1:
            raise CorruptFileError(f"{self.name!r}: archive member {member!r} appears {len(entries)} times")
        info = entries[0]
        if info.flag_bits & 0x1:
            raise CorruptFileError(f"{where}: unsupported zip feature: encryption")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CorruptFileError(
                f"{where}: unsupported zip feature: compression method {info.compress_type} "
                "(expected 0 stored or 8 deflated)"
            )
        if info.file_size > limit:
            raise ResourceLimitError(
                f"{where}: declares {info.file_size} bytes uncompressed, exceeds the limit of {limit}"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.RATIO_FLOOR_BYTES and ratio > limits.MAX_COMPRESSION_RATIO:
            raise ResourceLimitError(
                f"{where}: compression ratio {ratio:.0f} exceeds the limit of {limits.MAX_COMPRESSION_RATIO} "
                f"({info.file_size} bytes from {info.compress_size}); refusing a possible zip bomb"
            )
        try:
            return self._zip.open(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
            raise CorruptFileError(f"{where}: cannot be read ({e})") from None


# --- HDF5 ---------------------------------------------------------------------------------------
H5_ERRORS = (OSError, RuntimeError, KeyError, OverflowError, ValueError, UnicodeDecodeError, TypeError)


#: .npy format versions whose header numpy can read without allocating the array.
NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))


def read_npy_header(f: IO[bytes], where: str, versions: tuple[tuple[int, int], ...] = NPY_VERSIONS,
                    max_header: int = 100_000) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from an ``.npy`` header, leaving ``f`` at the data; nothing else read.
    A header that cannot be read is a :class:`CorruptFileError` naming ``where``."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version not in versions:
            raise ValueError(f"unsupported .npy format version {version}")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        with warnings.catch_warnings():  # numpy parses the header as Python literals: a backslash warns
            warnings.simplefilter("ignore")
            shape, fortran, dtype = read(f, max_header_size=max_header)
    except (ValueError, SyntaxError, TypeError, OverflowError, EOFError, OSError, zipfile.BadZipFile,
            tokenize.TokenError) as e:
        raise CorruptFileError(f"{where}: bad .npy header ({e}); not a readable .npy array") from None
    return tuple(int(d) for d in shape), bool(fortran), dtype


@contextlib.contextmanager
def open_hdf5(f: Union[IO[bytes], io.BytesIO], name: str, container: Optional[IO[bytes]] = None
              ) -> Iterator[h5py.File]:
    """Open an HDF5 file object read-only after checking its signature and probing it (``_isolate``);
    ``container`` is the file in-memory bytes came from (a ``.keras`` archive)."""
    head = read_head(f, 8)
    if not head.startswith(HDF5_MAGIC):
        raise CorruptFileError(
            f"{name!r} is not an HDF5 file: expected the HDF5 signature at offset 0, found {describe_magic(head)}"
            + ("; load it as a .keras archive" if head.startswith(ZIP_MAGIC) else "")
        )
    probe_hdf5(f, name, container)
    f.seek(0)
    try:
        h5 = h5py.File(f, "r")
    except H5_ERRORS as e:
        msg = str(e)
        if "truncated" in msg:
            raise CorruptFileError(f"{name!r}: truncated HDF5 file ({msg})") from None
        raise CorruptFileError(f"{name!r}: damaged HDF5 file ({msg})") from None
    with h5:
        yield h5


def h5_get(group: h5py.Group, path: str, file_name: str) -> Union[h5py.Group, h5py.Dataset]:
    """The object at ``path`` below ``group``, walking hard links only (soft and external links refused)."""
    node: Any = group
    walked = group.name.rstrip("/")
    for part in [p for p in path.split("/") if p]:
        walked = f"{walked}/{part}"
        if not isinstance(node, h5py.Group):
            raise CorruptFileError(f"{file_name!r}: {walked}: parent is not a group")
        try:
            link = node.get(part, getlink=True)
        except H5_ERRORS as e:
            raise CorruptFileError(f"{file_name!r}: {walked}: cannot be read ({e})") from None
        if link is None:
            raise CorruptFileError(f"{file_name!r}: missing {walked}")
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise UnsafeModelError(f"{file_name!r}: {walked} is {kind}; links are not followed")
        try:
            node = node[part]
        except H5_ERRORS as e:
            raise CorruptFileError(f"{file_name!r}: {walked}: cannot be read ({e})") from None
    return node


def h5_children(group: h5py.Group, file_name: str) -> list[str]:
    """Names of ``group``'s hard-linked children (links are reported, not followed)."""
    try:
        names = list(group.keys())
    except H5_ERRORS as e:
        raise CorruptFileError(f"{file_name!r}: {group.name}: cannot list members ({e})") from None
    return names


def check_dataset(ds: Any, file_name: str, expected_shape: Optional[tuple[int, ...]] = None) -> None:
    """Refuse virtual/external datasets, non-float dtypes, shape mismatches, bombs and missing filters."""
    where = f"{file_name!r}: {ds.name}" if isinstance(ds, h5py.Dataset) else f"{file_name!r}"
    if not isinstance(ds, h5py.Dataset):
        raise CorruptFileError(f"{where}: {getattr(ds, 'name', '?')}: expected a dataset, found a group")
    try:
        virtual = ds.is_virtual
        external = ds.external
        dtype = ds.dtype
        shape = ds.shape
        storage = ds.id.get_storage_size()
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    except H5_ERRORS as e:
        raise CorruptFileError(f"{where}: dataset metadata cannot be read ({e})") from None
    if virtual:
        raise UnsafeModelError(f"{where}: is a virtual dataset (maps other files); refused")
    if external:
        raise UnsafeModelError(f"{where}: uses external storage (data in another file); refused")
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise DTypeMismatchError(f"{where}: expected float16/32/64, got {dtype}")
    if shape is None:
        raise ShapeMismatchError(f"{where}: expected shape {expected_shape}, got an empty (null) dataspace")
    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
        raise ShapeMismatchError(f"{where}: expected shape {tuple(expected_shape)}, got {tuple(shape)}")
    problem = limits.dataset_size_problem(tuple(shape), dtype.itemsize, storage)
    if problem is not None:
        raise ResourceLimitError(f"{where}: {problem}")
    for code in filters:
        if not h5py.h5z.filter_avail(code):
            raise CorruptFileError(f"{where}: HDF5 filter {code} is not available; plugins are not loaded")


def read_dataset(ds: h5py.Dataset, file_name: str, expected_shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """The values of a checked float dataset, in native byte order (original precision kept)."""
    check_dataset(ds, file_name, expected_shape)
    try:
        value = np.asarray(ds[()])
    except H5_ERRORS as e:
        raise CorruptFileError(f"{file_name!r}: {ds.name}: data cannot be read ({e})") from None
    return value.astype(value.dtype.newbyteorder("="), copy=False)


def read_attr(obj: Union[h5py.Group, h5py.Dataset, h5py.File], key: str, file_name: str) -> Any:
    """An attribute's value, its size checked before reading; None when absent. Strings come back as str."""
    where = f"{file_name!r}: {obj.name} attribute {key!r}"
    try:
        if key not in obj.attrs:
            return None
        aid = obj.attrs.get_id(key)
        size = aid.get_storage_size()
    except H5_ERRORS as e:
        raise CorruptFileError(f"{where}: cannot be read ({e})") from None
    if size > limits.MAX_ATTR_BYTES:
        raise ResourceLimitError(f"{where}: {size} bytes exceeds the limit of {limits.MAX_ATTR_BYTES}")
    try:
        value = obj.attrs[key]
    except H5_ERRORS as e:
        raise CorruptFileError(f"{where}: cannot be read ({e})") from None
    return _decode(value, where)


def _decode(value: Any, where: str) -> Any:
    if isinstance(value, (bytes, np.bytes_)):
        if len(value) > limits.MAX_ATTR_BYTES:
            raise ResourceLimitError(f"{where}: {len(value)} bytes exceeds the limit of {limits.MAX_ATTR_BYTES}")
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptFileError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if isinstance(value, str):
        if len(value) > limits.MAX_ATTR_BYTES:  # variable-length strings have no storage size up front
            raise ResourceLimitError(f"{where}: {len(value)} characters exceeds the limit of {limits.MAX_ATTR_BYTES}")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise CorruptFileError(f"{where}: not valid UTF-8")
        return value
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return []
        if value.dtype.kind in "OSU":
            return [_decode(v.item() if isinstance(v, np.generic) else v, where) for v in value.ravel()]
        raise CorruptFileError(f"{where}: expected strings, got an array of {value.dtype}")
    return value


def read_string_list(obj: Any, key: str, file_name: str) -> Optional[list[str]]:
    """An attribute holding a list of names (``layer_names``, ``weight_names``)."""
    value = read_attr(obj, key, file_name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorruptFileError(f"{file_name!r}: {obj.name} attribute {key!r}: expected a list of names")
    duplicates = sorted(k for k, n in collections.Counter(value).items() if n > 1)
    if duplicates:
        raise CorruptFileError(f"{file_name!r}: {obj.name} attribute {key!r}: duplicate names {duplicates}")
    return value
