"""Builders for valid Keras model files (no Keras needed) and the side-effect guard of the security suite.

Everything hostile is generated inside the tests from these builders (the hostile-input
tables A and B): a valid file is written first, then mutated. Builders are reached through the ``build``
fixture; the guard through ``no_side_effects``.

* ``.keras``: a ZIP_STORED archive ``metadata.json`` + ``config.json`` + ``model.weights.h5``
  laid out exactly as Keras 3.15 writes it.
* Keras 3 ``.weights.h5`` + a model JSON (``model.to_json()``).
* Legacy full-model ``.h5`` as Keras 2 writes it (``model_config``, ``model_weights``,
  ``layer_names`` / ``weight_names``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import resource
import shutil
import signal
import struct
import sys
import threading
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np
import pytest

import bilstm_ref
from bilstm_ref.loaders import limits

KERAS2_DATA = Path(__file__).resolve().parent.parent / "data" / "keras2"

UNITS = 4
DIM = 3
TIMESTEPS = 5

#: Modules whose appearance in sys.modules during a load means something was imported on a file's say-so.
FORBIDDEN_MODULE_ROOTS = ("keras", "tensorflow", "tf_keras", "torch", "evil_marker", "hdf5plugin")

#: Roots a lazy first-use import may legitimately come from while loading.
EXPECTED_MODULE_ROOTS = frozenset(sys.stdlib_module_names) - {"pickle", "pickletools", "shelve", "marshal"} | {
    "numpy", "h5py", "bilstm_ref", "_pytest", "pytest", "pluggy", "hypothesis", "xdist", "execnet"}

H5Hook = Optional[Callable[[h5py.File], None]]

# The weight datasets inside a Keras 3 weights tree, in get_weights() order.
KERAS3_WEIGHT_PATHS = [
    f"/layers/bidirectional/{d}_layer/cell/vars/{i}" for d in ("forward", "backward") for i in range(3)
]
LEGACY_WEIGHT_NAMES = [
    f"bidirectional/{d}_lstm_26/lstm_cell/{w}:0"
    for d in ("forward", "backward")
    for w in ("kernel", "recurrent_kernel", "bias")
]
LEGACY_WEIGHT_PATHS = [f"/model_weights/bidirectional/{w}" for w in LEGACY_WEIGHT_NAMES]


# --- weights ------------------------------------------------------------------------------------
def make_weights(seed: int = 0, units: int = UNITS, dim: int = DIM, dtype: Any = np.float32,
                 use_bias: bool = True) -> list[np.ndarray]:
    """[fw kernel (D,4n), fw recurrent (n,4n), fw bias (4n,), bw ...] with distinct values."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        out.append(rng.uniform(-0.5, 0.5, (dim, 4 * units)).astype(dtype))
        out.append(rng.uniform(-0.5, 0.5, (units, 4 * units)).astype(dtype))
        if use_bias:
            out.append(rng.uniform(-0.5, 0.5, (4 * units,)).astype(dtype))
    return out


# --- Keras 3 configs ----------------------------------------------------------------------------
def _policy(name: str = "float32") -> dict[str, Any]:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def _init(cls: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"module": "keras.initializers", "class_name": cls, "config": config, "registered_name": None}


def keras3_lstm_config(name: str, go_backwards: bool, units: int = UNITS, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "trainable": True,
        "dtype": _policy(),
        "return_sequences": True,
        "return_state": False,
        "go_backwards": go_backwards,
        "stateful": False,
        "unroll": False,
        "zero_output_for_mask": True,
        "units": units,
        "activation": "tanh",
        "recurrent_activation": "sigmoid",
        "use_bias": True,
        "kernel_initializer": _init("GlorotUniform", {"seed": None, "input_axes": None, "output_axes": None}),
        "recurrent_initializer": _init("Orthogonal", {"seed": None, "gain": 1.0}),
        "bias_initializer": _init("Zeros", {}),
        "unit_forget_bias": True,
        "kernel_regularizer": None,
        "recurrent_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "recurrent_constraint": None,
        "bias_constraint": None,
        "dropout": 0.0,
        "recurrent_dropout": 0.0,
        "seed": None,
    }
    cfg.update(over)
    return cfg


