"""The package's shape: modules grouped by role into layers that import only downwards, no import
cycles, and Keras (or TensorFlow) imported only where the docs say, and only inside functions.

Every import counts, also one inside a function: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bilstm_ref"

#: Lowest first. A module may import from its own layer and the layers below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bilstm_ref.errors", "bilstm_ref._version", "bilstm_ref._atomic", "bilstm_ref._native_logs"),
    ("bilstm_ref.reference",),
    ("bilstm_ref.loaders",),
    ("bilstm_ref.conformance",),
    ("bilstm_ref.fixtures.store", "bilstm_ref.adapters", "bilstm_ref.convert"),
    ("bilstm_ref.verify", "bilstm_ref.diagnose"),
    ("bilstm_ref.fixtures.record", "bilstm_ref.fixtures.export", "bilstm_ref.fixtures"),
    ("bilstm_ref.suites",),
    ("bilstm_ref.report",),
    ("bilstm_ref.testing", "bilstm_ref.pytest_plugin", "bilstm_ref.cli", "bilstm_ref.__main__", "bilstm_ref._aliases",
     "bilstm_ref"),
)

#: The only modules whose import statements name a deep-learning framework, and only inside a function
#: (modules that only ask whether one is installed, or read its version, use importlib and are not listed).
FRAMEWORK_USERS = {
    "bilstm_ref.conformance.oracle": "the live oracle",
    "bilstm_ref.loaders.live": "live Keras layers to specs, and specs to live Keras layers",
    "bilstm_ref.adapters.base": "builds the Keras model a converter converts",
    "bilstm_ref.adapters.tflite": "the TFLite converter is TensorFlow's",
    "bilstm_ref.verify.keras_model": "runs a user's saved model in Keras",
}
FRAMEWORKS = ("keras", "tensorflow", "tf_keras", "torch", "jax")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> tuple[set[str], list[tuple[str, int, bool]]]:
    """(the package's modules ``name`` imports, [(framework, line, at top level)])."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    deps: set[str] = set()
    frameworks = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] in FRAMEWORKS:
                frameworks.append((target, node.lineno, id(node) in top))
            if target == "bilstm_ref" or target.startswith("bilstm_ref."):
                for alias in node.names:  # "from . import matrix" imports a module; "from .x import y" imports x
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in MODULES else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FRAMEWORKS:
                    frameworks.append((alias.name, node.lineno, id(node) in top))
                if alias.name.startswith("bilstm_ref"):
                    deps.add(alias.name)
    deps.discard(name)
    return {d for d in deps if d in MODULES}, frameworks


def _layer(name: str) -> int:
    best, found = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) < 0] == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    deps, _ = _imports(name, MODULES[name])
    if name == "bilstm_ref":
        return  # the package's public names come from every layer
    upward = sorted(f"{d} (layer {_layer(d)})" for d in deps if _layer(d) > _layer(name) and d != "bilstm_ref")
    assert upward == [], f"{name} (layer {_layer(name)}) imports upwards"
    assert "bilstm_ref" not in deps or name == "bilstm_ref._aliases", \
        f"{name} imports the package's public names; import from the module that defines them"


def test_no_import_cycles() -> None:
    graph = {m: _imports(m, p)[0] - {"bilstm_ref"} for m, p in MODULES.items()}
    # a package depends on its __init__'s imports only; a module depends on its parent packages' __init__ too, but
    # those are checked as modules of their own
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_frameworks_only_where_allowed_and_only_lazily(name: str) -> None:
    _, frameworks = _imports(name, MODULES[name])
    assert [f for f in frameworks if f[2]] == [], f"{name} imports a framework at import time"
    if name not in FRAMEWORK_USERS:
        assert frameworks == [], f"{name} imports a framework: {frameworks}"


def test_the_layer_table_names_real_modules() -> None:
    names = [p for layer in LAYERS for p in layer] + list(FRAMEWORK_USERS)
    assert [n for n in names if n not in MODULES] == []


@pytest.mark.parametrize("name", sorted(FRAMEWORK_USERS))
def test_each_framework_user_still_needs_its_exemption(name: str) -> None:
    assert _imports(name, MODULES[name])[1], f"{name} imports no framework: drop it from FRAMEWORK_USERS"


def test_the_checks_see_real_edges() -> None:
    """The checks above are only as good as the edges they see: known ones, lazy and eager, are found."""
    harness, _ = _imports("bilstm_ref.suites.harness", MODULES["bilstm_ref.suites.harness"])
    assert {"bilstm_ref.conformance.oracle", "bilstm_ref.conformance.judge", "bilstm_ref.fixtures.store",
            "bilstm_ref.errors"} <= harness  # oracle and store are imported inside functions
    assert _layer("bilstm_ref.suites.harness") > _layer("bilstm_ref.conformance.oracle") > _layer("bilstm_ref.errors")
    _, frameworks = _imports("bilstm_ref.conformance.oracle", MODULES["bilstm_ref.conformance.oracle"])
    assert {f[0] for f in frameworks} >= {"keras", "tf_keras"} and not any(f[2] for f in frameworks)
