"""The mutation-testing command (benchmarks/mutation.py) itself: its mutants are valid programs that
differ from the original, and its list of reviewed equivalents names mutants that exist."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import mutation  # noqa: E402


@pytest.mark.parametrize("module", mutation.MODULES)
def test_every_mutant_is_a_valid_different_program(module: str) -> None:
    original = ast.dump(ast.parse((mutation.PACKAGE / f"{module}.py").read_text(encoding="utf-8")))
    mutants = mutation.mutants(module)
    assert len(mutants) > 20
    for m in mutants[::7]:  # a spread of sites and operators
        source = mutation.mutated_source(m)
        compile(source, f"{module}.py", "exec")
        assert ast.dump(ast.parse(source)) != original, m


def test_the_reviewed_equivalents_name_existing_mutants_with_reasons() -> None:
    entries = mutation._equivalent()
    assert entries
    everything = [m for mod in mutation.MODULES for m in mutation.mutants(mod)]
    keys = {m.key for m in everything} | {f"{m.key}#{m.index}" for m in everything}
    stale = [k for k in entries if k not in keys]
    assert not stale, f"re-review after editing the modules: {stale}"
    assert all(reason.strip() for reason in entries.values())


def test_input_checks_are_told_apart() -> None:
    tree = ast.parse("def f(x):\n    if x < 0:\n        msg = 'neg'\n        raise ValueError(msg)\n"
                     "    for k in x:\n        if k > 1:\n            raise KeyError(k)\n    y = x + 1\n    return y\n")
    guards = mutation._guards(tree)
    guard_of = {(getattr(node, "lineno", 0), op): id(node) in guards for node, op, _ in mutation._sites(tree)}
    assert guard_of[(2, "cmp")] is True  # an if that builds a message and raises
    assert guard_of[(6, "cmp")] is True  # a loop of checks
    assert guard_of[(5, "delete")] is True
    assert guard_of[(8, "binop")] is False  # the computation is not a check
