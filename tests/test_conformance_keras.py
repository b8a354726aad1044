"""The conformance matrix against live Keras: every case, every output, by name."""

import dataclasses

import pytest

from bilstm_ref.conformance import matrix
from bilstm_ref.conformance.judge import DEVIATION, FAIL, PASS, judge
from bilstm_ref.reference.spec import build

CASES = matrix.cases()


@pytest.mark.keras
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix_case_matches_keras(case, keras_oracle):
    result = judge(case, keras_oracle.run(case), keras_oracle.backend)
    assert result.status in (PASS, DEVIATION), result.describe()
    if result.status == DEVIATION:
        # Allowed only where listed for this backend, and only because Keras matched the quirk model.
        assert result.deviation in {d.name for d in matrix.deviations_for(case, keras_oracle.backend)}


_FLOAT32_SAMPLE = [c for c in CASES if c.group == "core"][::37]


@pytest.mark.keras
@pytest.mark.parametrize("case", _FLOAT32_SAMPLE, ids=[c.id for c in _FLOAT32_SAMPLE])
def test_float32_reference_matches_keras(case, keras_oracle):
    result = judge(case, keras_oracle.run(case), keras_oracle.backend, dtype="float32")
    assert result.status in (PASS, DEVIATION), result.describe()


def _swap_gates(spec):
    """A subtly wrong implementation: forget and input gate blocks swapped in every weight."""
    def swap(w):
        n = w.shape[-1] // 4
        w = w.copy()
        w[..., :n], w[..., n : 2 * n] = w[..., n : 2 * n].copy(), w[..., :n].copy()
        return w

    return build(dataclasses.replace(spec, weights=tuple(swap(w) for w in spec.weights)))


def _ignore_mask(spec):
    layer = build(spec)

    class NoMask:
        def __call__(self, x, mask=None, initial_state=None):
            return layer(x, initial_state=initial_state)

        def reset_state(self):
            layer.reset_state()

    return NoMask()


@pytest.mark.keras
@pytest.mark.parametrize("factory", [_swap_gates, _ignore_mask], ids=["swapped-gates", "ignored-mask"])
def test_matrix_catches_broken_implementations(factory, keras_oracle):
    """The matrix can fail: broken implementations plugged in as factories must not pass."""
    sample = [c for c in CASES if c.mask != "none"][:40]
    statuses = {judge(c, keras_oracle.run(c), keras_oracle.backend, factory=factory).status for c in sample}
    assert FAIL in statuses
    failing = [judge(c, keras_oracle.run(c), keras_oracle.backend, factory=factory) for c in sample[:5]]
    assert all(r.status == FAIL and r.failures for r in failing)
