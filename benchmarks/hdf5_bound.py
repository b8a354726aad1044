"""What the HDF5 parse bound costs a load: the same files loaded with the bound off, on a first load
(probed) and on a repeated load (an unchanged file is not probed again), in alternating blocks in one
process with TensorFlow imported, as in a user's process. Needs Keras (it saves the models it loads).

    python benchmarks/hdf5_bound.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def make_models(out: str) -> list[str]:
    import keras

    rng = np.random.default_rng(0)
    paths = []
    for label, units, dim in (("small", 8, 4), ("big", 256, 256)):
        inp = keras.Input((None, dim))
        x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True), name="bi1")(inp)
        x = keras.layers.Bidirectional(keras.layers.LSTM(units), name="bi2")(x)
        model = keras.Model(inp, keras.layers.Dense(2)(x))
        model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
        for ext in ("h5", "keras"):
            path = os.path.join(out, f"{label}.{ext}")
            model.save(path)
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    import bilstm_ref as br
    from bilstm_ref.loaders import _isolate

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_models(tmp)
        for p in paths:
            br.load_spec(p, layer="bi1")  # warm up: imports, and the prober's one fork
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for mode in ("off", "first", "again"):
                os.environ[_isolate.SECONDS_ENV] = "0" if mode == "off" else "3"
                for p in paths:
                    block = []
                    for _ in range(5):
                        if mode == "first":
                            _isolate._passed.clear()
                        t = time.perf_counter()
                        br.load_spec(p, layer="bi1")
                        block.append(time.perf_counter() - t)
                    times.setdefault((p, mode), []).append(statistics.median(block))
        print(f"{'file':<12} {'size':>9} {'unbounded':>10} {'first load':>18} {'repeated load':>18}")
        for p in paths:
            off, first, again = (statistics.median(times[(p, m)]) * 1e3 for m in ("off", "first", "again"))
            print(f"{os.path.basename(p):<12} {os.path.getsize(p) / 1e6:7.2f}MB {off:8.2f}ms "
                  f"{first:8.2f}ms ({first / off:4.2f}x) {again:8.2f}ms ({again / off:4.2f}x)")


if __name__ == "__main__":
    import tensorflow  # noqa: F401  (a user's process has it loaded; fork costs more there)

    main()
