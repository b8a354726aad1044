"""The documentation lives in the repository: every relative link and section anchor in the README,
docs/, the examples and the benchmarks resolves, every ``docs/...`` reference in the code's messages
does too, and nothing points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.conformance.compare import BACKEND_TOLERANCES

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "examples" / "README.md", ROOT / "benchmarks" / "README.md",
               *(ROOT / "docs").glob("*.md")])
CODE = sorted((ROOT / "bilstm_ref").rglob("*.py"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_REF = re.compile(r"\bdocs/[\w./-]+\.md(?:#[\w-]+)?")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def check(target: str, base: Path) -> str:
    """'' when ``target`` (a path relative to ``base``, with an optional #anchor) resolves."""
    path_part, _, anchor = target.partition("#")
    path = (base / path_part).resolve() if path_part else None
    if path is not None and not path.exists():
        return f"{target}: no such file"
    if path is not None and ROOT not in path.parents and path != ROOT:
        return f"{target}: outside the repository"
    if anchor and (path is None or path.suffix == ".md") and anchor not in anchors(path or base):
        return f"{target}: no section #{anchor}"
    return ""


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(doc: Path) -> None:
    assert doc.exists(), doc
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    bad = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        problem = check(target, doc.parent) if not target.startswith("#") else (
            "" if target[1:] in anchors(doc) else f"{target}: no section")
        if problem:
            bad.append(problem)
    assert not bad, bad


def test_code_messages_name_documents_that_exist() -> None:
    bad = []
    for path in CODE:
        for ref in set(DOC_REF.findall(path.read_text(encoding="utf-8"))):
            problem = check(ref, ROOT)
            if problem:
                bad.append(f"{path.relative_to(ROOT)}: {problem}")
    assert not bad, bad


def test_nothing_points_outside_the_repository() -> None:
    pattern = re.compile(r"\.\./shared|shared/spec|shared/design|spec §|§\s?\d")
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:80]}"
            for p in DOCS + CODE + sorted(q for q in (ROOT / "examples").rglob("*") if q.is_file())
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_every_deviation_exclusion_and_workaround_is_documented() -> None:
    text = (ROOT / "docs" / "deviations.md").read_text(encoding="utf-8")
    headings = anchors(ROOT / "docs" / "deviations.md")
    names = ([e.name for e in matrix.EXCLUSIONS] + [d.name for d in matrix.KNOWN_DEVIATIONS]
             + [w.name for w in matrix.KERAS_WORKAROUNDS])
    missing = [n for n in names if slug(f"`{n}`") not in headings]
    assert not missing, missing
    for backend, policy in BACKEND_TOLERANCES:
        assert backend in text and policy in text
