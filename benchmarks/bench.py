#!/usr/bin/env python
"""Forward-pass benchmark: bilstm_ref's Bidirectional(LSTM(return_sequences=True)) against its peers.

Not part of the test suite. Run from the repository root:

    python benchmarks/bench.py [--repeat N] [--cases medium,long,tinybatch,wide] [--quick] [--throughput]

Each peer family (torch; onnx.reference + onnxruntime; Keras on TensorFlow, eager and compiled;
Keras on its numpy backend) runs in a fresh process of its own, next to a float32 reference run in
that same process, timed in alternating back-to-back blocks with it; the reference family (float32, float64, the GEMMs)
runs in one more. Ratios are taken inside each process, so thread pools of different libraries
never compete and machine noise hits both sides of a ratio alike. Peers are optional: a family
whose import fails prints "not installed" and the rest still runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up; no effect on threads

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import bilstm_ref as br  # noqa: E402

CASES = {  # name: (batch, T, features, units)
    "medium": (32, 100, 64, 128),
    "long": (8, 1000, 32, 64),
    "tinybatch": (1, 2000, 16, 32),
    "wide": (64, 200, 256, 256),
}
TOL = 1e-4
SLOW_S = 1.0  # a peer whose warm-up call takes longer is timed min(--repeat, 3) times
ROUNDS = 2  # each implementation is timed in back-to-back blocks, alternating with the reference
SETTLE_S = 0.5  # before each block: OpenBLAS's idle worker threads spin ~0.1 s after a threaded GEMM
# and would take a core from the next block (torch's long case measured 2x slower right after one)
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS")
THREADS: Optional[int] = None  # --threads: the same count for every library; None = their defaults
KERAS_SLOW_S = 5.0  # ... and Keras is not timed at all on "wide" beyond this

# column key -> label; "ref32" is the baseline every ratio is taken against
COLUMNS = [
    ("ref32", "reference f32"),
    ("ref64", "reference f64"),
    ("ref32_core", "reference f32, OPENBLAS_CORETYPE"),
    ("torch", "torch"),
    ("onnxref", "onnx.reference"),
    ("ort", "onnxruntime"),
    ("keras_eager", "Keras eager"),
    ("keras_compiled", "Keras compiled"),
    ("keras_numpy", "Keras numpy backend"),
    ("gemm_shapes", "GEMM same shapes"),
    ("gemm_floor", "GEMM floor (peak)"),
]

# family -> (the columns it times next to its own ref32, environment of its process)
FAMILIES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "ref": (("ref64", "gemm_shapes"), {}),
    "torch": (("torch",), {}),
    "onnx": (("onnxref", "ort"), {}),
    "keras": (("keras_eager", "keras_compiled"), {"KERAS_BACKEND": "tensorflow"}),
    "keras_numpy": (("keras_numpy",), {"KERAS_BACKEND": "numpy"}),
}
# --openblas-coretype's extra family: only its own float32 reference, under another BLAS kernel set
CORE_FAMILY = "ref_core"


def _family_columns(family: str) -> tuple[str, ...]:
    """The columns a family's worker reports besides its ref32."""
    return ("ref32_core",) if family == CORE_FAMILY else FAMILIES[family][0]


# --- optional peers ------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing them all here would start their
    thread pools in this process)."""
    out = {"python": platform.python_version(), "numpy": np.__version__, "bilstm_ref": br.__version__}
    for name in ("torch", "onnx", "onnxruntime", "tensorflow", "keras", "jax"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def blas_info() -> str:
    """NumPy's BLAS as loaded: library, the kernel set chosen for this CPU, threads (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS: (pip install threadpoolctl to show which kernels NumPy's BLAS runs)"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"BLAS: {i.get('internal_api')} {i.get('version')}, kernels {i.get('architecture')}, "
                     f"{i.get('num_threads')} threads" for i in infos) or "BLAS: not reported"


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
    torch.set_num_threads(THREADS or os.cpu_count() or 1)
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
    if THREADS:
        so.intra_op_num_threads = THREADS
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


def make_keras_numpy(ws: list[np.ndarray], x: np.ndarray, n: int) -> Callable:
    """Keras on its numpy backend (KERAS_BACKEND=numpy in this process; it needs jax and scipy too)."""
    import keras

    if keras.backend.backend() != "numpy":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r} here, not numpy")
    layer = keras.layers.Bidirectional(keras.layers.LSTM(n, return_sequences=True))
    layer.build(x.shape)
    layer.set_weights(ws)
    return lambda a: np.asarray(layer(a))


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


# --- timing (in a worker process: one family next to the float32 reference) ---------------------

