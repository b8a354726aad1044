"""Generate Keras 2 test data: model files written by a REAL old tf.keras (Keras 2), plus the
outputs that tf.keras itself computed for them.

This script must be run with an OLD TensorFlow whose ``tf.keras`` is Keras 2 (TF <= 2.15). It does
not work with Keras 3 and it is never imported by the test suite; its outputs are committed.

How the committed files were produced (outside the repository, in throw-away virtualenvs):

    python3.11 -m venv venv-tf215
    venv-tf215/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2" h5py
    venv-tf215/bin/python tests/data/keras2/generate.py tests/data/keras2/keras-2.15 \
        --weights-only bidi_custom_backward_mul

    python3.11 -m venv venv-tf212
    venv-tf212/bin/pip install "tensorflow-cpu==2.12.1" "numpy<2" h5py
    venv-tf212/bin/python tests/data/keras2/generate.py tests/data/keras2/keras-2.12 \
        --models bidi_hard_sigmoid_concat,embedding_mask_sum_stacked \
        --weights-only bidi_hard_sigmoid_concat --no-cudnn

(The subsets only keep the committed data small: HDF5 files are ~15-40 KB each. Without options
every model is written, with weights-only files for every model listed in MODELS as True.)

(CPU only, no GPU.) Uses only tensorflow / tf.keras, numpy and h5py.

Per model NAME, OUTDIR receives:

* ``NAME.h5``               -- ``model.save(..., save_format="h5")``: full-model legacy HDF5.
* ``NAME.weights-only.h5``  -- ``model.save_weights(...)`` (HDF5), for selected models, together
  with ``NAME.json`` = ``model.to_json()``.
* ``NAME.expected.npz``     -- for every LSTM / Bidirectional layer L of the model (plain arrays,
  ``np.savez``, no pickle):
    ``L__input``  float32, the layer's input for the chosen x (the previous layer's output),
    ``L__mask``   bool (B, T), only when Keras propagates a mask into L,
    ``L__out0``, ``L__out1``, ... float32, the layer's outputs in Keras's return order
                  (output, then the states), computed eagerly by tf.keras with training=False.
* ``manifest.json``         -- versions, checked layers, their classes / number of outputs, notes.

CuDNNLSTM (``cudnn_lstm``, ``cudnn_bidi``) cannot be called without a GPU, so those models are only
built and saved; their expected outputs come from an equivalent ``LSTM(units, activation="tanh",
recurrent_activation="sigmoid")`` model into which the saved .h5 was loaded with
``load_weights(NAME.h5)`` (tf.keras converts CuDNN weights on load). The converted weights are
saved as ``NAME.converted-weights.npz`` (keys ``<layer path>__kernel|recurrent_kernel|bias``).
"""

import json
import os
import sys

import h5py
import numpy as np
import tensorflow as tf

try:
    import keras as _keras_pkg  # the keras 2.x package that backs tf.keras

    KERAS_VERSION = _keras_pkg.__version__
except Exception:  # pragma: no cover
    KERAS_VERSION = getattr(tf.keras, "__version__", "unknown")

K = tf.keras
L = tf.keras.layers

SEED = 20240517
T, D, B, VOCAB = 6, 4, 3, 12
GATE_SCALES = (0.6, 0.9, 0.5, 1.2)  # i, f, c, o


def _bias_for(rng, units, n_blocks=4):
    """Random LSTM bias (4u,): forget bias around +1 for some units, a few saturating units."""
    b = rng.normal(0.0, 0.4, size=(4 * units,))
    # forget gate: around +1 for the first half of the units
    for j in range(units):
        if j % 2 == 0:
            b[units + j] = 1.0 + rng.normal(0.0, 0.2)
    # saturating units: one unit saturates its input gate high, another its output gate low
    b[0 * units + (units - 1)] = 4.0
    b[3 * units + 0] = -4.0
    if units >= 4:
        b[1 * units + 1] = -4.0  # a forget gate that is nearly closed
    return b


