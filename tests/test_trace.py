"""Gate-level traces (bilstm_ref.diagnose.trace): proven equal to the reference layer's own outputs on
every case of the matrix, the two orders, the masking rule, files and tables."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.errors import BilstmRefError, ConfigError, UnsupportedModelError
from bilstm_ref.fixtures import read_fixture
from bilstm_ref.reference.lstm import LSTM, QUIRKS
from bilstm_ref.conformance.judge import run_impl
from bilstm_ref.diagnose import Trace, trace, trace_case
from bilstm_ref.diagnose.trace import STEP_KEYS, TraceMismatchError, check_trace, save_traces, trace_main

CASES = matrix.cases()
FIXTURES = Path(__file__).parent.parent / "fixtures"


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a), np.signbit(b)))


def _gate_scaled_weights(rng: np.random.Generator, d: int, n: int) -> list[np.ndarray]:
    """Random weights with a different scale and offset per gate block and per unit: a swapped gate
    or unit shows."""
    scale = np.repeat([0.6, 1.4, 1.0, 0.8], n) * rng.uniform(0.7, 1.3, 4 * n)
    return [rng.normal(size=(d, 4 * n)) * scale, rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n),
            rng.normal(scale=0.3, size=4 * n) + np.repeat([0.5, 1.0, 0.0, -0.4], n)]


# --- equality with the layer -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [None, "float32"], ids=["float64", "float32"])
def test_trace_reproduces_the_layer_bit_for_bit_on_every_matrix_case(dtype) -> None:
    """Every matrix case (dropout cases run at inference, where dropout has no effect), every call
    (stateful chunks carried, the call after reset_state): the outputs rebuilt from the traced steps,
    final h and c included, are bit-identical to the reference layer's own call. Exact, not close:
    the trace's loop does the reference's readable scan's operations in the same order, and the
    reference's fast path is proven bit-identical to that scan (tests/test_fast_path.py)."""
    differing, compared = [], 0
    for case in CASES:
        expected = run_impl(case, case.reference(dtype=dtype))
        traces = trace_case(case, all_calls=True, dtype=dtype, check=False)
        assert isinstance(traces, list) and len(traces) == len(case.calls)
        for k, (tr, want) in enumerate(zip(traces, expected, strict=True)):
            assert tr.output_names() == case.output_names
            for name, got in zip(tr.output_names(), tr.outputs(), strict=True):
                compared += 1
                if not _identical(got, want[name]):
                    differing.append((case.id, k, name))
            # the final states also straight from the directions, before any policy cast
            if case.return_state and case.dtype_policy == "float32" and not case.inner_policy and not case.backward_policy:
                hs = [want["h"], want["c"]] if case.family == "lstm" else [want["h1"], want["c1"], want["h2"], want["c2"]]
                mine = [a for d in tr.directions for a in (d.h_final, d.c_final)]
                assert all(_identical(a, b) for a, b in zip(mine, hs, strict=True)), case.id
    assert not differing, differing[:10]
    assert len(CASES) > 800 and compared > 2000


def test_trace_reproduces_the_layer_under_every_quirk() -> None:
    """The backend-compatibility quirks change the masking rule, the output carried over masked steps,
    the zeroing of sequences and stored states: the trace follows the layer under each of them."""
    chosen = [c for c in CASES if c.unroll or c.stateful or (c.mask != "none" and c.group != "core")]
    assert len(chosen) > 100
    for case in chosen:
        for quirk in QUIRKS:
            layer = case.reference(quirks=(quirk,))
            for call in case.calls:
                if call.reset_before:
                    layer.reset_state()
                init = None if call.initial_state is None else list(call.initial_state)
                tr = trace(layer, call.x, call.mask, init)
                tr.check(layer(call.x, mask=call.mask, initial_state=init),
                         states=layer.states if layer.stateful else None)


