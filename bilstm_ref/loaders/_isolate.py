"""A time and memory bound on what HDF5 may do with an untrusted file.

Some damaged HDF5 files make the HDF5 C library loop: a corrupted global heap sends ``H5Aread`` of a
variable-length string attribute round forever, with the interpreter lock held, so no Python-level
timeout can interrupt it. Before the loaders trust an HDF5 file, a *prober* child process reads
everything the loaders could read from it (every link, attribute, dataset shape, dtype and filter, and
the data of chunked datasets, whose B-trees can loop too), announcing each step in shared memory. The
parent waits at most :data:`limits.HDF5_PARSE_SECONDS` (or ``BILSTM_REF_HDF5_SECONDS``) and, past it,
kills the prober and raises :class:`ResourceLimitError` naming the file and the step that never ended.
The prober's address space is capped at its size plus :data:`limits.HDF5_PARSE_BYTES`; running out is
a :class:`ResourceLimitError` too, and a prober killed by a signal (HDF5 crashed) a
:class:`CorruptFileError`. Ordinary read errors are left to the loaders, which name them precisely.

The prober is forked once per process, on the first HDF5 load, and reused: a fork costs a few ms
when TensorFlow is loaded, the walk well under one for a Keras file. Files are handed over as file
descriptors (``SCM_RIGHTS``); in-memory files (a ``.keras`` archive's weights) go through an anonymous
memory file. Where ``os.fork`` is missing (Windows) the bound is not applied.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import io
import mmap
import os
import select
import signal
import socket
import struct
import tempfile
import threading
import time
import warnings
from typing import IO, Any, Callable, Optional, Union

import h5py
import numpy as np

from ..errors import CorruptFileError, ResourceLimitError
from . import limits

#: Environment variable overriding :data:`limits.HDF5_PARSE_SECONDS` (``0`` switches the bound off).
SECONDS_ENV = "BILSTM_REF_HDF5_SECONDS"

_OK, _MEMORY, _TOO_BIG = b"k", b"m", b"b"
_STATUS_BYTES = 4096
#: The limits the prober applies, sent with each request (the prober's copy of the module is as old as it is).
_LIMITS = ("HDF5_PARSE_BYTES", "MAX_ATTR_BYTES", "MAX_DATASET_BYTES", "STORAGE_RATIO_FLOOR_BYTES", "MAX_STORAGE_RATIO")
_REQUEST = struct.Struct(f"!?{len(_LIMITS)}Q")  # in memory?, limits


def parse_seconds() -> float:
    """The bound in seconds: ``BILSTM_REF_HDF5_SECONDS`` when set, else :data:`limits.HDF5_PARSE_SECONDS`."""
    text = os.environ.get(SECONDS_ENV)
    if text is None or not text.strip():
        return float(limits.HDF5_PARSE_SECONDS)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise ResourceLimitError(f"{SECONDS_ENV}={text!r}: expected a number of seconds >= 0 (0 switches the bound off)")
    return value


# --- the prober's side --------------------------------------------------------------------------
def _note(status: mmap.mmap, text: str) -> None:
    data = text.encode("utf-8", "replace")[: _STATUS_BYTES - 4]
    status[4: 4 + len(data)] = data
    status[0:4] = struct.pack("!I", len(data))


def _cap_memory() -> None:
    """Cap the address space at its current size plus :data:`limits.HDF5_PARSE_BYTES` (Linux)."""
    try:
        import resource

        with open("/proc/self/statm", "rb") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        current, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = size + int(limits.HDF5_PARSE_BYTES)
        for bound in (current, hard):  # never above a limit the process was started with
            if bound != resource.RLIM_INFINITY:
                soft = min(soft, bound)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, OSError, ValueError):
        pass


def _walk(h5: Any, note: Callable[[str], None]) -> None:
    """Read everything a loader could ask for; read errors are skipped (the loaders name them).

    One ``H5Ovisit`` lists a sound file's objects quickly; where it fails (a damaged group), the
    tree is walked group by group instead, so the damage stays local and the rest is still read."""
    objects: list[tuple[str, Any]] = []

    def visit(name: bytes, info: Any) -> None:
        path = "/" + name.decode("utf-8", "replace")
        note(f"the object tree, at {path}")
        objects.append((path, info))

    note("the object tree")
    try:
        objects.append(("/", h5py.h5o.get_info(h5.id)))
        h5py.h5o.visit(h5.id, visit, info=True)  # hard links only, each object once
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001
        return _walk_groups(h5, note)
    for path, info in objects:
        if info.type == h5py.h5o.TYPE_DATASET or info.num_attrs:
            note(f"the object {path}")
            _guarded(_read_object, h5, path, note)


def _walk_groups(h5: Any, note: Callable[[str], None]) -> None:
    seen: set[Any] = set()
    groups = [h5]
    while groups:
        group = groups.pop()
        _guarded(_read_object, h5, group.name, note)
        note(f"the members of {group.name}")
        for name in _guarded(lambda: list(group.keys())) or ():
            path = f"{group.name.rstrip('/')}/{name}"
            note(f"the link {path}")
            link = _guarded(group.get, name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                continue  # soft and external links are never followed
            obj = _guarded(group.__getitem__, name)
            key = obj is not None and _guarded(lambda: h5py.h5o.get_info(obj.id).addr)
            if not key or key in seen:
                continue
            seen.add(key)
            if isinstance(obj, h5py.Group):
                groups.append(obj)
            else:
                _guarded(_read_object, h5, path, note)


#: How HDF5 (and NumPy) say an allocation failed, as h5py passes it on (an OSError, not a MemoryError):
#: "memory allocation failed for chunk", "image null after H5MM_realloc()", ...
_OUT_OF_MEMORY = ("memory allocation failed", "h5mm_", "malloc", "realloc", "unable to allocate", "can't allocate",
                  "out of memory")


#: The attributes the loaders read by name (``_io.read_attr``).
_LOOKED_UP = ("backend", "keras_version", "model_config", "layer_names", "weight_names", "name")


class _Oversized(Exception):
    """A variable-length string attribute longer than :data:`limits.MAX_ATTR_BYTES` (its storage size is one
    heap reference, so only reading it tells): the parent refuses the file without reading it itself."""


def _check_length(value: Any, where: str) -> None:
    """Mirror of ``_io.read_attr``'s check of decoded strings, done here so the parent never reads them."""
    items = value.ravel() if isinstance(value, np.ndarray) and value.dtype.kind == "O" else [value]
    for item in items:
        if isinstance(item, (str, bytes)) and len(item) > limits.MAX_ATTR_BYTES:
            unit = "characters" if isinstance(item, str) else "bytes"
            raise _Oversized(f"{where}: {len(item)} {unit} exceeds the limit of {limits.MAX_ATTR_BYTES}")


