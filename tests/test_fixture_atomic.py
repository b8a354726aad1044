"""Writing fixtures: "nothing lost" (docs/fixtures.md#writing-atomic-locked-content-addressed), without Keras.

Refusing to overwrite, --force (unchanged / replaced), planted symlinks, writers killed at every
step of a write (fresh and --force rewrite), Ctrl-C, a full disk, the directory lock, validation
before the first byte is written, read-only directories, deterministic bytes, and ``diff``.

The fixtures are a matrix case with the reference's answers (cast to float32, like Keras's)
standing in for Keras's; "B" is the same fixture with answers moved by 2e-6 (new bytes, still
within the float32 tolerance, so both versions verify).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.conformance.compare import Tolerance
from bilstm_ref.errors import (
    BilstmRefError,
    DTypeMismatchError,
    FixtureExistsError,
    FixtureIntegrityError,
    FixtureLockError,
)
from bilstm_ref.fixtures import (
    LOCK_NAME,
    TMP_PREFIX,
    Call,
    Fixture,
    clean_stale_temps,
    diff_fixtures,
    directory_lock,
    read_fixture,
    scan,
    verify_fixture,
    write_fixture,
)
from bilstm_ref.fixtures.record import fixture_for_case
from bilstm_ref.conformance.judge import run_impl

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "fixtures"
CASE_ID = "bidi-concat-seq-state-mask_right-init-stateful"


# --- fixtures to write --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def fixture_a() -> Fixture:
    case = matrix.by_id()[CASE_ID]
    outputs = [{k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
               for out in run_impl(case, case.reference())]
    return fixture_for_case(case, outputs, {"keras": "test", "backend": "none"})


def shifted(fixture: Fixture, delta: float, call: Optional[int] = None, name: Optional[str] = None,
            index: Optional[tuple[int, ...]] = None) -> Fixture:
    """``fixture`` with recorded answers moved by ``delta`` (all, or one call / output / element)."""
    calls = []
    for k, c in enumerate(fixture.calls):
        expected = {}
        for n, v in c.expected.items():
            v = np.array(v, copy=True)
            if (call is None or call == k) and (name is None or name == n):
                if index is None:
                    v += np.float32(delta)
                else:
                    v[index] += np.float32(delta)
            expected[n] = v
        calls.append(dataclasses.replace(c, expected=expected))
    return dataclasses.replace(fixture, calls=tuple(calls))


@functools.lru_cache(maxsize=None)
def fixture_b() -> Fixture:
    return shifted(fixture_a(), 2e-6)


def files(directory: Path) -> dict[str, bytes]:
    """Every entry of ``directory`` (links as 'LINK->target')."""
    out = {}
    for p in sorted(directory.iterdir()):
        out[p.name] = f"LINK->{os.readlink(p)}".encode() if p.is_symlink() else p.read_bytes()
    return out


def manifest_of(directory: Path, fid: str = CASE_ID) -> dict[str, Any]:
    return json.loads((directory / f"{fid}.json").read_text())


def payload_of(directory: Path, fid: str = CASE_ID) -> Path:
    return directory / manifest_of(directory, fid)["payload"]["file"]


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def same_answers(a: Fixture, b: Fixture) -> bool:
    return all(np.array_equal(ca.expected[n], cb.expected[n]) for ca, cb in zip(a.calls, b.calls, strict=True)
               for n in a.output_names)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    d = tmp_path / "fx"
    d.mkdir()
    assert write_fixture(d, fixture_a()) == "written"
    return d


# --- (a) no overwrite without force (D7) ---------------------------------------------------------
@pytest.mark.parametrize("second", ["same", "different"])
def test_a_second_write_without_force_is_refused_and_changes_nothing(written: Path, second: str) -> None:
    before = files(written)
    fixture = fixture_a() if second == "same" else fixture_b()
    manifest = written / f"{CASE_ID}.json"
    with pytest.raises(FixtureExistsError, match=f"{str(manifest)!r} exists; pass --force") as info:
        write_fixture(written, fixture)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, BilstmRefError)
    assert files(written) == before  # byte-identical, no new payload, no temp file


# --- (b) force, identical answers ----------------------------------------------------------------
def test_b_force_with_identical_answers_is_unchanged_and_untouched(written: Path) -> None:
    stats = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in written.iterdir()}
    before = files(written)
    assert write_fixture(written, fixture_a(), force=True) == "unchanged"
    assert files(written) == before
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in written.iterdir()} == stats


def test_b_a_new_generation_time_alone_is_unchanged_and_the_old_time_kept(written: Path) -> None:
    before = files(written)
    later = dataclasses.replace(fixture_a(), provenance={**fixture_a().provenance, "generated": "2099-01-01T00:00:00Z"})
    assert write_fixture(written, later, force=True) == "unchanged"
    assert files(written) == before


def test_b_other_provenance_is_replaced_with_the_same_payload(written: Path) -> None:
    payload = payload_of(written)
    newer = dataclasses.replace(fixture_a(), provenance={**fixture_a().provenance, "keras": "9.9.9"})
    assert write_fixture(written, newer, force=True) == "replaced"
    assert payload_of(written) == payload and payload.exists()  # content-addressed: same answers, same file
    assert read_fixture(written / f"{CASE_ID}.json").provenance["keras"] == "9.9.9"
    assert sorted(p.name for p in written.iterdir()) == sorted([payload.name, f"{CASE_ID}.json"])


# --- (c) force, different answers ----------------------------------------------------------------
def test_c_force_with_different_answers_replaces_and_removes_the_old_payload(written: Path) -> None:
    old_payload = payload_of(written)
    assert write_fixture(written, fixture_b(), force=True) == "replaced"
    new_payload = payload_of(written)
    assert new_payload != old_payload and not old_payload.exists()
    assert sorted(p.name for p in written.iterdir()) == sorted([new_payload.name, f"{CASE_ID}.json"])
    fixture = read_fixture(written / f"{CASE_ID}.json")
    assert same_answers(fixture, fixture_b())
    assert verify_fixture(fixture).status == "pass"
    assert not scan(written).problems and not scan(written).warnings


def test_c_a_leftover_payload_of_an_interrupted_run_is_reused_or_repaired(written: Path) -> None:
    """A fresh write over an orphan payload (no manifest) succeeds; a damaged orphan is rewritten."""
    payload = payload_of(written)
    (written / f"{CASE_ID}.json").unlink()
    payload.write_bytes(payload.read_bytes()[:100])  # damaged leftover with the right name
    assert write_fixture(written, fixture_a()) == "written"
    assert verify_fixture(read_fixture(written / f"{CASE_ID}.json")).status == "pass"


def test_c_force_does_not_repair_a_damaged_payload_with_identical_answers(written: Path) -> None:
    payload = payload_of(written)
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 1
    payload.write_bytes(bytes(data))
    write_fixture(written, fixture_a(), force=True)
    read_fixture(written / f"{CASE_ID}.json")


@pytest.mark.parametrize("victim", ["other-fixture-payload", "readme"])
def test_c_force_deletes_whatever_the_old_manifest_names(written: Path, victim: str) -> None:
    write_fixture(written, dataclasses.replace(fixture_a(), id="other"))
    if victim == "readme":
        (written / "README.md").write_text("keep me")
        name = "README.md"
    else:
        name = manifest_of(written, "other")["payload"]["file"]
    m = manifest_of(written)
    m["payload"]["file"] = name
    (written / f"{CASE_ID}.json").write_text(json.dumps(m))
    kept = (written / name).read_bytes()
    write_fixture(written, fixture_b(), force=True)
    assert (written / name).exists() and (written / name).read_bytes() == kept
    if victim != "readme":
        read_fixture(written / "other.json")


# --- (d) planted symlinks (D9) --------------------------------------------------------------------
@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_text("precious")
    return v


def test_d_symlinked_manifest_without_force_is_refused_and_not_followed(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "fx"
    d.mkdir()
    link = d / f"{CASE_ID}.json"
    link.symlink_to(victim)
    with pytest.raises(FixtureExistsError, match=f"{str(link)!r} exists"):
        write_fixture(d, fixture_a())
    assert victim.read_text() == "precious"
    assert os.listdir(d) == [link.name] and link.is_symlink()


def test_d_dangling_symlinked_manifest_without_force_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "fx"
    d.mkdir()
    target = tmp_path / "would-be-created.json"
    (d / f"{CASE_ID}.json").symlink_to(target)
    with pytest.raises(FixtureExistsError):
        write_fixture(d, fixture_a())
    assert not target.exists()


def test_d_symlinked_manifest_with_force_replaces_the_link(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "fx"
    d.mkdir()
    link = d / f"{CASE_ID}.json"
    link.symlink_to(victim)
    assert write_fixture(d, fixture_a(), force=True) == "replaced"
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.is_file()
    assert verify_fixture(read_fixture(link)).status == "pass"


def test_d_symlink_planted_at_the_payload_name_is_replaced_not_followed(tmp_path: Path, victim: Path) -> None:
    probe = tmp_path / "probe"
    probe.mkdir()
    write_fixture(probe, fixture_a())
    name = payload_of(probe).name
    d = tmp_path / "fx"
    d.mkdir()
    (d / name).symlink_to(victim)
    assert write_fixture(d, fixture_a()) == "written"
    assert victim.read_text() == "precious"
    assert not (d / name).is_symlink()
    assert verify_fixture(read_fixture(d / f"{CASE_ID}.json")).status == "pass"


def test_d_symlink_planted_at_the_lock_is_a_held_lock(tmp_path: Path, victim: Path) -> None:
    (tmp_path / LOCK_NAME).symlink_to(victim)
    with pytest.raises(FixtureLockError, match="another run is writing fixtures here"):
        with directory_lock(tmp_path):
            pass
    assert victim.read_text() == "precious" and (tmp_path / LOCK_NAME).is_symlink()


# --- (e) writers killed mid-write (D8) ------------------------------------------------------------
_CHILD = r"""
import os, signal, sys
from pathlib import Path
from bilstm_ref.fixtures import store as F