def test_check_trace_on_random_gate_scaled_weights(rng: np.random.Generator) -> None:
    for backwards in (False, True):
        lstm = LSTM(3, return_sequences=True, return_state=True, go_backwards=backwards)
        lstm.set_weights(_gate_scaled_weights(rng, 2, 3))
        x = rng.normal(size=(2, 7, 2))
        tr = check_trace(lstm, x, mask=rng.random((2, 7)) > 0.3)
        assert tr.direction("forward").go_backwards is backwards


def test_a_broken_trace_is_detected(rng: np.random.Generator) -> None:
    case = matrix.by_id()["bidi-concat-seq-state-mask_holes-init"]
    layer, call = case.reference(), case.calls[0]
    init = list(call.initial_state)
    good = trace(layer, call.x, call.mask, init)
    good.check(layer(call.x, mask=call.mask, initial_state=init))

    # a trace computed with the i and f blocks swapped (a port's classic fault) fails the check
    swapped = []
    for w in case.weights:
        n = w.shape[-1] // 4
        swapped.append(np.concatenate([w[..., n:2 * n], w[..., :n], w[..., 2 * n:]], axis=-1))
    broken_layer = case.reference()
    broken_layer.set_weights(swapped)
    with pytest.raises(TraceMismatchError, match="values differ"):
        trace(broken_layer, call.x, call.mask, init).check(layer(call.x, mask=call.mask, initial_state=init))

    # a copy of the good trace with i and f swapped in its records fails too (its steps no longer add up)
    fw = good.direction("forward")
    p = dict(fw.processing_order, i=fw.processing_order["f"], f=fw.processing_order["i"])
    tampered = dataclasses.replace(good, directions=(dataclasses.replace(fw, processing_order=p), good.directions[1]))
    with pytest.raises(TraceMismatchError, match=r"c_new = f\*c \+ i\*g"):
        tampered.check(layer(call.x, mask=call.mask, initial_state=init))

    # one ulp off in one output value is a difference
    out = list(layer(call.x, mask=call.mask, initial_state=init))
    out[0] = out[0].copy()
    out[0][1, 2, 3] = np.nextafter(out[0][1, 2, 3], np.inf)
    assert good.differences(out) and "1 of" in good.differences(out)[0]
    with pytest.raises(TraceMismatchError):
        good.check(out)
    assert good.differences(out, rtol=1e-12) == []


# --- the two orders --------------------------------------------------------------------------------
def test_go_backwards_lstm_orders() -> None:
    case = matrix.by_id()["lstm-seq-state-backwards-mask_right"]
    layer, call = case.reference(), case.calls[0]
    tr = trace(layer, call.x, call.mask)
    d = tr.direction("forward")  # a plain LSTM has one direction, called forward, even reading backwards
    T = call.x.shape[1]
    assert [dd.name for dd in tr.directions] == ["forward"] and d.go_backwards
    assert d.order.tolist() == list(range(T - 1, -1, -1))
    for key in STEP_KEYS:
        assert np.array_equal(d.input_order[key], d.processing_order[key][:, ::-1]), key
        for k in range(T):
            assert np.array_equal(d.processing_order[key][:, k], d.input_order[key][:, d.order[k]])
    assert np.array_equal(d.input_order["valid"], call.mask)  # the mask as given, in input order
    seq, h, c = layer(call.x, mask=call.mask)
    assert _identical(seq, d.processing_order["y"])  # a plain LSTM returns processing order
    # processing step k read x[:, T-1-k]: the same steps as a forward LSTM on the reversed input
    fwd = LSTM(**case.lstm_kwargs() | {"go_backwards": False})
    fwd.set_weights(case.weights)
    ref = trace(fwd, call.x[:, ::-1], call.mask[:, ::-1]).direction("forward")
    for key in STEP_KEYS:
        assert np.array_equal(ref.processing_order[key], d.processing_order[key]), key
    assert d.step_of(T - 1) == 0 and d.step_of(0) == T - 1