def _build(key: str, ws: list[np.ndarray], x: np.ndarray, n: int, cache: dict[str, Any]) -> Callable:
    """The implementation behind column ``key`` (ImportError/RuntimeError when its peer is missing)."""
    d = x.shape[2]
    if key == "ref64":
        return make_reference(ws, n, None)
    if key == "gemm_shapes":
        return make_gemm_shapes(ws, x, n)
    if key == "torch":
        import torch
        return make_torch(torch, ws, d, n)
    if key in ("onnxref", "ort"):
        import onnx
        model = onnx_model(onnx, ws, d, n)
        if key == "onnxref":
            return make_onnx_reference(onnx, model)
        import onnxruntime
        return make_ort(onnxruntime, model)
    if key in ("keras_eager", "keras_compiled"):
        if "keras" not in cache:
            cache["keras"] = make_keras(ws, x, n)
        eager, compiled = cache.pop("keras") if key == "keras_compiled" else cache["keras"]
        return eager if key == "keras_eager" else compiled
    if key == "keras_numpy":
        return make_keras_numpy(ws, x, n)
    raise KeyError(key)


def run_case(name: str, repeat: int, family: str, peak: float) -> dict[str, Any]:
    b, t, d, n = CASES[name]
    rng = np.random.default_rng(0)
    ws = make_weights(rng, d, n)
    x = rng.standard_normal((b, t, d)).astype(np.float32)

    impls: dict[str, Callable] = {"ref32": make_reference(ws, n, "float32")}
    notes: dict[str, str] = {}
    reps: dict[str, int] = {}
    cache: dict[str, Any] = {}
    for key in () if family == CORE_FAMILY else _family_columns(family):
        try:
            impls[key] = _build(key, ws, x, n, cache)
        except ImportError as exc:
            notes[key] = f"not installed ({exc.name or exc})"
        except Exception as exc:  # noqa: BLE001 - a peer that cannot be built is reported, not fatal
            notes[key] = f"failed: {type(exc).__name__}: {exc}"[:100]
    # warm up once each; check the peers compute the same thing as the float32 reference
    want = impls["ref32"](x)
    for key, fn in list(impls.items()):
        if key == "ref32":
            continue
        t0 = time.perf_counter()
        try:
            got = fn(x)
        except Exception as exc:  # noqa: BLE001
            notes[key] = f"failed: {type(exc).__name__}: {exc}"[:100]
            del impls[key]
            continue
        took = time.perf_counter() - t0
        if key.startswith("keras") and name == "wide" and took > KERAS_SLOW_S:
            notes[key] = f"skipped: slow ({took:.1f} s per call)"
            del impls[key]
            continue
        if took > SLOW_S:
            reps[key] = min(repeat, 3)
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
    for rnd in range(ROUNDS):  # blocks A B A B: noise spreads over both sides of every ratio
        for key, fn in impls.items():
            k = reps.get(key, repeat)
            count = k // ROUNDS + (rnd < k % ROUNDS)
            if not count:
                continue
            time.sleep(SETTLE_S)
            if key not in reps:
                fn(x)  # untimed: wakes this library's thread pool
            for _ in range(count):
                t0 = time.perf_counter()
                fn(x)
                times[key].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ms["gemm_floor"] = flops(b, t, d, n) / peak * 1e3
    for key, k in reps.items():
        if key in ms:
            notes[key] = f"median of {k} (slow)"
    return {"name": name, "shape": CASES[name], "ms": ms, "notes": notes}


def worker(family: str, names: list[str], repeat: int) -> list[dict[str, Any]]:
    peak = peak_gemm_flops()
    return [{**run_case(name, repeat, family, peak), "peak": peak} for name in names]


# --- the run: one worker process per family, ratios merged ---------------------------------------

