"""pytest plugin (entry point ``pytest11``). It does nothing unless asked:

``--bilstm-ref-impl package.module:factory`` adds the conformance matrix to the session, one test
per case, judging the factory's implementation against live Keras (or, with
``--bilstm-ref-fixtures DIR``, against recorded fixtures, no Keras needed); ``-k``, ``-n`` (xdist)
and ``--junitxml`` apply as to any test; ``--bilstm-ref-xfail FILE`` marks expected failures.

``bilstm_ref.assert_matches_keras(actual, expected)`` is the assertion for hand-written tests.

Regression fixtures for a user's own model: a test asks for the ``bilstm_ref_regression`` fixture::

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
    group = parser.getgroup("bilstm_ref", "bilstm_ref conformance matrix and regression fixtures")
    group.addoption("--bilstm-ref-impl", default=None, metavar="package.module:factory",
                    help="run the bilstm_ref conformance matrix on this implementation factory")
    group.addoption("--bilstm-ref-fixtures", default=None, metavar="DIR",
                    help="judge --bilstm-ref-impl against recorded fixtures instead of live Keras")
    group.addoption("--bilstm-ref-xfail", default=None, metavar="FILE",
                    help="expected failures for --bilstm-ref-impl: lines 'PATTERN  reason'")
    group.addoption("--bilstm-ref-backend", default=None, choices=("tensorflow", "jax", "torch"),
                    help="Keras backend of the live oracle")
    group.addoption("--bilstm-ref-oracle", default="keras", choices=("keras", "tf_keras"),
                    help="keras (Keras 3) or tf_keras (Keras 2 on TensorFlow, judged under Keras 2 semantics)")
    try:
        group.addoption(_REGEN, action="store_true", default=False,
                        help="re-record bilstm_ref regression fixtures from live Keras (the test still fails)")
    except ValueError:  # pytest-regressions registered the same option, with the same meaning
        pass


def pytest_configure(config: pytest.Config) -> None:
    """With ``--bilstm-ref-impl``: the factory, the expected-failures file and the fixtures folder are
    checked once, at startup; a bad one is one usage error, not a failure per matrix case."""
    impl = config.getoption("--bilstm-ref-impl", default=None)
    if not impl:
        return
    from .errors import BilstmRefError
    from .suites.harness import load_expected_failures
    from .reference.spec import resolve_factory

    try:
        config.stash[_FACTORY] = resolve_factory(impl)
        load_expected_failures(config.getoption("--bilstm-ref-xfail"))
        fixtures_dir = config.getoption("--bilstm-ref-fixtures")
        if fixtures_dir and not Path(fixtures_dir).is_dir():
            raise BilstmRefError(f"--bilstm-ref-fixtures {fixtures_dir!r}: not a directory")
    except BilstmRefError as e:
        raise pytest.UsageError(f"bilstm_ref: {str(e).replace('--impl', '--bilstm-ref-impl')}") from None


class Regression:
    """What the ``bilstm_ref_regression`` fixture gives a test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        node = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        self.datadir = Path(request.path).parent / Path(request.path).stem / node

    def check(self, model: Union[str, Path], layer: Optional[str] = None,
              impl: Union[None, str, Callable[..., Any]] = None, config: Optional[Union[str, Path]] = None,
              cases: int = 2, masks: bool = False, states: bool = False, seed: int = 0,
              inputs: Optional[Union[str, Path]] = None, layers: Optional[list[str]] = None,
              samples: int = 32) -> None:
        """Verify ``impl`` (default: the reference) against Keras's recorded answers for ``layer``.

        Args:
            model: the model file (``.keras``, ``.h5``, ``.weights.h5`` with ``config``), relative to
                the test file's folder or absolute.
            impl: a factory ``spec -> callable`` or ``"package.module:factory"``.
            cases, masks, states, seed: how synthetic answers are recorded (see ``fixtures generate``).
            inputs: your data (``.npz`` / ``.npy``, as for ``bilstm-ref verify``, relative to the test
                file's folder or absolute): the answers are recorded on its first ``samples`` samples,
                each layer fed what it really receives in the model (its input, mask, states).
            layers: with ``inputs``, the layers to record (default: every LSTM and Bidirectional(LSTM));
                ``layer`` alone means ``[layer]``.
        """
        __tracebackhide__ = True
        from .errors import BilstmRefError
        from .fixtures.store import read_fixture, scan, verify_fixture
        from .reference.spec import resolve_factory

        model_path = self._path(model)
        force = bool(self._request.config.getoption(_REGEN, default=False))
        existing = scan(self.datadir).manifests if self.datadir.is_dir() else []
        try:
            if force or not existing:
                if inputs is not None:
                    self._record_data(model_path, self._path(inputs), layers or ([layer] if layer else None), config,
                                      samples, seed, regenerated=bool(existing))
                else:
                    self._record(model_path, layer, config, cases, masks, states, seed, regenerated=bool(existing))
            factory = resolve_factory(impl) if isinstance(impl, str) else impl
            results = [(path, verify_fixture(read_fixture(path), factory=factory)) for path in existing]
        except BilstmRefError as e:  # a missing file, an unknown layer, bad data: one line, no library traceback
            pytest.fail(f"bilstm_ref: {e}", pytrace=False)
        failures = [r.describe() for _, r in results if r.status not in ("pass", "known-deviation")]
        if failures:
            pytest.fail(f"{len(failures)} of {len(existing)} recorded Keras answers not matched "
                        f"(fixtures in {self.datadir}):\n" + "\n".join(failures), pytrace=False)

    def _path(self, p: Union[str, Path]) -> Path:
        path = Path(p)
        return path if path.is_absolute() else Path(self._request.path).parent / path

    def _record_data(self, model_path: Path, inputs: Path, layers: Optional[list[str]], config: Any, samples: int,
                     seed: int, regenerated: bool) -> None:
        __tracebackhide__ = True
        from .errors import KerasUnavailableError
        from .fixtures.record import real_data_fixtures

        try:
            fixtures = real_data_fixtures(str(model_path), str(inputs), layers,
                                          config=None if config is None else str(self._path(config)),
                                          samples=samples, seed=seed)
        except KerasUnavailableError as e:
            pytest.fail(f"no recorded Keras answers in {self.datadir} and Keras is not installed ({e}); record "
                        f"them where it is: pytest {_REGEN}, or bilstm-ref fixtures generate --model {model_path} "
                        f"--inputs {inputs} --out {self.datadir}", pytrace=False)
        self._publish(fixtures, model_path, regenerated)
    def _record(self, model_path: Path, layer: Optional[str], config: Any, cases: int, masks: bool, states: bool,
                seed: int, regenerated: bool) -> None:
        __tracebackhide__ = True
        from .errors import KerasUnavailableError
        from .loaders import load_spec
        from .fixtures.record import model_fixtures

        spec = load_spec(model_path, layer=layer, config=config)
        try:
            fixtures = model_fixtures(spec, model_path.name, n_cases=cases, seed=seed, masks=masks, states=states)
        except KerasUnavailableError as e:
            pytest.fail(f"no recorded Keras answers in {self.datadir} and Keras is not installed ({e}); record "
                        f"them where it is: pytest {_REGEN}, or bilstm-ref fixtures generate --model {model_path} "
                        f"--layer {layer} --out {self.datadir}", pytrace=False)
        self._publish(fixtures, model_path, regenerated)

    def _publish(self, fixtures: list[Any], model_path: Path, regenerated: bool) -> None:
        __tracebackhide__ = True
        from .fixtures.store import directory_lock, write_fixture

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


