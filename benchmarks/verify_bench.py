"""``verify`` against ``model.predict`` on a two-BiLSTM text model, and its peak memory against the
number of samples.

The model: Embedding(20000, 128, mask_zero=True) -> Bidirectional(LSTM(128, return_sequences=True))
-> Dropout -> Bidirectional(LSTM(64)) -> Dense(2); T = 200; random weights with per-gate scales;
token rows right-padded to random lengths (some fully padded).

    python benchmarks/verify_bench.py [--samples 2000] [--batch-size 64] [--out DIR]

Prints, from one run on one machine: the time of ``model.predict`` on the data, the time of
``bilstm_ref.verify_model`` (isolated and chained, both layers) on the same data, their ratio, the
per-layer worst errors, and the peak resident memory of ``verify`` runs over 1/4 of the samples and
all of them, each in a fresh process (peak memory must not grow with the number of samples).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

VOCAB, EMBED, T = 20_000, 128, 200


def make(folder: str, samples: int, seed: int = 0) -> tuple[str, str]:
    import keras

    L = keras.layers
    rng = np.random.default_rng(seed)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    h = L.Embedding(VOCAB, EMBED, mask_zero=True, name="emb")(tokens)
    h = L.Bidirectional(L.LSTM(128, return_sequences=True), name="bilstm1")(h)
    h = L.Dropout(0.3, name="drop")(h)
    h = L.Bidirectional(L.LSTM(64), name="bilstm2")(h)
    model = keras.Model(tokens, L.Dense(2, name="head")(h), name="text")
    for layer in (model.get_layer("bilstm1"), model.get_layer("bilstm2")):
        weights = []
        for w in layer.get_weights():
            n = w.shape[-1] // 4
            scale = np.repeat([0.7, 1.1, 0.5, 0.9], n)  # per-gate scales: a swapped gate shows
            if w.ndim == 2:
                weights.append(rng.normal(size=w.shape) * scale / np.sqrt(w.shape[0]))
            else:
                b = rng.normal(scale=0.3, size=w.shape)
                b[n:2 * n] += 1.0
                weights.append(b)
        layer.set_weights([w.astype("float32") for w in weights])
    path = os.path.join(folder, "text_model.keras")
    model.save(path)
    ids = rng.integers(1, VOCAB, size=(samples, T)).astype("int32")
    lengths = rng.integers(20, T + 1, size=samples)
    ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
    ids[:: max(1, samples // 4)][:1] = 0  # a fully padded row
    data = os.path.join(folder, "reviews.npz")
    np.savez(data, tokens=ids)
    return path, data


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_verify(model: str, data: str, batch: int) -> None:
    import bilstm_ref as br

    result = br.verify_model(model, inputs=data, batch_size=batch)
    print(json.dumps({"peak_mb": _peak_mb(), "ok": result.ok}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=None, help="keep the model, data and verify JSON here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_verify(args.child[0], args.child[1], int(args.child[2]))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    folder = args.out or tempfile.mkdtemp(prefix="verify-bench-")
    os.makedirs(folder, exist_ok=True)
    model_path, data = make(folder, args.samples)
    import keras

    import bilstm_ref as br

    model = keras.models.load_model(model_path, compile=False)
    tokens = np.load(data)["tokens"]
    model.predict(tokens[: args.batch_size], batch_size=args.batch_size, verbose=0)  # build and trace once
    t0 = time.perf_counter()
    model.predict(tokens, batch_size=args.batch_size, verbose=0)
    predict = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = br.verify_model(model_path, inputs=data, batch_size=args.batch_size)
    verify = time.perf_counter() - t0
    t0 = time.perf_counter()
    result32 = br.verify_model(model_path, inputs=data, batch_size=args.batch_size, dtype="float32")
    verify32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.predict(tokens, batch_size=args.batch_size, verbose=0)
    predict = min(predict, time.perf_counter() - t0)
    with open(os.path.join(folder, "verify.json"), "w") as f:
        json.dump(result.as_dict(), f, indent=1)
    print(f"machine: {os.cpu_count()} CPUs; numpy {np.__version__}; keras {keras.__version__}; "
          f"{args.samples} samples x T={T}, batch {args.batch_size}")
    print(f"model.predict: {predict:.2f} s   verify: {verify:.2f} s ({verify / predict:.2f}x predict)   "
          f"verify --dtype float32: {verify32:.2f} s ({verify32 / predict:.2f}x predict, "
          f"{'pass' if result32.ok else 'FAIL'})")
    for name, r in (("float64", result), ("float32", result32)):
        print(f"  where verify's time goes ({name}): " + ", ".join(f"{k} {t:.2f} s ({t / predict:.2f}x predict)"
                                                              for k, t in r.timings.items()))
    for v in result.layers:
        worst = {mode: max(getattr(v, mode) or [], key=lambda o: o.max_abs, default=None) for mode in ("isolated", "chained")}
        cells = ", ".join(f"{m} {o.name} max|diff| {o.max_abs:.2e} ({o.tol_used:.2g} of tol)"
                          for m, o in worst.items() if o is not None)
        print(f"  {v.path}: {v.status}; {cells}")
    peaks = {}
    for n in (args.samples // 4, args.samples):
        part = os.path.join(folder, f"reviews_{n}.npz")
        np.savez(part, tokens=tokens[:n])
        done = subprocess.run([sys.executable, __file__, "--child", model_path, part, str(args.batch_size)],
                              capture_output=True, text=True, check=True)
        peaks[n] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
    print("peak RSS of verify: " + ", ".join(f"{n} samples {mb:.0f} MB" for n, mb in peaks.items())
          + f"; ratio {peaks[args.samples] / peaks[args.samples // 4]:.2f}")
    print(f"files in {folder}")


if __name__ == "__main__":
    main()
