"""The time and memory bound on HDF5 parsing (``loaders/_isolate.py``): a file on which HDF5 loops, crashes
or runs out of memory is refused with a clear error instead of hanging or killing the process.

``tests/data/hdf5/hang-legacy-h5-attribute.h5`` is a tf_keras ``.h5`` with a few bytes changed (found by a
mutation fuzz): reading its root attribute ``backend`` (a variable-length string whose global heap is
damaged) spins inside HDF5's ``H5Aread`` for minutes, with the interpreter lock held.
"""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import bilstm_ref
from bilstm_ref import CorruptFileError, ResourceLimitError
from bilstm_ref.loaders import _isolate, limits

HANG = Path(__file__).resolve().parents[1] / "data" / "hdf5" / "hang-legacy-h5-attribute.h5"
#: Found by the fuzz campaign with the prober in place: listing the root's attributes fails (so the prober read
#: none of them), yet the loader's lookup of 'backend' by name succeeds and loops.
HANG_LOOKUP = HANG.with_name("hang-legacy-h5-attribute-lookup.h5")


def rx(path) -> str:
    return re.escape(str(path))


@pytest.fixture
def fresh_prober():
    """A new prober for this test and none left behind (tests here kill it, replace it or patch what it runs)."""
    _drop_prober()
    yield
    _drop_prober()


def _drop_prober() -> None:
    _isolate._passed.clear()
    if _isolate._prober is not None:
        _isolate._prober.close(kill=True)
        _isolate._prober = None


@pytest.mark.parametrize("api", ["load_spec", "inspect_file", "mask_sources"])
def test_the_hanging_file_is_refused_within_the_bound(api, monkeypatch, no_side_effects):
    monkeypatch.setenv(_isolate.SECONDS_ENV, "1")
    fn = getattr(bilstm_ref.loaders.files, api)
    with no_side_effects(seconds=4) as guard:
        with pytest.raises(ResourceLimitError, match=rf"^'{rx(str(HANG))}': HDF5 was still reading attribute "
                                                     r"'backend' of the root group after 1 s; the file is damaged or "
                                                     r"hostile \(the bound is BILSTM_REF_HDF5_SECONDS"):
            fn(HANG)
    assert guard.elapsed >= 1.0


def test_an_attribute_reached_only_by_name_is_probed_too(monkeypatch, no_side_effects):
    monkeypatch.setenv(_isolate.SECONDS_ENV, "1")
    with no_side_effects(seconds=4):
        with pytest.raises(ResourceLimitError, match=rf"^'{rx(str(HANG_LOOKUP))}': HDF5 was still reading attribute "
                                                     r"'backend' of the root group after 1 s"):
            bilstm_ref.load_spec(HANG_LOOKUP)


def test_the_hanging_file_at_the_default_bound(no_side_effects):
    """The documented constant (3 s) applies when the environment does not say otherwise."""
    assert limits.HDF5_PARSE_SECONDS == 3.0
    with no_side_effects(seconds=limits.HDF5_PARSE_SECONDS + 2) as guard:
        with pytest.raises(ResourceLimitError, match=r"after 3 s"):
            bilstm_ref.load_spec(HANG, layer="bi1")
    assert guard.elapsed >= limits.HDF5_PARSE_SECONDS


def test_the_hanging_file_as_the_weights_of_a_keras_archive(build, kb, monkeypatch, no_side_effects):
    """In-memory HDF5 (a ``.keras`` member) goes through the same bound, named as archive!member."""
    monkeypatch.setenv(_isolate.SECONDS_ENV, "1")
    members = [(n, HANG.read_bytes() if n == "model.weights.h5" else d) for n, d in kb.keras_members()]
    path = build.keras(members=members)
    with no_side_effects(seconds=4):
        with pytest.raises(ResourceLimitError, match=rf"^'{rx(str(path))}!model.weights.h5': HDF5 was still reading"):
            bilstm_ref.load_spec(path)


