"""Write the models the ``verify`` tests run, with data files, in their own process::

    python tests/verify_zoo.py OUTDIR

- ``text.keras`` / ``text.h5``: Embedding(mask_zero=True) -> Bidirectional(LSTM(8, return_sequences))
  -> Dropout -> Bidirectional(LSTM(5)) -> Dense, the text model of the "verify your model" section;
  ``text.data.npz``: token ids with right padding, left padding, holes-free rows and a fully padded row.
- ``mixed.keras``: float features -> Masking -> LSTM(4, return_sequences) -> GRU(3) -> Dense: a
  recurrent layer that is not verified beside one that is.
- ``dense_only.keras``: no recurrent layer at all.
- ``two_inputs.keras``: two inputs (tokens and a float sequence), each into its own LSTM.
- ``enc_dec.keras``: an encoder LSTM whose final states are the decoder LSTM's initial states.

Weights are random with per-gate scales and saturating units (``model_zoo.randomize``).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from model_zoo import lstm_layers, randomize  # noqa: E402

VOCAB, T = 30, 11


def tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.integers(1, VOCAB, size=(n, T)).astype("int32")
    x[0, 7:] = 0  # right padding
    x[1, :3] = 0  # left padding
    x[2] = 0  # a fully padded row
    x[3, 1:] = 0  # one valid step
    x[5, 9:] = 0
    return x


def main() -> None:
    import keras

    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    L = keras.layers
    rng = np.random.default_rng(7)

    tok = keras.Input((None,), dtype="int32", name="tokens")
    e = L.Embedding(VOCAB, 6, mask_zero=True, name="emb")(tok)
    h = L.Bidirectional(L.LSTM(8, return_sequences=True), name="bilstm1")(e)
    h = L.Dropout(0.3, name="drop")(h)
    h = L.Bidirectional(L.LSTM(5), name="bilstm2")(h)
    text = keras.Model(tok, L.Dense(3, name="head")(h), name="text")

    feats = keras.Input((T, 4), name="features")
    m = L.Masking(mask_value=0.0, name="masking")(feats)
    g = L.LSTM(4, return_sequences=True, name="lstm")(m)
    g = L.GRU(3, name="gru")(g)
    mixed = keras.Model(feats, L.Dense(2, name="head")(g), name="mixed")

    dense_in = keras.Input((T, 4), name="features")
    dense_only = keras.Model(dense_in, L.Dense(2, name="d1")(L.Dense(3, name="d0")(dense_in)), name="dense_only")

    t_in = keras.Input((T,), dtype="int32", name="ids")
    f_in = keras.Input((T, 2), name="signal")
    a = L.LSTM(3, name="lstm_ids")(L.Embedding(VOCAB, 4, name="emb_ids")(t_in))
    b = L.Bidirectional(L.LSTM(2), name="bi_signal")(f_in)
    two = keras.Model([t_in, f_in], L.Concatenate(name="cat")([a, b]), name="two_inputs")

    enc_in = keras.Input((T, 3), name="source")
    dec_in = keras.Input((T, 2), name="target")
    _, h_enc, c_enc = L.LSTM(4, return_state=True, name="encoder")(enc_in)
    dec = L.LSTM(4, return_sequences=True, name="decoder")(dec_in, initial_state=[h_enc, c_enc])
    enc_dec = keras.Model([enc_in, dec_in], L.Dense(2, name="head")(dec), name="enc_dec")

    for model in (text, mixed, dense_only, two, enc_dec):
        for layer in lstm_layers(model):
            randomize(layer, rng)
        for layer in model.layers:
            if type(layer).__name__ in ("Embedding", "Dense", "GRU"):
                layer.set_weights([rng.normal(scale=0.5, size=np.shape(w)).astype(np.float32)
                                   for w in layer.get_weights()])
    text.save(os.path.join(out, "text.keras"))
    text.save(os.path.join(out, "text.h5"))
    mixed.save(os.path.join(out, "mixed.keras"))
    dense_only.save(os.path.join(out, "dense_only.keras"))
    two.save(os.path.join(out, "two_inputs.keras"))
    enc_dec.save(os.path.join(out, "enc_dec.keras"))
    np.savez(os.path.join(out, "text.data.npz"), tokens=tokens(rng, 40))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"keras": keras.__version__, "vocab": VOCAB, "time": T}, f)


if __name__ == "__main__":
    main()
