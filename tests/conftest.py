import os

# One thread per test process: with pytest-xdist workers on 2 cores, two-thread BLAS/TF pools
# collapse (perf-notes). Must be set before TensorFlow is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from hypothesis import settings

pytest_plugins = ["pytester"]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """The one source of test randomness: seeded from the test's id, so every test is reproducible."""
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def keras_oracle():
    """Live Keras as the oracle; tests using it are skipped (with the reason) where Keras is absent."""
    pytest.importorskip("keras", reason="live Keras (pip install 'bilstm_ref[keras]') is the oracle for this test")
    from bilstm_ref.oracle import KerasOracle

    return KerasOracle(os.environ.get("KERAS_BACKEND") or "tensorflow")


@pytest.fixture(scope="session")
def keras(keras_oracle):
    return keras_oracle.keras
