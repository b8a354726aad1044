"""The pytest plugin (``--bilstm-ref-impl``, ``--bilstm-ref-fixtures``, ``--bilstm-ref-xfail``) and
``bilstm_ref.assert_matches_keras``, run in inner pytest sessions (pytester).

Everything but the one live-Keras test judges against the committed fixtures, so it runs without
Keras.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from bilstm_ref import assert_matches_keras
from bilstm_ref.conformance.compare import Tolerance, TolerancePolicy

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS.parent / "fixtures"
REFERENCE = "bilstm_ref:reference_factory"
BROKEN = "broken_impls:off_by_a_tenth_percent"
BASE = ("-p", "no:cacheprovider")


#: The Bidirectional concat sequence fixtures of one policy throughout: the machinery tests below use
#: a port off by 0.1%, which the half-precision tolerances of the mixed-policy cases would let pass.
MIXED = ("B3T6n4",)
CONCAT_SEQ = "bidi-concat-seq and not B3T6n4"


def fixture_ids(*include: str, exclude: tuple[str, ...] = ()) -> list[str]:
    ids = sorted(p.name[:-5] for p in FIXTURES.glob("*.json"))
    return [i for i in ids if all(s in i for s in include) and not any(s in i for s in exclude)]


def matrix_args(impl: str = REFERENCE, *extra: str) -> list[str]:
    return [*BASE, "--bilstm-ref-impl", impl, "--bilstm-ref-fixtures", str(FIXTURES), *extra]


@pytest.fixture
def broken(pytester: pytest.Pytester) -> str:
    pytester.syspathinsert(TESTS)  # broken_impls
    return BROKEN


# --- inert without its options ------------------------------------------------------------------
def test_plugin_is_inert_without_its_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    result = pytester.runpytest(*BASE, "--collect-only", "-q")
    assert result.ret == 0
    collected = [ln for ln in result.outlines if "::" in ln]
    assert collected == ["test_plain.py::test_a", "test_plain.py::test_b"]
    result = pytester.runpytest(*BASE)
    result.assert_outcomes(passed=2)
    # --bilstm-ref-fixtures alone does not add the matrix either
    result = pytester.runpytest(*BASE, "--bilstm-ref-fixtures", str(FIXTURES), "--collect-only", "-q")
    assert [ln for ln in result.outlines if "::" in ln] == ["test_plain.py::test_a", "test_plain.py::test_b"]


def test_plugin_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*BASE, "--help")
    for option in ("--bilstm-ref-impl", "--bilstm-ref-fixtures", "--bilstm-ref-xfail", "--bilstm-ref-backend"):
        assert option in result.stdout.str()


# --- the matrix from fixtures -------------------------------------------------------------------
def test_reference_passes_the_fixture_matrix(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*matrix_args(REFERENCE, "-k", CONCAT_SEQ))
    result.assert_outcomes(passed=len(fixture_ids("bidi-concat-seq", exclude=MIXED)))
    assert len(fixture_ids("bidi-concat-seq", exclude=MIXED)) == 44


def test_broken_implementation_fails_naming_the_output(pytester: pytest.Pytester, broken: str) -> None:
    result = pytester.runpytest(*matrix_args(broken, "-k", CONCAT_SEQ, "-rf"))
    result.assert_outcomes(failed=44)
    text = result.stdout.str()
    for cid in fixture_ids("bidi-concat-seq", exclude=MIXED):
        assert f"{cid} does not match Keras:" in text, cid
    assert text.count("output: max|diff|=") >= 44
    assert re.search(r"call1/output: max\|diff\|=[0-9.e-]+ at \(\d+, \d+, \d+\), max rel=", text)
    assert "(tolerance atol 1e-05 + rtol 1e-05)" in text
    # only the first output is wrong: the states of the -state- cases are not reported as failing
    assert not re.search(r"\n\s+(call\d/|after_reset/)?[hc][12]: max\|diff\|", text)


def test_expected_failures_file_makes_them_xfail(pytester: pytest.Pytester, broken: str) -> None:
    xfail = pytester.path / "xfail.txt"
    xfail.write_text("# port status\n\nbidi-concat-seq-mask_  scales its output\n", encoding="utf-8")
    result = pytester.runpytest(*matrix_args(broken, "-k", CONCAT_SEQ, "--bilstm-ref-xfail", str(xfail),
                                             "-rxX"))
    listed = len(fixture_ids("bidi-concat-seq-mask_", exclude=MIXED))
    result.assert_outcomes(xfailed=listed, failed=44 - listed)
    assert "scales its output" in result.stdout.str()
    # on the reference the listed cases pass: non-strict xfail, so they are xpassed, not failures
    result = pytester.runpytest(*matrix_args(REFERENCE, "-k", CONCAT_SEQ, "--bilstm-ref-xfail", str(xfail)))
    result.assert_outcomes(xpassed=listed, passed=44 - listed)


def test_k_selects_matrix_items(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_mine():\n    pass\n")
    want = fixture_ids("bidi-concat-seq-mask_none", exclude=("stateful",))
    result = pytester.runpytest(*matrix_args(REFERENCE, "-k", "bidi-concat-seq-mask_none and not stateful",
                                             "--collect-only", "-q"))
    assert result.ret == 0
    collected = sorted(ln.rsplit("::", 1)[-1] for ln in result.outlines if "::" in ln)
    assert collected == want and "test_mine" not in collected
    # without -k: every fixture plus the file's own test
    result = pytester.runpytest(*matrix_args(REFERENCE, "--collect-only", "-q"))
    assert sum(1 for ln in result.outlines if "::" in ln) == len(fixture_ids()) + 1


def test_junitxml_has_one_testcase_per_matrix_item(pytester: pytest.Pytester, broken: str) -> None:
    junit = pytester.path / "j.xml"
    result = pytester.runpytest(*matrix_args(broken, "-k", "bidi-concat-seq-state-mask_left", f"--junitxml={junit}"))
    want = fixture_ids("bidi-concat-seq-state-mask_left")
    result.assert_outcomes(failed=len(want))
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert sorted(tc.get("name") for tc in cases) == want
    assert int(suite.get("tests")) == len(want) and int(suite.get("failures")) == len(want)
    for tc in cases:
        failure = tc.find("failure")
        assert failure is not None and "output: max|diff|=" in (failure.text or "") + failure.get("message", "")
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        assert props.get("status") == "fail"


@pytest.mark.keras
def test_reference_passes_the_live_matrix(pytester: pytest.Pytester, keras: object) -> None:
    result = pytester.runpytest(*BASE, "--bilstm-ref-impl", REFERENCE, "-k", "bidi-sum-last-state-mask_holes")
    from bilstm_ref.conformance import matrix

    want = [c.id for c in matrix.select(matrix.cases(), ["bidi-sum-last-state-mask_holes"])]
    assert want
    result.assert_outcomes(passed=len(want))


# --- assert_matches_keras -----------------------------------------------------------------------
@pytest.fixture
def lstm_outputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (rng.normal(size=(2, 5, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32),
            rng.normal(size=(2, 4)).astype(np.float32))


def test_assert_matches_keras_passes_on_equal_outputs(lstm_outputs: tuple[np.ndarray, ...]) -> None:
    assert_matches_keras(lstm_outputs, lstm_outputs)
    assert_matches_keras(list(lstm_outputs), tuple(o.copy() for o in lstm_outputs))
    assert_matches_keras(lstm_outputs[0], lstm_outputs[0].astype(np.float64))
    # within the float32 default tolerance (atol 1e-5 + rtol 1e-5)
    assert_matches_keras(lstm_outputs[0] + 5e-6, lstm_outputs[0])


def test_assert_matches_keras_lists_the_failing_output(lstm_outputs: tuple[np.ndarray, ...]) -> None:
    y, h, c = lstm_outputs
    y = y.copy()
    y[1, 3, 2] = 40.0  # the biggest value: the worst absolute error sits here
    actual = (y * 1.001, h, c)
    with pytest.raises(AssertionError) as info:
        assert_matches_keras(actual, (y, h, c))
    msg = str(info.value)
    lines = msg.splitlines()
    assert lines[0] == "1 of 3 outputs differ from Keras:"
    assert lines[1].startswith("  output: max|diff|=0.04 at (1, 3, 2), max rel=0.001")
    assert "(tolerance atol 1e-05 + rtol 1e-05)" in lines[1]
    assert lines[-1] == "  matching: h, c"


def test_assert_matches_keras_lists_every_failing_output(lstm_outputs: tuple[np.ndarray, ...]) -> None:
    y, h, c = lstm_outputs
    with pytest.raises(AssertionError) as info:
        assert_matches_keras((y * 1.001, h, c * 1.01), (y, h, c), tol=Tolerance(1e-6, 1e-6))
    msg = str(info.value)
    assert msg.startswith("2 of 3 outputs differ from Keras:")
    assert re.search(r"^  output: max\|diff\|=\S+ at \(\d+, \d+, \d+\)", msg, re.MULTILINE)
    assert re.search(r"^  c: max\|diff\|=\S+ at \(\d+, \d+\)", msg, re.MULTILINE)
    assert "(tolerance atol 1e-06 + rtol 1e-06)" in msg
    assert msg.endswith("  matching: h")
    # every output failing: no 'matching' line
    with pytest.raises(AssertionError) as info:
        assert_matches_keras((y + 1, h + 1, c + 1), (y, h, c))
    assert str(info.value).startswith("3 of 3 outputs differ") and "matching" not in str(info.value)


def test_assert_matches_keras_other_checks(lstm_outputs: tuple[np.ndarray, ...]) -> None:
    y, h, c = lstm_outputs
    with pytest.raises(AssertionError, match="returned 2 outputs, Keras 3"):
        assert_matches_keras((y, h), (y, h, c))
    with pytest.raises(AssertionError, match=r"h: shape mismatch: expected \(2, 4\), got \(4, 2\)"):
        assert_matches_keras((y, h.T, c), (y, h, c))
    nan = y.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(AssertionError, match="1 NaN mismatches"):
        assert_matches_keras((nan, h, c), (y, h, c))
    assert_matches_keras((nan, h, c), (nan.copy(), h, c))  # NaN at the same place matches
    with pytest.raises(AssertionError, match=r"^1 of 1 outputs differ from Keras:\n  mine: "):
        assert_matches_keras(y * 1.001, y, names=["mine"])
    # a per-output policy: c may be loose
    assert_matches_keras((y, h, c * 1.001), (y, h, c),
                         tol=TolerancePolicy(Tolerance(1e-5, 1e-5), {"c": Tolerance(1e-2, 1e-2)}))
    # half-precision default tolerance
    assert_matches_keras(y * 1.001, y, dtype_policy="mixed_float16")


def test_assert_matches_keras_hides_its_own_frames(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_port="""
        import numpy as np
        from bilstm_ref import assert_matches_keras


        def test_port():
            expected = np.linspace(-1, 1, 24).reshape(2, 3, 4)
            assert_matches_keras((expected * 1.001, expected[:, -1]), (expected, expected[:, -1]))
    """)
    result = pytester.runpytest(*BASE, "--tb=long")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "AssertionError: 1 of 2 outputs differ from Keras:" in text
    assert "output_fw: max|diff|=0.001 at (0, 0, 0)" in text
    assert "matching: output_bw" in text
    assert "assert_matches_keras((expected * 1.001" in text  # the user's line is shown
    assert "testing.py" not in text, "bilstm_ref/testing.py frames in the failure traceback"
    assert "__tracebackhide__" not in text and "raise AssertionError" not in text


# --- bugs ---------------------------------------------------------------------------------------
def test_plugin_reports_integrity_problems(pytester: pytest.Pytester) -> None:
    import shutil

    fixtures = pytester.path / "fx"
    fixtures.mkdir()
    for p in FIXTURES.glob("bidi-concat-seq-mask_none.*"):
        shutil.copy(p, fixtures)
    (fixtures / "orphaned-case.0123456789ab.npz").write_bytes(b"not a payload")
    from bilstm_ref.cli import main

    assert main(["fixtures", "verify", str(fixtures)]) == 1  # the command line fails it
    result = pytester.runpytest(*BASE, "--bilstm-ref-impl", REFERENCE, "--bilstm-ref-fixtures", str(fixtures))
    outcomes = result.parseoutcomes()
    assert result.ret != 0 and (outcomes.get("failed", 0) + outcomes.get("errors", 0)) >= 1, outcomes


@pytest.mark.parametrize("bad", ["fixtures-dir", "xfail-file"])
def test_plugin_bad_option_values_are_usage_errors(pytester: pytest.Pytester, bad: str) -> None:
    args = [*BASE, "--bilstm-ref-impl", REFERENCE, "--bilstm-ref-fixtures", str(FIXTURES)]
    if bad == "fixtures-dir":
        args[-1] = str(pytester.path / "no-such-dir")
    else:
        xfail = pytester.path / "xfail.txt"
        xfail.write_text("mask_none\n", encoding="utf-8")  # no reason: a ConfigError
        args += ["--bilstm-ref-xfail", str(xfail)]
    result = pytester.runpytest(*args)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize("args, message", [
    (("--bilstm-ref-impl", "nonexist:factory"), "bilstm_ref: --bilstm-ref-impl 'nonexist:factory': cannot import 'nonexist'"),
    (("--bilstm-ref-impl", "bilstm_ref:no_such"), "has no attribute 'no_such'"),
    (("--bilstm-ref-impl", REFERENCE, "--bilstm-ref-xfail", "missing.txt"), "--xfail 'missing.txt': cannot be read"),
    (("--bilstm-ref-impl", REFERENCE, "--bilstm-ref-fixtures", "nowhere"), "--bilstm-ref-fixtures 'nowhere': not a directory"),
])
def test_a_bad_option_is_one_usage_error_at_startup(pytester: pytest.Pytester, args, message) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*BASE, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert len(result.outlines) + len(result.errlines) < 20  # one error, not a traceback per case