# --- the conformance matrix as test items -------------------------------------------------------
class MatrixFailure(AssertionError):
    """A case whose outputs differ from Keras's (the message lists every failing output)."""


class CaseItem(pytest.Item):
    """One matrix case (live Keras) or one recorded fixture, judged on the user's implementation."""

    def __init__(self, *, case_id: str, fixture_path: Optional[Path] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case_id = case_id
        self.fixture_path = fixture_path

    def runtest(self) -> None:
        from .reference.spec import resolve_factory

        config = self.config
        factory = config.stash.get(_FACTORY, None) or config.stash.setdefault(
            _FACTORY, resolve_factory(config.getoption("--bilstm-ref-impl")))
        if self.fixture_path is not None:
            from .fixtures.store import read_fixture, verify_fixture

            result = verify_fixture(read_fixture(self.fixture_path), factory=factory)
        else:
            from .conformance import matrix
            from .conformance.oracle import KerasOracle
            from .conformance.judge import judge

            oracle = config.stash.get(_ORACLE, None)
            if oracle is None:
                keras2 = config.getoption("--bilstm-ref-oracle", default="keras") == "tf_keras"
                oracle = KerasOracle("tf_keras" if keras2 else config.getoption("--bilstm-ref-backend"))
                config.stash[_ORACLE] = oracle
            case = matrix.by_id()[self.case_id]
            try:
                keras_outputs = oracle.run(case)
            except Exception as exc:
                crash = matrix.keras_errors_for(case, oracle.backend)
                if not crash:
                    raise
                # A documented Keras crash: Keras has no answer here (as in `bilstm-ref check`).
                self.user_properties.append(("status", "known-deviation"))
                pytest.skip(f"known Keras deviation {crash[0].name}: {crash[0].reason} [{type(exc).__name__}]")
            result = judge(case, keras_outputs, oracle.backend, factory=factory)
        self.user_properties.append(("status", result.status))
        if result.status not in ("pass", "known-deviation"):
            raise MatrixFailure(result.describe())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, MatrixFailure):
            return f"{self.case_id} does not match Keras:\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, Optional[int], str]:
        return self.path, None, f"bilstm_ref matrix case {self.case_id}"


