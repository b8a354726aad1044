#!/usr/bin/env python
"""Forward-pass benchmark: bilstm_ref's Bidirectional(LSTM(return_sequences=True)) against its peers.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench.py [--repeat N] [--cases medium,long,tinybatch,wide] [--quick] [--throughput]

Every implementation of a case gets the same float32 weights and input; timings are interleaved
round-robin (repeat 1: every implementation once, repeat 2: again, ...) so that machine noise hits
all of them alike, and the median of --repeat calls is reported. Peers (torch, onnx, onnxruntime,
keras) are optional: a failed import prints "not installed" and the peer is skipped.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import io
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up; no effect on threads

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bilstm_ref as br  # noqa: E402

CASES = {  # name: (batch, T, features, units)
    "medium": (32, 100, 64, 128),
    "long": (8, 1000, 32, 64),
    "tinybatch": (1, 2000, 16, 32),
    "wide": (64, 200, 256, 256),
}
TOL = 1e-4
KERAS_SLOW_S = 5.0

# column key -> label; "ref32" is the baseline every ratio is taken against
COLUMNS = [
    ("ref32", "reference f32"),
    ("ref64", "reference f64"),
    ("torch", "torch"),
    ("onnxref", "onnx.reference"),
    ("ort", "onnxruntime"),
    ("keras_eager", "Keras eager"),
    ("keras_compiled", "Keras compiled"),
    ("gemm_shapes", "GEMM same shapes"),
    ("gemm_floor", "GEMM floor (peak)"),
]


# --- optional peers ------------------------------------------------------------------------------

def _try_import(name: str) -> Optional[Any]:
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # ImportError, or a broken install raising something else
        return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__, "bilstm_ref": br.__version__}
    for name in ("torch", "onnx", "onnxruntime", "tensorflow", "keras"):
        mod = _try_import(name)
        out[name] = getattr(mod, "__version__", "?") if mod is not None else "not installed"
    return out


# --- weights and peers' weight layouts ------------------------------------------------------------

def make_weights(rng: np.random.Generator, d: int, n: int) -> list[np.ndarray]:
    ws = []
    for _ in range(2):  # forward, backward; Keras gate order i, f, c, o
        ws += [(rng.standard_normal((d, 4 * n)) * 0.1).astype(np.float32),
               (rng.standard_normal((n, 4 * n)) * 0.1).astype(np.float32),
               (rng.standard_normal((4 * n,)) * 0.1).astype(np.float32)]
    return ws


def make_reference(ws: list[np.ndarray], n: int, dtype: Optional[str]) -> Callable[[np.ndarray], np.ndarray]:
    kw = {"dtype": dtype} if dtype else {}
    layer = br.Bidirectional(br.LSTM(n, return_sequences=True, **kw))
    layer.set_weights(ws)
    return lambda x: np.asarray(layer(x))


def make_torch(torch: Any, ws: list[np.ndarray], d: int, n: int) -> Callable[[np.ndarray], np.ndarray]:
    torch.set_num_threads(os.cpu_count() or 1)
    m = torch.nn.LSTM(d, n, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for suffix, (k, r, b) in (("", ws[0:3]), ("_reverse", ws[3:6])):
            getattr(m, "weight_ih_l0" + suffix).copy_(torch.from_numpy(k.T.copy()))
            getattr(m, "weight_hh_l0" + suffix).copy_(torch.from_numpy(r.T.copy()))
            getattr(m, "bias_ih_l0" + suffix).copy_(torch.from_numpy(b))
            getattr(m, "bias_hh_l0" + suffix).zero_()
    m.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return m(torch.from_numpy(x))[0].numpy()
    return run


def onnx_model(onnx: Any, ws: list[np.ndarray], d: int, n: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    order = [0, 3, 1, 2]  # ONNX gates i, o, f, c taken from Keras's i, f, c, o

    def reorder_rows(m: np.ndarray) -> np.ndarray:  # m: (4n, ...) in Keras order
        return np.concatenate([m[g * n:(g + 1) * n] for g in order], axis=0)

    W = np.stack([reorder_rows(ws[0].T), reorder_rows(ws[3].T)]).astype(np.float32)   # (2, 4n, D)
    R = np.stack([reorder_rows(ws[1].T), reorder_rows(ws[4].T)]).astype(np.float32)   # (2, 4n, n)
    B = np.stack([np.concatenate([reorder_rows(ws[2]), np.zeros(4 * n, np.float32)]),
                  np.concatenate([reorder_rows(ws[5]), np.zeros(4 * n, np.float32)])]).astype(np.float32)  # (2, 8n)
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], direction="bidirectional", hidden_size=n, layout=0)
    graph = helper.make_graph(
        [node], "bilstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", d])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 2, "B", n])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"),
                     numpy_helper.from_array(B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)  # older onnxruntime builds cap the IR version
    onnx.checker.check_model(model)
    return model


def _from_onnx_y(y: np.ndarray) -> np.ndarray:  # (T, 2, B, n) -> (B, T, 2n), forward first
    t, _, b, n = y.shape
    return y.transpose(2, 0, 1, 3).reshape(b, t, 2 * n)


def make_onnx_reference(onnx: Any, model: Any) -> Callable[[np.ndarray], np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(model)
    return lambda x: _from_onnx_y(sess.run(None, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})[0])


def make_ort(ort: Any, model: Any) -> Callable[[np.ndarray], np.ndarray]:
    so = ort.SessionOptions()
    # Default thread count, but no busy-spinning after a run: on a small machine the spinning pool
    # would steal the cores from whichever implementation is timed next in the round-robin.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x: _from_onnx_y(sess.run(None, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})[0])


def make_keras(ws: list[np.ndarray], x: np.ndarray, n: int) -> tuple[Callable, Callable]:
    import keras
    import tensorflow as tf

    layer = keras.layers.Bidirectional(keras.layers.LSTM(n, return_sequences=True))
    layer.build(x.shape)
    layer.set_weights(ws)
    compiled = tf.function(lambda t: layer(t), jit_compile=False)
    eager = lambda a: np.asarray(layer(a))  # noqa: E731
    comp = lambda a: compiled(tf.convert_to_tensor(a)).numpy()  # noqa: E731
    return eager, comp


# --- GEMM floor ----------------------------------------------------------------------------------

def flops(b: int, t: int, d: int, n: int) -> float:
    return 2.0 * 2 * t * b * 4 * n * (d + n)  # 2 directions x 2 flops/MAC x (input + recurrent) GEMMs


def peak_gemm_flops(repeat: int = 9) -> float:
    """float32 FLOP/s of a 1024x1024x1024 np.matmul (median of `repeat`)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    c = rng.standard_normal((1024, 1024)).astype(np.float32)
    a @ c
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ c
        ts.append(time.perf_counter() - t0)
    return 2.0 * 1024 ** 3 / statistics.median(ts)


