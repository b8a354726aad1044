"""The conformance matrix as data: every case a small frozen object with a readable id.

* **core**: every combination of the Bidirectional flags (return_sequences x return_state x
  merge_mode x mask pattern x initial_state x stateful) and of the plain LSTM flags
  (return_sequences x return_state x go_backwards x mask x initial_state x stateful x
  zero_output_for_mask);
* **pairwise**: all pairs of the secondary options (custom backward layer, activations, use_bias,
  unroll, dropout, dtype policy, batch 1, T=1, units=1, long T) with each other and with the core
  flags, for both families.

Combinations Keras rejects are removed by :func:`keras_rejects` (a rule with a reason), and the
known Keras deviations (docs/deviations.md) are data in :data:`KNOWN_DEVIATIONS`, each with the reason and
the reference quirk that reproduces it.

Each case derives its weights, inputs, masks and states from a seed computed from its id, so a
case means the same numbers everywhere (tests, CLI, fixtures). Weights differ per gate and per
unit and include saturating gates: a swapped gate or transposed kernel cannot pass.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import zlib
from functools import cached_property
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..reference.bidirectional import Bidirectional
from ..reference.lstm import LSTM
from .pairwise import all_pairs
from ..reference.spec import LayerSpec

__all__ = [
    "Case", "CallInputs", "KnownDeviation", "KNOWN_DEVIATIONS", "KerasWorkaround", "KERAS_WORKAROUNDS",
    "workarounds_for", "MASKS", "cases", "core_cases",
    "pairwise_cases", "keras_rejects", "Exclusion", "EXCLUSIONS", "excluded", "deviations_for", "select",
]

MASKS = ("none", "right", "left", "holes", "fullrow")
MERGE_MODES = ("concat", "sum", "mul", "ave", "none")  # "none" spells merge_mode=None in ids
ACTIVATIONS = (
    "tanh", "relu", "linear", "sigmoid", "hard_sigmoid", "softsign", "softplus", "elu", "selu",
    "celu", "gelu", "silu", "hard_silu", "mish", "relu6", "leaky_relu", "log_sigmoid",
    "tanh_shrink", "hard_tanh", "soft_shrink", "hard_shrink", "squareplus", "sparse_plus",
    "sparse_sigmoid",
)
RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "linear", "relu", "exponential")
#: Activations with outputs in a bounded range: gates built from them cannot grow the state.
SQUASHING = frozenset({"sigmoid", "hard_sigmoid", "sparse_sigmoid", "tanh", "softsign", "hard_tanh"})
POLICIES = ("float32", "float64", "mixed_float16", "mixed_bfloat16")
LONG_T = 64
STATEFUL_CHUNKS = 3


@dataclasses.dataclass(frozen=True)
class Case:
    """One matrix cell. ``family`` is ``"bidi"`` (Bidirectional(LSTM)) or ``"lstm"``."""

    family: str
    return_sequences: bool
    return_state: bool
    mask: str = "none"
    initial_state: bool = False
    stateful: bool = False
    merge_mode: str = "concat"  # bidi only
    go_backwards: bool = False  # lstm only
    zero_output_for_mask: bool = False  # lstm only
    backward: str = "default"  # bidi only: default | custom | custom_same_units
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    use_bias: bool = True
    unroll: bool = False
    dropout: bool = False
    dtype_policy: str = "float32"  # the wrapper's (a Bidirectional) or the layer's (an LSTM)
    inner_policy: str = ""  # bidi only: the wrapped (forward) layer's policy when it differs from the wrapper's
    backward_policy: str = ""  # bidi with a custom backward layer: its policy when it differs from the forward's
    batch: int = 3
    time: int = 5
    units: int = 4
    features: int = 3
    group: str = "core"

    @property
    def id(self) -> str:
        """Readable, unique id, e.g. ``bidi-concat-seq-state-mask_right-init``."""
        parts = [self.family]
        if self.family == "bidi":
            parts.append(self.merge_mode)
        parts += ["seq" if self.return_sequences else "last"]
        if self.return_state:
            parts.append("state")
        if self.go_backwards:
            parts.append("backwards")
        if self.zero_output_for_mask:
            parts.append("zofm")
        parts.append(f"mask_{self.mask}")
        if self.initial_state:
            parts.append("init")
        if self.stateful:
            parts.append("stateful")
        if self.group != "core":
            if self.backward != "default":
                parts.append(f"bw_{self.backward}")
            if self.activation != "tanh" or self.recurrent_activation != "sigmoid":
                parts.append(f"act_{self.activation}_{self.recurrent_activation}")
            if not self.use_bias:
                parts.append("nobias")
            if self.unroll:
                parts.append("unroll")
            if self.dropout:
                parts.append("dropout")
            if self.dtype_policy != "float32":
                parts.append(self.dtype_policy)
            if self.inner_policy:
                parts.append(f"inner_{self.inner_policy}")
            if self.backward_policy:
                parts.append(f"bwpol_{self.backward_policy}")
            parts.append(f"B{self.batch}T{self.time}n{self.units}")
        return "-".join(parts)

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    @property
    def fw_policy(self) -> str:
        """The forward (wrapped) layer's dtype policy."""
        return self.inner_policy or self.dtype_policy

    @property
    def bw_policy(self) -> str:
        """The backward layer's dtype policy (a derived backward layer copies the forward's)."""
        return self.backward_policy or self.fw_policy

    @property
    def tolerance_policy(self) -> str:
        """The policy whose tolerance judges the case: the least precise of the layers involved."""
        return max({self.dtype_policy, self.fw_policy, self.bw_policy}, key=lambda p: _TOLERANCE_ORDER.index(p))

    @property
    def keras_merge_mode(self) -> Optional[str]:
        return None if self.merge_mode == "none" else self.merge_mode

    @property
    def backward_units(self) -> int:
        return self.units + 1 if self.backward == "custom" else self.units

    # --- layer construction --------------------------------------------------------------------
    def lstm_kwargs(self, backward: bool = False) -> dict[str, Any]:
        """Keras ``LSTM`` keyword arguments (the same for the reference's constructor)."""
        kw: dict[str, Any] = dict(
            units=self.units,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            use_bias=self.use_bias,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            stateful=self.stateful,
            unroll=self.unroll,
        )
        if self.dropout:
            kw.update(dropout=0.3, recurrent_dropout=0.2)
        if self.family == "lstm":
            kw.update(go_backwards=self.go_backwards, zero_output_for_mask=self.zero_output_for_mask)
        if backward:  # a custom backward layer: other activations, maybe other units
            kw.update(
                units=self.backward_units,
                go_backwards=True,
                activation="softsign" if self.activation != "softsign" else "tanh",
                recurrent_activation="hard_sigmoid" if self.recurrent_activation != "hard_sigmoid" else "sigmoid",
            )
        return kw

    def reference(self, dtype: Any = None, quirks: tuple[str, ...] = (), semantics: str = "keras3") -> Any:
        """The reference layer for this case, built from the constructors, weights set (``semantics``:
        ``"keras2"`` to be judged against tf_keras)."""
        pol = self.dtype_policy
        layer: Any
        opts = dict(dtype=dtype, quirks=quirks, semantics=semantics)
        if self.family == "lstm":
            layer = LSTM(**self.lstm_kwargs(), dtype_policy=pol, **opts)
        else:
            bw = None
            if self.backward != "default":
                bw = LSTM(**self.lstm_kwargs(backward=True), name="custom_backward", dtype_policy=self.bw_policy,
                          **opts)
            fw = LSTM(**self.lstm_kwargs(), dtype_policy=self.fw_policy, **opts)
            layer = Bidirectional(fw, merge_mode=self.keras_merge_mode, backward_layer=bw, dtype_policy=pol)
        layer.set_weights(self.weights)
        return layer

    def spec(self, semantics: str = "keras3") -> LayerSpec:
        """This case's layer as a :class:`LayerSpec` (what ``--impl`` factories receive)."""
        layer = self.reference()
        return LayerSpec(
            "LSTM" if self.family == "lstm" else "Bidirectional",
            layer.get_config(),
            tuple(self.weights),
            {"source": f"bilstm_ref.matrix case {self.id}", "semantics": semantics},
        )

    # --- numbers -------------------------------------------------------------------------------
    @cached_property
    def weights(self) -> list[np.ndarray]:
        """Keras ``get_weights()`` order, float32; per-gate scales and offsets, saturating units.

        With squashing gate and cell activations (sigmoid-like, |.| <= 1) unit 0's forget gate
        saturates open and unit 1's input gate shut. Unbounded gate or cell activations (linear, relu, exponential,
        elu, ...) get smaller weights and no saturating bias, so that the state stays finite over
        long sequences instead of growing as gate**T (which no float format could compare).
        """
        rng = np.random.default_rng([self.seed, 1])
        dirs = [self.units] if self.family == "lstm" else [self.units, self.backward_units]
        squashing_gates = self.recurrent_activation in SQUASHING
        calm = 1.0 if (squashing_gates and self.activation in SQUASHING) else 0.35
        if not (squashing_gates or self.use_bias):
            calm = 0.15  # no bias to hold unbounded gates below 1
        out: list[np.ndarray] = []
        for n in dirs:
            scale = np.repeat(np.array([0.7, 1.3, 1.0, 0.85]) * rng.uniform(0.8, 1.2, 4), n) * calm
            if squashing_gates:
                offset = np.repeat(np.array([0.4, 1.0, 0.0, -0.3]), n)
            elif self.recurrent_activation == "exponential":
                offset = np.repeat(np.array([-1.2, -0.8, 0.0, -1.0]), n)  # gates exp(z) around 0.3-0.45
            else:
                offset = np.repeat(np.array([0.3, 0.45, 0.0, 0.35]), n)
            kernel = rng.normal(size=(self.features, 4 * n)) * scale / np.sqrt(self.features)
            recurrent = rng.normal(size=(n, 4 * n)) * scale / np.sqrt(n)
            bias = rng.normal(scale=0.3 * calm, size=4 * n) + offset
            if calm == 1.0:  # saturation only where activations are bounded, else c integrates away
                bias[n] += 4.0  # unit 0's forget gate saturates open: long memory in one unit
                if n > 1:
                    bias[1] -= 4.0  # unit 1's input gate saturates shut
            out += [kernel, recurrent] + ([bias] if self.use_bias else [])
        return [w.astype(np.float32) for w in out]

    @cached_property
    def calls(self) -> tuple["CallInputs", ...]:
        """The calls of this case: one, or for stateful cases 3 chunks then a call after reset."""
        rng = np.random.default_rng([self.seed, 2])
        n_calls = STATEFUL_CHUNKS if self.stateful else 1
        n_states = 2 if self.family == "lstm" else 4
        state_units = [self.units, self.units, self.backward_units, self.backward_units][:n_states]
        result = []
        for k in range(n_calls):
            x = rng.normal(scale=1.5, size=(self.batch, self.time, self.features)).astype(np.float32)
            init = None
            if self.initial_state and k == 0:
                init = tuple(
                    (rng.normal(scale=0.8 if j % 2 == 0 else 1.5, size=(self.batch, u))).astype(np.float32)
                    for j, u in enumerate(state_units)
                )
            result.append(CallInputs(x, mask_pattern(self.mask, self.batch, self.time, shift=k), init))
        if self.stateful:  # after reset_state(): the first chunk again, from zero states
            result.append(CallInputs(result[0].x, result[0].mask, None, reset_before=True))
        return tuple(result)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of what one call returns, in Keras's order."""
        if self.family == "lstm":
            return ("output", "h", "c") if self.return_state else ("output",)
        outs = ("output_fw", "output_bw") if self.merge_mode == "none" else ("output",)
        return outs + (("h1", "c1", "h2", "c2") if self.return_state else ())


