"""The harness's options and the command line around them: expected-failure files, shards,
tolerances (``--atol/--rtol/--ulp/--tol-output``), ``--jobs``, ``fixtures verify``, ``check --list``
and, with live Keras, ``check`` and ``scoreboard`` on tiny selections.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.conformance.compare import Tolerance, TolerancePolicy
from bilstm_ref.errors import ConfigError
from bilstm_ref.suites.harness import (
    ExpectedFailure,
    default_jobs,
    load_expected_failures,
    shard,
    tolerance_from_args,
)

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS.parent / "fixtures"
BROKEN = "broken_impls:off_by_a_tenth_percent"
REFERENCE = "bilstm_ref:reference_factory"
# exactly one fixture each: a float32 case and a float64 one the reference meets within 4 float64 ULPs
F32 = ("bidi-concat-seq-mask_none", "~stateful", "~init")
F64 = ("bidi-sum-last-mask_holes-bw_custom_same_units-act_tanh_shrink_hard_sigmoid-nobias-unroll-float64-B1T5n4",)
# one live matrix case (the brief's bidi-concat-seq-state-mask_right, without its stateful/init variants)
LIVE = ("-k", "bidi-concat-seq-state-mask_right", "-k", "~stateful", "-k", "~init", "-k", "~B3T6n4", "--jobs", "1")


def ks(patterns: tuple[str, ...]) -> list[str]:
    return [a for p in patterns for a in ("-k", p)]


def verify(*args: str) -> int:
    return main(["fixtures", "verify", str(FIXTURES), *args])


def counts_line(text: str, head: str) -> dict[str, int]:
    """``head: N  passed: N ...`` printed by check / fixtures verify, as a dict."""
    line = next(ln for ln in text.splitlines() if ln.startswith(head))
    pairs = re.findall(r"([a-z ]+): (\d+)", line)
    return {k.strip(): int(v) for k, v in pairs}


# --- expected-failure files ---------------------------------------------------------------------
def test_load_expected_failures_parses_patterns_and_reasons(tmp_path: Path) -> None:
    path = tmp_path / "xfail.txt"
    path.write_text(
        "# expected failures of my port\n"
        "\n"
        "mask_left   left padding is not supported yet\n"
        "   act_relu\tno relu gates  (see issue 12)   \n"
        "  # an indented comment\n"
        "\t\n"
        "bidi-sum-  sum merge # not a comment: part of the reason\n",
        encoding="utf-8",
    )
    assert load_expected_failures(str(path)) == (
        ExpectedFailure("mask_left", "left padding is not supported yet"),
        ExpectedFailure("act_relu", "no relu gates  (see issue 12)"),
        ExpectedFailure("bidi-sum-", "sum merge # not a comment: part of the reason"),
    )
    assert load_expected_failures(None) == () and load_expected_failures("") == ()
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n", encoding="utf-8")
    assert load_expected_failures(str(empty)) == ()


def test_a_line_without_a_reason_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "xfail.txt"
    path.write_text("# header\nmask_left  reason\n\nact_relu\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_expected_failures(str(path))
    msg = str(info.value)
    assert str(path) in msg and "line 4" in msg and "'act_relu'" in msg
    assert "PATTERN  reason" in msg


def test_unreadable_expected_failures_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_expected_failures(str(tmp_path / "missing.txt"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"mask_left  caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_expected_failures(str(bad))


def test_xfail_file_without_reason_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "xfail.txt"
    path.write_text("mask_none\n", encoding="utf-8")
    assert verify("--xfail", str(path), *ks(F32)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --xfail") and "line 1" in err


# --- shards -------------------------------------------------------------------------------------
@given(items=st.lists(st.integers(), unique=True, max_size=60), n=st.integers(1, 9))
def test_shards_cover_every_item_exactly_once(items: list[int], n: int) -> None:
    parts = [shard(items, f"{k}/{n}") for k in range(1, n + 1)]
    seen = [x for p in parts for x in p]
    assert sorted(seen) == sorted(items) and len(seen) == len(items)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # interleaved: balanced
    for k, part in enumerate(parts):
        assert part == items[k::n]  # each shard keeps the case order


def test_shard_without_a_spec_is_everything() -> None:
    assert shard((1, 2, 3), None) == [1, 2, 3] and shard([1, 2, 3], "") == [1, 2, 3]
    assert shard(["a", "b", "c", "d", "e"], "2/2") == ["b", "d"]


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "0/0", "-1/3", "a/3", "1/b", "1/3/5", "1-3", "1:3", "3",
                                  " 1/3", "1/3 ", "1.0/3", "1 / 3", "/3", "1/"])
def test_bad_shard_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match="expected K/N with 1 <= K <= N"):
        shard([1, 2, 3], spec)


def test_check_list_shard_lists_a_third(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list"]) == 0
    everything = capsys.readouterr().out.splitlines()
    assert everything == [c.id for c in matrix.cases()]
    parts = []
    for k in (1, 2, 3):
        assert main(["check", "--list", "--shard", f"{k}/3"]) == 0
        parts.append(capsys.readouterr().out.splitlines())
    assert parts[1] == everything[1::3]
    assert all(len(everything) // 3 <= len(p) <= len(everything) // 3 + 1 for p in parts)
    assert sorted(x for p in parts for x in p) == sorted(everything)
    assert not set(parts[0]) & set(parts[1]) and not set(parts[1]) & set(parts[2])
    # with -k: the shard of the selection
    assert main(["check", "--list", "-k", "bidi-concat-seq", "--shard", "2/3"]) == 0
    selected = [c.id for c in matrix.select(matrix.cases(), ["bidi-concat-seq"])]
    assert capsys.readouterr().out.splitlines() == selected[1::3]


def test_check_bad_shard_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list", "--shard", "4/3"]) == 2
    assert "--shard '4/3'" in capsys.readouterr().err


def test_report_from_fixtures_honours_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    selected = sorted(p.name[:-5] for p in FIXTURES.glob("bidi-concat-seq*.json"))
    rc = main(["report", "--out", str(tmp_path / "r"), "--fixtures", str(FIXTURES), "--no-plots",
               "-k", "bidi-concat-seq", "--shard", "2/3"])
    assert rc == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert sorted(r["id"] for r in data["cases"]) == sorted(selected[1::3])


# --- tolerances ---------------------------------------------------------------------------------
def test_tolerance_from_args() -> None:
    assert tolerance_from_args(None, None, None, []) is None
    p = tolerance_from_args(1e-4, 1e-3, None, [])
    assert p == TolerancePolicy(Tolerance(1e-4, 1e-3), {})
    assert tolerance_from_args(0.0, 0.0, None, []).default == Tolerance(0.0, 0.0)
    assert tolerance_from_args(None, None, 4.0, []).default.ulp == 4.0
    p = tolerance_from_args(None, None, None, ["c=1e-4,1e-4", "h1=4ulp", "c2=0.5,0"])
    # ULPs count in the precision of the case they judge ("auto"), resolved with the dtype's default;
    # outputs without an override keep that default.
    assert p.per_output == {"c": Tolerance(1e-4, 1e-4), "h1": Tolerance(0.0, 0.0, ulp=4.0, ulp_dtype="auto"),
                            "c2": Tolerance(0.5, 0.0)}
    assert p.default is None
    resolved = p.with_base(Tolerance(1e-8, 1e-8, ulp_dtype="float64"))
    assert resolved.for_output("call2/c") == Tolerance(1e-4, 1e-4)
    assert resolved.for_output("h1").describe() == "<= 4 ULP (float64)"
    assert resolved.for_output("call1/output") == Tolerance(1e-8, 1e-8, ulp_dtype="float64")
    assert p.as_dict()["per_output"]["c"] == {"atol": 1e-4, "rtol": 1e-4, "ulp": None, "ulp_dtype": "float32"}


@pytest.mark.parametrize("item", ["c", "c=", "=1e-4,1e-4", "c=1e-4", "c=1e-4,1e-4,1e-4", "c=abc,1e-4", "c=ulp",
                                  "c=fourulp", "c=1e-4;1e-4", "c=nan,1e-4", "c=1e-4,inf", "c=-1,1e-4", "c=1e400,0",
                                  "c=-4ulp", "c=nanulp", "c=,"])
def test_malformed_tol_output(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        tolerance_from_args(None, None, None, [item])
    assert repr(item) in str(info.value) or "tolerance" in str(info.value)


@pytest.mark.parametrize("item", ["c=1e-4;1e-4", "c=4", "=1,1", "c=-4ulp"])
def test_malformed_tol_output_on_the_command_line(item: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(*ks(F32), "--tol-output", item) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("--tol-output" in err or "tolerance" in err)


@pytest.mark.parametrize("option", ["--atol", "--rtol", "--ulp"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "-1", "abc", ""])
def test_tolerance_options_need_a_finite_nonnegative_number(option: str, value: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        verify(*ks(F32), f"{option}={value}")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a finite number >= 0, got {value!r}" in err


@pytest.mark.parametrize("command", [["check", "--list"], ["report", "--out", "unused", "--fixtures", "fixtures"]])
def test_other_commands_validate_tolerances_too(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--atol", "nan"])
    assert info.value.code == 2
    assert "expected a finite number >= 0, got 'nan'" in capsys.readouterr().err


def test_tol_output_is_accepted_and_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for item in ("c=1e-4,1e-4", "c=4ulp"):
        json_path = tmp_path / (item.replace(",", "_").replace("=", "_") + ".json")
        rc = verify(*ks(F32), "--tol-output", item, "--json", str(json_path))
        assert rc in (0, 1), capsys.readouterr().err
        data = json.loads(json_path.read_text(encoding="utf-8"))
        assert "c" in data["tolerance"]["per_output"]
    data = json.loads((tmp_path / "c_4ulp.json").read_text(encoding="utf-8"))
    assert data["tolerance"]["per_output"]["c"]["ulp"] == 4.0
    data = json.loads((tmp_path / "c_1e-4_1e-4.json").read_text(encoding="utf-8"))
    assert data["tolerance"]["per_output"]["c"] == {"atol": 1e-4, "rtol": 1e-4, "ulp": None, "ulp_dtype": "float32"}


def test_a_zero_tolerance_is_honoured(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(*ks(F32)) == 0
    default = capsys.readouterr().out
    assert counts_line(default, "fixtures checked")["fixtures checked"] == 1
    assert verify(*ks(F32), "--atol", "0", "--rtol", "0") == 1
    out = capsys.readouterr().out
    assert counts_line(out, "fixtures checked")["failed"] == 1
    assert "bidi-concat-seq-mask_none: fail" in out
    assert "output: max|diff|=" in out and "(tolerance atol 0 + rtol 0)" in out
    # a float64 case the reference reproduces bit for bit would pass even at zero: this one does not
    assert verify(*ks(F32), "--atol", "1e-3", "--rtol", "0") == 0


def test_ulp_mode(capsys: pytest.CaptureFixture[str]) -> None:
    # float64 Keras against the float64 reference: within 4 ULPs
    assert verify(*ks(F64), "--ulp", "4") == 0
    assert counts_line(capsys.readouterr().out, "fixtures checked")["passed"] == 1
    # float32 Keras against the float64 reference: tens of float32 ULPs apart, beyond 4 ...
    assert verify(*ks(F32), "--ulp", "4") == 1
    out = capsys.readouterr().out
    assert re.search(r"output: max\|diff\|=\S+ at \(\d+, \d+, \d+\), max rel=\S+, max \d+(\.\d+)? ULP", out), out
    assert "(tolerance <= 4 ULP (float32))" in out
    # ... but well within 1000
    assert verify(*ks(F32), "--ulp", "1000") == 0
    capsys.readouterr()
    # 0.1% off is thousands of ULPs in either precision
    assert verify(*ks(F32), "--ulp", "1000", "--impl", BROKEN) == 1
    assert verify(*ks(F64), "--ulp", "4", "--impl", BROKEN) == 1
    assert "ULP" in capsys.readouterr().out


_SCALED = '''
import numpy as np
from bilstm_ref import reference_factory


class off_by_1e7:
    """Every output (1 + 1e-7) times the reference's: ~1e9 float64 ULPs, under one float32 ULP."""

    def __init__(self, spec):
        self.ref = reference_factory(spec)

    def reset_state(self):
        self.ref.reset_state()

    def __call__(self, x, mask=None, initial_state=None):
        y = self.ref(x, mask=mask, initial_state=initial_state)
        if isinstance(y, tuple):
            return tuple(np.asarray(v) * (1 + 1e-7) for v in y)
        return np.asarray(y) * (1 + 1e-7)