def make_gemm_shapes(ws: list[np.ndarray], x: np.ndarray, n: int) -> Callable[[np.ndarray], None]:
    """Only the GEMMs of the recurrence, in its shapes: (B*T, D)@(D, 4n) once, then T x (B, n)@(n, 4n), per direction."""
    b, t, d = x.shape
    k = [ws[0], ws[3]]
    r = [ws[1], ws[4]]
    h = np.zeros((b, n), np.float32)
    z = np.empty((b, 4 * n), np.float32)

    def run(xx: np.ndarray) -> None:
        x2 = xx.reshape(b * t, d)
        for di in range(2):
            x2 @ k[di]
            for _ in range(t):
                np.matmul(h, r[di], out=z)
    return run


# --- timing --------------------------------------------------------------------------------------

def run_case(name: str, shape: tuple[int, int, int, int], repeat: int, peers: dict[str, Any],
             peak: float, only: Optional[set[str]] = None) -> dict[str, Any]:
    b, t, d, n = shape
    rng = np.random.default_rng(0)
    ws = make_weights(rng, d, n)
    x = rng.standard_normal((b, t, d)).astype(np.float32)

    impls: dict[str, Callable] = {}
    notes: dict[str, str] = {}
    impls["ref32"] = make_reference(ws, n, "float32")
    impls["ref64"] = make_reference(ws, n, None)
    if peers.get("torch") is not None:
        impls["torch"] = make_torch(peers["torch"], ws, d, n)
    else:
        notes["torch"] = "not installed"
    if peers.get("onnx") is not None:
        model = onnx_model(peers["onnx"], ws, d, n)
        impls["onnxref"] = make_onnx_reference(peers["onnx"], model)
        if peers.get("onnxruntime") is not None:
            impls["ort"] = make_ort(peers["onnxruntime"], model)
        else:
            notes["ort"] = "not installed"
    else:
        notes["onnxref"] = "not installed"
        notes["ort"] = "not installed" if peers.get("onnxruntime") is None else "needs onnx to build the graph"
    if peers.get("keras"):
        try:
            impls["keras_eager"], impls["keras_compiled"] = make_keras(ws, x, n)
        except Exception as exc:  # noqa: BLE001
            notes["keras_eager"] = notes["keras_compiled"] = f"failed: {type(exc).__name__}: {exc}"[:80]
    else:
        notes["keras_eager"] = notes["keras_compiled"] = "not installed"
    impls["gemm_shapes"] = make_gemm_shapes(ws, x, n)

    if only is not None:  # --only: this process times these (and the float32 reference, the ratio base)
        impls = {k: v for k, v in impls.items() if k in only or k == "ref32"}
        notes = {k: v for k, v in notes.items() if k in only}
    # warm up once each; check the peers compute the same thing as the float32 reference
    want = impls["ref32"](x)
    for key, fn in list(impls.items()):
        if key == "ref32":
            continue
        t0 = time.perf_counter()
        try:
            got = fn(x)
        except Exception as exc:  # noqa: BLE001
            notes[key] = f"failed: {type(exc).__name__}: {exc}"[:80]
            del impls[key]
            continue
        took = time.perf_counter() - t0
        if key.startswith("keras") and name == "wide" and took > KERAS_SLOW_S:
            notes[key] = f"skipped: slow ({took:.1f} s per call)"
            del impls[key]
            continue
        if key == "keras_compiled":
            impls[key](x)  # a second warm-up: the first call traced the function
        if got is not None:
            got = np.asarray(got)
            err = float(np.max(np.abs(got.astype(np.float64) - want))) if got.shape == want.shape else float("inf")
            if not err <= TOL:
                notes[key] = f"MISMATCH vs reference f32: max|diff| {err:.2e} (shape {got.shape}); not timed"
                del impls[key]
                continue

    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(repeat):
        for key, fn in impls.items():  # round-robin
            t0 = time.perf_counter()
            fn(x)
            times[key].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ms["gemm_floor"] = flops(b, t, d, n) / peak * 1e3
    return {"name": name, "shape": shape, "ms": ms, "notes": notes}


