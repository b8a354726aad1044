"""A model's inputs: read from the user's ``.npz`` / ``.npy`` in batches, or generated from the model's
input spec (token ids with real padding, float features with the ``Masking`` patterns).

Keras-free: the model's inputs arrive as :class:`InputSpec` rows. Files are read as data only
(``.npy`` headers parsed, no pickles), row block by row block, so a large file never sits in memory
whole; everything that can be checked before the first batch is checked then, naming the file, the
array and expected vs actual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from typing import IO, Any, Callable, ContextManager, Iterator, Optional, Sequence

import numpy as np

from ..errors import CorruptFileError, DTypeMismatchError, InputDataError, ShapeMismatchError
from ..loaders import limits
from ..loaders._io import SafeZip, open_local_file, read_npy_header

__all__ = ["InputSpec", "InputSource", "read_inputs", "generated_inputs", "make_arrays", "GENERATED_PATTERNS"]

#: Padding patterns of generated masked inputs, cycled over the samples.
GENERATED_PATTERNS = ("right", "left", "none", "full", "right_short", "left_short")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input, as the verifier needs to know it.

    Attributes:
        name: the input's name in the model (``keras.Input(name=...)``).
        shape: per-sample shape, ``None`` for a free dimension (``(None,)`` for token ids,
            ``(None, features)`` for float sequences).
        dtype: the input's dtype (``"int32"``, ``"float32"``, ...).
        vocab: the vocabulary size (``input_dim``) of the Embedding this input feeds, if any.
        mask_zero: that Embedding masks id 0.
        mask_value: the ``mask_value`` of the Masking layer this input feeds, if any.
    """

    name: str
    shape: tuple[Optional[int], ...]
    dtype: str
    vocab: Optional[int] = None
    mask_zero: bool = False
    mask_value: Optional[float] = None

    @property
    def integer(self) -> bool:
        return self.vocab is not None or np.dtype(self.dtype).kind in "iu"

    def describe(self) -> str:
        shape = "(batch, " + ", ".join("None" if d is None else str(d) for d in self.shape) + ")"
        extra = f", token ids < {self.vocab}" if self.vocab is not None else ""
        return f"{self.name!r} {shape} {self.dtype}{extra}"


# --- .npy streams --------------------------------------------------------------------------------
class _NpyStream:
    """An ``.npy`` (a file or an ``.npz`` member) read row block by row block, in order."""

    def __init__(self, opener: Callable[[], ContextManager[IO[bytes]]], where: str) -> None:
        self.where = where
        self._opener = opener
        with opener() as f:
            self.dtype, self.shape, fortran = self._header(f)
        if fortran and len(self.shape) > 1:
            raise InputDataError(f"{where}: Fortran-order arrays are not read; save it with np.save(np.ascontiguousarray(a))")

    def _header(self, f: IO[bytes]) -> tuple[np.dtype, tuple[int, ...], bool]:
        shape, fortran, dtype = read_npy_header(f, self.where)
        if dtype.hasobject or dtype.kind not in "biuf":
            raise DTypeMismatchError(f"{self.where}: dtype {dtype} is not a number array (objects and pickles are "
                                     "never read); expected integers or floats")
        return dtype, shape, fortran

    @property
    def samples(self) -> int:
        return self.shape[0] if self.shape else 0

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        """The array in blocks of ``rows`` samples, in order."""
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        row_bytes = row_items * self.dtype.itemsize
        with self._opener() as f:
            self._header(f)
            for start in range(0, self.samples, rows):
                n = min(rows, self.samples - start)
                data = f.read(n * row_bytes)
                if len(data) != n * row_bytes:
                    raise CorruptFileError(f"{self.where}: truncated: expected {self.samples} samples of "
                                           f"{row_bytes} bytes, the data ends in sample {start + len(data) // max(row_bytes, 1)}")
                yield np.frombuffer(data, dtype=self.dtype).reshape((n,) + self.shape[1:])


