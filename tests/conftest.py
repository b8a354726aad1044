import os

# One thread per test process: with pytest-xdist workers on 2 cores, two-thread BLAS/TF pools
# collapse (perf-notes). Must be set before TensorFlow is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import importlib.util
import subprocess
import sys
from pathlib import Path

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
    from bilstm_ref.conformance.oracle import KerasOracle

    return KerasOracle(os.environ.get("KERAS_BACKEND") or "tensorflow")


@pytest.fixture(scope="session")
def keras(keras_oracle):
    return keras_oracle.keras


ZOO = Path(__file__).parent / "model_zoo.py"
FLAVOURS = {"keras3": "keras", "tf_keras": "tf_keras"}


def shared_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder every xdist worker of this run sees (for artefacts written once per run)."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if worker_id != "master" else shared


def written_once(out: Path, lock: Path, argv: list[str]) -> Path:
    """Run ``argv`` (a script writing Keras models into ``out``) once per test run, under a file lock."""
    filelock = pytest.importorskip("filelock")
    with filelock.FileLock(str(lock)):
        if not (out / "manifest.json").exists():
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
            done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """``zoo(flavour)``: the folder of files that flavour wrote, written once per test run (shared by
    xdist workers under a file lock)."""
    shared = shared_dir(tmp_path_factory, worker_id)

    def get(flavour: str) -> Path:
        if importlib.util.find_spec(FLAVOURS[flavour]) is None:
            pytest.skip(f"{FLAVOURS[flavour]} is not installed (install the 'keras' extra)")
        out = shared / f"zoo-{flavour}"
        return written_once(out, shared / f"zoo-{flavour}.lock", [str(ZOO), flavour, str(out), str(out / "lambda-ran")])

    return get


@pytest.fixture(scope="session")
def vzoo(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The models and data files of tests/verify_zoo.py, written once per test run."""
    pytest.importorskip("keras", reason="live Keras (pip install 'bilstm_ref[keras]') runs the model")
    shared = shared_dir(tmp_path_factory, worker_id)
    out = shared / "verify-zoo"
    return written_once(out, shared / "verify-zoo.lock", [str(Path(__file__).parent / "verify_zoo.py"), str(out)])


@pytest.fixture(scope="session")
def czoo(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The Keras models, conversions and faulty conversions of tests/converted_zoo.py, written once per run."""
    for module in ("keras", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert"):
        pytest.importorskip(module, reason=f"{module} converts or runs the models (pip install 'bilstm_ref[convert]')")
    shared = shared_dir(tmp_path_factory, worker_id)
    out = shared / "converted-zoo"
    return written_once(out, shared / "converted-zoo.lock", [str(Path(__file__).parent / "converted_zoo.py"), str(out)])