@dataclasses.dataclass(frozen=True, eq=False)
class CallInputs:
    """One call: ``x`` ``(B, T, D)`` float32, ``mask`` ``(B, T)`` bool or None, initial states or None."""

    x: np.ndarray
    mask: Optional[np.ndarray]
    initial_state: Optional[tuple[np.ndarray, ...]]
    reset_before: bool = False


def mask_pattern(kind: str, batch: int, time: int, shift: int = 0) -> Optional[np.ndarray]:
    """A ``(B, T)`` mask of the named pattern (True = valid); ``shift`` varies it between chunks.

    right: row r keeps a prefix of length ``[T, T-2, 1, T-1][r % 4]``; left: the mirror image;
    holes: interior steps masked at different places per row; fullrow: the last row fully
    masked, the others a mix of padding and holes.
    """
    if kind == "none":
        return None
    t = np.arange(time)
    m = np.ones((batch, time), dtype=bool)
    for r in range(batch):
        length = max(1, [time, time - 2, 1, time - 1][(r + shift) % 4])
        if kind == "right":
            m[r] = t < length
        elif kind == "left":
            m[r] = t >= time - length
        elif kind == "holes":
            m[r] = ~(((t + r + shift) % 3 == 1) & (t > 0) & (t < time - 1))
        elif kind == "fullrow":
            m[r] = (t < length) & ~(((t + r) % 3 == 2) & (t > 0))
        else:
            raise ValueError(f"unknown mask pattern {kind!r}; expected one of {MASKS}")
    if kind == "fullrow":
        m[-1] = False
    return m


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """A rule removing combinations from the matrix: Keras rejects them, or they are not distinct,
    or no fixed tolerance can judge them. Every rule carries its reason."""

    name: str
    reason: str
    applies: Callable[[Case], bool] = dataclasses.field(compare=False)