def _guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)``, or None where HDF5 reports an error (the loaders name it if they need that part)."""
    try:
        return fn(*args, **kwargs)
    except (MemoryError, _Oversized):
        raise
    except Exception as e:  # noqa: BLE001
        if any(text in str(e).lower() for text in _OUT_OF_MEMORY):  # HDF5 failing an allocation under the cap
            raise MemoryError(str(e)) from None
        return None


def _read_object(h5: Any, path: str, note: Callable[[str], None]) -> None:
    obj = h5[path]
    where = "the root group" if path == "/" else path
    note(f"the attribute names of {where}")
    names = _guarded(lambda: list(obj.attrs))
    if names is None:  # listing failed, yet a lookup by name may still reach (and loop in) an attribute
        names = [key for key in _LOOKED_UP if _guarded(obj.attrs.__contains__, key)]
    for key in names:
        note(f"attribute {key!r} of {where}")
        if _guarded(lambda: obj.attrs.get_id(key).get_storage_size() <= limits.MAX_ATTR_BYTES):
            _check_length(_guarded(obj.attrs.__getitem__, key), f"{obj.name} attribute {key!r}")
    if not isinstance(obj, h5py.Dataset):
        return
    note(f"the metadata of dataset {where}")
    shape, dtype, chunks = obj.shape, obj.dtype, obj.chunks
    plist = obj.id.get_create_plist()
    [plist.get_filter(i) for i in range(plist.get_nfilters())]
    storage = obj.id.get_storage_size()
    if chunks is None or shape is None:
        return  # contiguous or compact data is one read at a known place: nothing to loop on
    if limits.dataset_size_problem(tuple(shape), dtype.itemsize, storage) is not None:
        return  # the loaders refuse it before reading
    note(f"the chunks of dataset {where}")
    obj[()]


def _probe_fd(fd: int, note: Callable[[str], None], in_memory: bool = False) -> bytes:
    """Walk the HDF5 file open as ``fd``: by its /proc path where there is one (HDF5's own file driver), else
    and for memory files (which HDF5 cannot resolve a path of) through a Python file object."""
    path = f"/proc/self/fd/{fd}"
    note("the file's superblock and root group")
    try:
        with contextlib.ExitStack() as stack:
            source: Any = path if not in_memory and os.path.exists(path) else \
                stack.enter_context(os.fdopen(os.dup(fd), "rb"))
            with h5py.File(source, "r") as h5:
                _walk(h5, note)
    except MemoryError:
        return _MEMORY
    except _Oversized as e:
        return _TOO_BIG + str(e).encode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - unreadable: open_hdf5 itself reports why
        pass
    return _OK


def _serve(sock: socket.socket, status: mmap.mmap) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; EOF ends the prober
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, _REQUEST.size, 1)
        except OSError:
            return
        if not msg:
            return
        try:
            in_memory, *values = _REQUEST.unpack(msg)
            for key, value in zip(_LIMITS, values, strict=True):
                setattr(limits, key, value)
            _cap_memory()
            reply = _probe_fd(fds[0], lambda text: _note(status, text), in_memory)
        except MemoryError:
            reply = _MEMORY
        finally:
            for fd in fds:
                os.close(fd)
        try:
            sock.sendall(reply)
        except OSError:
            return


# --- the loader's side --------------------------------------------------------------------------
class _Prober:
    """One forked prober process and the socket and status area shared with it."""

    def __init__(self) -> None:
        self.status = mmap.mmap(-1, _STATUS_BYTES)
        parent, child = socket.socketpair(socket.AF_UNIX, getattr(socket, "SOCK_SEQPACKET", socket.SOCK_STREAM))
        with warnings.catch_warnings():  # Python 3.12+ warns on fork in threaded processes; the prober runs no Python threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the prober's side runs in the child
            code = 0
            try:
                parent.close()
                faulthandler.disable()  # a crash here is reported as a corrupt file, not as the caller's traceback
                _serve(child, self.status)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        child.close()
        self.pid, self.sock, self.owner = pid, parent, os.getpid()

    def step(self) -> str:
        (n,) = struct.unpack("!I", self.status[0:4])
        return bytes(self.status[4: 4 + min(n, _STATUS_BYTES - 4)]).decode("utf-8", "replace") or "the file"

    def close(self, kill: bool = False) -> Optional[int]:
        """Stop the prober; its wait status (None when it could not be collected)."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.sock.close()
        with contextlib.suppress(ChildProcessError):
            return os.waitpid(self.pid, 0)[1]
        return None


_lock = threading.Lock()
_prober: Optional[_Prober] = None
#: Files that passed, by identity, change time and the limits applied: loading one file again (each layer of a model, inspect then
#: load) is not probed again unless it changed. Oldest first; at most _PASSED_MAX.
_passed: dict[tuple[int, ...], None] = {}
_PASSED_MAX = 256


def _forget() -> None:
    """In a forked child: drop the parent's prober (closing the inherited socket, so the prober still ends with its
    parent) and its lock (which another thread may have held at the fork)."""
    global _prober, _lock
    if _prober is not None:
        with contextlib.suppress(OSError):
            _prober.sock.close()
    _prober, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


@atexit.register
def _stop_at_exit() -> None:
    """Stop this process's prober as the interpreter exits (rather than leave its socket to the garbage collector)."""
    if _prober is not None and _prober.owner == os.getpid():
        with contextlib.suppress(OSError):
            _prober.close(kill=True)


def _memory_fd(data: Union[bytes, memoryview]) -> int:
    """A file descriptor reading ``data`` (an anonymous memory file where the OS has one)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("bilstm-ref-hdf5", getattr(os, "MFD_CLOEXEC", 0))
    else:
        f = tempfile.TemporaryFile()
        fd = os.dup(f.fileno())
        f.close()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _identity(f: Optional[Any], name: str) -> Optional[tuple[Any, ...]]:
    """What makes a file the same file again: device, inode, size, modification and change times (and the
    member's name and the limits in force); None for no file, or one without a descriptor."""
    try:
        st = os.fstat(f.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, name, *_limits_now())


def probe_hdf5(f: Union[IO[bytes], io.BytesIO], name: str, container: Optional[IO[bytes]] = None) -> None:
    """Refuse ``f`` (an open HDF5 file or its bytes in memory) if HDF5 loops, crashes or runs out of
    memory reading its metadata. Returns quietly otherwise, also when HDF5 merely reports errors.

    Args:
        f: the HDF5 file, open, or its bytes in memory.
        name: how messages name it (``archive.keras!model.weights.h5`` for a member).
        container: the file in-memory bytes were read from (a ``.keras`` archive), so that an unchanged
            archive is not probed again.

    Raises:
        ResourceLimitError: reading took longer than :func:`parse_seconds` or more memory than
            :data:`limits.HDF5_PARSE_BYTES`; the message names ``name`` and the step.
        CorruptFileError: HDF5 crashed reading it.
    """
    seconds = parse_seconds()
    if seconds == 0 or not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return
    in_memory = isinstance(f, io.BytesIO)
    key = _identity(container if in_memory else f, name)  # None for bytes from no file: probed every time
    with _lock:
        if key is not None and key in _passed:
            return
        fd = _memory_fd(f.getbuffer()) if in_memory else os.dup(f.fileno())
        try:
            _run(fd, in_memory, name, seconds)
        finally:
            os.close(fd)
        if key is not None:
            _passed[key] = None
            while len(_passed) > _PASSED_MAX:
                del _passed[next(iter(_passed))]


class _Late(Exception):
    """The prober's answer did not come before the deadline."""


def _limits_now() -> tuple[int, ...]:
    return tuple(int(getattr(limits, k)) for k in _LIMITS)


def _send(fd: int, in_memory: bool) -> _Prober:
    """Hand ``fd`` to the prober (a new one when there is none, it belongs to the parent process or it died)."""
    global _prober
    request = _REQUEST.pack(in_memory, *_limits_now())
    for attempt in (0, 1):
        if _prober is None or _prober.owner != os.getpid():
            _prober = _Prober()
        _note(_prober.status, "")
        try:
            socket.send_fds(_prober.sock, [request], [fd])
            return _prober
        except OSError:  # it died between two files (killed from outside): start another
            _prober.close(kill=True)
            _prober = None
            if attempt:
                raise
    raise AssertionError("unreachable")


def _run(fd: int, in_memory: bool, name: str, seconds: float) -> None:
    global _prober
    prober = _send(fd, in_memory)
    try:
        deadline = time.monotonic() + seconds
        while not select.select([prober.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if time.monotonic() >= deadline:
                raise _Late
        reply = prober.sock.recv(1 << 16)
        if not reply:
            raise ConnectionResetError
    except _Late:
        step = prober.step()
        _prober = None
        prober.close(kill=True)
        raise ResourceLimitError(
            f"{name!r}: HDF5 was still reading {step} after {seconds:g} s; the file is damaged or "
            f"hostile (the bound is {SECONDS_ENV} or bilstm_ref.loaders.limits.HDF5_PARSE_SECONDS)"
        ) from None
    except ConnectionError:  # the prober died reading this file: HDF5 crashed on it
        step = prober.step()
        _prober = None
        code = prober.close(kill=True)
        how = f"signal {os.WTERMSIG(code)}" if code is not None and os.WIFSIGNALED(code) else "an error"
        raise CorruptFileError(f"{name!r}: HDF5 crashed ({how}) reading {step}; the file is damaged") from None
    except BaseException:  # interrupted (Ctrl-C, an alarm): its answer would come late, so start afresh next time
        _prober = None
        prober.close(kill=True)
        raise
    if reply.startswith(_TOO_BIG):
        raise ResourceLimitError(f"{name!r}: " + reply[1:].decode("utf-8", "replace"))
    if reply == _MEMORY:
        raise ResourceLimitError(
            f"{name!r}: HDF5 needed more than {limits.HDF5_PARSE_BYTES} bytes beyond the process's own reading "
            f"{prober.step()}; the file is damaged or hostile (the bound is bilstm_ref.loaders.limits.HDF5_PARSE_BYTES)"
        )
