"""Mutation testing of the forward-pass modules: how many small seeded bugs the verifier catches.

    python benchmarks/mutation.py [--modules lstm,bidirectional,...] [--jobs 2] [--json out.json]
                                  [--limit N] [--only MODULE:LINE]

Each mutant changes one place of one module (an arithmetic or bitwise operator, a comparison, a
boolean operator, a constant, a `not` dropped, a statement deleted, two call arguments swapped),
in a private copy of the package. Two verdicts per mutant:

(a) **the committed fixtures alone**: ``bilstm-ref fixtures verify fixtures`` (no Keras) exits
    non-zero, or times out;
(b) **fixtures + the Keras-free test suite**: (a), or ``pytest -m "not keras" -x`` on the
    forward-pass tests fails.

Kill rates are reported per module. For (a) the denominator is the mutants on lines a layer call
executes while the committed fixtures are verified (while a layer's ``__call__`` is on the stack:
building a layer from its config and setting its weights are judged by the suite), less the input
checks (``raise`` statements, and an ``if`` whose body only computes a message or a size and
checks): fixtures hold valid inputs only, and the readable scan (the specification of the fast
path) is judged by the suite's equivalence proof instead. Mutants listed
in ``benchmarks/mutation_equivalent.txt`` (``module:line:operator[#index]`` and why no input can
tell them apart) are left out of both denominators; those marked "speed only" (they change which
bit-identical path computes a result) are left out of (a) only. ``--rerun`` re-judges only an earlier run's
survivors (while the mutated modules and the fixtures are unchanged).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bilstm_ref"
#: Where the mutated modules (the reference) live, inside the package.
SOURCE = "reference"
MODULES = ("lstm", "bidirectional", "activations", "dtypes", "sequence")
EQUIVALENT = Path(__file__).with_name("mutation_equivalent.txt")
#: The Keras-free tests of the forward pass (the rest test loaders, fixtures, reports and the CLI).
#: Fast, sharp files first: pytest -x stops at the first failure, so a killed mutant costs little.
SUITE = ("tests/test_blind_spots.py", "tests/test_lstm_semantics.py", "tests/test_activations.py",
         "tests/test_sequence.py", "tests/test_backends.py", "tests/test_bad_inputs.py", "tests/test_fast_path.py",
         "tests/test_properties.py", "tests/test_memory.py", "tests/test_fixtures_committed.py")

_BINOPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
           ast.Pow: ast.Mult, ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr,
           ast.BitOr: ast.BitAnd, ast.Mod: ast.FloorDiv}
_CMPOPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}


@dataclasses.dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the site's number in the module's walk order
    line: int
    operator: str
    description: str
    guard: bool = False  # in an input check (an `if` whose body only raises): fixtures hold valid inputs only

    @property
    def key(self) -> str:
        return f"{self.module}:{self.line}:{self.operator}"

    def reviewed(self, equivalent: dict[str, str]) -> bool:
        """Listed as equivalent, for its line and operator or by its index."""
        return self._entry(equivalent) is not None and not self.speed_only(equivalent)

    def speed_only(self, equivalent: dict[str, str]) -> bool:
        """Listed as equivalent in every result, changing only which (bit-identical) path computes it:
        out of (a), which judges results; in (b), whose tests also check the path."""
        entry = self._entry(equivalent)
        return entry is not None and entry.startswith("speed only:")

    def _entry(self, equivalent: dict[str, str]) -> Optional[str]:
        return equivalent.get(self.key, equivalent.get(f"{self.key}#{self.index}"))


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first))
    return out


def _is_check(stmt: ast.stmt) -> bool:
    """An input check: ``raise``; an ``if`` (no ``else``) whose body only assigns (a message, the sizes a
    limit is checked on) and checks, ending with a check; a ``for`` whose body only holds checks."""
    if isinstance(stmt, ast.Raise):
        return True
    if isinstance(stmt, ast.If) and not stmt.orelse and stmt.body:
        *lead, last = stmt.body
        return _is_check(last) and all(isinstance(b, ast.Assign) or _is_check(b) for b in lead)
    if isinstance(stmt, ast.For) and not stmt.orelse and stmt.body:
        return all(_is_check(b) for b in stmt.body)
    return False


def _guards(tree: ast.AST) -> set[int]:
    """Nodes inside input checks (:func:`_is_check`), which fixtures of valid inputs cannot reach."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and _is_check(node):
            out |= {id(n) for n in ast.walk(node)}
    return out