HALF_POLICIES = frozenset({"mixed_float16", "mixed_bfloat16"})

EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion(
        "custom-backward-units-merge",
        "Keras rejects merge_mode sum/mul/ave when forward and backward units differ",
        lambda c: c.family == "bidi" and c.backward == "custom" and c.merge_mode in ("sum", "mul", "ave"),
    ),
    Exclusion(
        "lstm-has-no-wrapper-options",
        "backward_layer and merge_mode exist only on Bidirectional",
        lambda c: c.family == "lstm" and (c.backward != "default" or c.merge_mode != "concat"),
    ),
    Exclusion(
        "bidi-wrapped-go-backwards",
        "Keras 3 rejects Bidirectional around a layer with go_backwards=True",
        lambda c: c.family == "bidi" and c.go_backwards,
    ),
    Exclusion(
        "bidi-zero-output-overwritten",
        "Bidirectional overwrites zero_output_for_mask with return_sequences, so the flag is not a distinct case",
        lambda c: c.family == "bidi" and c.zero_output_for_mask,
    ),
    Exclusion(
        "unbounded-gates-and-cell",
        "with unbounded gates (linear, relu, exponential) and an unbounded cell activation, i*g and "
        "o*phi(c) multiply unbounded values and the state grows super-exponentially to inf for any "
        "weights of useful size; unbounded gates are covered with squashing cell activations",
        lambda c: c.recurrent_activation not in SQUASHING and c.activation not in SQUASHING,
    ),
    Exclusion(
        "exponential-gates-without-bias",
        "exp(z) gates average above 1 without a bias to shift them, so the cell integrates without "
        "decay and overflows over long or stateful sequences",
        lambda c: c.recurrent_activation == "exponential" and not c.use_bias,
    ),
    Exclusion(
        "long-sequence-accumulating-error",
        f"over T={LONG_T} (x3 chunks when stateful), a state that integrates (the saturated-forget "
        "unit) or grows (an unbounded cell activation) accumulates rounding error step by step "
        "(docs/semantics.md#numerical-behaviour: linear growth in integrating regimes); measured 3% relative in float16 and "
        "1.4e-3 in float32 after 192 steps, beyond any fixed tolerance for those formats. Long "
        "sequences are covered with squashing activations in float32/float64",
        lambda c: c.time == LONG_T and (c.dtype_policy in HALF_POLICIES or c.activation not in SQUASHING),
    ),
    Exclusion(
        "half-precision-non-contractive",
        "half-precision policies run the whole recurrence in float16/bfloat16 (docs/semantics.md#dtype-policies); with an "
        "unbounded activation the state is not contractive and rounding errors grow step by step "
        "(measured: 1e-2 relative after 15 steps, branch flips in hard_shrink), so no fixed "
        "tolerance separates right from wrong; these activations are covered in float32/float64",
        lambda c: c.dtype_policy in HALF_POLICIES
        and not (c.activation in SQUASHING and c.recurrent_activation in SQUASHING),
    ),
)