def keras3_bidirectional_entry(units: int = UNITS, dim: int = DIM, name: str = "bidirectional",
                               functional: bool = True) -> dict[str, Any]:
    build = {"input_shape": [None, TIMESTEPS, dim]}
    entry: dict[str, Any] = {
        "module": "keras.layers",
        "class_name": "Bidirectional",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": _policy(),
            "merge_mode": "concat",
            "layer": {
                "module": "keras.layers",
                "class_name": "LSTM",
                "config": keras3_lstm_config("forward_lstm", False, units),
                "registered_name": None,
                "build_config": copy.deepcopy(build),
            },
            "backward_layer": {
                "module": "keras.layers",
                "class_name": "LSTM",
                "config": keras3_lstm_config("backward_lstm", True, units),
                "registered_name": None,
                "build_config": copy.deepcopy(build),
            },
        },
        "registered_name": None,
        "build_config": copy.deepcopy(build),
    }
    if functional:
        entry["name"] = name
        entry["inbound_nodes"] = [{
            "args": [{"class_name": "__keras_tensor__", "config": {
                "shape": [None, TIMESTEPS, dim], "dtype": "float32", "keras_history": ["input_layer", 0, 0]}}],
            "kwargs": {"mask": None},
        }]
    return entry


def keras3_model_config(kind: str = "functional", units: int = UNITS, dim: int = DIM,
                        extra_layers: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """What Keras 3.15 writes to config.json (and ``model.to_json()``) for Input -> Bidirectional(LSTM)."""
    functional = kind == "functional"
    inp: dict[str, Any] = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": [None, TIMESTEPS, dim], "dtype": "float32", "sparse": False, "ragged": False,
                   "name": "input_layer", "optional": False},
        "registered_name": None,
    }
    if functional:
        inp["name"] = "input_layer"
        inp["inbound_nodes"] = []
    layers = [inp, keras3_bidirectional_entry(units, dim, functional=functional)] + [copy.deepcopy(e) for e in
                                                                                     extra_layers]
    if functional:
        last = layers[-1].get("name", "bidirectional")
        return {
            "module": "keras.src.models.functional",
            "class_name": "Functional",
            "config": {"name": "functional", "trainable": True, "layers": layers,
                       "input_layers": [["input_layer", 0, 0]], "output_layers": [[last, 0, 0]]},
            "registered_name": "Functional",
            "build_config": {"input_shape": None},
            "compile_config": None,
        }
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": True, "dtype": _policy(), "layers": layers,
                   "build_input_shape": [None, TIMESTEPS, dim]},
        "registered_name": None,
        "build_config": {"input_shape": [None, TIMESTEPS, dim]},
        "compile_config": {},
    }


def lstm_entry_of(config: dict[str, Any], direction: str = "layer") -> dict[str, Any]:
    """The config dict of the Bidirectional's forward (``layer``) or ``backward_layer`` LSTM."""
    bidi = next(e for e in config["config"]["layers"] if e["class_name"] == "Bidirectional")
    return bidi["config"][direction]["config"]


def bidi_config_of(config: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in config["config"]["layers"] if e["class_name"] == "Bidirectional")["config"]


# --- Keras 3 weights tree -----------------------------------------------------------------------
def write_keras3_tree(h5: h5py.File, weights: list[np.ndarray], model_name: str = "functional",
                      extra_keys: tuple[tuple[str, str], ...] = (), input_layer: bool = True) -> None:
    """The ``.weights.h5`` tree Keras 3.15 writes for Input -> Bidirectional(LSTM) (+ extra layers)."""
    layers = h5.create_group("layers")
    if input_layer:
        layers.create_group("input_layer/vars").attrs["name"] = "input_layer"
    bi = layers.create_group("bidirectional")
    n = len(weights) // 2
    for d, part in (("forward", weights[:n]), ("backward", weights[n:])):
        g = bi.create_group(f"{d}_layer")
        cell = g.create_group("cell/vars")
        cell.attrs["name"] = "lstm_cell"
        for i, w in enumerate(part):
            cell.create_dataset(str(i), data=w)
        g.create_group("vars").attrs["name"] = f"{d}_lstm"
    bi.create_group("vars").attrs["name"] = "bidirectional"
    for key, name in extra_keys:
        layers.create_group(f"{key}/vars").attrs["name"] = name
    h5.create_group("vars").attrs["name"] = model_name