def run_families(names: list[str], repeat: int, families: list[str], coretype: Optional[str],
                 threads: Optional[int]) -> list[dict[str, Any]]:
    """Every family in a fresh process; each peer's time is rescaled to the reference family's ref32
    by the ratio measured in its own process (the side-by-side ratio, free of cross-library contention)."""
    merged = {name: {"name": name, "shape": CASES[name], "ms": {}, "notes": {}, "refs": []} for name in names}
    runs = [(f, FAMILIES[f][1]) for f in families]
    if coretype:
        runs.append((CORE_FAMILY, {"OPENBLAS_CORETYPE": coretype}))
    base_ref: dict[str, float] = {}
    for family, env in runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--cases", ",".join(names), "--repeat", str(repeat),
               "--worker", family]
        if threads:
            cmd += ["--threads", str(threads)]
            env = {**env, **{var: str(threads) for var in THREAD_VARS}}  # before the libraries load
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, **env})
        print(f"  [{family}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
        try:
            results = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            for name in names:
                for key in _family_columns(family):
                    merged[name]["notes"][key] = f"worker failed: {(done.stderr or done.stdout).strip()[-160:]}"
            continue
        for res in results:
            m = merged[res["name"]]
            ref = res["ms"]["ref32"]
            if family == CORE_FAMILY:  # another BLAS kernel set: its own time is the measurement
                m["core"] = ref
                m["notes"]["ref32_core"] = "its own process: compare with reference f32"
                continue
            m["refs"].append(ref)
            if family == "ref":
                base_ref[res["name"]] = ref
                m["peak"] = res["peak"]
            for key, value in res["ms"].items():
                if key not in ("ref32", "gemm_floor"):
                    m["ms"][key] = value / ref  # ratio to the reference measured beside it
            m["notes"].update(res["notes"])
    for name, m in merged.items():
        base = base_ref.get(name, statistics.median(m["refs"]) if m["refs"] else float("nan"))
        m["ms"] = {k: r * base for k, r in m["ms"].items()}
        m["ms"]["ref32"] = base
        if "core" in m:
            m["ms"]["ref32_core"] = m["core"]
        if "peak" in m:
            b, t, d, n = CASES[name]
            m["ms"]["gemm_floor"] = flops(b, t, d, n) / m["peak"] * 1e3
    return list(merged.values())


def print_case(res: dict[str, Any], coretype: Optional[str]) -> None:
    b, t, d, n = res["shape"]
    ms, notes = res["ms"], res["notes"]
    base = ms["ref32"]
    print(f"\n== {res['name']}: batch={b} T={t} features={d} units={n}  ({flops(b, t, d, n) / 1e9:.3f} GFLOP)")
    print(f"  {'implementation':<36} {'median ms':>10} {'ref f32 / this':>15}")
    for key, label in COLUMNS:
        if key == "ref32_core":
            if not coretype:
                continue
            label = f"{label}={coretype}"
        note = f"  ({notes[key]})" if key in notes and key in ms else ""
        if key in ms:
            print(f"  {label:<36} {ms[key]:>10.2f} {base / ms[key]:>14.2f}x{note}")
        else:
            print(f"  {label:<36} {notes.get(key, 'n/a')}")


def _fmt(v: float) -> str:
    return f"{v:.1f}" if v >= 0.95 else f"{v:.2g}"


def _ratio(res: dict[str, Any], num: str, den: str) -> Optional[float]:
    ms = res["ms"]
    return ms[num] / ms[den] if num in ms and den in ms else None


def summary(results: list[dict[str, Any]], coretype: Optional[str]) -> None:
    print("\n== summary (ratio > 1: the reference float32 is that many times slower)")

    def line(label: str, num: str, den: str) -> None:
        parts = []
        for r in results:
            v = _ratio(r, num, den)
            parts.append(f"{r['name']} {_fmt(v)}x" if v is not None else f"{r['name']} -")
        print(f"{label}: " + ", ".join(parts))

    line("reference f32 / torch", "ref32", "torch")
    line("reference f32 / GEMM floor (peak)", "ref32", "gemm_floor")
    line("reference f32 / GEMM same shapes", "ref32", "gemm_shapes")
    line("reference f64 / reference f32", "ref64", "ref32")
    line("reference f32 / onnx.reference", "ref32", "onnxref")
    line("reference f32 / onnxruntime", "ref32", "ort")
    line("reference f32 / Keras eager", "ref32", "keras_eager")
    line("reference f32 / Keras compiled", "ref32", "keras_compiled")
    line("reference f32 / Keras numpy backend", "ref32", "keras_numpy")
    if coretype:
        line(f"reference f32, OPENBLAS_CORETYPE={coretype} / torch", "ref32_core", "torch")

    print("\n== targets (issue 6), from the ratios above")
    by = {r["name"]: r for r in results}

    def target(label: str, checks: list[tuple[str, str, str, float]]) -> None:
        parts = []
        for case, num, den, limit in checks:
            if case not in by:
                continue
            v = _ratio(by[case], num, den)
            parts.append(f"{case} {_fmt(v)}x {'met' if v <= limit else 'NOT met'}" if v is not None else f"{case} -")
        if parts:
            print(f"{label}: " + ", ".join(parts))

    target("reference f32 <= 2x torch (medium, long)", [(c, "ref32", "torch", 2.0) for c in ("medium", "long")])
    target("reference f32 <= 3x GEMM floor", [(c, "ref32", "gemm_floor", 3.0) for c in CASES])
    target("reference f32 faster than onnx.reference", [(c, "ref32", "onnxref", 1.0) for c in CASES])
    target("reference f32 faster than Keras numpy backend", [(c, "ref32", "keras_numpy", 1.0) for c in CASES])
    target("reference f64 <= 2.5x reference f32", [(c, "ref64", "ref32", 2.5) for c in CASES])


# --- throughput of the commands -----------------------------------------------------------------

def throughput(repeat: int, with_keras: bool) -> None:
    from bilstm_ref import cli

    fixtures = os.path.join(ROOT, "fixtures")
    exe = [sys.executable, "-m", "bilstm_ref"]
    print("\n== throughput of the commands")
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
        med = statistics.median(ts)
        print(f"bilstm-ref fixtures verify fixtures, in-process: {n_fix} fixtures in {med:.2f} s = "
              f"{n_fix / med:.0f} fixtures/s (exit {rc}, median of {len(ts)} runs)")
        t0 = time.perf_counter()
        done = subprocess.run([*exe, "fixtures", "verify", fixtures], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        print(f"bilstm-ref fixtures verify fixtures, whole command: {wall:.2f} s wall = {n_fix / wall:.0f} fixtures/s "
              f"including the interpreter and imports (exit {done.returncode})")
    if not with_keras:
        print("bilstm-ref check: not run (needs Keras on TensorFlow)")
        return
    t0 = time.perf_counter()
    done = subprocess.run([*exe, "check"], capture_output=True, text=True, check=False,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    wall = time.perf_counter() - t0
    m = re.search(r"cases run: (\d+)", done.stdout)
    count = int(m.group(1)) if m else 0
    print(f"bilstm-ref check (the whole live matrix, --jobs default = {os.cpu_count()} processes): {count} cases in "
          f"{wall:.1f} s wall including the Keras import = {count / wall:.1f} cases/s (exit {done.returncode})")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=None, help="timed calls per implementation (default 7; 3 with --quick)")
    p.add_argument("--cases", default=None, help="comma-separated subset of " + ",".join(CASES))
    p.add_argument("--families", default=None,
                   help="comma-separated subset of " + ",".join(FAMILIES) + " (the reference family always runs)")
    p.add_argument("--quick", action="store_true", help="--repeat 3 and no wide case")
    p.add_argument("--throughput", action="store_true",
                   help="also time `fixtures verify fixtures` and `check` over the whole live matrix")
    p.add_argument("--openblas-coretype", default=None, metavar="NAME",
                   help="also time the float32 reference with OPENBLAS_CORETYPE=NAME (e.g. SkylakeX), "
                        "to see the effect of the BLAS kernel set OpenBLAS chose for this CPU")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="N threads for every library (BLAS, OpenMP, torch, onnxruntime, TensorFlow); "
                        "default: each library's own default")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one family, results as JSON
    args = p.parse_args(argv)
    global THREADS
    THREADS = args.threads
    repeat = args.repeat or (3 if args.quick else 7)
    names = args.cases.split(",") if args.cases else [c for c in CASES if not (args.quick and c == "wide")]
    bad = [c for c in names if c not in CASES]
    if bad:
        p.error(f"unknown case(s) {bad}; choose from {list(CASES)}")
    if args.worker:
        print(json.dumps(worker(args.worker, names, repeat)))
        return 0
    families = ["ref"] + [f for f in (args.families.split(",") if args.families else FAMILIES) if f != "ref"]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        p.error(f"unknown famil(ies) {unknown}; choose from {list(FAMILIES)}")

    v = versions()
    print(f"bilstm_ref benchmark  cpu_count={os.cpu_count()}  {platform.platform()}  {platform.processor() or ''}"
          f"  repeat={repeat}")
    print("  " + "  ".join(f"{k} {val}" for k, val in v.items()))
    print(f"  {blas_info()}")
    print("every family runs in its own process next to a float32 reference run; ratios are taken in that process")
    print("GEMM floor = flops / NumPy float32 throughput of a 1024x1024 @ 1024x1024 np.matmul; flops = 2*2*T*B*4n*(D+n)")
    print("GEMM same shapes = measured NumPy float32 (B*T,D)@(D,4n) + T x (B,n)@(n,4n), both directions, nothing else")
    print(f"threads: {args.threads} for every library" if args.threads else "threads: each library's default")
    results = run_families(names, repeat, families, args.openblas_coretype, args.threads)
    if results and "peak" in results[0]:
        print(f"NumPy float32 1024^3 GEMM: {results[0]['peak'] / 1e9:.0f} GFLOP/s")
    for res in results:
        print_case(res, args.openblas_coretype)
    summary(results, args.openblas_coretype)
    if args.throughput:
        throughput(repeat, v["keras"] != "not installed" and v["tensorflow"] != "not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