def excluded(case: Case) -> Optional[Exclusion]:
    """The rule that removes this combination from the matrix, or None."""
    return next((r for r in EXCLUSIONS if r.applies(case)), None)


def keras_rejects(case: Case) -> Optional[str]:
    """Why this combination is not in the matrix (Keras rejects it, or see :data:`EXCLUSIONS`)."""
    rule = excluded(case)
    return None if rule is None else rule.reason


# --- known deviations -----------------------------------------------------------------------


#: Activations Keras 3 has and tf_keras (Keras 2) does not.
KERAS2_MISSING_ACTIVATIONS = frozenset({"hard_tanh", "sparse_sigmoid", "celu", "hard_shrink", "hard_silu", "soft_shrink",
                                        "sparse_plus", "squareplus", "tanh_shrink", "log_sigmoid"})


@dataclasses.dataclass(frozen=True)
class KnownDeviation:
    """A documented place where Keras's result differs from the reference's semantics.

    ``quirk`` names the reference switch (:data:`bilstm_ref.reference.lstm.QUIRKS`) that reproduces Keras's
    result; a case under a deviation passes as "known deviation" only if Keras matches that
    quirk model, so an unexplained difference still fails.
    """

    name: str
    backends: frozenset[str]
    quirk: str  # "" for raises=True: there is no Keras result to model
    reason: str
    applies: Callable[[Case], bool] = dataclasses.field(compare=False)
    raises: bool = False  # Keras itself raises on these cases (counted only when it does raise)