def keras3_weights_bytes(weights: list[np.ndarray], hook: H5Hook = None, **kw: Any) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        write_keras3_tree(h5, weights, **kw)
        if hook is not None:
            hook(h5)
    return buf.getvalue()


def zip_bytes(members: list[tuple[str | zipfile.ZipInfo, bytes]],
              compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip of ``members`` in order (duplicates allowed: zipfile's warning is silenced)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" when a test asks for one
        with zipfile.ZipFile(buf, "w", compression=compression) as z:
            for name, data in members:
                if isinstance(name, str):
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = compression
                    info.external_attr = 0o644 << 16
                    name = info
                z.writestr(name, data)
    return buf.getvalue()


def keras_members(config: dict[str, Any] | None = None, weights: list[np.ndarray] | None = None,
                  hook: H5Hook = None, keras_version: str = "3.15.1", **tree_kw: Any
                  ) -> list[tuple[str, bytes]]:
    config = keras3_model_config() if config is None else config
    weights = make_weights() if weights is None else weights
    tree_kw.setdefault("model_name", config["config"].get("name", "functional"))
    meta = {"keras_version": keras_version, "date_saved": "2026-01-01@00:00:00"}
    return [
        ("metadata.json", json.dumps(meta).encode()),
        ("config.json", json.dumps(config).encode()),
        ("model.weights.h5", keras3_weights_bytes(weights, hook, **tree_kw)),
    ]


def zip_headers(raw: bytes) -> list[tuple[str, str, int]]:
    """(kind "local"/"central", member name, offset) of every zip header in ``raw``."""
    out = []
    for kind, sig, name_len_at, name_at in (("local", b"PK\x03\x04", 26, 30), ("central", b"PK\x01\x02", 28, 46)):
        i = raw.find(sig)
        while i != -1:
            (n,) = struct.unpack_from("<H", raw, i + name_len_at)
            out.append((kind, raw[i + name_at:i + name_at + n].decode("utf-8", "replace"), i))
            i = raw.find(sig, i + 4)
    return out


# field -> (offset in a local header, offset in a central header, struct format)
_ZIP_FIELDS = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "crc": (14, 16, "<I"), "csize": (18, 20, "<I"),
               "usize": (22, 24, "<I"), "external_attr": (None, 38, "<I")}


def patch_zip(raw: bytes, member: str, where: tuple[str, ...] = ("local", "central"), **fields: int) -> bytes:
    """``raw`` with header ``fields`` of ``member`` overwritten (both headers by default)."""
    out = bytearray(raw)
    hits = 0
    for kind, name, off in zip_headers(raw):
        if name != member or kind not in where:
            continue
        for field, value in fields.items():
            local_at, central_at, fmt = _ZIP_FIELDS[field]
            at = local_at if kind == "local" else central_at
            if at is not None:
                struct.pack_into(fmt, out, off + at, value)
                hits += 1
    assert hits, f"no header of {member!r} patched"
    return bytes(out)


def zip_field(raw: bytes, member: str, field: str) -> int:
    off = next(o for k, n, o in zip_headers(raw) if k == "central" and n == member)
    _, at, fmt = _ZIP_FIELDS[field]
    return struct.unpack_from(fmt, raw, off + at)[0]


class Builders:
    """Valid model files in a directory; every builder returns the path it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # raw
    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    # .keras
    def keras(self, name: str = "model.keras", config: dict[str, Any] | None = None,
              weights: list[np.ndarray] | None = None, hook: H5Hook = None,
              members: list[tuple[Any, bytes]] | None = None, compression: int = zipfile.ZIP_STORED,
              **tree_kw: Any) -> Path:
        if members is None:
            members = keras_members(config, weights, hook, **tree_kw)
        return self.write(name, zip_bytes(members, compression))

    # .weights.h5 + model JSON
    def weights_h5(self, name: str = "model.weights.h5", weights: list[np.ndarray] | None = None,
                   hook: H5Hook = None, **tree_kw: Any) -> Path:
        weights = make_weights() if weights is None else weights
        return self.write(name, keras3_weights_bytes(weights, hook, **tree_kw))

    def model_json(self, name: str = "model.json", config: dict[str, Any] | None = None) -> Path:
        config = keras3_model_config() if config is None else config
        return self.write(name, json.dumps(config).encode())

    # legacy Keras 2 full-model .h5
    def legacy_h5(self, name: str = "legacy.h5", config: dict[str, Any] | None = None,
                  weights: list[np.ndarray] | None = None, hook: H5Hook = None) -> Path:
        path = self.root / name
        write_legacy_h5(path, config, weights, hook)
        return path

    def copy_keras2(self, relpath: str, name: str | None = None) -> Path:
        src = KERAS2_DATA / relpath
        dst = self.root / (name or src.name)
        shutil.copyfile(src, dst)
        return dst


# --- Keras 2 legacy .h5 -------------------------------------------------------------------------
def legacy_lstm_config(**over: Any) -> dict[str, Any]:
    cfg = {"name": "lstm", "trainable": True, "dtype": "float32", "units": UNITS, "activation": "tanh",
           "recurrent_activation": "hard_sigmoid", "use_bias": True, "return_sequences": True,
           "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
           "time_major": False, "implementation": 2, "dropout": 0.0, "recurrent_dropout": 0.0}
    cfg.update(over)
    return cfg


def legacy_model_config(extra_layers: tuple[dict[str, Any], ...] = (), **lstm_over: Any) -> dict[str, Any]:
    return {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {"class_name": "InputLayer",
                 "config": {"batch_input_shape": [None, TIMESTEPS, DIM], "dtype": "float32", "name": "input_1"}},
                {"class_name": "Bidirectional",
                 "config": {"name": "bidirectional", "trainable": True, "dtype": "float32",
                            "layer": {"class_name": "LSTM", "config": legacy_lstm_config(**lstm_over)},
                            "merge_mode": "concat"}},
                *[copy.deepcopy(e) for e in extra_layers],
            ],
        },
    }


def write_legacy_h5(path: Path | io.BytesIO, config: dict[str, Any] | None = None,
                    weights: list[np.ndarray] | None = None, hook: H5Hook = None,
                    layer_names: list[str] | None = None) -> None:
    config = legacy_model_config() if config is None else config
    weights = make_weights() if weights is None else weights
    names = layer_names or [e["config"]["name"] for e in config["config"]["layers"]]
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = "2.15.0"
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["model_config"] = json.dumps(config).encode("utf-8")
        mw = h5.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([n.encode() for n in names])
        mw.attrs["keras_version"] = b"2.15.0"
        mw.attrs["backend"] = b"tensorflow"
        for n in names:
            g = mw.create_group(n)
            if n == "bidirectional":
                g.attrs["weight_names"] = np.array([w.encode() for w in LEGACY_WEIGHT_NAMES])
                for wname, w in zip(LEGACY_WEIGHT_NAMES, weights):
                    g.create_dataset(wname, data=w)
            else:
                g.attrs["weight_names"] = np.array([], dtype=np.float64)
        mw.create_group("top_level_model_weights").attrs["weight_names"] = np.array([], dtype=np.float64)
        if hook is not None:
            hook(h5)


def legacy_bytes(config: dict[str, Any] | None = None, weights: list[np.ndarray] | None = None,
                 hook: H5Hook = None) -> bytes:
    buf = io.BytesIO()
    write_legacy_h5(buf, config, weights, hook)
    return buf.getvalue()


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def build(tmp_path: Path) -> Builders:
    return Builders(tmp_path)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """Where hostile payloads would write if they ever ran. Must never exist."""
    return tmp_path / "PWNED-marker"


@pytest.fixture(scope="session", autouse=True)
def _warm_loader(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Load each kind of valid file once, so lazy first-use imports don't count as side effects."""
    root = tmp_path_factory.mktemp("warm")
    b = Builders(root)
    bilstm_ref.load_spec(b.keras())
    bilstm_ref.load_spec(b.weights_h5(), config=b.model_json())
    bilstm_ref.load_spec(b.legacy_h5())
    bilstm_ref.inspect_file(b.keras())
    for bad in (b.write("bad.keras", b"junk"), b.write("bad.h5", b"\x89HDF\r\n\x1a\njunk"),
                b.write("bad.json", b"{"), root / "missing.keras"):
        with contextlib.suppress(bilstm_ref.BilstmRefError):
            bilstm_ref.load_spec(bad)


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with (mode, size, mtime_ns); symlinks not followed."""
    out: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (a hang becomes a failure, not a stuck run)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds} s (hung?)")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Guard:
    """What one guarded block did: elapsed seconds, peak traced bytes, max-RSS growth."""

    elapsed: float = 0.0
    traced_peak: int = 0
    rss_growth: int = 0


@pytest.fixture
def no_side_effects(tmp_path: Path, marker: Path) -> Callable[..., Any]:
    """``with no_side_effects(): <load a hostile file>`` checks around the block that nothing was imported, written or run.

    (b) no marker file, no new ``sys.modules`` entry at all (the loader is warmed up per session);
    (c) nothing under ``tmp_path`` (and ``watch`` dirs) created, removed or modified;
    (d) wall time under ``seconds`` (enforced by an alarm too) and, with ``max_mb``, both the
        tracemalloc peak and the growth of the process's max RSS under ``max_mb``.
    """

    @contextlib.contextmanager
    def guard(seconds: float = 5.0, max_mb: float | None = None, watch: tuple[Path, ...] = ()
              ) -> Iterator[Guard]:
        roots = (tmp_path, *watch)
        before_files = [snapshot(r) if r == tmp_path else sorted(os.listdir(r)) for r in roots]
        before_mods = set(sys.modules)
        result = Guard()
        rss0 = _maxrss_bytes()
        if max_mb is not None:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with time_limit(max(seconds * 2, 4)):
                yield result
        finally:
            result.elapsed = time.perf_counter() - t0
            if max_mb is not None:
                result.traced_peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            result.rss_growth = _maxrss_bytes() - rss0
        assert not marker.exists(), f"payload ran: {marker} was created"
        new_mods = set(sys.modules) - before_mods
        forbidden = sorted(m for m in new_mods if m.split(".")[0] in FORBIDDEN_MODULE_ROOTS)
        assert not forbidden, f"modules imported on a file's say-so: {forbidden}"
        # Anything else new must be a lazily imported piece of the stdlib or of the loader's own stack
        # (first use on an error path); the session warm-up makes even that rare.
        foreign = sorted(m for m in new_mods if m.split(".")[0] not in EXPECTED_MODULE_ROOTS)
        assert not foreign, f"loading imported new modules: {foreign}"
        after_files = [snapshot(r) if r == tmp_path else sorted(os.listdir(r)) for r in roots]
        for root, before, after in zip(roots, before_files, after_files):
            assert before == after, f"files under {root} changed: before {before}, after {after}"
        assert result.elapsed < seconds, f"took {result.elapsed:.2f} s (limit {seconds} s)"
        if max_mb is not None:
            limit = max_mb * 1024**2
            assert result.traced_peak < limit, f"traced peak {result.traced_peak / 1024**2:.1f} MiB > {max_mb} MiB"
            assert result.rss_growth < limit, f"max RSS grew {result.rss_growth / 1024**2:.1f} MiB > {max_mb} MiB"

    return guard


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``small_limits(MAX_JSON_BYTES=4096, ...)``: shrink loader limits for this test (Keras's pattern)."""

    def apply(**values: int) -> None:
        for key, value in values.items():
            assert hasattr(limits, key), key
            monkeypatch.setattr(limits, key, value)

    return apply


@pytest.fixture(scope="session")
def kb() -> Any:
    """This module's helpers (make_weights, keras3_model_config, ...) for tests: ``kb.make_weights()``.

    (Test modules cannot ``import conftest``: tests/conftest.py has the same module name.)
    """
    import types

    return types.SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("_")})