_FACTORY = pytest.StashKey[Any]()
_ORACLE = pytest.StashKey[Any]()


class ProblemItem(pytest.Item):
    """An integrity problem found around the fixtures (it fails, as ``fixtures verify`` does)."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise MatrixFailure(self.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        return f"fixture integrity: {excinfo.value}"

    def reportinfo(self) -> tuple[Any, Optional[int], str]:
        return self.path, None, f"bilstm_ref fixture problem {self.name}"


class MatrixCollector(pytest.Collector):
    def collect(self) -> list[pytest.Item]:
        from .errors import BilstmRefError
        from .suites.harness import load_expected_failures

        config = self.config
        try:
            expected = load_expected_failures(config.getoption("--bilstm-ref-xfail"))
            fixtures_dir = config.getoption("--bilstm-ref-fixtures")
            items: list[pytest.Item] = []
            if fixtures_dir:
                from .fixtures.store import scan

                found = scan(fixtures_dir)
                for path in found.manifests:
                    fid = path.name[:-5]
                    items.append(CaseItem.from_parent(self, name=fid, case_id=fid, fixture_path=path))
                for problem in found.problems:  # e.g. a payload whose manifest is missing
                    items.append(ProblemItem.from_parent(self, name=f"{problem.id}-integrity", message=problem.message))
        except BilstmRefError as e:
            raise pytest.UsageError(f"bilstm_ref: {e}") from None
        if not fixtures_dir:
            import importlib.util

            from .conformance import matrix

            if importlib.util.find_spec("keras") is None:
                raise pytest.UsageError("--bilstm-ref-impl needs Keras (the live oracle) or --bilstm-ref-fixtures DIR")
            items = [CaseItem.from_parent(self, name=c.id, case_id=c.id) for c in matrix.cases()]
        for item in items:
            x = next((x for x in expected if x.pattern in item.name), None)
            if x is not None:
                item.add_marker(pytest.mark.xfail(reason=x.reason, strict=False))
        return items


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --bilstm-ref-impl, append the matrix (before -k and -m deselect)."""
    if not config.getoption("--bilstm-ref-impl", default=None):
        return
    collector = MatrixCollector.from_parent(session, name="bilstm_ref_matrix")
    items.extend(collector.collect())
