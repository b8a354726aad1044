"""Write small Keras models in every file format, with what Keras computed, for the loader tests.

Run as a script in its own process (the loading side must never import Keras)::

    python tests/model_zoo.py keras3|tf_keras OUTDIR [MARKER]

For each model it writes the model files (Keras 3: ``.keras``, ``.weights.h5`` + ``.json``,
legacy ``.h5``; tf_keras: legacy ``.h5``, weights-only ``.h5`` + ``.json``, ``.keras``,
``.weights.h5`` + ``.json``), ``STEM.expected.npz`` with every checked layer's input, mask and
outputs as Keras computed them (eagerly, ``training=False``), and ``manifest.json`` listing
them. Weights are random with per-gate scales and some saturating units, so a swapped gate,
a transposed kernel or a wrong hard_sigmoid shows.

``MARKER``: a path the ``with_lambda`` model's Lambda touches whenever it runs; Keras runs it
while building the model here, and the test deletes it before loading.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

B, T, D = 3, 6, 3
VOCAB = 9


def randomize(layer, rng: np.random.Generator) -> None:
    """Random weights that tell gates and units apart."""
    out = []
    for w in layer.get_weights():
        w = np.asarray(w)
        if w.ndim == 2 and w.shape[1] % 4 == 0 and "lstm" in type(layer).__name__.lower() + layer.name:
            n = w.shape[1] // 4
            scale = np.repeat([0.7, 1.1, 0.5, 0.9], n) * rng.uniform(0.5, 1.5, 4 * n)
            out.append(rng.normal(size=w.shape) * scale / np.sqrt(w.shape[0]))
        elif w.ndim == 1 and w.shape[0] % 4 == 0:
            n = w.shape[0] // 4
            b = rng.normal(scale=0.5, size=w.shape)
            b[n:2 * n] += 1.0  # forget gate bias
            b[0] = 4.0  # a saturating input-gate unit
            b[2 * n + n - 1] = -3.0
            out.append(b)
        else:
            out.append(rng.normal(size=w.shape))
    layer.set_weights([o.astype(np.float32) for o in out])


def lstm_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "forward_layer"):
            yield from lstm_layers(layer)
        elif type(layer).__name__ in ("LSTM", "Bidirectional"):
            yield layer


def build_models(k, flavour: str, marker: str):
    """(stem, model, model input, {layer path: (layer, layer input, mask)})."""
    L = k.layers
    rng = np.random.default_rng(1234)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    x_masked = x.copy()
    x_masked[0, 4:] = 0.0  # right padding
    x_masked[1, :2] = 0.0  # left padding
    x_masked[2, 3] = 0.0  # a hole
    mask = np.any(x_masked != 0.0, axis=-1)
    tokens = rng.integers(1, VOCAB, size=(B, T))
    tokens[0, 5:] = 0
    tokens[1, :1] = 0
    tok_mask = tokens != 0
    models = []

    inp = k.Input((T, D))
    out = L.Bidirectional(L.LSTM(4, return_sequences=True), name="bidirectional")(inp)
    models.append(("bidi_concat_seq", k.Model(inp, out), x, {"bidirectional": (x, None)}))

    inp = k.Input((T, D))
    m = L.Masking(mask_value=0.0)(inp)
    outs = L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True), merge_mode="sum", name="bi_state")(m)
    models.append(("masking_sum_state", k.Model(inp, list(outs)), x_masked, {"bi_state": (x_masked, mask)}))

    inp = k.Input((T,), dtype="int32")
    e = L.Embedding(VOCAB, D, mask_zero=True, name="emb")(inp)
    h = L.Bidirectional(L.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid"), merge_mode="mul",
                        name="bi1")(e)
    h = L.Bidirectional(L.LSTM(3), merge_mode="ave", name="bi2")(h)
    out = L.Dense(2, name="head")(h)
    model = k.Model(inp, out)
    models.append(("embedding_stacked", model, tokens, {"bi1": (["emb"], tok_mask), "bi2": (["emb", "bi1"], tok_mask)}))

    inp = k.Input((T, D))
    backward = L.LSTM(3, return_sequences=True, return_state=True, go_backwards=True, activation="relu",
                      recurrent_activation="hard_sigmoid", name="my_backward")
    outs = L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True), backward_layer=backward,
                           merge_mode=None, name="bi_custom")(inp)
    models.append(("custom_backward_none", k.Model(inp, list(outs)), x, {"bi_custom": (x, None)}))

    inner = k.Sequential([k.Input((T, D)), L.LSTM(4, return_sequences=True, use_bias=False, name="inner_lstm"),
                          L.Dense(3, name="inner_dense")], name="sub")
    inp = k.Input((T, D))
    h = inner(inp)
    out = L.LSTM(2, go_backwards=True, activation="elu", name="top_lstm")(h)
    models.append(("nested", k.Model(inp, out), x, {"sub/inner_lstm": (x, None), "top_lstm": (["sub"], None)}))

    inp = k.Input((T, D))

    def touch(t, path=marker):
        open(path, "a").close()
        return t

    h = L.Lambda(touch, name="code")(inp)
    out = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bidirectional_after_lambda")(h)
    models.append(("with_lambda", k.Model(inp, out), x, {"bidirectional_after_lambda": (["code"], None)}))
    return models, rng


def layer_by_path(model, path: str):
    node = model
    for part in path.split("/"):
        node = node.get_layer(part)
    return node


def main() -> None:
    flavour, outdir = sys.argv[1], sys.argv[2]
    marker = sys.argv[3] if len(sys.argv) > 3 else os.path.join(outdir, "lambda-ran")
    if flavour == "keras3":
        import keras as k
    else:
        import tf_keras as k
    os.makedirs(outdir, exist_ok=True)
    models, rng = build_models(k, flavour, marker)
    manifest = {"flavour": flavour, "keras_version": k.__version__, "models": {}}
    for stem, model, model_x, checked in models:
        for layer in lstm_layers(model):
            randomize(layer, rng)
        for layer in model.layers:
            if type(layer).__name__ in ("Embedding", "Dense"):
                layer.set_weights([rng.normal(size=np.shape(w)).astype(np.float32) for w in layer.get_weights()])
        expected: dict[str, np.ndarray] = {}
        layers = {}
        for i, (path, (source, mask)) in enumerate(checked.items()):
            layer = layer_by_path(model, path)
            if isinstance(source, list):  # the output of the layers before it, applied eagerly
                layer_x = model_x
                for before in source:
                    prev = layer_by_path(model, before)
                    masked = type(prev).__name__ == "Bidirectional" and mask is not None
                    layer_x = prev(layer_x, mask=mask) if masked else prev(layer_x)
                layer_x = np.asarray(layer_x)
            else:
                layer_x = source
            outs = layer(layer_x, mask=None if mask is None else mask, training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            expected[f"L{i}__input"] = layer_x
            if mask is not None:
                expected[f"L{i}__mask"] = mask
            for j, o in enumerate(outs):
                expected[f"L{i}__out{j}"] = np.asarray(o)
            layers[path] = {"key": f"L{i}", "n_outputs": len(outs), "masked": mask is not None}
        files = []
        if flavour == "keras3":
            model.save(os.path.join(outdir, f"{stem}.keras"))
            model.save_weights(os.path.join(outdir, f"{stem}.weights.h5"))
            with open(os.path.join(outdir, f"{stem}.json"), "w") as f:
                f.write(model.to_json())
            model.save(os.path.join(outdir, f"{stem}.h5"))
            files = [[f"{stem}.keras", None], [f"{stem}.weights.h5", f"{stem}.json"],
                     [f"{stem}.weights.h5", f"{stem}.keras"], [f"{stem}.h5", None]]
        else:
            model.save(os.path.join(outdir, f"{stem}.h5"), save_format="h5")
            model.save_weights(os.path.join(outdir, f"{stem}.weights-only.h5"))
            with open(os.path.join(outdir, f"{stem}.json"), "w") as f:
                f.write(model.to_json())
            files = [[f"{stem}.h5", None], [f"{stem}.weights-only.h5", f"{stem}.json"]]
            if stem != "with_lambda":  # tf_keras refuses to save a Lambda in the v3 format without safe_mode tricks
                model.save(os.path.join(outdir, f"{stem}.keras"))
                model.save_weights(os.path.join(outdir, f"{stem}.weights.h5"))
                files += [[f"{stem}.keras", None], [f"{stem}.weights.h5", f"{stem}.json"]]
        np.savez(os.path.join(outdir, f"{stem}.expected.npz"), **expected)
        manifest["models"][stem] = {"files": files, "layers": layers}
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
