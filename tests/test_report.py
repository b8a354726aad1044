"""``bilstm-ref report``: report.md, report.html, report.json, junit.xml and the PNG plots.

Runs without Keras: every report here is made from the committed fixtures (``--fixtures``), on
the reference, on ``broken_impls:off_by_a_tenth_percent``, or on small implementations written
into a temporary module (one that is wrong only on stateful layers, so that a report holds both
failing and passing cases). The counts must agree across all four formats; the HTML is also
rendered in a real browser (headless Chromium) where one is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.errors import BilstmRefError

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS.parent / "fixtures"
BROKEN = "broken_impls:off_by_a_tenth_percent"
REPORT_FILES = ("report.md", "report.html", "report.json", "junit.xml")
PLOTS = ("heatmap.png", "error_vs_length.png", "status_by_flag.png")
STATUSES = ("pass", "known-deviation", "xfail", "xpass", "fail", "error", "integrity")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Implementations wrong in a controlled way: stateful layers' first output 0.1% off (so a
# selection holds failing and passing cases), and crashing on units=1 without bias (errors).
_IMPL_MODULE = '''
import numpy as np
from bilstm_ref import reference_factory


def _cfg(spec):
    return spec.config["layer"]["config"] if spec.class_name == "Bidirectional" else spec.config


class _Off:
    def __init__(self, spec):
        self.ref = reference_factory(spec)

    def reset_state(self):
        self.ref.reset_state()

    def __call__(self, x, mask=None, initial_state=None):
        y = self.ref(x, mask=mask, initial_state=initial_state)
        if isinstance(y, tuple):
            return (np.asarray(y[0]) * 1.001, *y[1:])
        return np.asarray(y) * 1.001


def stateful_off(spec):
    return _Off(spec) if _cfg(spec).get("stateful") else reference_factory(spec)


def mixed(spec):
    cfg = _cfg(spec)
    if int(cfg["units"]) == 1 and cfg.get("use_bias") is False:
        raise NotImplementedError("units=1 without bias is not ported")
    return stateful_off(spec)
'''
IMPL_MODULE_NAME = "bilstm_ref_report_test_impls"


@pytest.fixture
def impls(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module name of the controlled implementations (importable for ``--impl``)."""
    where = tmp_path_factory.mktemp("impls")
    (where / f"{IMPL_MODULE_NAME}.py").write_text(_IMPL_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(where))
    return IMPL_MODULE_NAME


def report(out: Path, *args: str, fixtures: Path = FIXTURES) -> int:
    return main(["report", "--out", str(out), "--fixtures", str(fixtures), *args])