def _compute_dtype(policy: str) -> str:
    return {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(policy, policy)


def _zofm_effective(case: Case) -> bool:
    return case.return_sequences if case.family == "bidi" else case.zero_output_for_mask


def _reads_backwards(case: Case) -> bool:
    return case.family == "bidi" or case.go_backwards


KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    KnownDeviation(
        "tf-unroll-backward-mask-zeroing",
        frozenset({"tensorflow", "tf_keras"}),
        "unroll_mask_reversed_zeroing",
        "TF backend, unroll=True with a mask, go_backwards and zero_output_for_mask, returning "
        "sequences: Keras zeroes the processing-order outputs with the un-reversed mask "
        "(docs/deviations.md#tf-unroll-backward-mask-zeroing); a Bidirectional's backward half is affected since it forces zero_output_for_mask",
        lambda c: c.unroll and c.mask != "none" and c.return_sequences and _reads_backwards(c) and _zofm_effective(c),
    ),
    KnownDeviation(
        "jax-unroll-ignores-zero-output",
        frozenset({"jax"}),
        "unroll_ignores_zero_output",
        "JAX backend, unroll=True with a mask: zero_output_for_mask is ignored (docs/deviations.md#jax-unroll-ignores-zero-output)",
        lambda c: c.unroll and c.mask != "none" and _zofm_effective(c),
    ),
    KnownDeviation(
        "jax-masked-prefix-outputs-h0",
        frozenset({"jax"}),
        "masked_prefix_outputs_h0",
        "JAX backend, rolled loop with a non-zero initial or carried state: masked steps before "
        "the first valid step output h0 instead of 0 (docs/deviations.md#jax-masked-prefix-outputs-h0)",
        lambda c: (not c.unroll) and c.mask != "none" and (c.initial_state or c.stateful) and not _zofm_effective(c),
    ),
    KnownDeviation(
        "torch-mixed-stateful-state-not-stored",
        frozenset({"torch"}),
        "stateful_state_not_stored",
        "torch backend, mixed_float16/mixed_bfloat16, stateful: RNN.call assigns the new states inside the "
        "autocast scope, where torch's Variable assignment copies into the half-precision autocast copy; the "
        "float32 state variable is never updated, so every call starts from zeros (or the initial state)",
        lambda c: c.stateful and c.dtype_policy in HALF_POLICIES,
    ),
    KnownDeviation(
        "tf_keras-missing-activations",
        frozenset({"tf_keras"}),
        "",
        "tf_keras (Keras 2) has no hard_tanh, sparse_sigmoid, celu, hard_shrink, hard_silu, soft_shrink, sparse_plus, "
        "squareplus, tanh_shrink or log_sigmoid: its LSTM raises ValueError (unknown activation); Keras 3 added them "
        "(docs/deviations.md#tf_keras-missing-activations)",
        lambda c: bool({c.activation, c.recurrent_activation} & KERAS2_MISSING_ACTIVATIONS),
        raises=True,
    ),
    KnownDeviation(
        "tf_keras-mixed-direction-dtypes",
        frozenset({"tf_keras"}),
        "",
        "tf_keras, a Bidirectional whose two directions compute in different dtypes (a custom backward layer with "
        "another dtype policy): Keras 2 merges them without a cast and TensorFlow raises InvalidArgumentError; "
        "Keras 3 casts each direction to the wrapper's policy first (docs/deviations.md#tf_keras-mixed-direction-dtypes)",
        lambda c: c.family == "bidi" and _compute_dtype(c.fw_policy) != _compute_dtype(c.bw_policy),
        raises=True,
    ),
    KnownDeviation(
        "tf_keras-unroll-zero-output-last-crash",
        frozenset({"tf_keras"}),
        "",
        "tf_keras, LSTM(unroll=True, zero_output_for_mask=True, return_sequences=False) called with a mask: Keras 2 "
        "raises ValueError (a (T, B, n) tensor where (1, B, n) is supplied) (docs/deviations.md#tf_keras-unroll-zero-output-last-crash)",
        lambda c: c.family == "lstm" and c.unroll and c.zero_output_for_mask and not c.return_sequences
        and c.mask != "none",
        raises=True,
    ),
    KnownDeviation(
        "torch-unroll-backward-mask-crash",
        frozenset({"torch"}),
        "",
        "torch backend, unroll=True with a mask on a layer reading backwards: Keras 3.15's torch rnn() calls "
        "torch.flip(mask_list, dims=mask_list.shape) on a tuple and raises AttributeError (docs/deviations.md#torch-unroll-backward-mask-crash)",
        lambda c: c.unroll and c.mask != "none" and _reads_backwards(c),
        raises=True,
    ),
)


