"""The loader fuzz campaign (``benchmarks/fuzz.py``) in short, and its harness.

``test_fuzz.py`` mutates files in-process: an input that makes HDF5 loop or crash stops the suite instead of
being reported. The campaign runs every input in a forked child of its own (an address-space bound, a wall
deadline, its outcome reported through a pipe) and sorts what happened into loaded, refused (a
``BilstmRefError``) and the findings: escape, hang, crash, warning. Here:

* a short campaign (~300 inputs over every format that needs no Keras; ``converted`` also needs ``onnx``)
  must find nothing, every format must have inputs both loaded and refused (so the gate can fail: inputs
  that are all refused at the signature prove nothing), and the counts must add up;
* the harness must detect each kind of finding, through injected targets that raise a ``ValueError``,
  sleep past the deadline, die from ``SIGSEGV``, warn, or allocate past the memory bound; save the
  input and its record; and ``replay`` must reproduce each;
* an input is a function of (campaign seed, index): regenerating gives the same bytes, which is what
  makes a finding reproducible from the campaign's log alone;
* Ctrl-C stops the campaign, its workers and their children.

The long campaign is ``python benchmarks/fuzz.py`` (``tox -e fuzz``; benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import bilstm_ref

if not hasattr(os, "fork"):
    pytest.skip("the fuzz campaign forks a child per input (os.fork)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz  # noqa: E402

SEED = 1
COUNT = 300
AVAILABLE = [t.name for t in fuzz.default_targets() if t.unavailable() is None]


def _address_space_mb() -> int:
    return fuzz._address_space() // 1024**2


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> fuzz.Summary:
    out = tmp_path_factory.mktemp("fuzz")
    return fuzz.run_campaign(COUNT, SEED, workers=2, out=out, timeout=20.0,
                             memory_mb=max(2048, _address_space_mb() + 1024), formats=AVAILABLE, progress_every=0,
                             echo=None)


def test_short_campaign_finds_nothing(campaign: fuzz.Summary) -> None:
    found = {o: campaign.total.outcomes[o] for o in fuzz.FINDINGS}
    replay = f"python benchmarks/fuzz.py --replay {campaign.out / 'findings'}"
    assert not any(found.values()), f"{found}; replay: {replay}\n{campaign.table()}"


def test_every_format_both_loads_and_refuses(campaign: fuzz.Summary) -> None:
    assert list(campaign.formats) == AVAILABLE
    for name, stats in campaign.formats.items():
        assert stats.outcomes["loaded"] > 0, f"{name}: nothing loaded, the mutations are too coarse\n{campaign.table()}"
        assert stats.outcomes["refused"] > 0, f"{name}: nothing refused\n{campaign.table()}"


def test_the_counts_add_up(campaign: fuzz.Summary) -> None:
    assert campaign.total.tried == COUNT
    share = COUNT // len(AVAILABLE)
    for name, stats in campaign.formats.items():
        assert stats.tried in (share, share + 1), name  # inputs cycle through the formats
        assert sum(stats.outcomes[o] for o in fuzz.OUTCOMES) == stats.tried, name
        assert set(stats.outcomes) <= set(fuzz.OUTCOMES), name
        assert sum(stats.refused_by_class.values()) == stats.outcomes["refused"], name
        assert all(hasattr(bilstm_ref, c) or c.startswith("Fixture") for c in stats.refused_by_class), name
    written = json.loads((campaign.out / "summary.json").read_text(encoding="utf-8"))
    assert written["total"]["tried"] == COUNT and written["finding_count"] == campaign.finding_count


# --- the harness detects each kind of finding ----------------------------------------------------
def _escape(case: fuzz.Case) -> None:
    raise ValueError(f"injected: {len(case.path.read_bytes())} bytes")


def _hang(case: fuzz.Case) -> None:
    time.sleep(60)


def _crash(case: fuzz.Case) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _warn(case: fuzz.Case) -> None:
    warnings.warn(RuntimeWarning("injected: invalid value encountered in cast"))


def _allocate(case: fuzz.Case) -> None:
    np.zeros(1 << 36, dtype=np.uint8)  # 64 GiB of address space (calloc: nothing touched if it were granted)


INJECTED: dict[str, tuple[Callable[[fuzz.Case], None], set[str]]] = {
    "escape": (_escape, {"escape"}),
    "hang": (_hang, {"hang"}),
    "crash": (_crash, {"crash"}),
    "warning": (_warn, {"warning"}),
    "memory": (_allocate, {"refused", "crash", "escape"}),  # never a hang, never loaded
}


def _seeds() -> list[fuzz.Seed]:
    return [fuzz.make_seed("inline.bin", {"input.bin": bytes(range(256)) * 4})]


@pytest.mark.parametrize("kind", INJECTED)
def test_the_harness_detects_saves_and_replays_each_finding(kind: str, tmp_path: Path) -> None:
    load, expected = INJECTED[kind]
    target = fuzz.Target(f"injected-{kind}", load, _seeds)
    summary = fuzz.run_campaign(2, SEED, workers=2, out=tmp_path, timeout=0.5 if kind == "hang" else 20.0,
                                memory_mb=_address_space_mb() + 512, targets=[target], progress_every=0, echo=None)
    outcomes = +summary.total.outcomes
    assert summary.total.tried == 2 and len(outcomes) == 1, outcomes
    (outcome,) = outcomes
    assert outcome in expected, (outcome, summary.findings)
    if kind == "hang":
        assert summary.total.percentile_ms(50) < 5000  # killed at the deadline, not at the sleep's end
    records = sorted((tmp_path / "findings").rglob("*.json"))
    assert len(records) == 2 and len(summary.findings) == 2
    for path in records:
        rec = json.loads(path.read_text(encoding="utf-8"))
        assert rec["outcome"] == outcome and rec["target"] == target.name and rec["seed_file"] == "inline.bin"
        assert rec["message"]
        if kind == "escape":
            assert "ValueError: injected" in rec["message"] and "_escape" in rec["traceback"]
        if kind in ("crash", "hang"):  # faulthandler wrote where the child was
            assert f"_{kind}" in rec["traceback"], rec["traceback"]
        regenerated = fuzz.make_input(target, _seeds(), SEED, rec["index"])
        assert (path.parent / rec["files"][0]["saved"]).read_bytes() == regenerated.files["input.bin"]
        assert rec["mutation"] == regenerated.mutation
    replayed = fuzz.replay(tmp_path / "findings", targets=[target], echo=None)
    assert [r.now.outcome for r in replayed] == [outcome, outcome]


def test_a_refusal_and_a_load_are_not_findings(tmp_path: Path) -> None:
    def refuse(case: fuzz.Case) -> None:  # refuses the inputs whose length a mutation changed
        if len(case.path.read_bytes()) != 1024:
            raise bilstm_ref.CorruptFileError("injected")

    summary = fuzz.run_campaign(40, SEED, workers=1, out=tmp_path, targets=[fuzz.Target("refuse", refuse, _seeds)],
                                memory_mb=None, progress_every=0, echo=None)
    stats = summary.formats["refuse"]
    assert stats.outcomes["loaded"] and stats.outcomes["refused"] == stats.refused_by_class["CorruptFileError"]
    assert summary.finding_count == 0 and not (tmp_path / "findings").exists()


# --- inputs are reproducible ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus() -> dict[str, tuple[fuzz.Target, list[fuzz.Seed]]]:
    return {t.name: (t, list(t.seeds())) for t in fuzz.default_targets() if t.name in AVAILABLE}


@pytest.mark.parametrize("name", AVAILABLE)
def test_an_input_is_a_function_of_seed_and_index(corpus: dict[str, tuple[fuzz.Target, list[fuzz.Seed]]],
                                                  name: str) -> None:
    target, seeds = corpus[name]
    first = [fuzz.make_input(target, seeds, SEED, i) for i in range(30)]
    again = [fuzz.make_input(target, seeds, SEED, i) for i in reversed(range(30))][::-1]
    assert first == again  # same bytes, same description, whatever else was generated before
    other = [fuzz.make_input(target, seeds, SEED + 1, i) for i in range(30)]
    assert [i.files for i in first] != [i.files for i in other]
    originals = {s.name: dict(s.files) for s in seeds}
    changed = sum(i.files != originals[i.seed] for i in first)
    assert changed >= 25, f"only {changed} of 30 inputs differ from their seed"
    assert len({i.mutation for i in first}) >= 25


# --- Ctrl-C ---------------------------------------------------------------------------------------
def _session_members(sid: int) -> list[int]:
    """The live processes of session ``sid`` (zombies, already dead, left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields after "(comm)": state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to list the campaign's processes")
def test_ctrl_c_stops_the_campaign_and_every_process_of_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--count", "100000",
                             "--workers", "2", "--formats", "legacy-h5-k3", "--out", str(out), "--progress", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until inputs are running
            if "inputs" in line:
                break
        assert proc.poll() is None, proc.stdout.read()
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, rest
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] and 0 < summary["total"]["tried"] < 100000
    deadline = time.monotonic() + 5
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _session_members(proc.pid), "processes of the campaign outlived it"
