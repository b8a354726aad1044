"""Write the seed corpus of the loader fuzz campaign (``benchmarks/fuzz.py``) into ``seeds/``.

    python tests/data/fuzz/generate.py [OUT_DIR]     # default: tests/data/fuzz/seeds

Needs live Keras 3 (with TensorFlow), tf_keras (Keras 2), tf2onnx and onnx; the campaign and the tests
that read the seeds need none of them. Every model is small (units 3-5, input dim 2-4) and has random
weights with a different scale and offset per gate, so a swapped gate or direction would show.

Seeds (``seeds.json`` lists each file with its campaign target, its LSTM / Bidirectional layers and the
config file a weights-only file needs):

* ``k3-sequential``: Keras 3 Sequential, Bidirectional(LSTM(4, return_sequences=True)), input dim 3:
  ``.keras``, legacy ``.h5`` (``model.save("x.h5")``), ``.weights.h5`` + ``.json`` (``model.to_json()``).
* ``k3-embedding``: Keras 3 functional, Embedding(12, 3, mask_zero=True) -> Bidirectional(LSTM(3,
  return_sequences=True)) -> LSTM(5): ``.keras``, ``.h5``, ``.weights.h5`` + ``.json``.
* ``k3-nested``: Keras 3, a functional ``encoder`` model (Input(2) -> Bidirectional(LSTM(3))) used as a
  layer of an outer functional model: ``.keras``, ``.h5``.
* ``k2-hard-sigmoid``: tf_keras (Keras 2) Sequential, Bidirectional(LSTM(4, recurrent_activation=
  "hard_sigmoid", return_sequences=True)), merge_mode "sum", input dim 4 (no CuDNN): full-model ``.h5``.
* ``k2-embedding``: tf_keras functional, Embedding(mask_zero=True) -> Bidirectional(LSTM(3,
  hard_sigmoid, return_sequences=True)) -> LSTM(4): full-model ``.h5``.
* ``onnx-bidi.onnx``: Input(3) -> Bidirectional(LSTM(4, return_sequences=True)) exported by
  ``model.export(format="onnx")`` (tf2onnx): one fused ONNX ``LSTM`` node;
  ``onnx-bidi.npz``: its W, R, B initializers; ``torch-bidi.npz``: the same weights as a
  ``torch.nn.LSTM(bidirectional=True)`` state_dict (``weight_ih_l0``, ..., ``*_reverse``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20260601
T = 5
GATES = ((1.0, 0.3), (0.6, 1.0), (1.4, 0.0), (0.8, -0.4))  # (scale, bias offset) of i, f, c, o


def per_gate(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random float32 weights; each gate block of the last axis (4n) with its own scale and offset."""
    a = rng.normal(size=shape).astype("float32") * 0.5
    if shape and shape[-1] % 4 == 0:
        n = shape[-1] // 4
        for g, (scale, shift) in enumerate(GATES):
            a[..., g * n:(g + 1) * n] = a[..., g * n:(g + 1) * n] * scale + (shift if len(shape) == 1 else 0.0)
    return a


def randomize(model: Any, rng: np.random.Generator) -> None:
    """Every weight of ``model`` random (per gate where the last axis is 4n)."""
    model.set_weights([per_gate(tuple(w.shape), rng) for w in model.get_weights()])


