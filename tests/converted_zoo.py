"""Writes the converted-model zoo of the ``verify --against`` tests: Keras models, their ONNX and TFLite
conversions made by the real converters, and conversions with seeded faults.

    python tests/converted_zoo.py OUT_DIR

Models (random weights with per-gate scales, so a swapped direction or gate shows):

* ``text.keras``: token ids -> Embedding(mask_zero) -> Bidirectional(LSTM(5, relu, return_sequences))
  -> Dense(3); converted to ``text.onnx`` (dynamic batch and length) and ``text.tflite`` (batch 4,
  16 steps: the TFLite converter needs a static batch).
* ``stacked.keras``: the README's text model, Embedding(mask_zero) -> Bidirectional(LSTM, sequences)
  -> Dropout -> Bidirectional(LSTM) -> Dense; ``stacked.onnx``, ``stacked.tflite``.
* ``states.keras``: float features -> Bidirectional(LSTM(4, return_sequences, return_state)), the
  five outputs as model outputs; ``states.onnx``, ``states.tflite``.

Faulty conversions of ``text`` (tf2onnx's Loop form of the masked layer; what converters and hand edits
have got wrong):

* ``text-bw-reversed.onnx``: the backward direction's output left in processing order;
* ``text-dirs-swapped.onnx``: the forward and backward weights exchanged;
* ``text-no-activation.onnx``: the cell's relu dropped;
* ``text-state-leak.tflite``: converted from the stateful twin of the model, so each call starts
  from the previous call's final state;

and of ``states`` (whose ONNX form is one fused ``LSTM`` op): ``states-dirs-swapped.onnx``, the
direction axis of the op's W, R and B exchanged.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

VOCAB, T, BATCH = 20, 16, 4


def _scaled(layer, rng: np.random.Generator) -> None:
    """Random weights, each gate block with its own scale and offset."""
    new = []
    for w in layer.get_weights():
        a = rng.normal(size=w.shape).astype("float32") * 0.5
        if w.shape[-1] % 4 == 0 and w.ndim <= 2:
            n = w.shape[-1] // 4
            for g, (scale, shift) in enumerate(((1.0, 0.3), (0.6, 1.0), (1.4, 0.0), (0.8, -0.4))):
                a[..., g * n:(g + 1) * n] = a[..., g * n:(g + 1) * n] * scale + (shift if w.ndim == 1 else 0.0)
        new.append(a)
    layer.set_weights(new)


def text_model(keras, batch=None, stateful=False):
    L = keras.layers
    tok = keras.Input((None if batch is None else T,), batch_size=batch, dtype="int32", name="tokens")
    e = L.Embedding(VOCAB, 6, mask_zero=True, name="emb")(tok)
    h = L.Bidirectional(L.LSTM(5, activation="relu", return_sequences=True, stateful=stateful), name="bilstm")(e)
    return keras.Model(tok, L.Dense(3, name="head")(h), name="text")


def states_model(keras, batch=None):
    L = keras.layers
    x = keras.Input((None if batch is None else T, 3), batch_size=batch, name="features")
    outs = L.Bidirectional(L.LSTM(4, return_sequences=True, return_state=True), name="bilstm")(x)
    return keras.Model(x, list(outs), name="states")


def stacked_model(keras, batch=None):
    """The README's text model: two stacked Bidirectional layers with Dropout between them."""
    L = keras.layers
    tok = keras.Input((None if batch is None else T,), batch_size=batch, dtype="int32", name="tokens")
    h = L.Embedding(VOCAB, 6, mask_zero=True, name="emb")(tok)
    h = L.Bidirectional(L.LSTM(5, return_sequences=True), name="bilstm1")(h)
    h = L.Dropout(0.3, name="drop")(h)
    h = L.Bidirectional(L.LSTM(4), name="bilstm2")(h)
    return keras.Model(tok, L.Dense(2, name="head")(h), name="stacked")


def _built(model, probe, rng: np.random.Generator):
    """``model`` called once (so it can be exported), every Bidirectional's weights random per gate."""
    model(probe)
    for layer in model.layers:
        if hasattr(layer, "forward_layer"):
            _scaled(layer.forward_layer, rng)
            _scaled(layer.backward_layer, rng)
    return model


def _fixed_batch(make, keras, model, **kwargs):
    """The twin of ``model`` with batch BATCH (what the TFLite converter needs), same weights."""
    twin = make(keras, batch=BATCH, **kwargs)
    twin.set_weights(model.get_weights())
    return twin