def _sites(tree: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
    """(node, operator, description) for every place a mutant can change, in a fixed order."""
    skip = _docstring_nodes(tree)
    in_text = {id(n) for j in ast.walk(tree) if isinstance(j, ast.JoinedStr) for n in ast.walk(j)}
    for node in ast.walk(tree):
        if id(node) in in_text:
            continue  # message text
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            yield node, "binop", f"{type(node.op).__name__} -> {_BINOPS[type(node.op)].__name__}"
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOPS:
            yield node, "augop", f"{type(node.op).__name__}= -> {_BINOPS[type(node.op)].__name__}="
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in _CMPOPS:
            yield node, "cmp", f"{type(node.ops[0]).__name__} -> {_CMPOPS[type(node.ops[0])].__name__}"
        elif isinstance(node, ast.BoolOp):
            yield node, "boolop", f"{type(node.op).__name__} -> {'Or' if isinstance(node.op, ast.And) else 'And'}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not", "drop `not`"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            yield node, "neg", "drop unary minus"
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
            yield node, "const", f"{node.value!r} -> {_new_constant(node.value)!r}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield node, "bool", f"{node.value} -> {not node.value}"
        elif (isinstance(node, ast.Call) and len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2])
              and ast.dump(node.args[0]) != ast.dump(node.args[1])):  # swapping equal arguments changes nothing
            yield node, "swap", f"swap the first two arguments of {ast.unparse(node.func)}"
        if isinstance(node, (ast.FunctionDef, ast.For, ast.If, ast.With, ast.While)):
            for field in ("body", "orelse"):
                for stmt in getattr(node, field, []) or []:
                    if id(stmt) in skip:
                        continue
                    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr, ast.Raise, ast.If, ast.For)) \
                            and len(getattr(node, field)) > 1:
                        yield stmt, "delete", f"delete `{ast.unparse(stmt).splitlines()[0][:50]}`"


def _new_constant(value: Any) -> Any:
    if isinstance(value, int):
        return value + 1 if value != 1 else 0
    return 0.0 if value == 1.0 else (1.0 if value == 0.0 else value * 1.5)


class _Apply(ast.NodeTransformer):
    def __init__(self, target: ast.AST, operator: str) -> None:
        self.target, self.operator = target, operator

    def visit(self, node: ast.AST) -> Any:
        if node is not self.target:
            return super().visit(node)
        op = self.operator
        if op == "binop":
            node.op = _BINOPS[type(node.op)]()
        elif op == "augop":
            node.op = _BINOPS[type(node.op)]()
        elif op == "cmp":
            node.ops[0] = _CMPOPS[type(node.ops[0])]()
        elif op == "boolop":
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif op in ("not", "neg"):
            return node.operand
        elif op == "const":
            node.value = _new_constant(node.value)
        elif op == "bool":
            node.value = not node.value
        elif op == "swap":
            node.args[0], node.args[1] = node.args[1], node.args[0]
        elif op == "delete":
            return ast.copy_location(ast.Pass(), node)
        return node


def mutants(module: str) -> list[Mutant]:
    tree = ast.parse((PACKAGE / SOURCE / f"{module}.py").read_text(encoding="utf-8"))
    guards = _guards(tree)
    return [Mutant(module, i, getattr(node, "lineno", 0), op, desc, id(node) in guards)
            for i, (node, op, desc) in enumerate(_sites(tree))]