src, dst, force, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "force", sys.argv[4]
fixture = F.read_fixture(src)
real_publish, real_fdopen = F._publish, os.fdopen


class Torn:
    # The temp file's write: half the bytes reach the disk, then the process is SIGKILLed.
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)


class Interrupted(Torn):
    # Ctrl-C in the middle of the temp file's write.
    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise KeyboardInterrupt


def publish(directory, name, data, replace):
    kind = "manifest" if name.endswith(".json") else "payload"
    if mode == "exit-before-" + kind:
        os._exit(9)
    if mode in ("kill-writing-" + kind, "interrupt-writing-" + kind):
        wrapper = Torn if mode.startswith("kill") else Interrupted
        os.fdopen = lambda *a, **k: wrapper(real_fdopen(*a, **k))
    try:
        real_publish(directory, name, data, replace)
    finally:
        os.fdopen = real_fdopen
    if mode == "exit-after-" + kind:
        os._exit(9)


F._publish = publish
try:
    F.write_fixture(dst, fixture, force=force)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""

# mode -> (expected return code, whether a temp file is left, which payloads remain besides the old one)
_KILLS = {
    "exit-before-manifest": (9, False),   # payload published, process gone before the manifest
    "exit-after-manifest": (9, False),    # manifest switched, process gone before the old payload is removed
    "kill-writing-payload": (-9, True),   # SIGKILL halfway through the payload's temp file
    "kill-writing-manifest": (-9, True),  # SIGKILL halfway through the manifest's temp file
    "interrupt-writing-payload": (130, False),   # Ctrl-C during the payload's temp file
    "interrupt-writing-manifest": (130, False),  # Ctrl-C during the manifest's temp file
}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run_child(src_manifest: Path, dst: Path, force: bool, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, str(src_manifest), str(dst), "force" if force else "fresh", mode],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=_child_env(), check=False,
    )


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, dict[str, bytes]]:
    """A and B written normally: their exact bytes are what a complete write must produce."""
    out = {}
    for label, fixture in (("a", fixture_a()), ("b", fixture_b())):
        d = tmp_path / f"src_{label}"
        d.mkdir()
        write_fixture(d, fixture)
        out[label] = files(d)
    return out


