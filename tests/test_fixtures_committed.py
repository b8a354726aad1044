"""The committed fixtures (fixtures/, recorded from Keras 3.15 on TensorFlow, CPU) against the
reference and against subtly broken implementations. Runs with or without Keras installed.

Regeneration: a missing fixture fails with the command that creates it; ``pytest --force-regen``
(where Keras is installed) re-records the suite and fails so that someone reads ``git diff``;
tests/test_fixtures_keras.py shows drift between these answers and the installed Keras.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.fixtures import read_fixture, scan, verify_fixture

FIXTURES = Path(__file__).parent.parent / "fixtures"
REGEN = "bilstm-ref fixtures generate --out fixtures --suite committed"
SUITE = [c.id for c in matrix.fixture_suite()]


def test_every_case_of_the_suite_has_a_fixture(request: pytest.FixtureRequest) -> None:
    found = scan(FIXTURES)
    have = {p.name[:-5] for p in found.manifests}
    missing = [i for i in SUITE if i not in have]
    extra = sorted(have - set(SUITE))
    if missing and request.config.getoption("--force-regen"):
        if importlib.util.find_spec("keras") is None:
            pytest.fail(f"--force-regen needs Keras to record {len(missing)} missing fixtures")
        assert main(["fixtures", "generate", "--out", str(FIXTURES), "--suite", "committed"]) == 0
        pytest.fail(f"recorded {len(missing)} missing fixtures into fixtures/: review `git status fixtures` and "
                    "commit them")
    assert not missing, (
        f"{len(missing)} fixtures of the committed suite are missing (first: {missing[0]}); create them where "
        f"Keras is installed with `{REGEN}` (or `pytest --force-regen`), review and commit"
    )
    assert not extra, f"fixtures not in matrix.fixture_suite(): {extra[:5]}; remove them or the suite change"
    assert not found.problems and not found.warnings, (found.problems, found.warnings)


@pytest.mark.parametrize("case_id", SUITE)
def test_reference_reproduces_the_recorded_keras_answer(case_id: str) -> None:
    path = FIXTURES / f"{case_id}.json"
    if not path.exists():
        pytest.fail(f"missing fixture {path.name}; create it with `{REGEN} -k {case_id}`")
    fixture = read_fixture(path)
    assert fixture.provenance["keras"].startswith("3.15")
    assert fixture.provenance["backend"] == "tensorflow" and fixture.provenance["device"] == "CPU"
    result = verify_fixture(fixture)
    assert result.status in ("pass", "known-deviation"), result.describe()
    if result.status == "known-deviation":
        assert fixture.deviation is not None and result.deviation == fixture.deviation["name"]


def test_verify_command_on_the_committed_fixtures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fixtures", "verify", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert f"fixtures checked: {len(SUITE)}" in out and "failed: 0" in out and "integrity failures: 0" in out


def test_the_committed_suite_is_small_and_plain() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 4 * 1024**2, f"committed fixtures are {total / 1024**2:.1f} MB"
    manifest = json.loads((FIXTURES / f"{SUITE[0]}.json").read_text())
    assert manifest["schema_version"] == 1
    payload = FIXTURES / manifest["payload"]["file"]
    import numpy as np

    with np.load(payload, allow_pickle=False) as arrays:  # plain numpy reads every array
        assert set(arrays.files) == set(manifest["arrays"])


# Each broken implementation must fail the committed suite through the --impl plug-in, and only
# on fixtures that exercise what it breaks (so the failures are the right ones).
_HALF = ("mixed_float16", "mixed_bfloat16")
BROKEN = {
    "swapped_gates": lambda c: True,
    "forget_bias_off_by_one": lambda c: True,
    "permuted_units": lambda c: c.units > 1,
    "off_by_a_tenth_percent": lambda c: True,
    "ignored_mask": lambda c: c.mask != "none",
    "reversed_mask": lambda c: c.mask != "none",
    "ignored_initial_state": lambda c: c.initial_state,
    "swapped_h_c": lambda c: c.return_state,
    "swapped_directions": lambda c: c.return_state and c.family == "bidi",
    "states_not_carried": lambda c: c.stateful,
    "no_half_rounding": lambda c: c.dtype_policy in _HALF,
    "half_everywhere": lambda c: c.dtype_policy not in _HALF,
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_subtly_broken_implementation_fails_the_committed_fixtures(name: str, capsys: pytest.CaptureFixture[str]
                                                                     ) -> None:
    assert main(["fixtures", "verify", str(FIXTURES), "--impl", f"broken_impls:{name}"]) == 1
    out = capsys.readouterr().out
    failed = [matrix.by_id()[line.split(":")[0]] for line in out.splitlines() if line.endswith(": fail")]
    assert len(failed) >= 5, out[-2000:]
    wrong = [c.id for c in failed if not BROKEN[name](c)]
    assert not wrong, f"{name} failed fixtures that do not exercise what it breaks: {wrong[:5]}"


def test_the_reference_as_an_impl_factory_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fixtures", "verify", str(FIXTURES), "--impl", "bilstm_ref:reference_factory"]) == 0
    assert "failed: 0" in capsys.readouterr().out


def test_a_known_deviation_is_not_a_free_pass_for_an_implementation() -> None:
    """On a fixture where Keras is under a documented bug, a broken implementation still fails."""
    import broken_impls

    dev = [i for i in SUITE if read_fixture(FIXTURES / f"{i}.json").deviation]
    assert dev
    fixture = read_fixture(FIXTURES / f"{dev[0]}.json")
    assert verify_fixture(fixture).status == "known-deviation"
    assert verify_fixture(fixture, factory=broken_impls.swapped_gates).status == "fail"


def test_verify_runs_where_keras_and_tensorflow_cannot_be_imported() -> None:
    """The core alone verifies the committed suite: a fresh process that refuses keras/tensorflow."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("keras", "tensorflow", "tf_keras", "jax", "torch"):
                    raise ImportError(f"blocked import of {name}")
                return None

        sys.meta_path.insert(0, Block())
        from bilstm_ref.cli import main
        code = main(["fixtures", "verify", sys.argv[1]])
        assert not [m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow")]
        sys.exit(code)
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(FIXTURES)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"fixtures checked: {len(SUITE)}" in done.stdout