def _gate_matrix(rng, rows, units):
    """(rows, 4u) kernel with a different scale per gate block and a per-unit factor."""
    blocks = []
    for scale in GATE_SCALES:
        per_unit = rng.uniform(0.6, 1.4, size=(units,))
        blocks.append(rng.normal(0.0, 1.0, size=(rows, units)) * scale * per_unit / np.sqrt(rows))
    return np.concatenate(blocks, axis=1)


def randomize_lstm(layer, rng):
    """Overwrite an LSTM or CuDNNLSTM layer's weights with random gate-distinguishing values."""
    ws = layer.get_weights()
    kernel, rec = ws[0], ws[1]
    units = rec.shape[0]
    new = [_gate_matrix(rng, kernel.shape[0], units), _gate_matrix(rng, units, units)]
    if len(ws) == 3:
        if ws[2].shape[0] == 8 * units:  # CuDNN: input bias + recurrent bias
            b = _bias_for(rng, units)
            split = rng.uniform(0.2, 0.8, size=b.shape)
            new.append(np.concatenate([b * split, b * (1.0 - split)]))
        else:
            new.append(_bias_for(rng, units))
    assert [w.shape for w in new] == [w.shape for w in ws], (layer.name, [w.shape for w in ws])
    layer.set_weights([w.astype(np.float32) for w in new])


def randomize_model(model, rng):
    for layer in model.layers:
        if isinstance(layer, L.Bidirectional):
            randomize_lstm(layer.forward_layer, rng)
            randomize_lstm(layer.backward_layer, rng)
        elif isinstance(layer, (L.LSTM, tf.compat.v1.keras.layers.CuDNNLSTM)):
            randomize_lstm(layer, rng)
        elif isinstance(layer, L.Embedding):
            w = layer.get_weights()[0]
            layer.set_weights([rng.normal(0.0, 1.0, size=w.shape).astype(np.float32)])
        elif layer.get_weights():
            layer.set_weights([rng.normal(0.0, 0.5, size=w.shape).astype(np.float32)
                               for w in layer.get_weights()])


def is_checked(layer):
    return isinstance(layer, (L.LSTM, L.Bidirectional))


def run_chain(model, x):
    """Run a linear-chain model layer by layer, eagerly, propagating Keras masks.

    Returns ({name: {"input", "mask", "outs"}}, final output) for every LSTM/Bidirectional layer.
    """
    cur = tf.convert_to_tensor(x)
    mask = None
    records = {}
    for layer in model.layers:
        if isinstance(layer, L.InputLayer):
            continue
        kwargs = {"training": False} if "training" in layer._call_spec.arg_names else {}
        if mask is not None and layer._expects_mask_arg:
            kwargs["mask"] = mask
        out = layer(cur, **kwargs)
        new_mask = layer.compute_mask(cur, mask)
        if is_checked(layer):
            outs = out if isinstance(out, (list, tuple)) else [out]
            records[layer.name] = {
                "input": np.asarray(cur, dtype=np.float32),
                "mask": None if mask is None else np.asarray(mask, dtype=bool),
                "outs": [np.asarray(o, dtype=np.float32) for o in outs],
            }
        if isinstance(new_mask, (list, tuple)):
            new_mask = new_mask[0]
        cur, mask = out, new_mask
    return records, cur


def save_expected(path, records):
    arrays = {}
    for name, rec in records.items():
        arrays[f"{name}__input"] = rec["input"]
        if rec["mask"] is not None:
            arrays[f"{name}__mask"] = rec["mask"]
        for i, o in enumerate(rec["outs"]):
            arrays[f"{name}__out{i}"] = o
    np.savez(path, **arrays)