@dataclasses.dataclass(frozen=True)
class KerasWorkaround:
    """A Keras bug that stops Keras from running a case through ``layer(...)`` at all, and how the
    oracle still gets Keras's numbers (the computation is Keras's own; only bookkeeping is skipped)."""

    name: str
    reason: str
    applies: Callable[[Case], bool] = dataclasses.field(compare=False)


KERAS_WORKAROUNDS: tuple[KerasWorkaround, ...] = (
    KerasWorkaround(
        "bidi-stateful-return-state-compute-mask",
        "Keras 3.15 Bidirectional.compute_mask raises TypeError (a generator multiplied by 2) on "
        "every __call__ of a stateful layer with return_state=True; the oracle builds the layer "
        "with build() and runs Bidirectional.call(), which computes the same outputs",
        lambda c: c.family == "bidi" and c.stateful and c.return_state,
    ),
)


def workarounds_for(case: Case) -> tuple[KerasWorkaround, ...]:
    return tuple(w for w in KERAS_WORKAROUNDS if w.applies(case))


def deviations_for(case: Case, backend: str) -> tuple[KnownDeviation, ...]:
    """The known deviations (with a Keras result to model) that may show in ``case`` on ``backend``."""
    return tuple(d for d in KNOWN_DEVIATIONS if backend in d.backends and not d.raises and d.applies(case))


def keras_errors_for(case: Case, backend: str) -> tuple[KnownDeviation, ...]:
    """The documented Keras crashes that may stop ``case`` on ``backend``."""
    return tuple(d for d in KNOWN_DEVIATIONS if backend in d.backends and d.raises and d.applies(case))


