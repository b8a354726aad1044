"""Every file format, written in the test by live Keras 3 and tf_keras (tests/model_zoo.py, in a
subprocess), loaded without Keras and compared with what Keras computed.

Formats: Keras 3 ``.keras``, ``.weights.h5`` + model JSON or + ``.keras``, legacy ``.h5``;
tf_keras legacy ``.h5``, weights-only ``.h5`` + JSON, ``.keras``, ``.weights.h5`` + JSON.
Models: merge modes concat/sum/mul/ave/None, Masking and Embedding(mask_zero) masks,
return_state, a custom backward layer (relu, hard_sigmoid), stacked Bidirectional layers, a
nested Sequential, a plain LSTM with go_backwards, a Lambda that must never run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bilstm_ref as br
from bilstm_ref.conformance.compare import TOLERANCES, compare

FLAVOURS = {"keras3": "keras", "tf_keras": "tf_keras"}  # the flavours the zoo fixture (conftest) writes

STEMS = ("bidi_concat_seq", "masking_sum_state", "embedding_stacked", "custom_backward_none", "nested", "with_lambda")

pytestmark = pytest.mark.keras


def _check_model(folder: Path, stem: str, semantics: str = "auto") -> list[str]:
    """Load every file of ``stem`` and compare every checked layer; returns the failures."""
    manifest = json.loads((folder / "manifest.json").read_text())
    info = manifest["models"][stem]
    arrays = np.load(folder / f"{stem}.expected.npz")
    failures = []
    checked = 0
    for path, config in info["files"]:
        for layer, meta in info["layers"].items():
            key = meta["key"]
            spec = br.load_spec(folder / path, layer=layer, config=None if config is None else folder / config,
                                semantics=semantics)
            ref = br.build(spec)
            mask = arrays[f"{key}__mask"] if meta["masked"] else None
            out = ref(arrays[f"{key}__input"], mask=mask)
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            if len(outs) != meta["n_outputs"]:
                failures.append(f"{path} {layer}: {len(outs)} outputs, Keras returned {meta['n_outputs']}")
                continue
            for j, got in enumerate(outs):
                result = compare(f"out{j}", arrays[f"{key}__out{j}"], got, TOLERANCES["float32"])
                checked += 1
                if not result.ok:
                    failures.append(f"{path} (config {config}) {layer}: {result.describe()}")
    assert checked > 0
    return failures


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_every_format_reproduces_keras(zoo, flavour: str, stem: str) -> None:
    folder = zoo(flavour)
    failures = _check_model(folder, stem)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("flavour, profile", [("keras3", "keras3"), ("tf_keras", "keras2")])
def test_semantics_come_from_the_recorded_keras_version(zoo, flavour: str, profile: str) -> None:
    folder = zoo(flavour)
    version = json.loads((folder / "manifest.json").read_text())["keras_version"]
    for name in ("embedding_stacked.keras", "embedding_stacked.h5"):
        spec = br.load_spec(folder / name, layer="bi1")
        assert spec.provenance["semantics"] == profile, name
        assert spec.provenance["keras_version"] == version
        assert spec.provenance["semantics_reason"] == f"written by Keras {version}"


@pytest.mark.parametrize("flavour, wrong", [("keras3", "keras2"), ("tf_keras", "keras3")])
def test_the_other_profile_breaks_hard_sigmoid_layers(zoo, flavour: str, wrong: str) -> None:
    """bi1 uses hard_sigmoid: under the other profile it must fail, or the profiles test nothing."""
    failures = _check_model(zoo(flavour), "embedding_stacked", semantics=wrong)
    assert any(" bi1:" in f for f in failures)
    assert not any(" bi2:" in f for f in failures)  # sigmoid: the same in both


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_lambda_is_listed_never_run_and_refused(zoo, flavour: str) -> None:
    folder = zoo(flavour)
    marker = folder / "lambda-ran"
    assert marker.exists()  # Keras ran the lambda while building the model: the payload is live
    marker.unlink()
    try:
        for name in ("with_lambda.h5", "with_lambda.keras"):
            if not (folder / name).exists():
                continue
            ref = br.load(folder / name, layer="bidirectional_after_lambda")
            ref(np.zeros((1, 6, 3)))
            with pytest.raises(br.UnsafeModelError, match=r"Lambda layers carry code"):
                br.load_spec(folder / name, layer="code")
            rows = {r["name"]: r for r in br.inspect_file(folder / name)["layers"]}
            assert rows["code"]["supported"] is False and "carry code" in rows["code"]["reason"]
            assert not marker.exists(), f"loading {name} ran the Lambda"
    finally:
        marker.touch()


def test_nested_layers_are_addressed_by_path(zoo) -> None:
    folder = zoo("keras3")
    a = br.load_spec(folder / "nested.keras", layer="sub/inner_lstm")
    b = br.load_spec(folder / "nested.keras", layer="inner_lstm")
    assert a.provenance["layer"] == b.provenance["layer"] == "sub/inner_lstm"
    assert a.provenance["weight_paths"][0].startswith("/layers/sequential/layers/lstm/cell/vars/")
    with pytest.raises(br.UnsupportedModelError, match=r"choose one with layer=: \['sub/inner_lstm', 'top_lstm'\]"):
        br.load_spec(folder / "nested.keras")


def test_inspect_command_on_a_keras3_archive(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    from bilstm_ref.cli import main

    folder = zoo("keras3")
    assert main(["inspect", str(folder / "masking_sum_state.keras")]) == 0
    text = capsys.readouterr().out
    assert "semantics: keras3 (written by Keras 3." in text
    assert "ok bi_state" in text and "-- not_equal" in text and "op node" in text
    assert "/layers/bidirectional/forward_layer/cell/vars/0  (3, 12)  float32" in text
    assert main(["inspect", "--json", str(folder / "embedding_stacked.keras")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert any("bi1: uses hard_sigmoid" in w and "Keras 2 computes differently" in w for w in info["warnings"])


def test_loading_never_imports_keras(zoo) -> None:
    """In a fresh process that refuses to import keras, tensorflow or tf_keras, every file of both
    flavours and the committed Keras 2 files load, run and match."""
    folders = [str(zoo(f)) for f in sorted(FLAVOURS)]
    script = textwrap.dedent(
        """
        import importlib.abc, json, sys
        BLOCKED = ("keras", "tensorflow", "tf_keras")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"bilstm_ref tried to import {name}")
                return None

        sys.meta_path.insert(0, Block())
        sys.path.insert(0, sys.argv[1])
        import test_loaders_keras as t
        from pathlib import Path
        failures = []
        for folder in sys.argv[2:]:
            for stem in t.STEMS:
                failures += t._check_model(Path(folder), stem)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({"failures": failures, "leaked": leaked}))
        """
    )
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), *folders],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"failures": [], "leaked": []}


@pytest.mark.parametrize("custom_backward", [False, True])
def test_from_keras_accepts_live_tf_keras_layers(custom_backward: bool) -> None:
    tfk = pytest.importorskip("tf_keras")
    rng = np.random.default_rng(7)
    backward = None
    if custom_backward:
        backward = tfk.layers.LSTM(3, return_sequences=True, return_state=True, go_backwards=True, activation="relu")
    layer = tfk.layers.Bidirectional(
        tfk.layers.LSTM(3, return_sequences=True, return_state=True, recurrent_activation="hard_sigmoid"),
        backward_layer=backward, merge_mode="sum",
    )
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], bool)
    layer(x, mask=mask)
    layer.set_weights([(rng.normal(size=w.shape) * 1.5).astype("float32") for w in layer.get_weights()])
    spec = br.spec_from_keras(layer)
    assert spec.provenance["semantics"] == "keras2" and spec.provenance["keras_version"] == tfk.__version__
    ref = br.build(spec)
    for name, want, got in zip(("output", "h1", "c1", "h2", "c2"), layer(x, mask=mask), ref(x, mask=mask), strict=True):
        result = compare(name, np.asarray(want), got, TOLERANCES["float32"])
        assert result.ok, result.describe()


def test_from_keras_copies_tf_keras_stateful_states() -> None:
    tfk = pytest.importorskip("tf_keras")
    rng = np.random.default_rng(8)
    layer = tfk.layers.Bidirectional(tfk.layers.LSTM(3, stateful=True, return_sequences=True))
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    layer(x)  # builds and moves the states away from zero
    ref = br.from_keras(layer)
    assert ref.forward_layer.states is not None and np.abs(ref.forward_layer.states[0]).max() > 0
    compare_result = compare("output", np.asarray(layer(x)), ref(x), TOLERANCES["float32"])
    assert compare_result.ok, compare_result.describe()
