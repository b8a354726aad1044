"""Keras 2 (tf_keras) as a second oracle: ``check --oracle tf_keras`` judges the matrix against live
tf_keras with the reference under Keras 2 semantics; what Keras 2 cannot build or run is data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.cli import main
from bilstm_ref.conformance.judge import judge

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def tf_keras_oracle():
    pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is the second oracle (pip install 'bilstm_ref[keras]')")
    from bilstm_ref.conformance.oracle import KerasOracle

    return KerasOracle("tf_keras")


def test_the_activations_keras2_lacks_are_exactly_the_listed_ones(tf_keras_oracle) -> None:
    get = tf_keras_oracle.keras.activations.get
    names = {c.activation for c in matrix.cases()} | {c.recurrent_activation for c in matrix.cases()}

    def known(name: str) -> bool:
        try:
            get(name)
        except ValueError:
            return False
        return True

    assert {n for n in names if not known(n)} == matrix.KERAS2_MISSING_ACTIVATIONS


def test_hard_sigmoid_cases_agree_with_keras2_semantics_only(tf_keras_oracle) -> None:
    cases = [c for c in matrix.cases() if c.recurrent_activation == "hard_sigmoid" and not c.stateful
             and not matrix.keras_errors_for(c, "tf_keras") and not matrix.deviations_for(c, "tf_keras")
             and c.dtype_policy in ("float32", "float64")][:6]
    assert cases
    keras3_fails = 0
    for case in cases:
        outputs = tf_keras_oracle.run(case)
        assert judge(case, outputs, "tf_keras").status in ("pass", "known-deviation"), case.id
        # the same Keras 2 answers judged by the Keras 3 formula fail (unless the gates saturate both ways)
        keras3_fails += judge(case, outputs, "tensorflow").status == "fail"
    assert keras3_fails >= len(cases) // 2


@pytest.mark.parametrize("name, pattern", [
    ("tf_keras-mixed-direction-dtypes", "bwpol_mixed_float16"),
    ("tf_keras-unroll-zero-output-last-crash", "lstm-last-backwards-zofm-mask_holes-init-stateful-act_tanh_hard_sigmoid"),
    ("tf_keras-missing-activations", "act_celu_"),
    ("tf-unroll-backward-mask-zeroing", "bidi-ave-seq-state-mask_left-init-stateful-act_relu_tanh-unroll"),
])
def test_keras2_deviations_are_judged_as_such(tmp_path: Path, name: str, pattern: str) -> None:
    pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is the second oracle")
    out = tmp_path / "run.json"
    main(["check", "--oracle", "tf_keras", "-k", pattern, "--jobs", "1", "--json", str(out)])
    records = json.loads(out.read_text())["cases"]
    assert records
    assert any(r["status"] == "known-deviation" and r["deviation"] == name for r in records), records[0]
    assert not [r for r in records if r["status"] in ("fail", "error")]


def test_tf_keras_runs_on_tensorflow_only(capsys) -> None:
    assert main(["check", "--oracle", "tf_keras", "--backend", "jax", "-k", "lstm-last"]) == 2
    assert "TensorFlow" in capsys.readouterr().err


def test_fixtures_recorded_from_tf_keras_carry_keras2_semantics(tmp_path: Path) -> None:
    pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is the second oracle")
    import dataclasses

    from bilstm_ref.fixtures import read_fixture, verify_fixture

    cases = [c for c in matrix.cases() if c.recurrent_activation == "hard_sigmoid" and not c.stateful
             and not matrix.keras_errors_for(c, "tf_keras") and not matrix.deviations_for(c, "tf_keras")
             and c.dtype_policy in ("float32", "float64")][:4]
    assert cases
    out = tmp_path / "k2"
    keras3_fails = 0
    for case in cases:
        assert main(["fixtures", "generate", "--oracle", "tf_keras", "--out", str(out), "-k", case.id, "--jobs", "1",
                     "--force"]) == 0
        fixture = read_fixture(out / f"{case.id}.json")
        assert fixture.spec.semantics == "keras2" and fixture.provenance["backend"] == "tf_keras"
        assert verify_fixture(fixture).status == "pass"
        as_keras3 = dataclasses.replace(fixture, spec=dataclasses.replace(
            fixture.spec, provenance={**fixture.spec.provenance, "semantics": "keras3"}))
        keras3_fails += verify_fixture(as_keras3).status == "fail"
    assert keras3_fails  # the recorded semantics is what makes them pass


def test_the_pytest_plugin_judges_against_tf_keras(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is the second oracle")
    # hard_sigmoid cases pass only under Keras 2 semantics, which the tf_keras oracle selects
    result = pytester.runpytest("-p", "no:cacheprovider", "--bilstm-ref-impl", "bilstm_ref:reference_factory",
                                "--bilstm-ref-oracle", "tf_keras", "-k", "hard_sigmoid and lstm-seq and not stateful")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 0 and not outcomes.get("failed") and not outcomes.get("error"), result.stdout.str()
    # a port that uses Keras 3's hard_sigmoid fails there: the answers are Keras 2's
    pytester.makepyfile(keras3_port=(
        "import dataclasses\nfrom bilstm_ref import reference_factory\n\n\n"
        "def factory(spec):\n"
        "    return reference_factory(dataclasses.replace(spec, provenance={**spec.provenance, 'semantics': 'keras3'}))\n"))
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider", "--bilstm-ref-impl", "keras3_port:factory",
                                "--bilstm-ref-oracle", "tf_keras", "-k", "hard_sigmoid and lstm-seq and not stateful")
    assert result.parseoutcomes().get("failed", 0) > 0, result.stdout.str()[-2000:]