def test_loading_goes_on_after_a_refusal(build, monkeypatch):
    monkeypatch.setenv(_isolate.SECONDS_ENV, "0.5")
    path = build.legacy_h5()
    before = bilstm_ref.load_spec(path)
    with pytest.raises(ResourceLimitError):
        bilstm_ref.load_spec(HANG)
    after = bilstm_ref.load_spec(path)
    for a, b in zip(before.weights, after.weights, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "three"])
def test_a_bad_bound_in_the_environment_is_refused(build, monkeypatch, value):
    path = build.legacy_h5()
    monkeypatch.setenv(_isolate.SECONDS_ENV, value)
    with pytest.raises(ResourceLimitError, match=rf"BILSTM_REF_HDF5_SECONDS={value!r}: expected a number of seconds"):
        bilstm_ref.load_spec(path)


def test_zero_switches_the_bound_off(build, monkeypatch, fresh_prober):
    def no_prober() -> None:
        raise AssertionError("a prober was started with the bound off")

    monkeypatch.setattr(_isolate, "_Prober", no_prober)
    monkeypatch.setenv(_isolate.SECONDS_ENV, "0")
    assert bilstm_ref.load_spec(build.legacy_h5()).class_name == "Bidirectional"


def test_without_fork_the_bound_is_not_applied(build, monkeypatch, fresh_prober):
    """Where os.fork is missing (Windows) files load as before, unbounded (documented)."""
    monkeypatch.delattr(os, "fork")
    assert bilstm_ref.load_spec(build.legacy_h5()).class_name == "Bidirectional"
    assert _isolate._prober is None


