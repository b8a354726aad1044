"""The core stays light: importing bilstm_ref never imports Keras or TensorFlow."""

import subprocess
import sys


def test_import_does_not_load_keras_or_tensorflow_and_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import bilstm_ref, bilstm_ref.conformance.matrix, bilstm_ref.cli; "
        "dt = time.perf_counter() - t; "
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]; "
        "print(dt, bad); assert not bad, bad; assert dt < 1.0, dt"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_public_errors_share_one_base():
    import bilstm_ref as br

    for name in ("ConfigError", "DTypeMismatchError", "KerasUnavailableError", "ResourceLimitError",
                 "ShapeMismatchError", "StateError", "UnsupportedModelError"):
        assert issubclass(getattr(br, name), br.BilstmRefError)
    assert issubclass(br.BilstmRefError, ValueError)
