"""The exact weight-layout converters (bilstm_ref.convert.layouts): Keras <-> torch.nn.LSTM, the ONNX
LSTM op and TFLite per-gate tensors.

Round trips keep every bit on every matrix case; where each Keras block lands is checked by hand; and
the converted weights compute Keras's outputs in independent implementations: torch.nn.LSTM and
ONNX's own reference evaluator, against the NumPy reference.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.conformance import matrix
from bilstm_ref.convert import (keras_to_onnx, keras_to_tflite_gates, keras_to_torch, onnx_to_keras,
                                tflite_gates_to_keras, torch_to_keras)
from bilstm_ref.convert.layouts import KERAS_FROM_ONNX, ONNX_FROM_KERAS, inverse_order, permute_gates

D, N = 3, 4


def _bits(weights: list[np.ndarray]) -> list[tuple[str, tuple[int, ...], bytes]]:
    return [(str(w.dtype), w.shape, w.tobytes()) for w in weights]


def _round_trips(weights: list[np.ndarray], bidirectional: bool) -> dict[str, list[np.ndarray]]:
    torch_sd = keras_to_torch(weights, bidirectional)
    onnx_io = keras_to_onnx(weights, bidirectional)
    return {
        "torch": torch_to_keras(torch_sd),
        "onnx": onnx_to_keras(onnx_io["W"], onnx_io["R"], onnx_io.get("B")),
        "tflite": tflite_gates_to_keras(keras_to_tflite_gates(weights, bidirectional)),
    }


def _keras_weights(rng: np.random.Generator, dtype: str = "float64", n: int = N, d: int = D, bias: bool = True,
                   directions: int = 1) -> list[np.ndarray]:
    """Random weights that tell gates (per-gate scales and offsets) and units apart."""
    out: list[np.ndarray] = []
    for _ in range(directions):
        scale = np.repeat([0.6, 1.3, 0.9, 0.75], n)
        out += [rng.normal(size=(d, 4 * n)) * scale, rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n)]
        if bias:
            out.append(rng.normal(scale=0.3, size=4 * n) + np.repeat([0.4, 1.0, 0.0, -0.3], n))
    return [w.astype(dtype) for w in out]


# --- bit-exact round trips ------------------------------------------------------------------------
def test_every_matrix_case_round_trips_bit_exactly() -> None:
    cases = matrix.cases()
    assert len(cases) > 800
    refused = 0
    for case in cases:
        weights, bidi = case.weights, case.family == "bidi"
        if bidi and case.backward_units != case.units:  # one hidden size per torch / ONNX layer
            for convert in (keras_to_torch, keras_to_onnx):
                with pytest.raises(br.UnsupportedModelError,
                                   match=rf"units={case.units}, the backward layer units={case.units + 1}"):
                    convert(weights, True)
            refused += 1
            back = tflite_gates_to_keras(keras_to_tflite_gates(weights, True))  # separate fw_ / bw_ tensors
            assert _bits(back) == _bits(weights), case.id
            n_fw = len(weights) // 2
            for half in (weights[:n_fw], weights[n_fw:]):  # each direction converts as its own LSTM
                for kind, got in _round_trips(half, False).items():
                    assert _bits(got) == _bits(half), (case.id, kind)
            continue
        for kind, got in _round_trips(weights, bidi).items():
            assert _bits(got) == _bits(weights), (case.id, kind)
    assert 0 < refused < len(cases) // 10


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_round_trips_keep_dtype_and_special_values(rng, dtype: str, bidirectional: bool) -> None:
    weights = _keras_weights(rng, dtype, directions=2 if bidirectional else 1)
    specials = np.array([-0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).tiny / 4, np.finfo(dtype).max], dtype)
    weights[0].reshape(-1)[: specials.size] = specials
    weights[2][: specials.size] = specials  # -0.0 in the bias: a naive bias_ih + 0 would make it +0.0
    weights[2][5] = -0.0
    for kind, got in _round_trips(weights, bidirectional).items():
        assert _bits(got) == _bits(weights), kind
        assert all(not np.shares_memory(g, w) for g, w in zip(got, weights)), kind


def test_use_bias_false_has_no_bias_anywhere(rng) -> None:
    weights = _keras_weights(rng, bias=False, directions=2)
    assert set(keras_to_torch(weights, True)) == {"weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse",
                                                  "weight_hh_l0_reverse"}
    assert set(keras_to_onnx(weights, True)) == {"W", "R"}
    assert not any(k.endswith("_bias") for k in keras_to_tflite_gates(weights, True))
    for got in _round_trips(weights, True).values():
        assert _bits(got) == _bits(weights)


# --- where every block goes (written out by hand) -------------------------------------------------
def test_torch_layout(rng) -> None:
    k, r, b, k2, r2, b2 = _keras_weights(rng, directions=2)
    sd = keras_to_torch([k, r, b, k2, r2, b2], bidirectional=True)
    np.testing.assert_array_equal(sd["weight_ih_l0"], k.T)  # torch i, f, g, o == Keras i, f, c, o
    np.testing.assert_array_equal(sd["weight_hh_l0"], r.T)
    np.testing.assert_array_equal(sd["bias_ih_l0"], b)
    np.testing.assert_array_equal(sd["bias_hh_l0"], np.zeros(4 * N))
    np.testing.assert_array_equal(sd["weight_ih_l0_reverse"], k2.T)
    np.testing.assert_array_equal(sd["bias_ih_l0_reverse"], b2)
    assert sd["weight_ih_l0"].flags.c_contiguous


def test_torch_bias_is_the_sum_of_both(rng) -> None:
    k, r, b = _keras_weights(rng)
    sd = keras_to_torch([k, r, b], bidirectional=False)
    hh = rng.normal(size=4 * N)
    sd["bias_ih_l0"], sd["bias_hh_l0"] = b - hh, hh
    np.testing.assert_allclose(torch_to_keras(sd)[2], b, rtol=0, atol=1e-15)  # one rounding: not bit-exact


def test_onnx_layout(rng) -> None:
    k, r, b = _keras_weights(rng)
    io = keras_to_onnx([k, r, b], bidirectional=False)
    assert io["W"].shape == (1, 4 * N, D) and io["R"].shape == (1, 4 * N, N) and io["B"].shape == (1, 8 * N)
    keras_blocks = {g: slice(j * N, (j + 1) * N) for j, g in enumerate("ifco")}
    for j, gate in enumerate("iofc"):  # ONNX's order
        onnx_block = slice(j * N, (j + 1) * N)
        np.testing.assert_array_equal(io["W"][0, onnx_block], k[:, keras_blocks[gate]].T)
        np.testing.assert_array_equal(io["R"][0, onnx_block], r[:, keras_blocks[gate]].T)
        np.testing.assert_array_equal(io["B"][0, onnx_block], b[keras_blocks[gate]])
    np.testing.assert_array_equal(io["B"][0, 4 * N:], 0)
    assert ONNX_FROM_KERAS == (0, 3, 1, 2) and inverse_order(KERAS_FROM_ONNX) == ONNX_FROM_KERAS


def test_tflite_layout(rng) -> None:
    k, r, b, k2, r2, b2 = _keras_weights(rng, directions=2)
    t = keras_to_tflite_gates([k, r, b, k2, r2, b2], bidirectional=True)
    assert len(t) == 24
    for j, gate in enumerate(("input", "forget", "cell", "output")):
        block = slice(j * N, (j + 1) * N)
        np.testing.assert_array_equal(t[f"fw_input_to_{gate}_weights"], k[:, block].T)
        np.testing.assert_array_equal(t[f"fw_recurrent_to_{gate}_weights"], r[:, block].T)
        np.testing.assert_array_equal(t[f"fw_{gate}_gate_bias"], b[block])
        np.testing.assert_array_equal(t[f"bw_input_to_{gate}_weights"], k2[:, block].T)
    single = keras_to_tflite_gates([k, r, b], bidirectional=False)
    assert set(single) == {n[3:] for n in t if n.startswith("fw_")}


def test_permute_gates_moves_whole_blocks(rng) -> None:
    a = rng.normal(size=(D, 4 * N))
    moved = permute_gates(a, (2, 0, 3, 1))
    for k, src in enumerate((2, 0, 3, 1)):
        np.testing.assert_array_equal(moved[:, k * N:(k + 1) * N], a[:, src * N:(src + 1) * N])
    np.testing.assert_array_equal(permute_gates(moved, inverse_order((2, 0, 3, 1))), a)


# --- refusals name the key, expected and actual ---------------------------------------------------
def _torch_sd(rng: np.random.Generator, bidirectional: bool = False) -> dict[str, np.ndarray]:
    return keras_to_torch(_keras_weights(rng, directions=2 if bidirectional else 1), bidirectional)


@pytest.mark.parametrize("edit, error, message", [
    (lambda sd: sd.update(weight_ih_l1=sd["weight_ih_l0"]), br.UnsupportedModelError,
     "key 'weight_ih_l1': a multi-layer nn.LSTM"),
    (lambda sd: sd.update(weight_hr_l0=np.zeros((2, N))), br.UnsupportedModelError,
     "key 'weight_hr_l0': an LSTM with projections (proj_size > 0)"),
    (lambda sd: sd.update(running_mean=np.zeros(3)), br.UnsupportedModelError, "key 'running_mean': not a torch.nn.LSTM"),
    (lambda sd: sd.pop("bias_hh_l0"), br.ShapeMismatchError, "missing key(s) ['bias_hh_l0']"),
    (lambda sd: sd.pop("weight_ih_l0"), br.ShapeMismatchError, "missing key 'weight_ih_l0'"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((4 * N, N + 1))), br.ShapeMismatchError,
     "state_dict['weight_hh_l0'] (hidden_size=4, input_size=3): expected shape (16, 4), got (16, 5)"),
    (lambda sd: sd.update(weight_ih_l0=np.zeros((4 * N - 2, D))), br.ShapeMismatchError,
     "state_dict['weight_ih_l0']: expected shape (4*hidden_size, input_size), got (14, 3)"),
    (lambda sd: sd.update(bias_ih_l0=np.zeros(4 * N, dtype=np.int32)), br.DTypeMismatchError,
     "state_dict['bias_ih_l0']: dtype int32; expected float16, float32 or float64"),
])
def test_torch_refusals(rng, edit, error, message: str) -> None:
    sd = _torch_sd(rng)
    edit(sd)
    with pytest.raises(error) as e:
        torch_to_keras(sd)
    assert message in str(e.value)


def test_torch_reverse_direction_must_match_the_forward(rng) -> None:
    sd = _torch_sd(rng, bidirectional=True)
    sd["weight_hh_l0_reverse"] = np.zeros((4 * N, N - 1))
    with pytest.raises(br.ShapeMismatchError, match=r"'weight_hh_l0_reverse'.*expected shape \(16, 4\), got \(16, 3\)"):
        torch_to_keras(sd)


def test_bfloat16_tensor_is_refused_with_the_exact_fix() -> None:
    torch = pytest.importorskip("torch", reason="a torch tensor input (pip install torch)")
    sd = {"weight_ih_l0": torch.zeros(4 * N, D, dtype=torch.bfloat16), "weight_hh_l0": torch.zeros(4 * N, N)}
    with pytest.raises(br.DTypeMismatchError, match=r"weight_ih_l0.*bfloat16.*tensor.float\(\) \(exact\)"):
        torch_to_keras(sd)


def test_onnx_refusals(rng) -> None:
    io = keras_to_onnx(_keras_weights(rng), False)
    with pytest.raises(br.ShapeMismatchError, match=r"R \(num_directions=1, hidden_size=4\): expected shape \(1, 16, 4\), got \(1, 4, 16\)"):
        onnx_to_keras(io["W"], io["R"].transpose(0, 2, 1), io["B"])
    with pytest.raises(br.ShapeMismatchError, match=r"B .*expected shape \(1, 32\), got \(1, 16\)"):
        onnx_to_keras(io["W"], io["R"], io["B"][:, :16])
    with pytest.raises(br.ShapeMismatchError, match=r"W: expected shape \[num_directions \(1 or 2\)"):
        onnx_to_keras(io["W"][0], io["R"], io["B"])
    mixed = _keras_weights(rng, directions=2)
    mixed[3:] = [w.astype(np.float32) for w in mixed[3:]]
    with pytest.raises(br.DTypeMismatchError, match=r"ONNX W holds both directions.*float64, float32"):
        keras_to_onnx(mixed, True)


@pytest.mark.parametrize("edit, error, message", [
    (lambda t: t.pop("input_to_input_weights"), br.UnsupportedModelError, "a CIFG LSTM (no input gate)"),
    (lambda t: t.update(cell_to_forget_weights=np.zeros(N)), br.UnsupportedModelError, "peephole connections"),
    (lambda t: t.update(projection_weights=np.zeros((2, N))), br.UnsupportedModelError, "a projection layer"),
    (lambda t: t.update(forget_layer_norm_coefficients=np.zeros(N)), br.UnsupportedModelError, "layer normalization"),
    (lambda t: t.pop("cell_gate_bias"), br.ShapeMismatchError, "missing ['cell_gate_bias']"),
    (lambda t: t.update(recurrent_to_cell_weights=np.zeros((N, N + 1))), br.ShapeMismatchError,
     "tensor 'recurrent_to_cell_weights' (units=4, input_size=3): expected shape (4, 4), got (4, 5)"),
])
def test_tflite_refusals(rng, edit, error, message: str) -> None:
    tensors = keras_to_tflite_gates(_keras_weights(rng), False)
    edit(tensors)
    with pytest.raises(error) as e:
        tflite_gates_to_keras(tensors)
    assert message in str(e.value)


@pytest.mark.parametrize("weights, bidirectional, message", [
    (lambda r: _keras_weights(r)[:1], False, "weights[1]: expected a 2-D recurrent_kernel"),
    (lambda r: _keras_weights(r), True, "expected 2 direction(s)"),
    (lambda r: [w.T if w.ndim == 2 and w.shape[0] == N else w for w in _keras_weights(r)], False,
     "weights[1] (recurrent_kernel, units=4): expected shape (4, 16), got (16, 4)"),
    (lambda r: [np.zeros((D, 14)), np.zeros((4, 14))], False, "weights[0] (kernel): expected shape (D, 4*units), got (3, 14)"),
    (lambda r: _keras_weights(r)[:2] + [np.zeros(15)], False, "weights[2] (bias, units=4): expected shape (16,), got (15,)"),
])
def test_malformed_keras_weights_are_named(rng, weights, bidirectional: bool, message: str) -> None:
    for convert in (keras_to_torch, keras_to_onnx, keras_to_tflite_gates):
        with pytest.raises(br.ShapeMismatchError) as e:
            convert(weights(rng), bidirectional)
        assert message in str(e.value)


# --- the converted weights compute Keras's outputs in other implementations ------------------------
def _oracle_cases() -> list[matrix.Case]:
    """Plain cells nn.LSTM and the ONNX op compute (tanh / sigmoid, no mask), with and without bias."""
    plain = [c for c in matrix.cases() if c.mask == "none" and c.activation == "tanh" and c.recurrent_activation ==
             "sigmoid" and not (c.stateful or c.go_backwards or c.zero_output_for_mask) and c.return_sequences
             and c.return_state and c.merge_mode == "concat" and c.backward == "default"
             and c.dtype_policy == "float32" and not c.inner_policy]
    nobias = [dataclasses.replace(c, use_bias=False, group="pairwise") for c in plain if not c.initial_state]
    chosen = plain + nobias
    assert {c.family for c in chosen} == {"lstm", "bidi"} and any(c.initial_state for c in chosen)
    return chosen


def _reference(case: matrix.Case) -> tuple[list[np.ndarray], np.ndarray, tuple[np.ndarray, ...]]:
    """(outputs of the NumPy reference, x, initial states (zeros when the case has none))."""
    call = case.calls[0]
    out = list(br.reference_factory(case.spec())(call.x, initial_state=call.initial_state))
    states = call.initial_state or tuple(np.zeros((case.batch, case.units), np.float32) for _ in out[1:])
    return out, call.x, states


def test_torch_lstm_with_converted_weights_computes_keras_outputs() -> None:
    torch = pytest.importorskip("torch", reason="torch.nn.LSTM is the independent oracle here (pip install torch)")
    for case in _oracle_cases():
        bidi = case.family == "bidi"
        expected, x, states = _reference(case)
        lstm = torch.nn.LSTM(case.features, case.units, batch_first=True, bidirectional=bidi, bias=case.use_bias,
                             dtype=torch.float64)
        lstm.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in
                              keras_to_torch(case.weights, bidi).items()})
        h0 = torch.from_numpy(np.stack(states[0::2]).astype(np.float64))
        c0 = torch.from_numpy(np.stack(states[1::2]).astype(np.float64))
        with torch.no_grad():
            seq, (h, c) = lstm(torch.from_numpy(x.astype(np.float64)), (h0, c0))
        got = [seq.numpy()] + [t.numpy() for pair in zip(h, c) for t in pair]
        for name, g, e in zip(case.output_names, got, expected):
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-12, err_msg=f"{case.id} {name}")


def test_onnx_lstm_op_with_converted_weights_computes_keras_outputs() -> None:
    onnx = pytest.importorskip("onnx", reason="ONNX's reference evaluator is the independent oracle here")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    for case in _oracle_cases():
        bidi = case.family == "bidi"
        expected, x, states = _reference(case)
        io = {k: v.astype(np.float64) for k, v in keras_to_onnx(case.weights, bidi).items()}
        dirs = 2 if bidi else 1
        node = helper.make_node("LSTM", ["X", "W", "R", "B" if "B" in io else "", "", "h0", "c0"], ["Y", "Y_h", "Y_c"],
                                hidden_size=case.units, direction="bidirectional" if bidi else "forward")
        feeds = {"X": x.transpose(1, 0, 2).astype(np.float64),
                 "h0": np.stack(states[0::2]).astype(np.float64), "c0": np.stack(states[1::2]).astype(np.float64)}
        graph = helper.make_graph(
            [node], "lstm", [helper.make_tensor_value_info(k, TensorProto.DOUBLE, v.shape) for k, v in feeds.items()],
            [helper.make_tensor_value_info(k, TensorProto.DOUBLE, shape) for k, shape in (
                ("Y", (case.time, dirs, case.batch, case.units)), ("Y_h", (dirs, case.batch, case.units)),
                ("Y_c", (dirs, case.batch, case.units)))],
            [numpy_helper.from_array(v, k) for k, v in io.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
        onnx.checker.check_model(model)
        y, y_h, y_c = ReferenceEvaluator(model).run(None, feeds)
        seq = np.concatenate([y[:, k] for k in range(dirs)], axis=-1).transpose(1, 0, 2)  # (T, dirs, B, n) -> (B, T, dirs*n)
        got = [seq] + [t for k in range(dirs) for t in (y_h[k], y_c[k])]
        for name, g, e in zip(case.output_names, got, expected):
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-12, err_msg=f"{case.id} {name}")