def mutated_source(m: Mutant) -> str:
    tree = ast.parse((PACKAGE / SOURCE / f"{m.module}.py").read_text(encoding="utf-8"))
    target, operator, _ = list(_sites(tree))[m.index]
    tree = _Apply(target, operator).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def executed_lines() -> dict[str, set[int]]:
    """Lines of each module that a layer call executes while the committed fixtures are verified: lines run
    while a layer's ``__call__`` is on the stack, not while it is built from its config or given weights."""
    code = ("import json, sys\n"
            "lines = {}\n"
            "def in_call(frame):\n"
            "    while frame is not None:\n"
            "        if frame.f_code.co_name == '__call__' and frame.f_code.co_filename.startswith(sys.argv[1]):\n"
            "            return True\n"
            "        frame = frame.f_back\n"
            "    return False\n"
            "def lines_of(frame, event, arg):\n"
            "    lines.setdefault(frame.f_code.co_filename, set()).add(frame.f_lineno)\n"
            "    return lines_of\n"
            "def tracer(frame, event, arg):\n"
            "    if frame.f_code.co_filename.startswith(sys.argv[1]) and in_call(frame):\n"
            "        return lines_of(frame, event, arg)\n"
            "    return None\n"
            "from bilstm_ref.fixtures import read_fixture, scan, verify_fixture\n"
            "fixtures = [read_fixture(p) for p in scan(sys.argv[2]).manifests]\n"
            "sys.settrace(tracer)\n"
            "for f in fixtures: verify_fixture(f)\n"
            "sys.settrace(None)\n"
            "print(json.dumps({k: sorted(v) for k, v in lines.items()}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(PACKAGE), str(ROOT / "fixtures")], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    raw = json.loads(done.stdout)
    return {Path(k).stem: set(v) for k, v in raw.items()}


def _run(cmd: list[str], pythonpath: str, timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=pythonpath, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    try:
        # The private copy's folder is the working directory, so it is imported first (never the checkout).
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=pythonpath)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def judge(m: Mutant, workdir: Path, suite: bool) -> dict[str, str]:
    """Verdicts (a) and (b) of one mutant, in ``workdir`` (a private copy of the package)."""
    target = workdir / "bilstm_ref" / SOURCE / f"{m.module}.py"
    original = target.read_text(encoding="utf-8")
    try:
        try:
            target.write_text(mutated_source(m), encoding="utf-8")
        except (SyntaxError, ValueError) as e:
            return {"fixtures": "invalid", "suite": "invalid", "note": str(e)}
        a = _run([sys.executable, "-c", "import sys; from bilstm_ref.cli import main; "
                  "sys.exit(main(['fixtures', 'verify', sys.argv[1]]))", str(ROOT / "fixtures")], str(workdir), 120)
        out = {"fixtures": a}
        if suite:
            out["suite"] = a if a != "survived" else _run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not keras", "-p", "no:cacheprovider",
                 "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), *(str(ROOT / t) for t in SUITE)],
                str(workdir), 900)
        return out
    finally:
        target.write_text(original, encoding="utf-8")


