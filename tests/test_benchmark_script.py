"""benchmarks/bench.py is not part of the suite's measurements (speed is judged by its ratios, not
by timed tests), but it must keep running: one worker of the reference family on the smallest
case, checked for the rows the README quotes."""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_the_reference_family_worker_times_every_row_it_owns() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--worker", "ref", "--cases", "tinybatch", "--repeat", "2"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (res,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["name"] == "tinybatch" and tuple(res["shape"]) == (1, 2000, 16, 32)
    # float64 agreed with float32 in the warm-up check (else a MISMATCH note and no timing)
    assert not res["notes"], res["notes"]
    for key in ("ref32", "ref64", "gemm_shapes", "gemm_floor"):
        assert math.isfinite(res["ms"][key]) and res["ms"][key] > 0, (key, res["ms"])
    assert res["peak"] > 1e9  # GEMM FLOP/s


def test_unknown_cases_and_families_are_usage_errors() -> None:
    for args in (["--cases", "huge"], ["--families", "tensorrt"]):
        done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 2 and "unknown" in done.stderr, (args, done.stderr)