def test_bidirectional_backward_direction_orders() -> None:
    case = matrix.by_id()["bidi-none-seq-state-mask_none"]
    layer, call = case.reference(), case.calls[0]
    tr = trace(layer, call.x)
    fw, bw = tr.direction("forward"), tr.direction("backward")
    T = call.x.shape[1]
    assert fw.order.tolist() == list(range(T)) and bw.order.tolist() == list(range(T - 1, -1, -1))
    y_f, y_b, h_f, c_f, h_b, c_b = layer(call.x)
    assert _identical(y_f, fw.input_order["y"]) and _identical(y_f, fw.processing_order["y"])
    # Bidirectional re-aligns the backward sequence to input time: y_b[:, t] is the state after x[T-1..t]
    assert _identical(y_b, bw.input_order["y"])
    assert _identical(h_b, bw.input_order["h"][:, 0]) and _identical(h_b, bw.processing_order["h"][:, -1])
    assert _identical(c_b, bw.input_order["c"][:, 0])
    assert _identical(h_f, fw.input_order["h"][:, -1])
    with pytest.raises(ConfigError, match="no direction"):
        tr.direction("sideways")


# --- the masking rule ------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", [
    "lstm-seq-state-backwards-zofm-mask_holes", "lstm-seq-state-mask_fullrow", "bidi-sum-seq-state-mask_left-init",
    "bidi-concat-last-state-mask_fullrow-stateful",
])
def test_masked_steps_carry_the_state(case_id: str) -> None:
    case = matrix.by_id()[case_id]
    tr = trace_case(case)
    assert isinstance(tr, Trace)
    assert any(not v for d in tr.directions for v in d.processing_order["valid"].flat)
    for d in tr.directions:
        p = d.processing_order
        assert np.array_equal(d.input_order["valid"], case.calls[0].mask)
        h_prev, c_prev, y_prev = d.h0, d.c0, np.zeros_like(d.h0)
        for k in range(tr.time):
            for b in range(tr.batch):
                if p["valid"][b, k]:
                    assert np.array_equal(p["h"][b, k], p["h_new"][b, k]) and np.array_equal(p["c"][b, k], p["c_new"][b, k])
                    assert np.array_equal(p["y"][b, k], p["h_new"][b, k])
                else:  # frozen state; the output is zero or the previous output
                    assert np.array_equal(p["h"][b, k], h_prev[b]) and np.array_equal(p["c"][b, k], c_prev[b])
                    want = np.zeros_like(y_prev[b]) if d.zero_output_for_mask else y_prev[b]
                    assert np.array_equal(p["y"][b, k], want)
            h_prev, c_prev, y_prev = p["h"][:, k], p["c"][:, k], p["y"][:, k]
        assert np.array_equal(d.h_final, p["h"][:, -1]) and np.array_equal(d.y_last, p["y"][:, -1])


def test_sigmoid_gates_lie_in_the_open_unit_interval() -> None:
    checked = 0
    for case in CASES[::7]:
        if case.recurrent_activation != "sigmoid" or case.backward != "default":
            continue
        for d in trace_case(case).directions:
            for g in "ifo":
                a = d.processing_order[g]
                assert ((a > 0) & (a < 1)).all(), (case.id, g)
                checked += 1
            if d.activation == "tanh":
                assert np.array_equal(d.processing_order["g"], np.tanh(d.processing_order["z_c"]))
            n = d.units
            assert np.array_equal(d.processing_order["z"][..., n:2 * n], d.processing_order["z_f"])
    assert checked > 100


# --- states ----------------------------------------------------------------------------------------
def test_tracing_does_not_advance_a_stateful_layer(rng: np.random.Generator) -> None:
    case = matrix.by_id()["lstm-seq-state-mask_none-stateful"]
    layer = case.reference()
    layer(case.calls[0].x)
    before = layer.states
    tr = trace(layer, case.calls[1].x)
    after = layer.states
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    d = tr.direction("forward")
    assert np.array_equal(d.h0, before[0]) and np.array_equal(d.c0, before[1])  # started from the stored states
    out = layer(case.calls[1].x)
    tr.check(out, states=layer.states)