# --- the source ----------------------------------------------------------------------------------
@dataclasses.dataclass
class InputSource:
    """The model's inputs, in batches: ``for offset, arrays in source.batches(64): ...``.

    ``arrays`` holds one array per model input, in the model's input order, each ``(b, ...)``.
    """

    description: str
    specs: tuple[InputSpec, ...]
    samples: int
    sha256: Optional[str]
    _blocks: Callable[[int], Iterator[list[np.ndarray]]]
    generated: bool = False

    def batches(self, batch_size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        offset = 0
        for arrays in self._blocks(batch_size):
            yield offset, arrays
            offset += arrays[0].shape[0]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.description, "samples": self.samples, "sha256": self.sha256,
                "generated": self.generated, "inputs": [s.describe() for s in self.specs]}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open_local_file(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_array(stream: _NpyStream, spec: InputSpec) -> None:
    where = stream.where
    rank = 1 + len(spec.shape)
    expected = "(samples, " + ", ".join("any" if d is None else str(d) for d in spec.shape) + ")"
    if len(stream.shape) != rank:
        raise ShapeMismatchError(f"{where}: expected shape {expected} for model input {spec.name!r}, got "
                                 f"{stream.shape}")
    for axis, (want, got) in enumerate(zip(spec.shape, stream.shape[1:], strict=True), 1):
        if want is not None and want != got:
            raise ShapeMismatchError(f"{where}: axis {axis}: expected {want} for model input {spec.name!r} "
                                     f"{expected}, got {got} (shape {stream.shape})")
    if spec.integer and stream.dtype.kind not in "iu":
        raise DTypeMismatchError(f"{where}: model input {spec.name!r} takes integer token ids ({spec.dtype}), got "
                                 f"{stream.dtype}")
    if not spec.integer and stream.dtype.kind == "b":
        raise DTypeMismatchError(f"{where}: model input {spec.name!r} takes {spec.dtype} values, got bool")


def _check_vocab(stream: _NpyStream, spec: InputSpec) -> None:
    """Every token id inside the Embedding's vocabulary (one streaming pass before anything runs)."""
    if spec.vocab is None:
        return
    offset = 0
    for block in stream.blocks(4096):
        bad = (block < 0) | (block >= spec.vocab)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), block.shape)
            raise InputDataError(
                f"{stream.where}: token id {int(block[idx])} at sample {offset + int(idx[0])}, position "
                f"{tuple(int(i) for i in idx[1:])} is outside the vocabulary of the Embedding fed by input "
                f"{spec.name!r}: expected 0 <= id < {spec.vocab}; {int(bad.sum())} ids in this block are out of range")
        offset += block.shape[0]


def read_inputs(path: str, specs: Sequence[InputSpec]) -> InputSource:
    """The model inputs stored in ``path``: an ``.npz`` with one array per model input (keyed by the
    input names, or ``arr_0, arr_1, ...`` by position, as ``np.savez(f, *arrays)`` writes), or an
    ``.npy`` for a one-input model.

    Raises:
        FileAccessError, CorruptFileError: the file cannot be read as data.
        InputDataError: an empty file, missing or extra arrays, different sample counts, token ids
            outside the vocabulary. ShapeMismatchError, DTypeMismatchError: an array that does not fit
            its model input.
    """
    name = os.fspath(path)
    specs = tuple(specs)
    with open_local_file(name) as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        if len(specs) != 1:
            raise InputDataError(f"{name!r}: a .npy holds one array, but the model has {len(specs)} inputs "
                                 f"{[s.name for s in specs]}; save them with np.savez({', '.join(f'{s.name}=...' for s in specs)})")

        @contextlib.contextmanager
        def open_npy() -> Iterator[IO[bytes]]:
            with open_local_file(name) as fh:
                yield fh

        streams = [_NpyStream(open_npy, f"{name!r}")]
    elif head.startswith(b"PK\x05\x06"):
        raise InputDataError(f"{name!r}: empty .npz (no arrays); expected {[s.name for s in specs]}")
    elif head.startswith(b"PK"):
        streams = _npz_streams(name, specs)
    else:
        raise CorruptFileError(f"{name!r}: expected an .npz (zip) or .npy file, found {head!r}")
    for stream, spec in zip(streams, specs, strict=True):
        _check_array(stream, spec)
    counts = {s.where: s.samples for s in streams}
    if len(set(counts.values())) > 1:
        raise InputDataError(f"{name!r}: the arrays disagree in their number of samples: {counts}")
    samples = streams[0].samples
    if samples == 0:
        raise InputDataError(f"{name!r}: no samples (the arrays have 0 rows); nothing to verify")
    for stream, spec in zip(streams, specs, strict=True):
        _check_vocab(stream, spec)

    def blocks(rows: int) -> Iterator[list[np.ndarray]]:
        iters = [s.blocks(rows) for s in streams]
        for parts in zip(*iters, strict=True):
            yield [np.asarray(p, dtype=s.dtype) for p, s in zip(parts, specs, strict=True)]

    return InputSource(f"{name} ({samples} samples)", specs, samples, _sha256(name), blocks)


