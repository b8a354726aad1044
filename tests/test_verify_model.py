"""``verify_model`` / ``bilstm-ref verify`` on saved models, against the Keras that runs them.

The oracle is live Keras: verify compares the reference with what Keras computes inside the
model. What verify claims about the data (which samples are padded, which layer feeds which) is
checked against the data itself, and a broken implementation must fail, naming layer, output
and place.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.cli import main

pytestmark = pytest.mark.keras

def _padded_rows(tokens: np.ndarray) -> int:
    return int(np.count_nonzero((tokens == 0).any(axis=1)))


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_text_model_passes_isolated_and_chained(vzoo: Path, fmt: str) -> None:
    data = vzoo / "text.data.npz"
    result = br.verify_model(str(vzoo / f"text.{fmt}"), inputs=str(data), batch_size=16)
    assert result.ok, result.describe()
    by = {v.path: v for v in result.layers}
    assert list(by) == ["bilstm1", "bilstm2"]
    tokens = np.load(data)["tokens"]
    for v in by.values():
        assert v.status == "pass"
        assert v.samples_masked == _padded_rows(tokens)  # the mask Keras passes is the padding of the data
        assert v.mask_source == "mask from emb: Embedding(mask_zero=True)"
        assert [o.name for o in v.isolated] == ["output"]
        assert all(o.count > 0 and o.tol_used <= 1.0 for o in v.isolated)
    assert by["bilstm1"].chained is None  # nothing recurrent feeds it: chained equals isolated
    assert by["bilstm2"].upstream == "bilstm1" and by["bilstm2"].via == ("drop",)
    assert by["bilstm2"].chained is not None and by["bilstm2"].chained[0].ok
    assert by["bilstm1"].isolated[0].error_by_t is not None and len(by["bilstm1"].isolated[0].error_by_t) == 11
    assert result.inputs["samples"] == 40 and len(result.inputs["sha256"]) == 64


def test_cli_verify_writes_json_and_report(vzoo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the report's plots need matplotlib (the 'report' extra)")
    out_json, report = tmp_path / "run.json", tmp_path / "report"
    rc = main(["verify", str(vzoo / "text.keras"), "--inputs", str(vzoo / "text.data.npz"), "--layer", "bilstm1",
               "--layer", "bilstm2", "--json", str(out_json), "--report", str(report), "--batch-size", "7"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "2 of 2 layer(s) pass" in text and "mask from emb: Embedding(mask_zero=True)" in text
    data = json.loads(out_json.read_text())
    assert data["kind"] == "verify" and data["ok"] is True and data["batch_size"] == 7
    assert [v["path"] for v in data["layers"]] == ["bilstm1", "bilstm2"]  # a repeated --layer keeps every layer
    for name in ("verify.md", "verify.html", "verify.json"):
        assert (report / name).stat().st_size > 0
    # error against time step: bilstm1 returns sequences; bilstm2's outputs have no time axis
    assert [p.name for p in report.glob("verify_*.png")] == ["verify_0_bilstm1.png"]
    assert "id='verdict'>PASS" in (report / "verify.html").read_text()
    # the report command renders a saved run the same way
    again = tmp_path / "again"
    assert main(["report", "--verify", str(out_json), "--out", str(again), "--no-plots"]) == 0
    assert (again / "verify.md").read_text().splitlines()[0] == "# bilstm_ref verify: PASS"


def test_broken_impl_fails_naming_layer_output_and_place(vzoo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "maskless_port.py").write_text(
        "import bilstm_ref as br\n"
        "def factory(spec):\n"
        "    ref = br.reference_factory(spec)\n"
        "    return lambda x, mask=None, initial_state=None: ref(x, initial_state=initial_state)\n")
    monkeypatch.chdir(tmp_path)
    rc = main(["verify", str(vzoo / "text.keras"), "--inputs", str(vzoo / "text.data.npz"),
               "--impl", "maskless_port:factory"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "bilstm1: fail" in text and "bilstm2: fail" in text
    assert "isolated output  OFF max|diff|" in text and "at sample" in text
    assert "check that the implementation receives and applies the mask" in text
    assert "0 of 2 layer(s) pass: FAIL" in text


def test_wrong_gate_order_fails_everywhere(vzoo: Path) -> None:
    import dataclasses

    def swapped(spec: br.LayerSpec):  # i and f gate columns swapped in every kernel and bias
        def swap(w: np.ndarray) -> np.ndarray:
            n = w.shape[-1] // 4
            return np.concatenate([w[..., n:2 * n], w[..., :n], w[..., 2 * n:]], axis=-1)

        return br.reference_factory(dataclasses.replace(spec, weights=tuple(swap(w) for w in spec.weights)))

    result = br.verify_model(str(vzoo / "text.keras"), inputs=str(vzoo / "text.data.npz"), impl=swapped)
    assert not result.ok
    assert all(v.status == "fail" for v in result.layers)
    worst = result.layers[0].isolated[0]
    assert worst.where is not None and set(worst.where) == {"sample", "t", "unit"}


def test_masking_model_all_five_outputs_and_generated_inputs(zoo) -> None:
    folder = zoo("keras3")
    result = br.verify_model(str(folder / "masking_sum_state.keras"), samples=13, time_steps=6)
    assert result.ok, result.describe()
    (v,) = result.layers
    assert [o.name for o in v.isolated] == ["output", "h1", "c1", "h2", "c2"]
    assert v.mask_source.startswith("mask from") and "Masking(mask_value=0.0)" in v.mask_source
    # generated inputs cycle through padding patterns: right, left, none, full, short right, short left
    # every sample but the unpadded ones (the third pattern: samples 2 and 8) arrives masked
    assert v.samples_masked == sum(1 for i in range(13) if i % 6 != 2)
    assert result.inputs["generated"] is True


def test_nested_model_and_weights_only_file(zoo) -> None:
    folder = zoo("keras3")
    nested = br.verify_model(str(folder / "nested.keras"), time_steps=6)
    assert nested.ok, nested.describe()
    assert [v.path for v in nested.layers] == ["sub/inner_lstm", "top_lstm"]
    weights_only = br.verify_model(str(folder / "bidi_concat_seq.weights.h5"), config=str(folder / "bidi_concat_seq.json"),
                                   time_steps=6)
    assert weights_only.ok, weights_only.describe()


def test_keras2_h5_runs_on_tf_keras_under_keras2_semantics(zoo) -> None:
    folder = zoo("tf_keras")
    result = br.verify_model(str(folder / "embedding_stacked.h5"), time_steps=6)
    assert result.ok, result.describe()
    assert result.semantics == "keras2" and result.versions.get("keras_package") == "tf_keras"
    assert [v.path for v in result.layers] == ["bi1", "bi2"]  # hard_sigmoid under its Keras 2 formula
    assert result.layers[1].upstream == "bi1" and result.layers[1].chained is not None
    assert all(v.samples_masked > 0 for v in result.layers)


def test_other_recurrent_layers_are_listed_not_verified(vzoo: Path) -> None:
    result = br.verify_model(str(vzoo / "mixed.keras"))
    assert result.ok, result.describe()
    by = {v.path: v for v in result.layers}
    assert by["lstm"].status == "pass"
    assert by["gru"].status == "not-verified" and "not GRU" in by["gru"].reason
    with pytest.raises(br.UnsupportedModelError, match="'gru' is a GRU"):
        br.verify_model(str(vzoo / "mixed.keras"), layers=["gru"])


def test_two_input_model_by_name_and_by_position(vzoo: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 30, size=(9, 11)).astype("int64")
    signal = rng.normal(size=(9, 11, 2)).astype("float32")
    np.savez(tmp_path / "named.npz", signal=signal, ids=ids)
    np.savez(tmp_path / "positional.npz", ids, signal)
    for name in ("named.npz", "positional.npz"):
        result = br.verify_model(str(vzoo / "two_inputs.keras"), inputs=str(tmp_path / name), batch_size=4)
        assert result.ok, result.describe()
        assert [v.path for v in result.layers] == ["lstm_ids", "bi_signal"]


def test_initial_states_wired_in_the_model_are_captured(vzoo: Path) -> None:
    result = br.verify_model(str(vzoo / "enc_dec.keras"), samples=5, batch_size=2)
    assert result.ok, result.describe()
    by = {v.path: v for v in result.layers}
    assert [o.name for o in by["encoder"].isolated] == ["output", "h", "c"]
    assert by["decoder"].initial_states and not by["encoder"].initial_states
    assert by["decoder"].upstream is None  # fed by an input, not by the encoder's output: no chain


@pytest.mark.parametrize("case", ["no_lstm", "unknown_layer", "wrong_names", "out_of_vocab", "float_tokens",
                                  "wrong_time", "empty", "npy_for_two_inputs", "lambda"])
def test_bad_requests_are_one_line_errors(vzoo: Path, zoo, tmp_path: Path, case: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text_model = str(vzoo / "text.keras")
    tokens = np.load(vzoo / "text.data.npz")["tokens"]
    args: list[str]
    if case == "no_lstm":
        args, expect = [str(vzoo / "dense_only.keras")], "no LSTM or Bidirectional(LSTM) layer to verify; the model's layers: ['features (InputLayer)', 'd0 (Dense)', 'd1 (Dense)']"
    elif case == "unknown_layer":
        args, expect = [text_model, "--layer", "bilstm3"], "no LSTM / Bidirectional(LSTM) layer named 'bilstm3'; candidates: ['bilstm1', 'bilstm2']"
    elif case == "wrong_names":
        np.savez(tmp_path / "d.npz", words=tokens)
        args, expect = [text_model, "--inputs", str(tmp_path / "d.npz")], "expected arrays named after the model's 1 input(s) ['tokens'] (or ['arr_0'] by position), found ['words']"
    elif case == "out_of_vocab":
        bad = tokens.copy()
        bad[4, 2] = 30
        np.savez(tmp_path / "d.npz", tokens=bad)
        args, expect = [text_model, "--inputs", str(tmp_path / "d.npz")], "token id 30 at sample 4, position (2,) is outside the vocabulary of the Embedding fed by input 'tokens': expected 0 <= id < 30"
    elif case == "float_tokens":
        np.save(tmp_path / "d.npy", tokens.astype("float32"))
        args, expect = [text_model, "--inputs", str(tmp_path / "d.npy")], "model input 'tokens' takes integer token ids (int32), got float32"
    elif case == "wrong_time":
        folder = zoo("keras3")
        np.save(tmp_path / "d.npy", np.zeros((2, 5, 3), "float32"))
        args = [str(folder / "masking_sum_state.keras"), "--inputs", str(tmp_path / "d.npy")]
        expect = "axis 1: expected 6 for model input"
    elif case == "empty":
        np.savez(tmp_path / "d.npz", tokens=tokens[:0])
        args, expect = [text_model, "--inputs", str(tmp_path / "d.npz")], "no samples (the arrays have 0 rows)"
    elif case == "npy_for_two_inputs":
        np.save(tmp_path / "d.npy", tokens)
        args, expect = [str(vzoo / "two_inputs.keras"), "--inputs", str(tmp_path / "d.npy")], "a .npy holds one array, but the model has 2 inputs ['ids', 'signal']"
    else:
        folder = zoo("keras3")
        args, expect = [str(folder / "with_lambda.keras")], "cannot load the model"
    rc = main(["verify", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and expect in err
    assert len(err.strip().splitlines()) == 1, err


def test_real_data_fixtures_for_two_layers_verify_without_keras(vzoo: Path, tmp_path: Path) -> None:
    import hashlib
    import subprocess
    import sys

    from bilstm_ref.fixtures import read_fixture, scan

    out = tmp_path / "fx"
    data = vzoo / "text.data.npz"
    assert main(["fixtures", "generate", "--model", str(vzoo / "text.keras"), "--inputs", str(data),
                 "--layer", "bilstm1", "--layer", "bilstm2", "--samples", "20", "--out", str(out)]) == 0
    manifests = scan(out).manifests
    assert sorted(p.name for p in manifests) == ["text.keras-bilstm1-data.json", "text.keras-bilstm2-data.json"]
    tokens = np.load(data)["tokens"][:20]
    for path in manifests:
        f = read_fixture(path)
        (call,) = f.calls
        np.testing.assert_array_equal(call.mask, tokens != 0)  # the data's own padding, as Keras passed it
        assert call.x.shape[:2] == (20, 11) and f.flags["real_data"] is True
        assert f.provenance["inputs_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
        assert f.provenance["inputs"] == "text.data.npz"  # a file name, never a path of the recording machine
    code = ("import sys; from bilstm_ref.cli import main; rc = main(['fixtures', 'verify', sys.argv[1]]); "
            "bad = [m for m in ('keras', 'tensorflow', 'tf_keras') if m in sys.modules]; "
            "sys.exit(3 if bad else rc)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fixtures checked: 2  passed: 2" in done.stdout
    assert main(["fixtures", "verify", str(out), "--impl", "broken_impls:swapped_gates"]) == 1


def test_generate_without_layer_records_every_layer_and_a_failed_run_leaves_nothing(vzoo: Path, tmp_path: Path,
                                                                                   capsys) -> None:
    from bilstm_ref.fixtures import scan

    every = tmp_path / "every"
    assert main(["fixtures", "generate", "--model", str(vzoo / "text.keras"), "--cases", "1", "--out", str(every)]) == 0
    assert sorted(p.name for p in scan(every).manifests) == ["text.keras-bilstm1-000.json", "text.keras-bilstm2-000.json"]
    (tmp_path / "bad.npz").write_bytes(b"PK\x05\x06" + bytes(18))
    failed = tmp_path / "failed"
    assert main(["fixtures", "generate", "--model", str(vzoo / "text.keras"), "--inputs", str(tmp_path / "bad.npz"),
                 "--out", str(failed)]) == 2
    assert "empty .npz" in capsys.readouterr().err
    assert not failed.exists()


def test_pytest_plugin_records_real_data_once_then_verifies(vzoo: Path, pytester: pytest.Pytester) -> None:
    import shutil

    from bilstm_ref.fixtures import scan

    shutil.copy(vzoo / "text.keras", pytester.path / "text.keras")
    shutil.copy(vzoo / "text.data.npz", pytester.path / "text.data.npz")
    pytester.makepyfile(test_text="""
        def test_text(bilstm_ref_regression):
            bilstm_ref_regression.check("text.keras", inputs="text.data.npz", layers=["bilstm1", "bilstm2"], samples=8)

        def test_unknown_layer(bilstm_ref_regression):
            bilstm_ref_regression.check("text.keras", inputs="text.data.npz", layers=["nope"])
        """)
    first = pytester.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines(["*recorded 2 Keras answers for text.keras*review them*",
                                "*bilstm_ref: *no LSTM / Bidirectional(LSTM) layer named 'nope'*"])
    assert "Traceback" not in first.stdout.str()
    assert len(scan(pytester.path / "test_text" / "test_text").manifests) == 2
    second = pytester.runpytest("-p", "no:cacheprovider", "test_text.py::test_text")
    second.assert_outcomes(passed=1)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_inspect_says_where_each_layer_gets_its_mask(vzoo: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(vzoo / f"text.{fmt}")]) == 0
    out = capsys.readouterr().out
    assert out.count("mask from emb: Embedding(mask_zero=True)") == 2  # bilstm1, and bilstm2 through Dropout
    assert main(["inspect", str(vzoo / "mixed.keras"), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
    assert rows["lstm"]["mask"] == "mask from masking: Masking(mask_value=0.0)"
    assert rows["gru"]["mask"] == "mask from masking: Masking(mask_value=0.0)"


def test_inspect_json_names_the_config_file_plainly(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    folder = zoo("keras3")
    cfg = folder / "bidi_concat_seq.json"
    assert main(["inspect", str(folder / "bidi_concat_seq.weights.h5"), "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"] == str(cfg)  # no quotes inside the value