def test_training_mode_dropout_cannot_be_traced() -> None:
    case = next(c for c in CASES if c.dropout)
    call = case.calls[0]
    with pytest.raises(UnsupportedModelError, match="training-mode dropout"):
        trace(case.reference(), call.x, call.mask, training=True)
    trace(case.reference(), call.x, call.mask, None if call.initial_state is None else list(call.initial_state),
          training=False)


def test_bad_targets_and_inputs_raise_bilstm_ref_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        trace_case("bidi-concat-seq-state-mask_rigth")
    with pytest.raises(ConfigError):
        trace(object(), np.zeros((1, 2, 3)))  # type: ignore[arg-type]
    layer = matrix.by_id()["bidi-concat-seq-mask_none"].reference()
    with pytest.raises(BilstmRefError, match="4 states"):
        trace(layer, np.zeros((3, 5, 3)), initial_state=[np.zeros((3, 4))] * 2)
    with pytest.raises(BilstmRefError, match="features"):
        trace(layer, np.zeros((3, 5, 2)))


def test_a_spec_is_traced_like_its_layer() -> None:
    case = next(c for c in CASES if c.backward == "custom" and c.mask != "none")
    call = case.calls[0]
    init = None if call.initial_state is None else list(call.initial_state)
    tr = check_trace(case.spec(), call.x, call.mask, init)
    fw, bw = tr.directions
    assert bw.units == fw.units + 1 and bw.activation != fw.activation
    assert tr.dtype == "float64"
    assert check_trace(case.spec(), call.x, call.mask, init, dtype="float32").dtype == "float32"


# --- files and text --------------------------------------------------------------------------------
def test_npz_round_trip(tmp_path: Path) -> None:
    tr = trace_case("bidi-concat-seq-state-mask_right-init")
    assert isinstance(tr, Trace)
    path = tmp_path / "t.npz"
    path.write_bytes(b"old")  # replaced atomically
    assert tr.to_npz(path) == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        assert {"forward/input_order/i", "backward/processing_order/i", "backward/order", "meta"} <= keys
        assert np.array_equal(z["backward/input_order/h"], tr.direction("backward").input_order["h"])
        assert json.loads(str(z["meta"]))["class_name"] == "Bidirectional"
    back = Trace.from_npz(path)
    assert back.output_names() == tr.output_names() and back.label == tr.label
    for a, b in zip(back.outputs(), tr.outputs(), strict=True):
        assert _identical(a, b)
    for d, e in zip(back.directions, tr.directions, strict=True):
        assert all(np.array_equal(d.input_order[k], e.input_order[k]) for k in STEP_KEYS)
        assert d.order.tolist() == e.order.tolist()

    traces = trace_case("lstm-last-state-mask_holes-stateful", all_calls=True)
    assert isinstance(traces, list) and len(traces) == matrix.STATEFUL_CHUNKS + 1
    save_traces(tmp_path / "all.npz", traces)
    again = Trace.from_npz(tmp_path / "all.npz", prefix="call2/")
    assert again.states_after() is not None
    assert all(_identical(a, b) for a, b in zip(again.outputs(), traces[1].outputs()))
    with pytest.raises(ConfigError, match="not a trace file"):
        Trace.from_npz(tmp_path / "all.npz", prefix="call9/")