def print_case(res: dict[str, Any]) -> None:
    b, t, d, n = res["shape"]
    ms, notes = res["ms"], res["notes"]
    base = ms["ref32"]
    print(f"\n== {res['name']}: batch={b} T={t} features={d} units={n}  ({flops(b, t, d, n) / 1e9:.3f} GFLOP)")
    print(f"  {'implementation':<20} {'median ms':>12} {'ref f32 / this':>15}")
    for key, label in COLUMNS:
        if key in ms:
            print(f"  {label:<20} {ms[key]:>12.2f} {base / ms[key]:>14.2f}x")
        else:
            print(f"  {label:<20} {notes.get(key, 'n/a')}")


def _fmt(v: float) -> str:
    return f"{v:.1f}" if v >= 0.95 else f"{v:.2g}"


def summary(results: list[dict[str, Any]]) -> None:
    print("\n== summary (ratio > 1: the reference float32 is that many times slower)")

    def line(label: str, f: Callable[[dict], Optional[float]]) -> None:
        parts = []
        for r in results:
            v = f(r["ms"])
            parts.append(f"{r['name']} {_fmt(v)}x" if v is not None else f"{r['name']} -")
        print(f"{label}: " + ", ".join(parts))

    def ratio(num: str, den: str) -> Callable[[dict], Optional[float]]:
        return lambda ms: ms[num] / ms[den] if num in ms and den in ms else None

    line("reference f32 / torch", ratio("ref32", "torch"))
    line("reference f32 / GEMM floor (peak)", ratio("ref32", "gemm_floor"))
    line("reference f32 / GEMM same shapes", ratio("ref32", "gemm_shapes"))
    line("reference f64 / reference f32", ratio("ref64", "ref32"))
    line("reference f32 / onnx.reference", ratio("ref32", "onnxref"))
    line("reference f32 / onnxruntime", ratio("ref32", "ort"))
    line("reference f32 / Keras eager", ratio("ref32", "keras_eager"))
    line("reference f32 / Keras compiled", ratio("ref32", "keras_compiled"))


