"""pytest plugin (entry point ``pytest11``): opt-in regression fixtures for users' own tests.

It does nothing unless a test asks for the ``bilstm_ref_regression`` fixture::

    def test_my_port(bilstm_ref_regression):
        bilstm_ref_regression.check("model.keras", layer="bidirectional", impl="my_port:factory")

The first run (with Keras installed) records Keras's answers for that layer into a folder next
to the test (``<test file stem>/<test name>/``) and fails, asking you to review and commit them;
later runs verify the implementation against them, Keras not needed. ``--force-regen`` records
them again and still fails, so that someone reads the diff (as pytest-regressions does).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest

_REGEN = "--force-regen"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bilstm_ref", "bilstm_ref regression fixtures")
    try:
        group.addoption(_REGEN, action="store_true", default=False,
                        help="re-record bilstm_ref regression fixtures from live Keras (the test still fails)")
    except ValueError:  # pytest-regressions registered the same option, with the same meaning
        pass


class Regression:
    """What the ``bilstm_ref_regression`` fixture gives a test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        node = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        self.datadir = Path(request.path).parent / Path(request.path).stem / node

    def check(self, model: Union[str, Path], layer: Optional[str] = None,
              impl: Union[None, str, Callable[..., Any]] = None, config: Optional[Union[str, Path]] = None,
              cases: int = 2, masks: bool = False, states: bool = False, seed: int = 0) -> None:
        """Verify ``impl`` (default: the reference) against Keras's recorded answers for ``layer``.

        Args:
            model: the model file (``.keras``, ``.h5``, ``.weights.h5`` with ``config``), relative to
                the test file's folder or absolute.
            impl: a factory ``spec -> callable`` or ``"package.module:factory"``.
            cases, masks, states, seed: how the answers are recorded (see ``fixtures generate``).
        """
        __tracebackhide__ = True
        from .fixtures import read_fixture, scan, verify_fixture
        from .spec import resolve_factory

        model_path = Path(model)
        if not model_path.is_absolute():
            model_path = Path(self._request.path).parent / model_path
        force = bool(self._request.config.getoption(_REGEN, default=False))
        existing = scan(self.datadir).manifests if self.datadir.is_dir() else []
        if force or not existing:
            self._record(model_path, layer, config, cases, masks, states, seed, regenerated=bool(existing))
        factory = resolve_factory(impl) if isinstance(impl, str) else impl
        failures = []
        for path in existing:
            result = verify_fixture(read_fixture(path), factory=factory)
            if result.status not in ("pass", "known-deviation"):
                failures.append(result.describe())
        if failures:
            pytest.fail(f"{len(failures)} of {len(existing)} recorded Keras answers not matched "
                        f"(fixtures in {self.datadir}):\n" + "\n".join(failures), pytrace=False)

    def _record(self, model_path: Path, layer: Optional[str], config: Any, cases: int, masks: bool, states: bool,
                seed: int, regenerated: bool) -> None:
        __tracebackhide__ = True
        from .errors import KerasUnavailableError
        from .fixtures import directory_lock, write_fixture
        from .loaders import load_spec
        from .record import model_fixtures

        spec = load_spec(model_path, layer=layer, config=config)
        try:
            fixtures = model_fixtures(spec, model_path.name, n_cases=cases, seed=seed, masks=masks, states=states)
        except KerasUnavailableError as e:
            pytest.fail(f"no recorded Keras answers in {self.datadir} and Keras is not installed ({e}); record "
                        f"them where it is: pytest {_REGEN}, or bilstm-ref fixtures generate --model {model_path} "
                        f"--layer {layer} --out {self.datadir}", pytrace=False)
        self.datadir.mkdir(parents=True, exist_ok=True)
        with directory_lock(self.datadir):
            for f in fixtures:
                write_fixture(self.datadir, f, force=True)
        what = "re-recorded" if regenerated else "recorded"
        pytest.fail(f"{what} {len(fixtures)} Keras answers for {model_path.name} in {self.datadir}: review them "
                    "(git diff), commit them, and run the tests again", pytrace=False)


@pytest.fixture
def bilstm_ref_regression(request: pytest.FixtureRequest) -> Regression:
    """Record-once, verify-always regression fixtures for an implementation of a model's layer."""
    return Regression(request)