def _equivalent() -> dict[str, str]:
    out = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, why = line.partition(" ")
                out[key] = why.strip()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modules", default=",".join(MODULES))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--limit", type=int, default=None, help="at most N mutants per module (a quick look)")
    p.add_argument("--only", default=None, help="MODULE:LINE: just the mutants of one line")
    p.add_argument("--fixtures-only", action="store_true", help="verdict (a) only")
    p.add_argument("--report", default=None, metavar="JSON", help="print the report of an earlier --json only")
    p.add_argument("--rerun", default=None, metavar="JSON",
                   help="an earlier --json of the same modules: keep its kills, judge only its survivors again "
                        "(valid while the mutated modules and the fixtures are unchanged)")
    args = p.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    todo = [m for mod in modules for m in mutants(mod)[: args.limit]]
    if args.only:
        mod, line = args.only.split(":")
        todo = [m for m in todo if m.module == mod and m.line == int(line)]
    equivalent = _equivalent()
    executed = executed_lines()
    if args.report:
        rows = json.loads(Path(args.report).read_text(encoding="utf-8"))["mutants"]
        current = {(m.module, m.index): m for m in todo}
        done = {current[(r["module"], r["index"])]: {k: r[k] for k in ("fixtures", "suite") if k in r} for r in rows
                if (r["module"], r["index"]) in current}
        report(done, equivalent, executed, None, all("suite" in v for v in done.values()))
        return
    previous: dict[tuple[str, int], dict[str, str]] = {}
    if args.rerun:
        for row in json.loads(Path(args.rerun).read_text(encoding="utf-8"))["mutants"]:
            verdict = {k: row[k] for k in ("fixtures", "suite") if k in row}
            if verdict["fixtures"] != "survived":  # (a) killed it: so did (b), which starts with (a)
                verdict.setdefault("suite", verdict["fixtures"])
            previous[(row["module"], row["index"])] = verdict
    kept = {m: previous[(m.module, m.index)] for m in todo if (m.module, m.index) in previous
            and previous[(m.module, m.index)].get("suite", previous[(m.module, m.index)]["fixtures"]) != "survived"}
    todo = [m for m in todo if m not in kept]
    print(f"{len(todo)} mutants in {modules}; {len(equivalent)} reviewed as equivalent", file=sys.stderr, flush=True)
    work = [Path(tempfile.mkdtemp(prefix="mutation-")) for _ in range(args.jobs)]
    for w in work:
        shutil.copytree(PACKAGE, w / "bilstm_ref", ignore=shutil.ignore_patterns("__pycache__"))
    free = list(work)
    results: dict[Mutant, dict[str, str]] = dict(kept)
    t0 = time.perf_counter()

    def one(m: Mutant) -> tuple[Mutant, dict[str, str]]:
        w = free.pop()
        try:
            return m, judge(m, w, not args.fixtures_only)
        finally:
            free.append(w)

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for k, (m, verdict) in enumerate(pool.map(one, todo), 1):
            results[m] = verdict
            if k % 20 == 0 or k == len(todo):
                print(f"  {k}/{len(todo)} mutants, {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    for w in work:
        shutil.rmtree(w, ignore_errors=True)
    report(results, equivalent, executed, args.json, not args.fixtures_only)


def report(results: dict[Mutant, dict[str, str]], equivalent: dict[str, str], executed: dict[str, set[int]],
           json_path: Optional[str], suite: bool) -> None:
    def killed(v: str) -> bool:
        return v in ("killed", "timeout")

    rows, survivors = [], []
    for mod in sorted({m.module for m in results}):
        ms = [m for m in results if m.module == mod and results[m]["fixtures"] != "invalid" and not m.reviewed(equivalent)]
        in_call = [m for m in ms if m.line in executed.get(mod, set()) and not m.guard
                   and not m.speed_only(equivalent)]
        a = sum(killed(results[m]["fixtures"]) for m in in_call)
        a_all = sum(killed(results[m]["fixtures"]) for m in ms)
        b = sum(killed(results[m].get("suite", "survived")) for m in ms)
        rows.append((mod, len(ms), len(in_call), a, a_all, b))
        survivors += [m for m in ms if not killed(results[m].get("suite" if suite else "fixtures", "survived"))]
    in_call_survivors = [m for m in results if m.line in executed.get(m.module, set()) and not m.guard
                         and not m.reviewed(equivalent) and not m.speed_only(equivalent)
                         and results[m]["fixtures"] == "survived"]
    print("\n(a) counts mutants on lines a layer call executes while the fixtures are verified, input checks left out")
    print("module          mutants  in a layer call  (a) fixtures, in call     (a) fixtures, all"
          + ("     (b) fixtures + suite" if suite else ""))
    tot = [0] * 5
    for mod, n, n_call, a, a_all, b in rows:
        line = (f"{mod:<15} {n:>7}  {n_call:>15}  {a:>5} ({a / max(n_call, 1):6.1%})          "
                f"{a_all:>5} ({a_all / max(n, 1):6.1%})")
        if suite:
            line += f"     {b:>5} ({b / max(n, 1):6.1%})"
        print(line)
        for i, v in enumerate((n, n_call, a, a_all, b)):
            tot[i] += v
    n, n_call, a, a_all, b = tot
    line = f"{'total':<15} {n:>7}  {n_call:>15}  {a:>5} ({a / max(n_call, 1):6.1%})          {a_all:>5} ({a_all / max(n, 1):6.1%})"
    if suite:
        line += f"     {b:>5} ({b / max(n, 1):6.1%})"
    print(line)
    print(f"\nequivalent (reviewed, left out): {sum(m.reviewed(equivalent) for m in results)}; invalid: "
          f"{sum(v['fixtures'] == 'invalid' for v in results.values())}")
    print(f"surviving {'(b)' if suite else '(a)'}: {len(survivors)}")
    for m in survivors:
        print(f"  {m.key}  {m.description}  [(a) {results[m]['fixtures']}]")
    print(f"surviving (a), in a layer call: {len(in_call_survivors)}")
    for m in in_call_survivors:
        print(f"  {m.key}  {m.description}")
    if json_path:
        Path(json_path).write_text(json.dumps({
            "rows": [dict(zip(("module", "mutants", "in_call", "a_in_call", "a_all", "b"), r)) for r in rows],
            "mutants": [{**dataclasses.asdict(m), "key": m.key, **v,
                         "in_call": m.line in executed.get(m.module, set()) and not m.guard,
                         "equivalent": m.reviewed(equivalent), "speed_only": m.speed_only(equivalent)}
                        for m, v in results.items()],
        }, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