def check_h5_layout(path):
    """Print and return the HDF5 layout (root attrs, layer_names, weight_names)."""
    def s(v):
        return v.decode("utf8") if isinstance(v, bytes) else str(v)

    layout = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"] if "model_weights" in f else f
        root_attrs = sorted(f.attrs.keys())
        if os.path.basename(path).endswith(".weights-only.h5"):
            assert "keras_version" in f.attrs, path
        else:
            assert "keras_version" in f.attrs and "model_config" in f.attrs, (path, root_attrs)
        print(f"== {os.path.basename(path)}  root attrs={root_attrs} "
              f"keras_version={s(f.attrs.get('keras_version'))} backend={s(f.attrs.get('backend'))}")
        layer_names = [s(n) for n in g.attrs["layer_names"]]
        print(f"   layer_names={layer_names}")
        for ln in layer_names:
            wn = [s(n) for n in g[ln].attrs["weight_names"]]
            shapes = [tuple(g[ln][w].shape) for w in wn]
            layout[ln] = list(zip(wn, shapes))
            print(f"   {ln}: weight_names={wn} shapes={shapes}")
    return layout


# --------------------------------------------------------------------------------------------
# models


def make_x(rng, t=T, d=D, b=B):
    return rng.normal(0.0, 1.0, size=(b, t, d)).astype(np.float32)


def build_bidi_hard_sigmoid_concat(rng):
    inp = K.Input((T, D))
    out = L.Bidirectional(L.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True),
                          merge_mode="concat")(inp)
    return K.Model(inp, out), make_x(rng), ""


def build_embedding_mask_sum_stacked(rng):
    inp = K.Input((T,), dtype="int32")
    h = L.Embedding(VOCAB, 5, mask_zero=True)(inp)
    h = L.Bidirectional(L.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid"),
                        merge_mode="sum", name="bi1")(h)
    h = L.Bidirectional(L.LSTM(3), merge_mode="sum", name="bi2")(h)
    out = L.Dense(2)(h)
    tokens = rng.integers(1, VOCAB, size=(B, T)).astype(np.int32)
    tokens[0, 4:] = 0  # right padding
    tokens[1, :2] = 0  # left padding
    # row 2: no padding
    return K.Model(inp, out), tokens, "row 0 right-padded (2 zeros), row 1 left-padded (2 zeros)"


def build_bidi_return_state_ave(rng):
    inp = K.Input((T, D))
    outs = L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True),
                           merge_mode="ave")(inp)
    return K.Model(inp, outs), make_x(rng), "outputs: merged sequence, fw h, fw c, bw h, bw c"


def build_bidi_custom_backward_mul(rng):
    inp = K.Input((T, D))
    out = L.Bidirectional(
        L.LSTM(4, return_sequences=True),
        backward_layer=L.LSTM(4, return_sequences=True, go_backwards=True, activation="relu"),
        merge_mode="mul")(inp)
    return K.Model(inp, out), make_x(rng), "backward layer uses activation='relu'"


def build_sequential_lstm_stack(rng):
    model = K.Sequential([
        L.Masking(mask_value=0.0, input_shape=(T, D)),
        L.LSTM(5, return_sequences=True, activation="tanh", recurrent_activation="hard_sigmoid",
               unit_forget_bias=True),
        L.Bidirectional(L.LSTM(3)),
    ])
    x = make_x(rng)
    x[0, 4:] = 0.0  # trailing masked steps
    x[1, 2] = 0.0  # a hole
    x[2, 0] = 0.0  # leading masked step
    return model, x, "masked steps: row0 t=4,5; row1 t=2 (hole); row2 t=0"


MODELS = [
    ("bidi_hard_sigmoid_concat", build_bidi_hard_sigmoid_concat, True),
    ("embedding_mask_sum_stacked", build_embedding_mask_sum_stacked, True),
    ("bidi_return_state_ave", build_bidi_return_state_ave, False),
    ("bidi_custom_backward_mul", build_bidi_custom_backward_mul, True),
    ("sequential_lstm_stack", build_sequential_lstm_stack, False),
]


_CFG_KEYS = ("units", "activation", "recurrent_activation", "use_bias", "return_sequences",
             "return_state", "go_backwards", "unroll", "time_major", "merge_mode")


def _compact_config(layer):
    def pick(cfg):
        return {k: cfg[k] for k in _CFG_KEYS if k in cfg}

    if isinstance(layer, L.Bidirectional):
        return {"merge_mode": layer.merge_mode,
                "forward": pick(layer.forward_layer.get_config()),
                "backward": pick(layer.backward_layer.get_config())}
    return pick(layer.get_config())