def _npz_streams(name: str, specs: tuple[InputSpec, ...]) -> list[_NpyStream]:
    with open_local_file(name) as f:
        members = [m for m in SafeZip(f, name).names]
    keys = [m[:-4] if m.endswith(".npy") else m for m in members]
    wanted = [s.name for s in specs]
    positional = [f"arr_{i}" for i in range(len(specs))]
    if sorted(keys) == sorted(wanted):
        order = wanted
    elif sorted(keys) == sorted(positional):
        order = positional
    else:
        if not keys:
            raise InputDataError(f"{name!r}: empty .npz (no arrays); expected {wanted}")
        missing = [k for k in wanted if k not in keys]
        extra = [k for k in keys if k not in wanted]
        raise InputDataError(f"{name!r}: expected arrays named after the model's {len(specs)} input(s) {wanted} "
                             f"(or {positional} by position), found {sorted(keys)}"
                             + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))

    def opener(member: str) -> Callable[[], ContextManager[IO[bytes]]]:
        @contextlib.contextmanager
        def open_member() -> Iterator[IO[bytes]]:
            with open_local_file(name) as fh:
                with SafeZip(fh, name).open(member, limits.MAX_MEMBER_BYTES) as m:
                    yield m

        return open_member

    streams = []
    for key in order:
        member = members[keys.index(key)]
        streams.append(_NpyStream(opener(member), f"{name!r} array {key!r}"))
    return streams


# --- generated inputs ----------------------------------------------------------------------------
def _valid_steps(pattern: str, t: int) -> np.ndarray:
    """The valid steps ``(t,)`` (True = valid) of a padding pattern over ``t`` steps."""
    short = max(1, t // 3)
    long_ = max(1, (2 * t) // 3)
    if pattern == "holes":  # valid, padded, valid again: what Masking and Embedding(mask_zero) allow
        row = np.ones(t, dtype=bool)
        row[t // 3: max(t // 3 + 1, (2 * t) // 3)] = t < 3  # fewer than 3 steps: no room for a hole
        return row
    first, n = {"right": (0, long_), "left": (t - long_, long_), "none": (0, t), "full": (0, 0),
                "right_short": (0, short), "left_short": (t - short, short)}[pattern]
    row = np.zeros(t, dtype=bool)
    row[first:first + n] = True
    return row


def make_arrays(specs: Sequence[InputSpec], samples: int, time: int, rng: np.random.Generator,
                patterns: Sequence[str] = ("none",), scale: float = 1.0) -> list[np.ndarray]:
    """One array per input, ``(samples, time, ...)`` (free dimensions become ``time``).

    Token inputs (an Embedding's) get ids in ``[1, vocab)``; float inputs N(0, ``scale``) values. Where
    the input is masked (``Embedding(mask_zero=True)``, ``Masking``), sample ``i`` is padded (id 0 or the
    ``mask_value``) as ``patterns[i % len(patterns)]`` says (:data:`GENERATED_PATTERNS` or ``"holes"``).
    """
    arrays = []
    for spec in specs:
        shape = (samples,) + tuple(time if d is None else d for d in spec.shape)
        if spec.integer:
            hi = spec.vocab if spec.vocab is not None else 100
            lo = 1 if hi > 1 else 0
            a = rng.integers(lo, hi, size=shape).astype(spec.dtype if np.dtype(spec.dtype).kind in "iu" else "int32")
        else:
            a = (rng.normal(size=shape) * scale).astype(spec.dtype if np.dtype(spec.dtype).kind == "f" else "float32")
            if spec.mask_value is not None and spec.mask_value != 0.0:
                a[a == spec.mask_value] += 1.0  # no accidental padding
        pad = 0 if spec.integer else spec.mask_value
        if len(shape) >= 2 and pad is not None and (spec.mask_zero or spec.mask_value is not None):
            for i in range(samples):
                a[i, ~_valid_steps(patterns[i % len(patterns)], shape[1])] = pad
        arrays.append(a)
    return arrays


def generated_inputs(specs: Sequence[InputSpec], samples: int = 12, time: int = 16, seed: int = 0,
                     masked: bool = True) -> InputSource:
    """Inputs made from the model's input spec (:func:`make_arrays`); where the model masks, the
    samples cycle through :data:`GENERATED_PATTERNS`: right padding, left padding, no padding, a fully
    padded row, and short right / left padded rows."""
    specs = tuple(specs)
    if samples < 1:
        raise InputDataError(f"generated inputs: expected at least 1 sample, got {samples}")
    arrays = make_arrays(specs, samples, time, np.random.default_rng(seed), GENERATED_PATTERNS if masked else ("none",))
    patterns = ", ".join(GENERATED_PATTERNS)

    def blocks(rows: int) -> Iterator[list[np.ndarray]]:
        for start in range(0, samples, rows):
            yield [a[start:start + rows] for a in arrays]

    masked_desc = f"; padding patterns cycled: {patterns}" if any(s.mask_zero or s.mask_value is not None
                                                                    for s in specs) else ""
    return InputSource(f"generated from the model's input spec ({samples} samples, seed {seed}{masked_desc})",
                       specs, samples, None, blocks, generated=True)