# --- the matrix -----------------------------------------------------------------------------

_B = (False, True)


def core_cases() -> list[Case]:
    out = [
        Case("bidi", rs, st, mask=m, initial_state=i, stateful=sf, merge_mode=mm)
        for rs, st, mm, m, i, sf in itertools.product(_B, _B, MERGE_MODES, MASKS, _B, _B)
    ]
    out += [
        Case("lstm", rs, st, mask=m, initial_state=i, stateful=sf, go_backwards=gb, zero_output_for_mask=z)
        for rs, st, gb, m, i, sf, z in itertools.product(_B, _B, _B, MASKS, _B, _B, _B)
    ]
    return [c for c in out if keras_rejects(c) is None]


_SECONDARY: dict[str, tuple[Any, ...]] = {
    "activation": ACTIVATIONS,
    "recurrent_activation": RECURRENT_ACTIVATIONS,
    "dtype_policy": POLICIES,
    "mask": MASKS,
    "use_bias": (True, False),
    "unroll": (False, True),
    "dropout": (False, True),
    "shape": ("std", "batch1", "T1", "units1", "longT"),
    "return_sequences": _B,
    "return_state": _B,
    "initial_state": _B,
    "stateful": _B,
}
_SHAPES = {
    "std": dict(batch=3, time=5, units=4),
    "batch1": dict(batch=1, time=5, units=4),
    "T1": dict(batch=3, time=1, units=4),
    "units1": dict(batch=3, time=5, units=1),
    "longT": dict(batch=2, time=LONG_T, units=4),
}


def _pairwise_valid(combo: dict[str, Any]) -> bool:
    """Whether some completion of a (partial) combination is a case Keras accepts."""
    kw = {k: v for k, v in combo.items() if k not in ("shape", "family")}
    if "shape" in combo:
        kw.update(_SHAPES[combo["shape"]])
    kw.setdefault("return_sequences", False)
    kw.setdefault("return_state", False)
    families = [combo["family"]] if "family" in combo else ["bidi", "lstm"]
    return any(keras_rejects(Case(f, group="pairwise", **kw)) is None for f in families)


def pairwise_cases() -> list[Case]:
    params = dict(
        _SECONDARY,
        family=("bidi", "lstm"),
        merge_mode=MERGE_MODES,
        backward=("default", "custom", "custom_same_units"),
        go_backwards=_B,
        zero_output_for_mask=_B,
    )
    result = []
    for combo in all_pairs(params, _pairwise_valid, seed=0, tries=20):
        shape = _SHAPES[combo.pop("shape")]
        result.append(Case(group="pairwise", **combo, **shape))
    return result


#: Policies from the most precise to the least (the last one's tolerance is the loosest).
_TOLERANCE_ORDER = ("float64", "float32", "mixed_float16", "float16", "mixed_bfloat16", "bfloat16")


def policy_cases() -> list[Case]:
    """Bidirectional layers whose policies differ: the wrapped layer's from the wrapper's, and a custom
    backward layer's from the forward layer's. Keras casts each direction's output to its own layer's
    policy, then to the wrapper's, and merges in the wrapper's; a swapped or skipped cast shows here."""
    combos = [  # (wrapper, forward, custom backward or "" for the derived one)
        ("float32", "mixed_float16", ""), ("mixed_float16", "float32", ""), ("float32", "mixed_bfloat16", ""),
        ("float32", "float32", "mixed_float16"), ("float32", "mixed_bfloat16", "float32"),
        ("mixed_float16", "float32", "mixed_bfloat16"),
    ]
    out = []
    for i, (wrapper, fw, bw) in enumerate(combos):
        for merge_mode, return_sequences, mask in (("concat", True, "right"), ("sum", True, "holes"),
                                                   ("ave", False, "left"), ("mul", True, "none")):
            out.append(Case("bidi", return_sequences, return_state=(i % 2 == 0), mask=mask, merge_mode=merge_mode,
                            backward="custom_same_units" if bw else "default", dtype_policy=wrapper,
                            inner_policy=fw if fw != wrapper else "",
                            backward_policy=bw if bw and bw != fw else "", group="policies", time=6))
    return out


