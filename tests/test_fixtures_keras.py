"""Fixture lifecycle with live Keras: generate, verify, regenerate, drift, a user's own model,
and the pytest plugin's record-once workflow (pytester)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.fixtures import diff_fixtures, read_fixture, scan, verify_fixture, write_fixture
from bilstm_ref.fixtures.record import fixture_for_case

pytestmark = pytest.mark.keras
FIXTURES = Path(__file__).parent.parent / "fixtures"
SUITE = [c.id for c in matrix.fixture_suite()]


def _snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def test_record_matrix_writes_keeps_and_rewrites_without_the_cli(keras, tmp_path: Path) -> None:
    """The recording the CLI's ``fixtures generate`` stands on, called as a function."""
    from bilstm_ref.suites.harness import RunOptions, pending, record_matrix

    cases = matrix.select(matrix.cases(), ["bidi-concat-seq-state-mask_right"])[:3]
    assert len(cases) == 3
    done: list[tuple[int, int]] = []
    assert pending(cases[:2], tmp_path) == (cases[:2], [])
    statuses = record_matrix(cases[:2], tmp_path, RunOptions(jobs=1), progress=lambda n, bad: done.append((n, bad)))
    assert [(cid, st) for cid, st, _ in statuses] == [(c.id, "written") for c in cases[:2]]
    assert sum(n for n, _ in done) == 2
    for path in scan(tmp_path).manifests:  # Keras's answers, which the reference reproduces
        assert verify_fixture(read_fixture(path)).status in ("pass", "known-deviation")
    todo, kept = pending(cases, tmp_path)
    assert todo == [cases[2]] and kept == [c.id for c in cases[:2]]
    assert [cid for cid, _, _ in record_matrix(todo, tmp_path, RunOptions(jobs=1))] == [cases[2].id]
    todo, kept = pending(cases, tmp_path, force=True)
    assert todo == list(cases) and kept == []
    assert [st for _, st, _ in record_matrix(todo, tmp_path, RunOptions(jobs=1), force=True)] == ["unchanged"] * 3