@pytest.mark.parametrize("rewrite", [False, True], ids=["fresh", "force-rewrite"])
@pytest.mark.parametrize("mode", sorted(_KILLS))
def test_e_a_writer_killed_at_any_step_loses_nothing(tmp_path: Path, sources: dict[str, dict[str, bytes]],
                                                     mode: str, rewrite: bool,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc_expected, temp_left = _KILLS[mode]
    a, b = sources["a"], sources["b"]
    manifest_name = f"{CASE_ID}.json"
    dst = tmp_path / "dst"
    dst.mkdir()
    if rewrite:
        for name, data in a.items():
            (dst / name).write_bytes(data)

    r = _run_child(tmp_path / "src_b" / manifest_name, dst, rewrite, mode)
    assert r.returncode == rc_expected, r.stderr[-3000:]

    after = files(dst)
    left = temps(dst)
    assert bool(left) == temp_left, (mode, sorted(after))
    # No torn fixture file: every manifest / payload present is byte-identical to a complete write.
    for name, data in after.items():
        if name not in left:
            assert data in (a.get(name), b.get(name)), f"{name} is not a complete A or B file"
    # The manifest (if any) is A's or B's, and its fixture reads and verifies.
    if manifest_name in after:
        m = after[manifest_name]
        assert m in (a[manifest_name], b[manifest_name])
        fixture = read_fixture(dst / manifest_name)
        assert verify_fixture(fixture).status == "pass"
        assert same_answers(fixture, fixture_a() if m == a[manifest_name] else fixture_b())
    if rewrite and not mode.startswith("exit-after-manifest"):
        # The switch never happened: the old fixture is intact, byte for byte.
        assert {k: after[k] for k in a} == a
    # Nothing half-written passes unnoticed: an orphan payload is an integrity problem of scan / verify.
    found = scan(dst)
    orphan = manifest_name not in after and any(n.endswith(".npz") for n in after)
    assert [p.status for p in found.problems] == (["integrity"] if orphan else [])
    if orphan:
        assert "incomplete or interrupted fixture" in found.problems[0].message
        assert main(["fixtures", "verify", str(dst)]) == 1
        out = capsys.readouterr().out
        assert "incomplete or interrupted fixture" in out
        assert all(f"warning: {t}: stale temp file" in out for t in left)
    # Stale temp files and superseded payloads (a new payload published, or an old one not yet
    # removed, around an interrupted manifest switch) are warnings; clean_stale_temps removes
    # exactly them and never the payload the manifest names.
    referenced = json.loads(after[manifest_name])["payload"]["file"] if manifest_name in after else None
    superseded = sorted(n for n in after if n.endswith(".npz") and referenced and n != referenced)
    assert sorted(w.split(":")[0] for w in found.warnings) == sorted(left + superseded)
    assert all(("stale temp file" in w) or ("superseded" in w) for w in found.warnings)
    assert sorted(clean_stale_temps(dst)) == sorted(left + superseded)
    assert temps(dst) == []
    if referenced:
        assert (dst / referenced).exists()
    # Recovery: running the same write again completes it.
    assert write_fixture(dst, fixture_b(), force=True) in ("written", "replaced", "unchanged")
    fixture = read_fixture(dst / manifest_name)
    assert same_answers(fixture, fixture_b()) and verify_fixture(fixture).status == "pass"
    assert not scan(dst).problems and not scan(dst).warnings


def test_e_a_killed_fresh_write_leaves_a_torn_temp_only(tmp_path: Path, sources: dict[str, dict[str, bytes]]) -> None:
    """The temp file is where the tear is: shorter than the payload, never under the payload's name."""
    dst = tmp_path / "dst"
    dst.mkdir()
    r = _run_child(tmp_path / "src_b" / f"{CASE_ID}.json", dst, False, "kill-writing-payload")
    assert r.returncode == -9
    (temp,) = temps(dst)
    payload_size = max(len(v) for k, v in sources["b"].items() if k.endswith(".npz"))
    assert 0 < (dst / temp).stat().st_size < payload_size
    assert scan(dst).manifests == [] and scan(dst).problems == []
    assert main(["fixtures", "verify", str(dst)]) == 2  # nothing to check is not a pass


def test_e_an_interrupted_force_rewrite_leaves_an_unreported_payload(
        tmp_path: Path, sources: dict[str, dict[str, bytes]]) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    for name, data in sources["a"].items():
        (dst / name).write_bytes(data)
    r = _run_child(tmp_path / "src_b" / f"{CASE_ID}.json", dst, True, "exit-before-manifest")
    assert r.returncode == 9
    (orphan,) = set(files(dst)) - set(sources["a"])
    found = scan(dst)
    assert any(orphan in w for w in found.warnings) or any(orphan in p.file for p in found.problems)


# --- (f) the directory lock (D11) ------------------------------------------------------------------
def test_f_a_held_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_NAME
    with directory_lock(tmp_path):
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(FixtureLockError, match=f"{str(lock)!r} exists: another run is writing fixtures here "
                                                   r"\(delete it if no run is active\)"):
            with directory_lock(tmp_path):
                pass
        assert lock.exists()  # the refused second holder did not remove the first one's lock
    assert not lock.exists()
    with directory_lock(tmp_path):  # released: can be taken again
        pass


def test_f_a_stale_lock_of_a_dead_run_still_refuses(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("999999\n")
    with pytest.raises(FixtureLockError, match="delete it if no run is active"):
        with directory_lock(tmp_path):
            pass


def test_f_concurrent_lockers_exactly_one_wins(tmp_path: Path) -> None:
    n = 8
    start, done = threading.Barrier(n), threading.Barrier(n)
    outcomes: list[str] = []

    def worker() -> None:
        start.wait()
        try:
            with directory_lock(tmp_path):
                outcomes.append("won")
                done.wait()
        except FixtureLockError:
            outcomes.append("lost")
            done.wait()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["lost"] * (n - 1) + ["won"]
    assert not (tmp_path / LOCK_NAME).exists()


def test_f_generate_refuses_a_locked_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x03\x04 not read: the lock is checked first")
    with directory_lock(out):
        before = files(out)
        rc = main(["fixtures", "generate", "--out", str(out), "--model", str(model), "--layer", "bidirectional"])
        err = capsys.readouterr().err
        assert files(out) == before
    assert rc == 2
    assert f"{str(out / LOCK_NAME)!r} exists: another run is writing fixtures here" in err
    assert os.listdir(out) == []


def test_d6_generate_refuses_an_output_directory_holding_the_model(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    model = out / "model.keras"
    model.write_bytes(b"PK\x03\x04 model")
    spelled = str(out / "sub" / ".." / "model.keras")  # the same inode, spelled differently
    rc = main(["fixtures", "generate", "--out", f"{out}{os.sep}.", "--model", spelled])
    assert rc == 2
    assert "holds the input model" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["model.keras", "sub"] and model.read_bytes() == b"PK\x03\x04 model"


@pytest.mark.parametrize("which", ["out-is-the-model", "out-is-a-file-model-missing"])
def test_d6_generate_with_a_file_as_output_directory(tmp_path: Path, which: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x03\x04 model")
    if which == "out-is-the-model":
        out, model_arg = model, model
    else:
        out, model_arg = tmp_path / "notes.txt", tmp_path / "missing.keras"
        out.write_text("notes")
    before = files(tmp_path)
    rc = main(["fixtures", "generate", "--out", str(out), "--model", str(model_arg)])
    assert rc == 2 and "error:" in capsys.readouterr().err
    assert files(tmp_path) == before


# --- (g) validation before the first write ---------------------------------------------------------
def _bad_fixtures() -> dict[str, tuple[Fixture, type]]:
    fx = fixture_a()
    c0 = fx.calls[0]
    return {
        "atol-nan": (dataclasses.replace(fx, tolerance=types.SimpleNamespace(atol=float("nan"), rtol=1e-5)),
                     FixtureIntegrityError),
        "rtol-inf": (dataclasses.replace(fx, tolerance=types.SimpleNamespace(atol=1e-5, rtol=float("inf"))),
                     FixtureIntegrityError),
        "atol-over-max": (dataclasses.replace(fx, tolerance=Tolerance(2.0, 0.0)), FixtureIntegrityError),
        "config-object": (dataclasses.replace(fx, spec=dataclasses.replace(
            fx.spec, config={**fx.spec.config, "hook": object()})), FixtureIntegrityError),
        "flags-object": (dataclasses.replace(fx, flags={**fx.flags, "callback": print}), FixtureIntegrityError),
        "provenance-bytes": (dataclasses.replace(fx, provenance={**fx.provenance, "raw": b"\x00"}),
                             FixtureIntegrityError),
        "id-traversal": (dataclasses.replace(fx, id="../escaped"), FixtureIntegrityError),
        "id-slash": (dataclasses.replace(fx, id="a/b"), FixtureIntegrityError),
        "id-empty": (dataclasses.replace(fx, id=""), FixtureIntegrityError),
        "mask-on-some-calls": (dataclasses.replace(fx, calls=(dataclasses.replace(c0, mask=None),) + fx.calls[1:]),
                               FixtureIntegrityError),
        "outputs-mismatch": (dataclasses.replace(fx, output_names=("output",)), FixtureIntegrityError),
        "int-answers": (dataclasses.replace(fx, calls=tuple(dataclasses.replace(
            c, expected={k: np.zeros(v.shape, np.int32) for k, v in c.expected.items()}) for c in fx.calls)),
                        DTypeMismatchError),
        "complex-input": (dataclasses.replace(fx, calls=tuple(dataclasses.replace(
            c, x=np.asarray(c.x, np.complex64)) for c in fx.calls)), DTypeMismatchError),
    }


@pytest.mark.parametrize("kind", ["atol-nan", "rtol-inf", "atol-over-max", "config-object", "flags-object",
                                  "provenance-bytes", "id-traversal", "id-slash", "id-empty", "mask-on-some-calls",
                                  "outputs-mismatch", "int-answers", "complex-input"])
def test_g_an_invalid_fixture_is_refused_before_anything_is_written(tmp_path: Path, kind: str) -> None:
    fixture, error = _bad_fixtures()[kind]
    d = tmp_path / "fx"
    d.mkdir()
    with pytest.raises(error):
        write_fixture(d, fixture)
    assert os.listdir(d) == []
    assert os.listdir(tmp_path) == ["fx"]  # nothing escaped the directory either


def test_g_an_invalid_fixture_leaves_an_existing_one_untouched(written: Path) -> None:
    before = files(written)
    bad = dataclasses.replace(fixture_b(), tolerance=types.SimpleNamespace(atol=float("nan"), rtol=1e-5))
    with pytest.raises(FixtureIntegrityError, match="tolerance atol: expected a finite number"):
        write_fixture(written, bad, force=True)
    assert files(written) == before


@pytest.mark.parametrize("where", ["config", "flags", "provenance"])
def test_g_a_non_finite_float_in_the_metadata(tmp_path: Path, where: str) -> None:
    fx = fixture_a()
    if where == "config":
        bad = dataclasses.replace(fx, spec=dataclasses.replace(fx.spec, config={**fx.spec.config, "dropout": float("nan")}))
    elif where == "flags":
        bad = dataclasses.replace(fx, flags={**fx.flags, "weird": float("inf")})
    else:
        bad = dataclasses.replace(fx, provenance={**fx.provenance, "seed": float("nan")})
    try:
        with pytest.raises(FixtureIntegrityError, match=CASE_ID):
            write_fixture(tmp_path, bad)
    finally:
        assert os.listdir(tmp_path) == []


def test_g_an_id_with_a_trailing_newline_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(FixtureIntegrityError, match="fixture id"):
        write_fixture(tmp_path, dataclasses.replace(fixture_a(), id="case\n"))


# --- (h) read-only directory, missing directory, full disk (D10) ----------------------------------
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions, so a read-only directory is writable for root")
def test_h_a_read_only_directory_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            write_fixture(d, fixture_a())
        assert os.listdir(d) == []
    finally:
        d.chmod(0o755)


def test_h_a_missing_directory_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    d = tmp_path / "missing"
    with pytest.raises(FileNotFoundError):
        write_fixture(d, fixture_a())
    assert not d.exists()


_FULL_DISK_CHILD = r"""
import resource, signal, sys
from pathlib import Path
from bilstm_ref.fixtures import store as F

src, dst, force = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "force"
fixture = F.read_fixture(src)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
try:
    F.write_fixture(dst, fixture, force=force)
except OSError as e:
    print("OSError", e.errno)
    sys.exit(3)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE / SIGXFSZ behaviour checked on Linux")
@pytest.mark.parametrize("rewrite", [False, True], ids=["fresh", "force-rewrite"])
def test_h_a_full_disk_mid_write_leaves_nothing_and_keeps_the_old(tmp_path: Path, sources: dict[str, dict[str, bytes]],
                                                                  rewrite: bool) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    if rewrite:
        for name, data in sources["a"].items():
            (dst / name).write_bytes(data)
    r = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path / "src_b" / f"{CASE_ID}.json"), str(dst),
                        "force" if rewrite else "fresh"], capture_output=True, text=True, timeout=60, cwd=REPO,
                       env=_child_env(), check=False)
    assert r.returncode == 3, r.stdout + r.stderr[-3000:]
    assert files(dst) == (sources["a"] if rewrite else {})  # temp removed, old fixture byte-identical


# --- (i) deterministic bytes -----------------------------------------------------------------------
def test_i_the_same_fixture_gives_the_same_bytes_in_two_directories(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write_fixture(one, fixture_a())
    write_fixture(two, fixture_a())
    assert files(one) == files(two)
    assert payload_of(one).name.split(".")[-2] == manifest_of(one)["payload"]["sha256"][:12]


def test_i_committed_fixtures_rewrite_byte_identically(tmp_path: Path) -> None:
    """read_fixture then write_fixture reproduces a Keras-recorded fixture's files exactly."""
    manifests = sorted(COMMITTED.glob("*.json"))
    if not manifests:
        pytest.skip(f"no committed fixtures in {COMMITTED}")
    for i, path in enumerate(manifests[:: max(1, len(manifests) // 8)]):
        d = tmp_path / str(i)
        d.mkdir()
        write_fixture(d, read_fixture(path))
        payload = manifest_of(COMMITTED, path.stem)["payload"]["file"]
        assert files(d) == {path.name: path.read_bytes(), payload: (COMMITTED / payload).read_bytes()}, path.name


# --- (j) diff ----------------------------------------------------------------------------------------
@pytest.fixture
def diff_dirs(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    write_fixture(old, fixture_a())
    write_fixture(new, shifted(fixture_a(), 1e-3, call=1, name="output", index=(2, 4, 7)))
    return old, new


def test_j_diff_reports_an_answer_moved_beyond_tolerance(diff_dirs: tuple[Path, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    old, new = diff_dirs
    drifts, notes = diff_fixtures(old, new)
    assert notes == []
    assert [(d.id, d.note) for d in drifts] == [(CASE_ID, "beyond tolerance")]
    (out,) = drifts[0].outputs
    assert out.name == "call2/output" and out.max_abs_index == (2, 4, 7)
    assert out.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert main(["fixtures", "diff", str(old), str(new)]) == 1
    text = capsys.readouterr().out
    assert "1 fixture(s) recorded different answers (1 beyond their tolerance)" in text
    assert f"  {CASE_ID} (beyond tolerance)" in text
    assert "call2/output: max|new - old| = 0.001 at (2, 4, 7)" in text


def test_j_diff_of_identical_directories_exits_0(diff_dirs: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    old, _ = diff_dirs
    copy = old.parent / "copy"
    shutil.copytree(old, copy)
    assert diff_fixtures(old, copy) == ([], [])
    assert main(["fixtures", "diff", str(old), str(copy)]) == 0
    assert "no recorded answer differs" in capsys.readouterr().out


def test_j_diff_within_tolerance_is_reported_but_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    write_fixture(old, fixture_a())
    write_fixture(new, fixture_b())  # every answer moved by 2e-6 < atol + rtol*|x|
    drifts, _ = diff_fixtures(old, new)
    assert [(d.id, d.note) for d in drifts] == [(CASE_ID, "within tolerance")]
    assert main(["fixtures", "diff", str(old), str(new)]) == 0
    assert f"{CASE_ID} (within tolerance)" in capsys.readouterr().out


def test_j_diff_notes_fixtures_on_one_side_and_different_inputs(diff_dirs: tuple[Path, Path]) -> None:
    old, new = diff_dirs
    write_fixture(old, dataclasses.replace(fixture_a(), id="only-old"))
    fx = fixture_a()
    moved = dataclasses.replace(fx, id="moved-x", calls=tuple(dataclasses.replace(c, x=np.asarray(c.x) + 1)
                                                               for c in fx.calls))
    write_fixture(old, dataclasses.replace(fx, id="moved-x"))
    write_fixture(new, moved)
    drifts, notes = diff_fixtures(old, new)
    assert [d.id for d in drifts] == [CASE_ID]
    assert f"only-old: only in {str(old)!r}" in notes
    assert "moved-x: inputs or outputs differ; answers not comparable" in notes


def test_j_diff_refuses_a_tampered_fixture(diff_dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = diff_dirs
    payload = payload_of(new)
    data = bytearray(payload.read_bytes())
    data[-5] ^= 1
    payload.write_bytes(bytes(data))
    with pytest.raises(FixtureIntegrityError, match="sha256 mismatch"):
        diff_fixtures(old, new)
    assert main(["fixtures", "diff", str(old), str(new)]) == 2
    assert payload.name in capsys.readouterr().err


@pytest.mark.parametrize("changed", ["initial_state", "mask"])
def test_j_diff_ignores_masks_and_initial_states(tmp_path: Path, changed: str) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    fx = fixture_a()
    write_fixture(old, fx)
    c0 = fx.calls[0]
    if changed == "initial_state":
        calls = (dataclasses.replace(c0, initial_state=tuple(np.asarray(s) + 1 for s in c0.initial_state)),) + fx.calls[1:]
    else:
        calls = tuple(dataclasses.replace(c, mask=np.ones_like(np.asarray(c.mask))) for c in fx.calls)
    write_fixture(new, dataclasses.replace(fx, calls=calls))
    _, notes = diff_fixtures(old, new)
    assert f"{CASE_ID}: inputs or outputs differ; answers not comparable" in notes


def test_call_is_the_public_building_block() -> None:
    """Call / Fixture are plain frozen dataclasses: what the tests above build on."""
    c = Call(np.zeros((1, 2, 3), np.float32), None, None, {"output": np.zeros((1, 4), np.float32)})
    assert c.reset_before is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.reset_before = True  # type: ignore[misc]


def test_j_diff_with_nothing_comparable_is_not_no_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    fx = fixture_a()
    write_fixture(old, fx)  # the same id recorded on other inputs (another seed): not comparable
    write_fixture(new, dataclasses.replace(fx, calls=tuple(dataclasses.replace(c, x=np.asarray(c.x) * 2)
                                                           for c in fx.calls)))
    assert main(["fixtures", "diff", str(old), str(new)]) == 2
    captured = capsys.readouterr()
    assert "answers not comparable" in captured.out
    assert "nothing was compared" in captured.err and "no recorded answer differs" not in captured.out