def test_table() -> None:
    tr = trace_case("lstm-seq-state-backwards-mask_right")
    assert isinstance(tr, Trace)
    text = tr.table(max_rows=None)
    lines = text.splitlines()
    assert lines[1].split() == ["direction", "b", "k", "t", "valid", "unit", "i", "f", "g", "o", "c", "h"]
    assert len(lines) == 3 + tr.batch * tr.time * 4
    assert len({len(line) for line in lines[1:]}) == 1  # fixed width
    first = lines[3].split()
    assert first[:6] == ["forward", "0", "0", "4", "yes", "0"]  # step 0 read the last input time step
    d = tr.direction("forward")
    assert float(first[6]) == pytest.approx(d.processing_order["i"][0, 0, 0], rel=1e-3)
    assert first[6] == f"{d.processing_order['i'][0, 0, 0]:.4g}"
    masked = [line for line in lines if line.startswith("forward     1    0")]
    assert masked and masked[0].split()[4] == "no"  # sample 1 is right-padded: t=4 did not count

    short = tr.table(max_rows=2, sample=0, units=[1])
    assert short.count("\n") == 2 + 2 + 1 and "..." in short
    around = tr.table(max_rows=1, around=0, sample=0, units=[0]).splitlines()
    assert around[4].split()[2:4] == ["4", "0"]  # input t=0 is processing step 4


def test_trace_of_a_fixture() -> None:
    path = FIXTURES / "bidi-concat-seq-state-mask_left-stateful.json"
    fx = read_fixture(path)
    traces = trace_case(str(path), all_calls=True)  # checked against the reference layer, exactly
    assert isinstance(traces, list) and len(traces) == len(fx.calls)
    assert "fixture" in traces[0].label
    for tr, call in zip(traces, fx.calls, strict=True):  # and close to Keras's recorded answers
        for name, got in zip(tr.output_names(), tr.outputs(), strict=True):
            np.testing.assert_allclose(got, call.expected[name], atol=fx.tolerance.atol, rtol=fx.tolerance.rtol)
    assert isinstance(trace_case(fx), Trace)


def test_trace_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = trace_main("lstm-seq-state-backwards-mask_right", None)
    assert code == 0 and "direction" in text and "bit-identical" in text and "wrote" not in text

    out = tmp_path / "small.npz"
    code, text = trace_main("lstm-seq-state-backwards-mask_right", str(out))
    assert code == 0 and out.exists() and f"wrote {out}" in text

    monkeypatch.chdir(tmp_path)
    big = next(c for c in CASES if c.time == matrix.LONG_T and c.family == "bidi" and not c.stateful)
    code, text = trace_main(big.id, None)
    assert code == 0 and "valid" in text and "steps" in text and "wrote trace-" in text
    written = list(tmp_path.glob("trace-*.npz"))
    assert len(written) == 1 and Trace.from_npz(written[0]).time == matrix.LONG_T

    code, text = trace_main("no-such-case", None)
    assert code == 2 and text.startswith("error:")


def test_importing_diagnose_does_not_import_keras() -> None:
    code = "import sys, bilstm_ref.diagnose; print([m for m in ('keras', 'tensorflow') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.keras
def test_fixtures_generate_trace_writes_each_fixtures_traces_beside_them(tmp_path: Path) -> None:
    pytest.importorskip("keras", reason="recording fixtures needs live Keras (pip install 'bilstm_ref[keras]')")
    from bilstm_ref.cli import main
    from bilstm_ref.fixtures import read_fixture

    out = tmp_path / "fx"
    case = "bidi-concat-seq-state-mask_left-init-stateful"
    assert main(["fixtures", "generate", "--out", str(out), "-k", case, "--trace", "--jobs", "1"]) == 0
    assert main(["fixtures", "verify", str(out)]) == 0  # the traces folder is not a fixture
    fixture = read_fixture(out / f"{case}.json")
    with np.load(out / "traces" / f"{case}.npz") as z:
        calls = sorted({k.split("/")[0] for k in z.files if k.startswith("call")})
        assert len(calls) == len(fixture.calls)
        first = z["call1/forward/processing_order/h"]
    assert first.shape[:2] == fixture.calls[0].x.shape[:2]