# --- Keras 3 --------------------------------------------------------------------------------------
def k3_sequential(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential([keras.Input((T, 3)),
                             L.Bidirectional(L.LSTM(4, return_sequences=True), name="bilstm")], name="sequential")


def k3_embedding(keras: Any) -> Any:
    L = keras.layers
    tok = keras.Input((T,), dtype="int32", name="tokens")
    h = L.Embedding(12, 3, mask_zero=True, name="emb")(tok)
    h = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bilstm")(h)
    return keras.Model(tok, L.LSTM(5, name="lstm")(h), name="embedding")


def k3_nested(keras: Any) -> Any:
    L = keras.layers
    x = keras.Input((T, 2), name="inner_x")
    encoder = keras.Model(x, L.Bidirectional(L.LSTM(3), name="bilstm")(x), name="encoder")
    outer_x = keras.Input((T, 2), name="x")
    return keras.Model(outer_x, L.Dense(2, name="head")(encoder(outer_x)), name="nested")


def keras3_seeds(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    import keras

    keras.utils.set_random_seed(SEED)
    entries: list[dict[str, Any]] = []
    for stem, make, layers in (("k3-sequential", k3_sequential, ["bilstm"]),
                               ("k3-embedding", k3_embedding, ["bilstm", "lstm"]),
                               ("k3-nested", k3_nested, ["encoder/bilstm"])):
        model = make(keras)
        randomize(model, rng)
        model.save(out / f"{stem}.keras")
        entries.append({"file": f"{stem}.keras", "target": "keras", "layers": layers})
        model.save(out / f"{stem}.h5")  # Keras 3's legacy HDF5 writer (it warns that the format is legacy)
        entries.append({"file": f"{stem}.h5", "target": "legacy-h5-k3", "layers": layers})
        if stem != "k3-nested":
            model.save_weights(out / f"{stem}.weights.h5")
            (out / f"{stem}.json").write_text(model.to_json())
            entries.append({"file": f"{stem}.weights.h5", "target": "weights-h5", "layers": layers,
                            "config": f"{stem}.json"})
    return entries


# --- Keras 2 (tf_keras) ---------------------------------------------------------------------------
def keras2_seeds(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    import tf_keras

    tf_keras.utils.set_random_seed(SEED)
    L = tf_keras.layers
    seq = tf_keras.Sequential([
        tf_keras.Input((T, 4)),
        L.Bidirectional(L.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True), merge_mode="sum",
                        name="bilstm"),
    ], name="hard_sigmoid")
    tok = tf_keras.Input((T,), dtype="int32", name="tokens")
    h = L.Embedding(12, 2, mask_zero=True, name="emb")(tok)
    h = L.Bidirectional(L.LSTM(3, recurrent_activation="hard_sigmoid", return_sequences=True), name="bilstm")(h)
    emb = tf_keras.Model(tok, L.LSTM(4, name="lstm")(h), name="embedding")
    entries = []
    for stem, model, layers in (("k2-hard-sigmoid", seq, ["bilstm"]), ("k2-embedding", emb, ["bilstm", "lstm"])):
        randomize(model, rng)
        model.save(out / f"{stem}.h5", save_format="h5")
        entries.append({"file": f"{stem}.h5", "target": "legacy-h5-k2", "layers": layers})
    return entries


# --- converted weights ----------------------------------------------------------------------------
def converted_seeds(out: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    import keras
    import onnx
    from onnx import numpy_helper

    from bilstm_ref.convert.layouts import keras_to_torch

    L = keras.layers
    x = keras.Input((None, 3), name="features")
    model = keras.Model(x, L.Bidirectional(L.LSTM(4, return_sequences=True), name="bilstm")(x), name="onnx_bidi")
    model(np.zeros((1, T, 3), "float32"))
    randomize(model, rng)
    with tempfile.TemporaryDirectory() as tmp:  # the exporter gets a folder of its own
        path = Path(tmp) / "onnx-bidi.onnx"
        model.export(str(path), format="onnx", verbose=False)
        m = onnx.load(str(path))
    (out / "onnx-bidi.onnx").write_bytes(m.SerializeToString())  # as onnx serializes the exported model
    lstm = next(n for n in m.graph.node if n.op_type == "LSTM")
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    npz = {role: inits[name] for role, name in zip(("W", "R", "B"), lstm.input[1:4]) if name in inits}
    write_npz(out / "onnx-bidi.npz", npz)
    weights = model.get_layer("bilstm").get_weights()
    write_npz(out / "torch-bidi.npz", keras_to_torch(weights, bidirectional=True))
    return [{"file": "onnx-bidi.onnx", "target": "converted", "layers": [None]},
            {"file": "onnx-bidi.npz", "target": "converted", "layers": [None]},
            {"file": "torch-bidi.npz", "target": "converted", "layers": [None]}]


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A deterministic STORED ``.npz`` (fixed timestamps, sorted names), no pickles."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, npy.getvalue())
    path.write_bytes(buf.getvalue())


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    entries = keras3_seeds(out, rng) + keras2_seeds(out, rng) + converted_seeds(out, rng)
    (out / "seeds.json").write_text(json.dumps({"seeds": entries}, indent=1) + "\n")
    total = sum((out / e["file"]).stat().st_size for e in entries)
    print(f"{len(entries)} seeds, {total} bytes in {out}")


if __name__ == "__main__":
    main()