@functools.lru_cache(maxsize=1)
def _all_cases() -> tuple[Case, ...]:
    seen: dict[str, Case] = {}
    for c in core_cases() + pairwise_cases() + policy_cases():
        if excluded(c) is None:
            seen.setdefault(c.id, c)
    return tuple(seen.values())


_CORE_FLAGS = {
    "bidi": dict(return_sequences=_B, return_state=_B, merge_mode=MERGE_MODES, mask=MASKS, initial_state=_B,
                 stateful=_B),
    "lstm": dict(return_sequences=_B, return_state=_B, go_backwards=_B, mask=MASKS, initial_state=_B, stateful=_B,
                 zero_output_for_mask=_B),
}


@functools.lru_cache(maxsize=1)
def fixture_suite() -> tuple[Case, ...]:
    """The cases recorded as the committed regression fixtures: every all-pairs case, every core
    ``Bidirectional(merge_mode="concat")`` case (the common configuration), and core cases covering
    every pair of core flag values per family. (The whole matrix would be ~9 MB of fixtures.)"""
    chosen: dict[str, Case] = {}
    ids = by_id()
    for case in _all_cases():
        if case.group == "core" and case.family == "bidi" and case.merge_mode == "concat":
            chosen[case.id] = case
    for family, params in _CORE_FLAGS.items():
        def valid(combo: dict[str, Any], family: str = family) -> bool:
            kw = {"return_sequences": False, "return_state": False, **combo}
            return keras_rejects(Case(family, **kw)) is None

        for combo in all_pairs(params, valid, seed=1, tries=40):
            case = Case(family, **combo)
            if case.id in ids:
                chosen.setdefault(case.id, ids[case.id])
    for case in _all_cases():
        if case.group in ("pairwise", "policies"):
            chosen.setdefault(case.id, case)
    return tuple(chosen.values())


#: The flags a converter's answer depends on: the suite covers every pair of their values.
CONVERTER_FLAGS = ("family", "return_sequences", "return_state", "merge_mode", "mask", "initial_state", "stateful",
                   "go_backwards", "zero_output_for_mask", "activation", "recurrent_activation", "use_bias", "unroll",
                   "dtype_policy", "backward")


@functools.lru_cache(maxsize=1)
def converter_suite() -> tuple[Case, ...]:
    """Matrix cases covering every pair of values of :data:`CONVERTER_FLAGS` that some matrix case has,
    chosen greedily (each next case covers the most pairs not yet covered; ties: matrix order)."""
    everything = [c for c in _all_cases() if not c.dropout]  # training-mode dropout is not a converted graph's
    pairs_of = [
        {(a, getattr(c, a), b, getattr(c, b)) for i, a in enumerate(CONVERTER_FLAGS) for b in CONVERTER_FLAGS[i + 1:]}
        for c in everything
    ]
    uncovered = set().union(*pairs_of)
    chosen: list[Case] = []
    while uncovered:
        best = max(range(len(everything)), key=lambda k: len(pairs_of[k] & uncovered))
        chosen.append(everything[best])
        uncovered -= pairs_of[best]
    return tuple(chosen)


@functools.lru_cache(maxsize=1)
def by_id() -> dict[str, Case]:
    """Every case of :func:`cases`, keyed by id (built once)."""
    return {c.id: c for c in _all_cases()}


def cases() -> list[Case]:
    """The whole matrix: core combinations then pairwise secondary coverage, ids unique."""
    return list(_all_cases())


def id_selected(case_id: str, patterns: Optional[Sequence[str]] = None) -> bool:
    """Whether an id contains every ``-k``-style substring and none of the ``~pat`` ones."""
    return all((p[1:] not in case_id) if p.startswith("~") else (p in case_id) for p in patterns or ())


def select(all_cases: list[Case], patterns: list[str] | None = None) -> list[Case]:
    """Cases whose id contains every ``-k``-style substring (``~pat`` excludes)."""
    if not patterns:
        return all_cases
    return [c for c in all_cases if id_selected(c.id, patterns)]