def write_xfail(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# --- parsing every format back ------------------------------------------------------------------
def json_counts(out: Path) -> dict[str, int]:
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {k: data["counts"][k] for k in ("total", *STATUSES)}


def junit_counts(out: Path) -> dict[str, int]:
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.tag == "testsuite"
    cases = suite.findall("testcase")
    counts = {
        "tests": int(suite.get("tests")),
        "failures": int(suite.get("failures")),
        "errors": int(suite.get("errors")),
        "skipped": int(suite.get("skipped")),
        "testcase": len(cases),
        "failure_elements": sum(1 for c in cases if c.find("failure") is not None),
        "error_elements": sum(1 for c in cases if c.find("error") is not None),
        "skipped_elements": sum(1 for c in cases if c.find("skipped") is not None),
    }
    return counts


MD_COLUMNS = {"total": "total", "passed": "pass", "known deviations": "known-deviation",
              "expected failures": "xfail", "unexpected passes": "xpass", "failed": "fail", "errors": "error",
              "integrity": "integrity", "coverage": "coverage"}


def md_counts(out: Path) -> dict[str, Any]:
    lines = (out / "report.md").read_text(encoding="utf-8").splitlines()
    i = lines.index("## Counts")
    header = next(n for n in range(i, len(lines)) if lines[n].startswith("| total"))
    names = [c.strip() for c in lines[header].strip("|").split("|")]
    assert set(lines[header + 1].replace("|", "")) == {"-"}
    values = [c.strip() for c in lines[header + 2].strip("|").split("|")]
    row = dict(zip((MD_COLUMNS[n] for n in names), values, strict=True))
    return {k: (v if k == "coverage" else int(v)) for k, v in row.items()}


class ReportHTML(HTMLParser):
    """What a test needs from report.html: the verdict, the data-count cells, the case ids in page
    order (with whether each sits in a failing <details> or a row of the other cases), and the
    text of each failing case's detail table."""

    def __init__(self) -> None:
        super().__init__()
        self.verdict: str | None = None
        self.verdict_classes: list[str] = []
        self.counts: dict[str, str] = {}
        self.coverage: str | None = None
        self.cases: list[tuple[str, str, str]] = []  # (id, "details" | "tr", status class)
        self.details: dict[str, list[str]] = {}  # failing case id -> texts inside its <details>
        self.images: list[str] = []
        self._container: tuple[str, str] = ("", "")
        self._in_code = self._in_verdict = False
        self._count_key: str | None = None
        self._detail_id: str | None = None
        self._in_counts = False
        self._last_td_in_counts: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "details":
            self._container = ("details", a.get("class") or "")
            self._detail_id = ""
        elif tag == "tr" and self._detail_id is None:
            self._container = ("tr", a.get("class") or "")
        elif tag == "code":
            self._in_code, self._text = True, []
        elif tag == "span" and a.get("id") == "verdict":
            self._in_verdict, self._text = True, []
            self.verdict_classes = (a.get("class") or "").split()
        elif tag == "table" and a.get("id") == "counts":
            self._in_counts = True
        elif tag == "td" and self._in_counts:
            self._count_key = a.get("data-count") or "coverage"
            self._text = []
        elif tag == "img":
            self.images.append(a.get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text).strip()
        if tag == "code" and self._in_code:
            self._in_code = False
            kind, cls = self._container
            self.cases.append((text, kind, cls))
            if self._detail_id == "":
                self._detail_id = text
                self.details[text] = []
        elif tag == "span" and self._in_verdict:
            self._in_verdict = False
            self.verdict = text
        elif tag == "td" and self._count_key is not None:
            if self._count_key == "coverage":
                self.coverage = text
            else:
                self.counts[self._count_key] = text
            self._count_key = None
        elif tag == "table" and self._in_counts:
            self._in_counts = False
        elif tag == "details":
            self._detail_id = None
            self._container = ("", "")

    def handle_data(self, data: str) -> None:
        if self._in_code or self._in_verdict or self._count_key is not None:
            self._text.append(data)
        if self._detail_id and data.strip():
            self.details[self._detail_id].append(data.strip())


def parse_html(out: Path) -> ReportHTML:
    p = ReportHTML()
    p.feed((out / "report.html").read_text(encoding="utf-8"))
    p.close()
    return p


def assert_counts_agree(out: Path) -> dict[str, int]:
    """The counts of report.json, junit.xml, report.md and report.html are the same numbers."""
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    c = json_counts(out)
    recount = {s: sum(1 for r in data["cases"] if r["status"] == s) for s in STATUSES}
    assert c == {"total": len(data["cases"]), **recount}
    j = junit_counts(out)
    assert j == {
        "tests": c["total"], "testcase": c["total"],
        "failures": c["fail"], "failure_elements": c["fail"],
        "errors": c["error"] + c["integrity"], "error_elements": c["error"] + c["integrity"],
        "skipped": c["xfail"], "skipped_elements": c["xfail"],
    }
    md = md_counts(out)
    coverage = md.pop("coverage")
    assert md == c
    html = parse_html(out)
    assert {k: int(v) for k, v in html.counts.items()} == c
    expected_coverage = f"{data['coverage']:.1%}"
    assert coverage == expected_coverage and html.coverage == expected_coverage
    assert data["coverage"] == pytest.approx((c["pass"] + c["known-deviation"] + c["xpass"]) / c["total"])
    verdict = "FAIL" if c["fail"] + c["error"] + c["integrity"] else "PASS"
    assert html.verdict == verdict and verdict in html.verdict_classes
    assert f"**Verdict: {verdict}**" in (out / "report.md").read_text(encoding="utf-8")
    return c


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# --- the formats --------------------------------------------------------------------------------
def test_reference_report_on_every_fixture_core_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert report(out, "--no-plots") == 0
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    assert not any((out / p).exists() for p in PLOTS), "--no-plots wrote plots"
    c = assert_counts_agree(out)
    n = len(matrix.fixture_suite())
    assert c["total"] == n and c["pass"] + c["known-deviation"] == n
    printed = capsys.readouterr().out
    assert f"report: {c['total']} cases, {c['pass']} passed, {c['known-deviation']} known deviations" in printed

    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == 1
    assert data["kind"] == "bilstm_ref.report"
    assert data["versions"]["keras"].startswith("3.") and data["versions"]["backend"] == "tensorflow"
    assert data["source"] == f"recorded fixtures in {FIXTURES}"
    assert data["implementation"].startswith("bilstm_ref:reference_factory")
    assert data["tolerance"].startswith("per-dtype defaults")
    metrics = {"name", "ok", "max_abs", "max_abs_index", "max_rel", "max_ulp", "mismatched", "nan_mismatch",
               "tol_used", "tolerance"}
    ids = set()
    for case in data["cases"]:
        ids.add(case["id"])
        assert case["status"] in ("pass", "known-deviation")
        assert {"family", "merge_mode", "mask", "dtype_policy", "time", "units"} <= set(case["flags"]), case["id"]
        assert "id" not in case["flags"]
        assert case["outputs"], case["id"]
        for o in case["outputs"]:
            assert metrics <= set(o), (case["id"], set(o) ^ metrics)
            assert isinstance(o["max_abs"], float) and o["max_abs"] >= 0
            assert o["max_abs_index"] is None or (isinstance(o["max_abs_index"], list)
                                                 and all(isinstance(i, int) for i in o["max_abs_index"]))
            assert o["tolerance"] and (o["tolerance"].startswith("atol") or "ULP" in o["tolerance"])
            assert 0.0 <= o["mismatched"] <= 1.0 and o["nan_mismatch"] >= 0
        if case["status"] == "pass":
            assert all(o["ok"] and o["tol_used"] <= 1.0 for o in case["outputs"])
            assert case["failing_outputs"] == []
        else:
            assert case["deviation"] and case["message"]
    assert len(ids) == len(matrix.fixture_suite())
    assert ids == {p.name[:-5] for p in FIXTURES.glob("*.json")}


def test_report_writes_the_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "r"
    assert report(out, "-k", "bidi-concat-seq", "-k", "~B3T6n4", "-k", "~B3T6n4") == 0
    for name in REPORT_FILES + PLOTS:
        assert (out / name).is_file(), name
    for name in PLOTS:
        w, h = png_size(out / name)
        assert w > 200 and h > 150, (name, w, h)
        assert (out / name).stat().st_size > 5_000, name
    md = (out / "report.md").read_text(encoding="utf-8")
    for name in PLOTS:
        assert f"({name})" in md, f"report.md does not show {name}"
    html = parse_html(out)
    assert sorted(html.images) == sorted(p[:-4] for p in PLOTS)
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,iVBORw0KGgo') == 3, "plots are not inlined as PNG data URIs"
    assert_counts_agree(out)


def test_counts_agree_across_formats_with_every_status(tmp_path: Path, impls: str) -> None:
    """pass, known-deviation, fail, error, integrity, xfail and xpass in one report."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, fixtures)
    (fixtures / "orphaned-case.0123456789ab.npz").write_bytes(b"not a payload")  # an integrity problem
    xfail = write_xfail(tmp_path / "xfail.txt", "# known gaps of this port", "", "mask_holes  holes not ported")
    out = tmp_path / "r"
    assert report(out, "--no-plots", "--impl", f"{impls}:mixed", "--xfail", xfail, fixtures=fixtures) == 1
    c = assert_counts_agree(out)
    assert c["total"] == len(matrix.fixture_suite()) + 1  # and the orphaned payload
    assert all(c[s] > 0 for s in STATUSES), c
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    by_status: dict[str, list[dict[str, Any]]] = {}
    for r in data["cases"]:
        by_status.setdefault(r["status"], []).append(r)
    assert [r["id"] for r in by_status["integrity"]] == ["orphaned-case"]
    assert all("NotImplementedError: units=1 without bias" in r["message"] for r in by_status["error"])
    assert all("mask_holes" in r["id"] for r in by_status["xfail"] + by_status["xpass"])
    assert all("mask_holes" not in r["id"] and r["flags"]["stateful"] for r in by_status["fail"])
    # problems first in the JSON too
    order = [r["status"] for r in data["cases"]]
    assert order == sorted(order, key=("fail", "error", "integrity", "xpass", "xfail", "known-deviation",
                                       "pass").index)
    suite = ET.parse(out / "junit.xml").getroot()
    errors = {tc.get("name"): tc.find("error") for tc in suite.iter("testcase") if tc.find("error") is not None}
    assert errors["orphaned-case"].get("type") == "integrity"
    assert {e.get("type") for e in errors.values()} == {"error", "integrity"}


# --- failing implementations --------------------------------------------------------------------
def test_broken_implementation_report(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert report(out, "--no-plots", "--impl", BROKEN, "-k", "bidi-concat-seq", "-k", "~B3T6n4", "-k", "~B3T6n4") == 1
    c = assert_counts_agree(out)
    assert c["total"] == c["fail"] == 44
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["implementation"] == BROKEN
    ids = [r["id"] for r in data["cases"]]
    assert all(i.startswith("bidi-concat-seq") for i in ids)
    for r in data["cases"]:
        # the first output is 0.1% off: every call's "output" fails, nothing else does
        assert r["failing_outputs"] and all(n.rsplit("/", 1)[-1] == "output" for n in r["failing_outputs"])
        bad = [o for o in r["outputs"] if not o["ok"]]
        assert all(o["tol_used"] > 1 for o in bad)
        assert all(o["max_rel"] is None or o["max_rel"] >= 0.9e-3 for o in bad)

    suite = ET.parse(out / "junit.xml").getroot()
    for tc in suite.iter("testcase"):
        failure = tc.find("failure")
        assert failure is not None, tc.get("name")
        assert re.search(r"output\(s\) differ from Keras, first (call1/|)output$", failure.get("message")), \
            failure.get("message")
        assert failure.get("type") == "mismatch"
        assert "output: max|diff|" in failure.text and "(tolerance atol 1e-05 + rtol 1e-05)" in failure.text

    md = (out / "report.md").read_text(encoding="utf-8")
    section = md.split("## Failing cases (44)", 1)
    assert len(section) == 2, "report.md has no 'Failing cases' section"
    for i in ids:
        assert f"- `{i}`: fail" in section[1]
    assert section[1].count("output: max|diff| ") >= 44

    html = parse_html(out)
    assert html.verdict == "FAIL"
    assert [i for i, kind, _ in html.cases if kind == "details"] == ids
    for i in ids:
        texts = html.details[i]
        assert "NO" in texts and any(t.endswith("output") for t in texts), (i, texts)
        assert "atol 1e-05 + rtol 1e-05" in texts
    assert "<h2>All other cases (0)</h2>" in (out / "report.html").read_text(encoding="utf-8")


def test_failing_cases_come_first_in_the_html(tmp_path: Path, impls: str) -> None:
    out = tmp_path / "r"
    assert report(out, "--no-plots", "--impl", f"{impls}:stateful_off", "-k", "bidi-concat-seq", "-k", "~B3T6n4", "-k", "~B3T6n4") == 1
    c = assert_counts_agree(out)
    assert c["fail"] == 22 and c["pass"] + c["known-deviation"] == 22  # the stateful ones fail
    html = parse_html(out)
    statuses = {r["id"]: r["status"] for r in json.loads((out / "report.json").read_text())["cases"]}
    page = [(i, kind) for i, kind, _ in html.cases]
    failing = [n for n, (i, _) in enumerate(page) if statuses[i] == "fail"]
    passing = [n for n, (i, _) in enumerate(page) if statuses[i] != "fail"]
    assert len(failing) == 22 and len(passing) == 22
    assert max(failing) < min(passing), "a passing case is shown before a failing one"
    assert all(page[n][1] == "details" for n in failing)
    assert all(page[n][1] == "tr" for n in passing)
    for n in failing:
        assert "stateful" in page[n][0]
        assert "NO" in html.details[page[n][0]]  # its per-output table, the failing output marked
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.index("<h2>Failing cases (22)</h2>") < text.index("<h2>All other cases (22)</h2>")


# --- nothing run --------------------------------------------------------------------------------
@pytest.mark.parametrize("precreate", [False, True], ids=["new-dir", "existing-dir"])
def test_a_run_of_no_case_fails_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   precreate: bool) -> None:
    out = tmp_path / "r"
    if precreate:
        out.mkdir()
    assert report(out, "-k", "no-such-case") == 2
    err = capsys.readouterr().err
    assert "error: no case was executed" in err and "no report written" in err
    if precreate:
        assert list(out.iterdir()) == []
    else:
        assert not out.exists()


def test_report_data_refuses_an_empty_result() -> None:
    from bilstm_ref.report import ReportData

    with pytest.raises(BilstmRefError, match="no case was executed"):
        ReportData.build([], versions={}, wall=0.0, source="nothing", impl=None, backend=None)


# --- expected failures --------------------------------------------------------------------------
def test_every_failure_expected_exits_zero(tmp_path: Path) -> None:
    xfail = write_xfail(tmp_path / "xfail.txt", "bidi-concat-seq  the port scales its output by 1.001")
    out = tmp_path / "r"
    assert report(out, "--no-plots", "--impl", BROKEN, "-k", "bidi-concat-seq", "-k", "~B3T6n4", "--xfail", xfail) == 0
    c = assert_counts_agree(out)
    assert c["total"] == c["xfail"] == 44
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["coverage"] == 0.0, "expected failures counted as matching"
    assert data["expected_failures"] == [{"pattern": "bidi-concat-seq",
                                          "reason": "the port scales its output by 1.001"}]
    for r in data["cases"]:
        assert r["status"] == "xfail"
        assert r["message"].startswith("expected failure: the port scales its output by 1.001")
    suite = ET.parse(out / "junit.xml").getroot()
    for tc in suite.iter("testcase"):
        skipped = tc.find("skipped")
        assert skipped is not None and tc.find("failure") is None
        assert skipped.get("type") == "xfail" and "the port scales its output" in skipped.get("message")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Expected failures (44)" in md and "**Verdict: PASS**" in md
    assert parse_html(out).verdict == "PASS"


def test_some_failures_expected(tmp_path: Path, impls: str) -> None:
    xfail = write_xfail(tmp_path / "xfail.txt", "mask_holes-init-stateful  not yet",
                        "mask_none  listed but matching")
    out = tmp_path / "r"
    rc = report(out, "--no-plots", "--impl", f"{impls}:stateful_off", "-k", "bidi-concat-seq", "-k", "~B3T6n4", "--xfail", xfail)
    assert rc == 1  # the other stateful cases still fail
    c = assert_counts_agree(out)
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    status = {r["id"]: r["status"] for r in data["cases"]}
    assert status["bidi-concat-seq-mask_holes-init-stateful"] == "xfail"
    assert status["bidi-concat-seq-state-mask_holes-init-stateful"] == "xfail"
    assert status["bidi-concat-seq-mask_none"] == "xpass"  # listed, but passes
    assert status["bidi-concat-seq-mask_none-stateful"] == "xfail"  # listed, fails
    assert status["bidi-concat-seq-mask_left-stateful"] == "fail"
    xpass = next(r for r in data["cases"] if r["id"] == "bidi-concat-seq-mask_none")
    assert xpass["message"] == "listed as an expected failure (listed but matching) but passed"
    assert c["xpass"] > 0 and c["xfail"] > 0 and c["fail"] > 0
    # coverage: passes, known deviations and unexpected passes match; expected failures do not
    assert data["coverage"] == pytest.approx((c["pass"] + c["known-deviation"] + c["xpass"]) / 44)
    assert data["coverage"] == pytest.approx(22 / 44)  # the 22 non-stateful cases
    suite = ET.parse(out / "junit.xml").getroot()
    tc = next(t for t in suite.iter("testcase") if t.get("name") == "bidi-concat-seq-mask_none")
    assert tc.find("skipped") is None and tc.find("failure") is None
    assert tc.find("system-out").text.startswith("xpass:")


def test_expected_passes_only_exit_zero_and_count_as_coverage(tmp_path: Path) -> None:
    xfail = write_xfail(tmp_path / "xfail.txt", "mask_none  thought broken")
    out = tmp_path / "r"
    assert report(out, "--no-plots", "-k", "bidi-concat-seq", "-k", "~B3T6n4", "--xfail", xfail) == 0
    c = assert_counts_agree(out)
    assert c["xpass"] == 9 and c["xfail"] == 0
    assert json.loads((out / "report.json").read_text())["coverage"] == 1.0


def test_unreadable_xfail_file_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert report(out, "--no-plots", "--xfail", str(tmp_path / "missing.txt")) == 2
    assert "--xfail" in capsys.readouterr().err
    assert not out.exists()


# --- bugs ---------------------------------------------------------------------------------------
def test_report_json_records_the_arguments_it_was_run_with(tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = ["report", "--out", str(out), "--fixtures", str(FIXTURES), "--no-plots", "-k", "bidi-concat-seq-mask_none"]
    assert main(argv) == 0
    recorded = json.loads((out / "report.json").read_text(encoding="utf-8"))["argv"]
    assert recorded == argv


def test_printed_report_summary_accounts_for_every_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xfail = write_xfail(tmp_path / "xfail.txt", "mask_none  thought broken")
    assert report(tmp_path / "r", "--no-plots", "-k", "bidi-concat-seq", "-k", "~B3T6n4", "--xfail", xfail) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("report:"))
    numbers = [int(n) for n in re.findall(r"(\d+) (?!cases)[a-z]", line.split(";")[0])]
    total = int(re.match(r"report: (\d+) cases", line).group(1))
    assert sum(numbers) == total, line


# --- a real browser -----------------------------------------------------------------------------
def _chromium() -> str | None:
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HOME": str(tmp)})


def test_html_report_renders_in_headless_chromium(tmp_path: Path, impls: str) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed (apt-get install chromium)")
    out = tmp_path / "r"
    assert report(out, "--no-plots", "--impl", f"{impls}:stateful_off", "-k", "bidi-concat-seq", "-k", "~B3T6n4", "-k", "~B3T6n4") == 1
    page = (out / "report.html").resolve().as_uri()

    shot = tmp_path / "shot.png"
    done = _run_chromium(browser, tmp_path / "profile1", f"--screenshot={shot}", "--window-size=1280,2000", page)
    assert shot.is_file(), f"no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}"
    assert png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 20_000, "the screenshot looks blank"
    try:
        import matplotlib.image
        import numpy as np
    except ImportError:
        pass
    else:
        img = matplotlib.image.imread(shot)[..., :3]
        assert img.std() > 0.05, "the screenshot is one colour"
        # the FAIL verdict badge (#d62728) near the top of the page
        red = np.all(np.abs(img[:400] - np.array([0xd6, 0x27, 0x28]) / 255) < 0.06, axis=-1)
        assert red.sum() > 500, "no red FAIL badge rendered"

    done = _run_chromium(browser, tmp_path / "profile2", "--dump-dom", page)
    dom = done.stdout
    assert done.returncode == 0 and "</html>" in dom, done.stderr[-2000:]
    rendered = ReportHTML()
    rendered.feed(dom)
    assert rendered.verdict == "FAIL" and "verdict" in rendered.verdict_classes
    assert {k: int(v) for k, v in rendered.counts.items()} == json_counts(out)
    assert 'id="counts"' in dom
    assert len(rendered.details) == 22


def test_report_without_matplotlib_says_so_first_and_writes_everything_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "r"
    fixtures_dir = Path(__file__).parent.parent / "fixtures"
    rc = main(["report", "--out", str(out), "--fixtures", str(fixtures_dir), "-k", "bidi-concat-seq-state-mask_right"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.startswith("warning: plots will be skipped: matplotlib is not installed")
    assert {p.name for p in out.iterdir()} == {"report.md", "report.html", "report.json", "junit.xml"}


def test_a_failing_plot_never_loses_the_other_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bilstm_ref.errors import BilstmRefError
    from bilstm_ref.report import plots

    def broken(data, out):
        raise BilstmRefError("plots need matplotlib")

    monkeypatch.setattr(plots, "make_plots", broken)
    fixtures_dir = Path(__file__).parent.parent / "fixtures"
    assert main(["report", "--out", str(tmp_path / "r"), "--fixtures", str(fixtures_dir), "-k", "bidi-sum-seq"]) == 0
    assert (tmp_path / "r" / "report.html").exists() and (tmp_path / "r" / "junit.xml").exists()


def test_report_md_names_the_backend_once(tmp_path: Path) -> None:
    fixtures_dir = Path(__file__).parent.parent / "fixtures"
    assert main(["report", "--out", str(tmp_path), "--fixtures", str(fixtures_dir), "-k", "bidi-sum-seq", "--no-plots"]) == 0
    source_line = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("- source:"))
    assert source_line.count("backend") == 1, source_line