def throughput(repeat: int, peers: dict[str, Any]) -> None:
    from bilstm_ref import cli

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fixtures = os.path.join(root, "fixtures")
    print("\n== throughput (in-process, bilstm_ref.cli.main; median of runs)")
    n_fix = len([f for f in os.listdir(fixtures) if f.endswith(".json")]) if os.path.isdir(fixtures) else 0
    if not n_fix:
        print("fixtures verify fixtures: no fixtures/ directory")
    else:
        ts = []
        for _ in range(max(1, repeat)):
            buf = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(buf):
                rc = cli.main(["fixtures", "verify", fixtures])
            ts.append(time.perf_counter() - t0)
        checked = next((ln for ln in buf.getvalue().splitlines() if ln.startswith("fixtures checked")), "")
        count = int(checked.split()[2]) if checked else n_fix
        med = statistics.median(ts)
        print(f"bilstm-ref fixtures verify fixtures: {count} fixtures in {med:.2f} s = {count / med:.0f} fixtures/s "
              f"(exit {rc}, {len(ts)} runs)")
    if not peers.get("keras"):
        print("bilstm-ref check -k bidi-concat: not installed (needs Keras)")
        return
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli.main(["check", "-k", "bidi-concat", "--list"])
    count = len([ln for ln in buf.getvalue().splitlines() if ln.strip()])
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = cli.main(["check", "-k", "bidi-concat", "--jobs", "1"])
    wall = time.perf_counter() - t0
    print(f"bilstm-ref check -k bidi-concat --jobs 1: {count} cases in {wall:.1f} s = {count / wall:.1f} cases/s "
          f"(exit {rc}, 1 run, includes Keras model builds)")


_FAMILIES = ("ref64,gemm_shapes", "torch", "onnxref,ort", "keras_eager,keras_compiled")


def _isolated_case(name: str, repeat: int, peak: float) -> dict[str, Any]:
    """One case, each peer family timed in a fresh process beside its own float32 reference run.

    Every peer's time is rescaled to this process's reference time by its in-process ratio, so the
    ratios printed are side-by-side ratios without cross-library thread contention."""
    merged: dict[str, Any] = {"name": name, "shape": CASES[name], "ms": {}, "notes": {}}
    refs = []
    for family in _FAMILIES:
        cmd = [sys.executable, __file__, "--cases", name, "--repeat", str(repeat), "--only", family, "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            (res,) = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            for key in family.split(","):
                merged["notes"][key] = f"worker failed: {(done.stderr or done.stdout)[-120:]}"
            continue
        ref = res["ms"]["ref32"]
        refs.append(ref)
        for key, value in res["ms"].items():
            if key not in ("ref32", "gemm_floor"):
                merged["ms"][key] = (key, value / ref)  # ratio to the reference measured beside it
        merged["notes"].update(res["notes"])
    base = statistics.median(refs) if refs else float("nan")
    merged["ms"] = {k: r * base for k, (_, r) in merged["ms"].items()}
    merged["ms"]["ref32"] = base
    b, t, d, n = CASES[name]
    merged["ms"]["gemm_floor"] = flops(b, t, d, n) / peak * 1e3
    return merged


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=None, help="timed calls per implementation (default 7; 3 with --quick)")
    p.add_argument("--cases", default=None, help="comma-separated subset of " + ",".join(CASES))
    p.add_argument("--quick", action="store_true", help="--repeat 3 and no wide case")
    p.add_argument("--throughput", action="store_true", help="also time `fixtures verify` and `check -k bidi-concat`")
    p.add_argument("--isolate", action="store_true",
                   help="time each peer family in its own process, next to the float32 reference (thread pools of "
                        "torch, onnxruntime and TensorFlow in one process slow each other down on few cores)")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # worker mode of --isolate
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    names = args.cases.split(",") if args.cases else [c for c in CASES if not (args.quick and c == "wide")]
    bad = [c for c in names if c not in CASES]
    if bad:
        p.error(f"unknown case(s) {bad}; choose from {list(CASES)}")

    v = versions()
    print(f"bilstm_ref benchmark  cpu_count={os.cpu_count()}  {platform.platform()}  repeat={repeat}")
    print("  " + "  ".join(f"{k} {val}" for k, val in v.items()))
    peers = {"torch": _try_import("torch"), "onnx": _try_import("onnx"), "onnxruntime": _try_import("onnxruntime"),
             "keras": v["keras"] != "not installed" and v["tensorflow"] != "not installed"}
    peak = peak_gemm_flops()
    print(f"GEMM floor = flops / NumPy float32 throughput of a 1024x1024 @ 1024x1024 np.matmul "
          f"({peak / 1e9:.1f} GFLOP/s here); flops = 2*2*T*B*4n*(D+n)")
    print("GEMM same shapes = measured NumPy float32 (B*T,D)@(D,4n) + T x (B,n)@(n,4n), both directions, nothing else")

    if args.only:  # worker: one peer family, results as JSON on the last line
        only = set(args.only.split(","))
        out = [run_case(name, CASES[name], repeat, peers, peak, only) for name in names]
        print(json.dumps(out))
        return 0
    results = []
    for name in names:
        if args.isolate:
            res = _isolated_case(name, repeat, peak)
        else:
            res = run_case(name, CASES[name], repeat, peers, peak)
        print_case(res)
        results.append(res)
    summary(results)
    if args.throughput:
        throughput(repeat, peers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