def to_onnx(model, path: Path) -> None:
    model.export(str(path), format="onnx", verbose=False)


def to_tflite(model, path: Path) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())


def _graphs(g):
    """The graph and every subgraph (Loop bodies) inside it."""
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.g is not None and a.g.node:
                yield from _graphs(a.g)


def _faults(onnx_path: Path, out: Path) -> None:
    """Seeded faults in tf2onnx's form of the masked layer (two Loops, a ReverseSequence that re-aligns
    the backward output, a Concat that joins the directions)."""
    import onnx
    from onnx import numpy_helper

    # The backward direction's output left in processing order: the re-aligning ReverseSequence bypassed.
    m = onnx.load(str(onnx_path))
    made = {o: n for n in m.graph.node for o in n.output}
    concat = next(n for n in m.graph.node if n.op_type == "Concat" and n.output[0].endswith("bilstm_1/concat:0"))
    rev = made[concat.input[1]]
    assert rev.op_type == "ReverseSequence", rev.op_type
    concat.input[1] = rev.input[0]
    onnx.save(m, str(out / "text-bw-reversed.onnx"))
    # The two directions' weights exchanged (kernel, recurrent kernel, bias: told apart by their op and shape).
    m = onnx.load(str(onnx_path))

    def role(name: str, shape: tuple) -> tuple:
        return ("BiasAdd" in name, "Cast_1" in name, shape)

    fw = {role(t.name, tuple(t.dims)): t for t in m.graph.initializer if "forward_lstm" in t.name and len(t.dims) >= 1}
    bw = {role(t.name, tuple(t.dims)): t for t in m.graph.initializer if "backward_lstm" in t.name and len(t.dims) >= 1}
    fw = {k: v for k, v in fw.items() if k in bw and np.prod(k[2]) > 8}
    assert len(fw) == 3, sorted(fw)
    for k, t in fw.items():
        a, b = numpy_helper.to_array(t).copy(), numpy_helper.to_array(bw[k]).copy()
        t.CopyFrom(numpy_helper.from_array(b, t.name))
        bw[k].CopyFrom(numpy_helper.from_array(a, bw[k].name))
    onnx.save(m, str(out / "text-dirs-swapped.onnx"))
    # The cell's relu dropped, in the unrolled first step and in the Loop bodies.
    m = onnx.load(str(onnx_path))
    dropped = 0
    for g in _graphs(m.graph):
        for n in g.node:
            if n.op_type == "Relu" and "lstm_cell" in n.name + "".join(n.output):
                n.op_type = "Identity"
                dropped += 1
    assert dropped >= 4, dropped
    onnx.save(m, str(out / "text-no-activation.onnx"))


def _fused_swapped(onnx_path: Path, out: Path) -> None:
    """The fused form's fault: the direction axis of W, R and B of the LSTM op exchanged."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    node = next(n for n in m.graph.node if n.op_type == "LSTM")
    inits = {t.name: t for t in m.graph.initializer}
    for name in node.input[1:4]:
        a = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(a[::-1].copy(), name))
    onnx.save(m, str(out / "states-dirs-swapped.onnx"))


def main() -> None:
    import keras

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    keras.utils.set_random_seed(7)
    tokens = np.ones((1, T), "int32")
    text = _built(text_model(keras), tokens, rng)
    text.save(out / "text.keras")
    to_onnx(text, out / "text.onnx")
    to_tflite(_fixed_batch(text_model, keras, text), out / "text.tflite")
    to_tflite(_fixed_batch(text_model, keras, text, stateful=True), out / "text-state-leak.tflite")
    _faults(out / "text.onnx", out)

    stacked = _built(stacked_model(keras), tokens, rng)
    stacked.save(out / "stacked.keras")
    to_onnx(stacked, out / "stacked.onnx")
    to_tflite(_fixed_batch(stacked_model, keras, stacked), out / "stacked.tflite")

    states = _built(states_model(keras), np.zeros((1, T, 3), "float32"), rng)
    states.save(out / "states.keras")
    to_onnx(states, out / "states.onnx")
    _fused_swapped(out / "states.onnx", out)
    to_tflite(_fixed_batch(states_model, keras, states), out / "states.tflite")
    (out / "manifest.json").write_text(json.dumps(sorted(p.name for p in out.iterdir())) + "\n")


if __name__ == "__main__":
    main()