@pytest.mark.parametrize("kind", ["legacy .h5", ".keras", ".weights.h5"])
def test_valid_files_load_the_same_with_and_without_the_bound(build, monkeypatch, kind):
    if kind == "legacy .h5":
        path, config = build.legacy_h5(), None
    elif kind == ".keras":
        path, config = build.keras(), None
    else:
        path, config = build.weights_h5(), build.model_json()
    bounded = bilstm_ref.load_spec(path, config=config)
    monkeypatch.setenv(_isolate.SECONDS_ENV, "0")
    unbounded = bilstm_ref.load_spec(path, config=config)
    assert bounded.config == unbounded.config and bounded.provenance == unbounded.provenance
    for a, b in zip(bounded.weights, unbounded.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def _crash(fd, note, in_memory):  # runs in the prober: HDF5 "crashes" while reading a named step
    note("attribute 'model_config' of the root group")
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_crash_while_parsing_is_a_corrupt_file(build, monkeypatch, fresh_prober):
    path = build.legacy_h5()
    monkeypatch.setattr(_isolate, "_probe_fd", _crash)  # the next prober is forked with it
    with pytest.raises(CorruptFileError, match=rf"^'{rx(str(path))}': HDF5 crashed \(signal {int(signal.SIGSEGV)}\) "
                                               r"reading attribute 'model_config' of the root group; the file is damaged"):
        bilstm_ref.load_spec(path)
    monkeypatch.undo()
    assert bilstm_ref.load_spec(path).class_name == "Bidirectional"


def test_a_prober_killed_between_files_is_replaced(build, fresh_prober):
    path = build.legacy_h5()
    bilstm_ref.load_spec(path)
    os.kill(_isolate._prober.pid, signal.SIGKILL)
    os.waitpid(_isolate._prober.pid, 0)
    _isolate._passed.clear()
    assert bilstm_ref.load_spec(path).class_name == "Bidirectional"
    assert _isolate._prober is not None and _isolate._prober.sock.fileno() >= 0


def test_memory_beyond_the_bound_is_a_resource_limit(build, small_limits, fresh_prober):
    """A 48 MiB string attribute read with 16 MiB to spare: the prober runs out of address space, the loader says so."""
    def hook(h5):
        h5.attrs["training_config"] = "x" * (48 * 1024**2)

    path = build.legacy_h5(hook=hook)
    small_limits(HDF5_PARSE_BYTES=16 * 1024**2, MAX_ATTR_BYTES=128 * 1024**2)
    with pytest.raises(ResourceLimitError, match=rf"^'{rx(str(path))}': HDF5 needed more than 16777216 bytes "
                                                 r"beyond the process's own reading attribute 'training_config'"):
        bilstm_ref.load_spec(path)


def test_the_limits_in_force_are_the_callers_not_the_probers_copy(build, small_limits):
    """The prober is forked once; limits changed afterwards (here MAX_ATTR_BYTES) still apply to it."""
    path = build.legacy_h5(hook=lambda h5: h5.attrs.__setitem__("model_config", str(h5.attrs["model_config"])))
    bilstm_ref.load_spec(path)  # the prober exists now
    small_limits(MAX_ATTR_BYTES=100)
    with pytest.raises(ResourceLimitError, match=r"/ attribute 'model_config': \d+ characters exceeds the limit of 100"):
        bilstm_ref.load_spec(path)


def test_a_forked_child_gets_its_own_prober(build):
    path = build.legacy_h5()
    bilstm_ref.load_spec(path)
    parent_prober = _isolate._prober.pid
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's side
        ok = False
        try:
            _isolate._passed.clear()
            ok = (_isolate._prober is None and bilstm_ref.load_spec(path).class_name == "Bidirectional"
                  and _isolate._prober.pid != parent_prober)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert _isolate._prober.pid == parent_prober
    assert bilstm_ref.load_spec(path).class_name == "Bidirectional"


@pytest.mark.parametrize("kind", ["legacy .h5", ".keras"])
def test_an_unchanged_file_is_probed_once(build, monkeypatch, fresh_prober, kind):
    path = build.legacy_h5() if kind == "legacy .h5" else build.keras()
    name = str(path) + ("!model.weights.h5" if kind == ".keras" else "")
    calls = []
    real = _isolate._run
    monkeypatch.setattr(_isolate, "_run", lambda *a: calls.append(a[2]) or real(*a))
    bilstm_ref.load_spec(path)
    bilstm_ref.inspect_file(path)
    assert calls == [name]
    os.utime(path, ns=(1, 1))  # a change (of its times here) makes it a new file
    bilstm_ref.load_spec(path)
    assert calls == [name] * 2


def test_threads_share_the_prober_safely(build):
    paths = [build.legacy_h5(f"m{i}.h5") for i in range(4)]
    errors: list[BaseException] = []

    def work(p: Path) -> None:
        try:
            for _ in range(5):
                bilstm_ref.load_spec(p)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors


def test_a_signalling_nan_weight_loads_without_a_floating_point_warning(build, kb):
    """A damaged weight that happens to be a signalling NaN: the cast to float64 would warn ("invalid value
    encountered in cast"); it loads silently, is reported as non-finite and propagates as NaN."""
    weights = kb.make_weights()
    weights[0].view(np.uint32)[0, 1] = 0x7FA00001  # a float32 signalling NaN
    path = build.legacy_h5(weights=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = bilstm_ref.load_spec(path)
        layer = bilstm_ref.build(spec)
        out = layer(np.ones((1, 2, kb.DIM), dtype=np.float32))
    assert np.isnan(spec.weights[0][0, 1])
    assert spec.provenance["nonfinite_weights"] == [kb.LEGACY_WEIGHT_PATHS[0]]
    assert np.isnan(np.asarray(out)).any()


def test_bytes_in_memory_are_handed_over_whole(fresh_prober):
    """The in-memory path (a .keras member) gives the prober exactly the bytes the loader reads."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        h5.attrs["note"] = "x" * 300
    small = buf.getvalue()
    fd = _isolate._memory_fd(small)
    try:
        assert os.pread(fd, len(small) + 10, 0) == small
    finally:
        os.close(fd)
    t = time.perf_counter()
    _isolate.probe_hdf5(buf, "mem.h5")
    assert time.perf_counter() - t < limits.HDF5_PARSE_SECONDS


def test_the_prober_looks_up_every_attribute_the_loaders_read_by_name() -> None:
    """Where the attribute list cannot be read, the prober tries the loaders' names one by one (the second
    hang): a name the loaders read but the prober does not know would go unprobed."""
    import ast

    package = Path(bilstm_ref.__file__).parent
    read = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("read_attr", "read_string_list")
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                read.add(node.args[1].value)
    assert {"model_config", "layer_names", "weight_names"} <= read  # the scan sees the calls
    assert read <= set(_isolate._LOOKED_UP)
