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
    original = ast.dump(ast.parse((mutation.PACKAGE / mutation.SOURCE / f"{module}.py").read_text(encoding="utf-8")))
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


def test_a_limit_computed_then_checked_is_a_check_but_an_if_that_computes_is_not() -> None:
    tree = ast.parse("def f(a, n):\n    if a.ndim == 3:\n        B, T = a.shape[:2]\n        if B * T > n:\n"
                     "            raise ValueError(n)\n    if n > 1:\n        a = a * 2\n        if n > 2:\n"
                     "            raise ValueError(n)\n        a = a + 1\n    return a\n")
    guards = mutation._guards(tree)
    guard_of = {(getattr(node, "lineno", 0), op): id(node) in guards for node, op, _ in mutation._sites(tree)}
    assert guard_of[(2, "cmp")] is True
    assert guard_of[(4, "binop")] is True
    assert guard_of[(6, "cmp")] is False  # its body changes a value the function goes on with


def test_in_call_lines_are_those_run_inside_a_layer_call_only() -> None:
    executed = mutation.executed_lines()
    source = (mutation.PACKAGE / mutation.SOURCE / "bidirectional.py").read_text(encoding="utf-8").splitlines()
    init_line = next(i for i, text in enumerate(source, 1) if 'fw_cfg["zero_output_for_mask"]' in text)
    merge_line = next(i for i, text in enumerate(source, 1) if 'return np.concatenate([y_fw, y_bw]' in text)
    assert init_line not in executed["bidirectional"]  # building the layer from its config is not its call
    assert merge_line in executed["bidirectional"]
