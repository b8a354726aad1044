"""The modules' names from before they were grouped by role still import, as the same module objects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import bilstm_ref
from bilstm_ref._aliases import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_name_is_the_module_at_its_new_place(old: str) -> None:
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__name__ == MOVED[old] and module.__spec__.name == MOVED[old]
    assert getattr(bilstm_ref, old.rsplit(".", 1)[1]) is module


def test_every_old_name_is_gone_from_its_old_place_and_its_new_place_exists() -> None:
    import pathlib

    root = pathlib.Path(bilstm_ref.__file__).parent
    for old, new in MOVED.items():
        assert not (root / f"{old.rsplit('.', 1)[1]}.py").exists(), old
        assert (root.parent / (new.replace(".", "/") + ".py")).exists(), new


def test_from_imports_and_patches_through_an_old_name_reach_the_real_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from bilstm_ref import lstm as old_lstm
    from bilstm_ref.runner import run_calls
    from bilstm_ref.reference import lstm
    from bilstm_ref.conformance.judge import run_calls as new_run_calls

    assert run_calls is new_run_calls
    sentinel = object()
    monkeypatch.setattr("bilstm_ref.lstm.scan_stack", sentinel)
    assert lstm.scan_stack is sentinel and old_lstm.scan_stack is sentinel


def test_the_fixtures_module_keeps_its_names() -> None:
    import bilstm_ref.fixtures as fixtures
    from bilstm_ref.fixtures import store

    for name in store.__all__:
        assert getattr(fixtures, name) is getattr(store, name)
    assert fixtures.SCHEMA_VERSION == store.SCHEMA_VERSION  # not in __all__, reached all the same
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        fixtures.no_such_name  # noqa: B018


def test_python_dash_m_runs_a_moved_module_under_its_old_name() -> None:
    done = subprocess.run([sys.executable, "-m", "bilstm_ref.fixture_export", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--format" in done.stdout


def test_an_unknown_name_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("bilstm_ref.no_such_module")