def layer_info(model, records):
    info = []
    for layer in model.layers:
        if layer.name in records:
            entry = {"name": layer.name, "class": type(layer).__name__,
                     "n_outputs": len(records[layer.name]["outs"]),
                     "masked": records[layer.name]["mask"] is not None,
                     "config": _compact_config(layer)}
            if isinstance(layer, L.Bidirectional):
                entry["forward_name"] = layer.forward_layer.name
                entry["backward_name"] = layer.backward_layer.name
            info.append(entry)
    return info


def write_model(outdir, name, model, x, with_weights_only):
    files = {}
    h5 = os.path.join(outdir, f"{name}.h5")
    model.save(h5, save_format="h5", include_optimizer=False)
    files["h5"] = os.path.basename(h5)
    if with_weights_only:
        wo = os.path.join(outdir, f"{name}.weights-only.h5")
        model.save_weights(wo, save_format="h5")
        with open(os.path.join(outdir, f"{name}.json"), "w") as f:
            f.write(model.to_json())
        files["weights_only_h5"] = os.path.basename(wo)
        files["json"] = f"{name}.json"
    return files


def main(outdir, only=None, weights_only=None, cudnn=True):
    os.makedirs(outdir, exist_ok=True)
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    manifest = {
        "generator": "tests/data/keras2/generate.py",
        "keras_version": KERAS_VERSION,
        "tensorflow_version": tf.__version__,
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "seed": SEED,
        "gate_scales_ifco": GATE_SCALES,
        "hard_sigmoid": "Keras 2 semantics: clip(0.2 * x + 0.5, 0, 1)",
        "npz_layout": "<layer>__input, <layer>__mask (bool, only if masked), <layer>__out<i>",
        "files": {},
    }
    layouts = {}

    for name, builder, with_wo in MODELS:
        if weights_only is not None:
            with_wo = name in weights_only
        K.backend.clear_session()
        model, x, note = builder(rng)
        randomize_model(model, rng)
        if only is not None and name not in only:
            continue  # built + randomized anyway: a subset run draws the same x / weights
        records, final = run_chain(model, x)
        whole = model(x, training=False)
        whole = whole if isinstance(whole, (list, tuple)) else [whole]
        final = final if isinstance(final, (list, tuple)) else [final]
        for a, b in zip(whole, final):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        files = write_model(outdir, name, model, x, with_wo)
        save_expected(os.path.join(outdir, f"{name}.expected.npz"), records)
        files["expected"] = f"{name}.expected.npz"
        # the saved full model reloads and reproduces the recorded outputs
        K.backend.clear_session()
        reloaded = K.models.load_model(os.path.join(outdir, files["h5"]), compile=False)
        rec2, _ = run_chain(reloaded, x)
        for lname, rec in records.items():
            for a, b in zip(rec["outs"], rec2[lname]["outs"]):
                np.testing.assert_array_equal(a, b)
        layouts[name] = check_h5_layout(os.path.join(outdir, files["h5"]))
        if with_wo:
            check_h5_layout(os.path.join(outdir, files["weights_only_h5"]))
        manifest["files"][name] = {
            **files,
            "model_input_dtype": str(np.asarray(x).dtype),
            "model_input_shape": list(np.asarray(x).shape),
            "checked_layers": layer_info(model, records),
            "notes": note or "outputs computed eagerly by tf.keras, layer by layer, training=False",
        }

    # ---------------------------------------------------------------- CuDNNLSTM
    if not cudnn:
        cudnn_notes = "CuDNNLSTM models not written for this version (--no-cudnn)"
    else:
        try:
            cudnn_notes = write_cudnn(outdir, rng, manifest, layouts)
        except Exception as e:  # pragma: no cover - recorded in the manifest
            cudnn_notes = f"CuDNNLSTM skipped: {type(e).__name__}: {e}"
            print(cudnn_notes)
    manifest["cudnn"] = cudnn_notes

    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True, default=str)
        f.write("\n")