'''


def test_ulp_mode_counts_ulps_of_the_fixture_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "scaled_impl_for_ulp.py").write_text(_SCALED, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert verify(*ks(F64), "--ulp", "4") == 0  # the reference: within 4 float64 ULPs
    rc = verify(*ks(F64), "--ulp", "4", "--impl", "scaled_impl_for_ulp:off_by_1e7")
    out = capsys.readouterr().out
    assert rc == 1, out


def test_tol_output_leaves_the_other_outputs_at_their_dtype_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify("-k", "mixed_float16") == 0
    rc = verify("-k", "mixed_float16", "--tol-output", "c=1e-2,1e-2")  # looser c; the others unchanged
    out = capsys.readouterr().out
    assert rc == 0, out
    # a stricter c than float16 can meet fails on c only
    assert verify("-k", "mixed_float16", "--tol-output", "c=1e-4,1e-4") == 1
    failing = [ln for ln in capsys.readouterr().out.splitlines() if "max|diff|" in ln]
    assert failing and all(ln.strip().split(":")[0].rsplit("/", 1)[-1] == "c" for ln in failing), failing


# --- fixtures verify ----------------------------------------------------------------------------
def test_fixtures_verify_json_agrees_with_the_printed_counts(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.json"
    assert verify("-k", "bidi-concat-seq", "-k", "~B3T6n4", "--impl", BROKEN, "--json", str(path)) == 1
    printed = counts_line(capsys.readouterr().out, "fixtures checked")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert printed["fixtures checked"] == data["counts"]["total"] == len(data["cases"]) == 44
    assert printed["failed"] == data["counts"]["fail"] == 44
    assert printed["passed"] == data["counts"]["pass"] == 0
    assert data["implementation"] == BROKEN and data["schema_version"] == 1


def test_fixtures_verify_with_nothing_selected(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify("-k", "no-such-case") == 2
    assert "no fixtures found" in capsys.readouterr().err


# --- --jobs -------------------------------------------------------------------------------------
def test_default_jobs() -> None:
    cpus = os.cpu_count() or 1
    assert default_jobs(None) == cpus and default_jobs("auto") == cpus
    assert default_jobs("1") == 1 and default_jobs("12") == 12
    for bad in ("0", "-1", "1.5", "two", "", "AUTO"):
        with pytest.raises(ConfigError, match="expected a positive integer or 'auto'"):
            default_jobs(bad)


@pytest.mark.parametrize("jobs", ["auto", "1", "2"])
def test_report_accepts_jobs(jobs: str, tmp_path: Path) -> None:
    assert main(["report", "--out", str(tmp_path / "r"), "--fixtures", str(FIXTURES), "--no-plots",
                 *ks(F32), "--jobs", jobs]) == 0


@pytest.mark.parametrize("jobs", ["0", "-3", "many"])
def test_report_refuses_bad_jobs(jobs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--out", str(tmp_path / "r"), "--fixtures", str(FIXTURES), "--no-plots",
                 *ks(F32), f"--jobs={jobs}"]) == 2
    assert f"--jobs {jobs!r}: expected a positive integer or 'auto'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --- live Keras ---------------------------------------------------------------------------------
@pytest.mark.keras
def test_check_broken_implementation(keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "check.json"
    assert main(["check", "--impl", BROKEN, *LIVE, "--json", str(path)]) == 1
    out = capsys.readouterr().out
    printed = counts_line(out, "cases run")
    assert "1 case(s) did not match Keras:" in out
    assert "bidi-concat-seq-state-mask_right: fail" in out
    assert re.search(r"^  output: max\|diff\|=\S+ at \(\d+, \d+, \d+\)", out, re.MULTILINE), out
    assert not re.search(r"^  [hc][12]: max\|diff\|", out, re.MULTILINE)  # the states are right
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["source"] == "live Keras" and data["implementation"] == BROKEN
    assert printed["cases run"] == data["counts"]["total"] == len(data["cases"]) == 1
    for key, status in (("passed", "pass"), ("known deviations", "known-deviation"), ("failed", "fail"),
                        ("errors", "error")):
        assert printed[key] == data["counts"][status] == sum(r["status"] == status for r in data["cases"])
    (case,) = data["cases"]
    assert case["id"] == "bidi-concat-seq-state-mask_right" and case["failing_outputs"] == ["output"]
    assert case["flags"]["merge_mode"] == "concat" and case["flags"]["return_state"] is True
    assert data["versions"]["keras"] == keras.__version__


@pytest.mark.keras
def test_check_reference(keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "check.json"
    assert main(["check", "--impl", REFERENCE, *LIVE, "--json", str(path)]) == 0
    printed = counts_line(capsys.readouterr().out, "cases run")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert printed["cases run"] == 1 and printed["passed"] + printed["known deviations"] == 1
    assert printed["passed"] == data["counts"]["pass"]


@pytest.mark.keras
def test_scoreboard(keras: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sb"
    assert main(["scoreboard", "--out", str(out), "--backends", "tensorflow,jax", *LIVE]) == 0
    printed = capsys.readouterr().out
    md = (out / "scoreboard.md").read_text(encoding="utf-8")
    board = json.loads((out / "scoreboard.json").read_text(encoding="utf-8"))
    assert md.strip() in printed
    tf = board["backends"]["tensorflow"]
    assert tf["status"] == "ran" and tf["counts"]["total"] == 1 and tf["counts"]["fail"] == 0
    assert re.search(r"^\| tensorflow \| keras \S+, tensorflow \S+ \| 1 \| \d \| \d \| 0 \| 0 \|", md, re.MULTILINE), md
    assert (out / "check-tensorflow.json").is_file()
    jax = board["backends"]["jax"]
    if jax["status"] == "not installed":
        assert re.search(r"^\| jax \| not installed \(jax is not installed: pip install jax\)", md, re.MULTILINE), md
    else:
        assert jax["status"] == "ran" and jax["counts"]["total"] == 1, jax
        assert re.search(r"^\| jax \| keras \S+, jax \S+ \| 1 \|", md, re.MULTILINE), md
    assert board["cases"] == 1


@pytest.mark.keras
def test_scoreboard_does_not_report_a_stale_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    out = tmp_path / "sb"
    out.mkdir()
    stale = {"counts": {"total": 1, "pass": 1, "known-deviation": 0, "fail": 0, "error": 0},
             "versions": {"keras": "0.0-stale"},
             "cases": [{"id": "from-an-earlier-run", "status": "pass", "deviation": None, "failing_outputs": [],
                        "message": "", "flags": {"dtype_policy": "float32"}, "outputs": []}]}
    (out / "check-tensorflow.json").write_text(json.dumps(stale), encoding="utf-8")
    rc = main(["scoreboard", "--out", str(out), "--backends", "tensorflow", "-k", "no-such-case", "--jobs", "1"])
    assert rc == 2
    assert "no backend ran, nothing written (tensorflow: " in capsys.readouterr().err
    assert not (out / "scoreboard.json").exists()  # nothing that would look like a result
    assert not (out / "check-tensorflow.json").exists()  # and the earlier run's file is gone


def test_ulps_near_zero_are_counted_at_the_floor_and_failures_name_their_tolerance() -> None:
    from bilstm_ref.conformance.compare import ULP_FLOOR, Tolerance, compare

    r = compare("h", np.zeros(3), np.array([0.0, 1e-7, -2e-7]), Tolerance(1e-8, 1e-8))
    floor_spacing = float(np.spacing(np.float32(ULP_FLOOR)))
    assert r.max_ulp == pytest.approx(2e-7 / floor_spacing)  # about 1.7e3, not 1e+38
    assert r.max_ulp < 1e4
    assert "(tolerance atol 1e-08 + rtol 1e-08), worst element at 20x that tolerance" in r.describe()
    away = compare("h", np.array([0.5]), np.array([0.5 + 3 * float(np.spacing(np.float32(0.5)))]), Tolerance(0, 0, ulp=4))
    assert away.ok and away.max_ulp == pytest.approx(3.0)  # above the floor, ULPs are the value's own


def test_check_output_is_readable_without_tensorflow_logs() -> None:
    pytest.importorskip("keras")
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "bilstm_ref", "check", "-k", "seq-state-mask_left-init", "-k", "~stateful",
                           "--jobs", "1"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.startswith("running ")  # progress from the first second
    for noise in ("I0000", "oneDNN", "cuda", "absl"):
        assert noise not in done.stderr and noise not in done.stdout
    long = [line for line in done.stdout.splitlines() if len(line) > 100]
    assert not long, long
    assert "workarounds" not in done.stdout  # none applied to these cases


def test_command_line_errors_name_flags_not_python_arguments() -> None:
    from bilstm_ref.cli import _flag_words

    assert _flag_words("'m.keras': 3 LSTM/Bidirectional layers; choose one with layer=: ['a']") == \
        "'m.keras': 3 LSTM/Bidirectional layers; choose one with --layer: ['a']"
    assert _flag_words("a .keras archive holds its own config; config= is not used") == \
        "a .keras archive holds its own config; --config is not used"
    assert _flag_words("pass config= (a model.to_json() file)") == "pass --config (a model.to_json() file)"
    assert _flag_words("semantics='keras2' requested, dtype=float32") == "semantics='keras2' requested, dtype=float32"
