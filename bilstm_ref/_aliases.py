"""The modules' names before they were grouped by role, kept importable.

``import bilstm_ref.lstm`` (or ``bilstm_ref.runner``, ``bilstm_ref.matrix``, ...) gives the very
module object now at its new place, so attributes read or patched through the old name are the
real ones. Only the names in :data:`MOVED` are answered; everything else is left to the normal
import system.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Optional, Sequence

#: Old module name -> where the module lives now.
MOVED = {
    "bilstm_ref.activations": "bilstm_ref.reference.activations",
    "bilstm_ref.bidirectional": "bilstm_ref.reference.bidirectional",
    "bilstm_ref.dtypes": "bilstm_ref.reference.dtypes",
    "bilstm_ref.lstm": "bilstm_ref.reference.lstm",
    "bilstm_ref.sequence": "bilstm_ref.reference.sequence",
    "bilstm_ref.spec": "bilstm_ref.reference.spec",
    "bilstm_ref.compare": "bilstm_ref.conformance.compare",
    "bilstm_ref.matrix": "bilstm_ref.conformance.matrix",
    "bilstm_ref.oracle": "bilstm_ref.conformance.oracle",
    "bilstm_ref.pairwise": "bilstm_ref.conformance.pairwise",
    "bilstm_ref.runner": "bilstm_ref.conformance.judge",
    "bilstm_ref.harness": "bilstm_ref.suites.harness",
    "bilstm_ref.scoreboard": "bilstm_ref.suites.backends",
    "bilstm_ref.converter_scoreboard": "bilstm_ref.suites.converters",
    "bilstm_ref.migration": "bilstm_ref.suites.migration",
    "bilstm_ref.record": "bilstm_ref.fixtures.record",
    "bilstm_ref.fixture_export": "bilstm_ref.fixtures.export",
    "bilstm_ref.live": "bilstm_ref.loaders.live",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module at its new place."""

    def __init__(self) -> None:
        self._specs: dict[str, Optional[importlib.machinery.ModuleSpec]] = {}

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__  # the import system now sets the old name's spec on it
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__name__)  # its own spec back: the module is already executed

    def get_code(self, fullname: str) -> object:
        """``python -m <old name>`` runs the module at its new place as ``__main__``."""
        return compile(f"import runpy\nrunpy.run_module({MOVED[fullname]!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname}: moved to {MOVED[fullname]}>", "exec")

    def is_package(self, fullname: str) -> bool:
        return False


def install() -> None:
    """Answer the old names (once per process)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