def write_cudnn(outdir, rng, manifest, layouts):
    CuDNNLSTM = tf.compat.v1.keras.layers.CuDNNLSTM
    note = ("CuDNNLSTM cannot run on CPU: the model was only built and saved. Expected outputs were "
            "computed by an equivalent model using LSTM(units, activation='tanh', "
            "recurrent_activation='sigmoid', same return_sequences) into which the saved full-model "
            ".h5 was loaded with model.load_weights(NAME.h5); tf.keras converted the CuDNN weights "
            "on load (keras/src/saving/legacy/hdf5_format.py _convert_rnn_weights): per gate block "
            "of u columns, input kernel k -> k.T.reshape(k.shape, order='F'), recurrent kernel "
            "k -> k.T, bias (8u,) -> bias[:4u] + bias[4u:]. (tf.keras's CuDNNLSTM stores its "
            "kernels in cuDNN layout: canonical_to_params(..., transpose_weights=False).) "
            "The converted LSTM weights are in NAME.converted-weights.npz.")
    specs = [
        ("cudnn_lstm", lambda: K.Sequential([K.Input((T, D)),
                                            CuDNNLSTM(4, return_sequences=True, name="cudnn_lstm")]),
         lambda: K.Sequential([K.Input((T, D)),
                               L.LSTM(4, return_sequences=True, activation="tanh",
                                      recurrent_activation="sigmoid", name="cudnn_lstm")])),
        ("cudnn_bidi", lambda: K.Sequential([K.Input((T, D)),
                                            L.Bidirectional(CuDNNLSTM(3), name="bidi")]),
         lambda: K.Sequential([K.Input((T, D)),
                               L.Bidirectional(L.LSTM(3, activation="tanh",
                                                      recurrent_activation="sigmoid"),
                                               name="bidi")])),
    ]
    for name, build_cudnn, build_equiv in specs:
        K.backend.clear_session()
        model = build_cudnn()
        randomize_model(model, rng)
        x = make_x(rng)
        h5 = os.path.join(outdir, f"{name}.h5")
        model.save(h5, save_format="h5", include_optimizer=False)
        layouts[name] = check_h5_layout(h5)
        K.backend.clear_session()
        equiv = build_equiv()
        equiv.load_weights(h5)
        records, _ = run_chain(equiv, x)
        save_expected(os.path.join(outdir, f"{name}.expected.npz"), records)
        conv = {}
        for layer in equiv.layers:
            subs = ([layer.forward_layer, layer.backward_layer]
                    if isinstance(layer, L.Bidirectional) else [layer])
            for sub in subs:
                for wname, w in zip(("kernel", "recurrent_kernel", "bias"), sub.get_weights()):
                    key = layer.name if sub is layer else f"{layer.name}.{sub.name}"
                    conv[f"{key}__{wname}"] = w.astype(np.float32)
        np.savez(os.path.join(outdir, f"{name}.converted-weights.npz"), **conv)
        manifest["files"][name] = {
            "h5": f"{name}.h5",
            "expected": f"{name}.expected.npz",
            "converted_weights": f"{name}.converted-weights.npz",
            "model_input_dtype": "float32",
            "model_input_shape": list(x.shape),
            "saved_layer_class": "CuDNNLSTM",
            "checked_layers": layer_info(equiv, records),
            "notes": note,
        }
    return note


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="run with TF <= 2.15 (tf.keras = Keras 2)")
    ap.add_argument("outdir")
    ap.add_argument("--models", help="comma-separated subset of the non-CuDNN models")
    ap.add_argument("--weights-only", help="comma-separated models that also get "
                    "NAME.weights-only.h5 + NAME.json (default: as marked in MODELS)")
    ap.add_argument("--no-cudnn", action="store_true", help="skip the CuDNNLSTM models")
    a = ap.parse_args()
    if int(tf.__version__.split(".")[1]) >= 16 or not KERAS_VERSION.startswith("2."):
        sys.exit(f"needs tf.keras = Keras 2 (TF <= 2.15); found TF {tf.__version__}, "
                 f"keras {KERAS_VERSION}")
    split = lambda v: None if v is None else [m for m in v.split(",") if m]  # noqa: E731
    main(a.outdir, split(a.models), split(a.weights_only), not a.no_cudnn)