def test_generate_verify_regenerate_and_tamper(keras, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fx"
    pick = ["-k", "bidi-sum-seq-state-mask_left", "--jobs", "1"]
    assert main(["fixtures", "generate", "--out", str(out), *pick]) == 0
    written = scan(out).manifests
    assert len(written) >= 3
    assert main(["fixtures", "verify", str(out)]) == 0
    assert f"fixtures checked: {len(written)}" in capsys.readouterr().out

    before = _snapshot(out)
    assert main(["fixtures", "generate", "--out", str(out), *pick]) == 1  # exists, no --force
    assert "nothing was overwritten" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert main(["fixtures", "generate", "--out", str(out), "--force", *pick]) == 0
    assert f"{len(written)} unchanged" in capsys.readouterr().out
    assert _snapshot(out) == before  # same answers: same bytes, not even rewritten

    payload = sorted(out.glob("*.npz"))[0]
    raw = bytearray(payload.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    payload.write_bytes(bytes(raw))
    assert main(["fixtures", "verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "integrity failures: 1" in text and payload.name in text and "sha256 mismatch" in text


@pytest.mark.parametrize("case_id", SUITE)
def test_committed_fixture_matches_the_installed_keras(keras_oracle, case_id: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    """Drift between the committed answers and this Keras, shown as a readable diff.

    With --force-regen the fixture is re-recorded from this Keras and the test fails, so the
    change is reviewed (git diff) before it is committed.
    """
    case = matrix.by_id()[case_id]
    path = FIXTURES / f"{case_id}.json"
    committed = read_fixture(path)
    live = fixture_for_case(case, keras_oracle.run(case), keras_oracle.versions)
    new_dir = tmp_path / "live"
    new_dir.mkdir()
    old_dir = tmp_path / "committed"
    old_dir.mkdir()
    shutil.copy(path, old_dir)
    shutil.copy(FIXTURES / json.loads(path.read_text())["payload"]["file"], old_dir)
    write_fixture(new_dir, live)
    drifts, notes = diff_fixtures(old_dir, new_dir)
    assert not notes, notes
    beyond = [d for d in drifts if d.note == "beyond tolerance"]
    if beyond and request.config.getoption("--force-regen"):
        write_fixture(FIXTURES, live, force=True)
        pytest.fail(f"{case_id}: re-recorded from Keras {keras_oracle.versions['keras']}; review `git diff fixtures`")
    report = "\n".join(f"  {o.name}: max|new - old| = {o.max_abs:.3g} at {o.max_abs_index}"
                       for d in beyond for o in d.outputs)
    assert not beyond, (
        f"{case_id}: Keras {keras_oracle.versions['keras']} answers differently from the committed fixture "
        f"(recorded with Keras {committed.provenance['keras']}):\n{report}\nre-record with pytest --force-regen"
    )


def _user_model(keras, folder: Path) -> Path:
    L = keras.layers
    inp = keras.Input((6, 3))
    h = L.Masking()(inp)
    h = L.Bidirectional(L.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid"), merge_mode="sum",
                        name="encoder")(h)
    out = L.Dense(2)(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(3)
    enc = model.get_layer("encoder")
    enc.set_weights([rng.normal(size=w.shape).astype("float32") for w in enc.get_weights()])
    path = folder / "user_model.keras"
    model.save(path)
    return path


def test_fixtures_for_a_users_keras_model(keras, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _user_model(keras, tmp_path)
    out = tmp_path / "fx"
    args = ["fixtures", "generate", "--model", str(model), "--layer", "encoder", "--out", str(out),
            "--cases", "3", "--masks", "--states", "--seed", "5"]
    assert main(args) == 0
    assert len(scan(out).manifests) == 3
    assert main(["fixtures", "verify", str(out)]) == 0
    assert "fixtures checked: 3" in capsys.readouterr().out
    f = read_fixture(scan(out).manifests[0])
    assert f.calls[0].mask is not None and f.calls[0].initial_state is not None
    assert f.provenance["model_file"] == "user_model.keras" and f.provenance["semantics"] == "keras3"
    assert main(["fixtures", "verify", str(out), "--impl", "broken_impls:swapped_gates"]) == 1
    assert main(args) == 1  # second run without --force changes nothing
    assert main(["fixtures", "generate", "--model", str(model), "--layer", "encoder", "--out", str(tmp_path)]) == 2
    assert "holds the input model" in capsys.readouterr().err


def test_pytest_plugin_records_once_then_verifies(keras, pytester: pytest.Pytester) -> None:
    _user_model(keras, pytester.path)
    pytester.makeconftest(
        """
        import broken_impls  # noqa: F401  (importable from the project's tests folder)
        """
    )
    pytester.makepyfile(
        test_port="""
        import os

        def test_port(bilstm_ref_regression):
            impl = os.environ.get("PORT_IMPL") or None
            bilstm_ref_regression.check("user_model.keras", layer="encoder", impl=impl, masks=True, cases=2)
        """
    )
    pytester.syspathinsert(Path(__file__).parent)
    first = pytester.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*recorded 2 Keras answers for user_model.keras*review them*"])
    datadir = pytester.path / "test_port" / "test_port"
    assert len(scan(datadir).manifests) == 2
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    regen = pytester.runpytest("-p", "no:cacheprovider", "--force-regen")
    regen.assert_outcomes(failed=1)
    regen.stdout.fnmatch_lines(["*re-recorded 2 Keras answers*"])
    os.environ["PORT_IMPL"] = "broken_impls:off_by_a_tenth_percent"
    try:
        broken = pytester.runpytest("-p", "no:cacheprovider")
    finally:
        del os.environ["PORT_IMPL"]
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines(["*2 of 2 recorded Keras answers not matched*", "*output: max|diff|=*"])
    assert verify_fixture(read_fixture(scan(datadir).manifests[0])).status == "pass"
