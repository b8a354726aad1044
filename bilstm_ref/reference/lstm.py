"""The reference ``LSTM``: Keras 3's LSTM layer (generic kernel) in NumPy.

Cell equations (Keras gate layout ``i, f, c, o`` along the last axis of every weight)::

    z_t = x_t @ W + h_{t-1} @ U + b                     (B, 4n)
    i, f, g, o = split(z_t, 4)
    i, f, o = σ_r(i), σ_r(f), σ_r(o);   g = φ(g)
    c_t = f * c_{t-1} + i * g
    h_t = o * φ(c_t)

Masked steps (Keras's generic-kernel semantics)::

    h, c = (h_t, c_t) where the step is valid, else the previous (h, c)   # state frozen
    out_t = h_t where valid, else (0 if zero_output_for_mask else out_{t-1}), out_{-1} = 0

Example::

    >>> import numpy as np, bilstm_ref as br
    >>> lstm = br.LSTM(3, return_sequences=True, return_state=True)
    >>> rng = np.random.default_rng(0)
    >>> lstm.set_weights([rng.normal(size=(2, 12)), rng.normal(size=(3, 12)), rng.normal(size=12)])
    >>> seq, h, c = lstm(rng.normal(size=(1, 4, 2)))
    >>> seq.shape, h.shape, c.shape
    ((1, 4, 3), (1, 3), (1, 3))
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import activations as _act
from .dtypes import cast_output, compute_dtype, policy_name
from ..errors import (
    ConfigError,
    DTypeMismatchError,
    ResourceLimitError,
    ShapeMismatchError,
    StateError,
    UnsupportedModelError,
)
from .sequence import as_input, as_mask, processing_order

__all__ = ["LSTM", "QUIRKS", "MAX_WORK_ELEMENTS"]

Array = np.ndarray
Output = Union[Array, tuple[Array, ...]]

#: Largest ``B * T * (features + 5 * units)`` elements one direction's call may allocate in the
#: compute dtype: the input cast (D), the input projections (4n) and the sequence (n), all linear in
#: B * T. Beyond it, ResourceLimitError before anything is allocated (2**28: 2 GiB in float64).
MAX_WORK_ELEMENTS = 2**28

#: Backend-compatibility switches reproducing Keras bugs deliberately (docs/deviations.md#known-deviations), off by default:
#: ``unroll_mask_reversed_zeroing`` (TF / Keras 2, "D"): with ``unroll=True``, a mask,
#: ``go_backwards`` and ``zero_output_for_mask``, sequence outputs are zeroed with the
#: *un-reversed* mask instead of at the masked processed steps.
#: ``unroll_ignores_zero_output`` (JAX, "C"): ``unroll=True`` ignores ``zero_output_for_mask``.
#: ``masked_prefix_outputs_h0`` (JAX rolled path, "B"): the output carried over leading masked
#: steps starts at ``h0`` instead of zeros.
#: ``stateful_state_not_stored`` (torch, mixed precision): a stateful layer's states are never
#: stored, so every call starts from zeros (or the given initial state).
QUIRKS = ("unroll_mask_reversed_zeroing", "unroll_ignores_zero_output", "masked_prefix_outputs_h0",
          "stateful_state_not_stored")

# Keras LSTM config keys with no effect on the inference forward pass, and why.
_NO_FORWARD_EFFECT = {
    "name": "naming only",
    "trainable": "training only",
    "kernel_initializer": "initialization only",
    "recurrent_initializer": "initialization only",
    "bias_initializer": "initialization only",
    "unit_forget_bias": "initialization only",
    "kernel_regularizer": "training only",
    "recurrent_regularizer": "training only",
    "bias_regularizer": "training only",
    "activity_regularizer": "training only",
    "kernel_constraint": "training only",
    "recurrent_constraint": "training only",
    "bias_constraint": "training only",
    "seed": "dropout RNG, training only",
    "implementation": "same inference result for 1 and 2",
    "use_cudnn": "kernel selection; the generic kernel's semantics are reproduced",
    "input_shape": "build information",
    "batch_input_shape": "build information",
    "batch_size": "build information",
    "input_dim": "build information",
    "input_length": "build information",
}


@dataclasses.dataclass
class _Prepared:
    """One direction's call, ready to scan (see :meth:`LSTM._prepare`)."""

    x: Array  # (B, T, D) processing order
    mask: Optional[Array]  # (B, T) processing order
    mask_original: Optional[Array]  # (B, T) as given
    h0: Array
    c0: Array
    zofm: bool
    prev0: Optional[Array]
    d_quirk: bool


@dataclasses.dataclass
class _Weights:
    kernel: Array  # (D, 4n)
    recurrent_kernel: Array  # (n, 4n)
    bias: Optional[Array]  # (4n,) or None


def scan(
    x: Array,
    mask: Optional[Array],
    h0: Array,
    c0: Array,
    w: _Weights,
    activation: _act.Activation,
    recurrent_activation: _act.Activation,
    zero_output_for_mask: bool,
    keep_sequence: bool,
    prev_out0: Optional[Array] = None,
) -> tuple[Optional[Array], Array, Array, Array]:
    """Run the recurrence over ``x`` in the order given (processing order).

    Args:
        x: ``(B, T, D)`` in processing order, compute dtype.
        mask: ``(B, T)`` bool in processing order, or None.
        h0, c0: ``(B, n)`` initial states.
        prev_out0: ``(B, n)`` output carried over leading masked steps (zeros when None).
    Returns:
        ``(seq, last, h, c)``: ``seq`` is ``(B, T, n)`` in processing order (None unless
        ``keep_sequence``), ``last`` the last emitted output ``(B, n)``, ``h``/``c`` the final states.
    """
    B, T, D = x.shape
    n = h0.shape[1]
    # All input projections in one GEMM, laid out (T, B, 4n) so each step reads a contiguous slab.
    xw = (x.transpose(1, 0, 2).reshape(T * B, D) @ w.kernel).reshape(T, B, 4 * n)
    if w.bias is not None:
        xw += w.bias
    steps_mask = None if mask is None else np.ascontiguousarray(mask.T)[:, :, None]  # (T, B, 1)
    h, c = h0, c0
    out = np.zeros_like(h0) if prev_out0 is None else prev_out0
    seq = np.empty((T, B, n), dtype=h0.dtype) if keep_sequence else None
    zero = np.zeros((), dtype=h0.dtype)
    U = w.recurrent_kernel
    for t in range(T):
        z = xw[t] + h @ U
        i = recurrent_activation(z[:, :n])
        f = recurrent_activation(z[:, n : 2 * n])
        g = activation(z[:, 2 * n : 3 * n])
        o = recurrent_activation(z[:, 3 * n :])
        c_new = f * c + i * g
        h_new = o * activation(c_new)
        if steps_mask is None:
            h, c, out = h_new, c_new, h_new
        else:
            m = steps_mask[t]
            h = np.where(m, h_new, h)
            c = np.where(m, c_new, c)
            out = np.where(m, h_new, zero if zero_output_for_mask else out)
        if seq is not None:
            seq[t] = out
    return (None if seq is None else seq.transpose(1, 0, 2)), out, h, c


def scan_stack_spec(
    xs: Sequence[Array],
    masks: Optional[Sequence[Array]],
    h0: Array,
    c0: Array,
    weights: Sequence[_Weights],
    activation: _act.Activation,
    recurrent_activation: _act.Activation,
    zero_output_for_mask: bool,
    keep_sequence: bool,
    prev_out0: Optional[Array] = None,
) -> tuple[Optional[Array], Array, Array, Array]:
    """:func:`scan_stack`'s contract computed by :func:`scan`, one direction after the other.

    The readable specification that the fast path is proven bit-identical to across the matrix
    (tests/test_fast_path.py); also a way to debug the fast path (monkeypatch ``scan_stack``)."""
    runs = [
        scan(x, None if masks is None else masks[k], h0[k], c0[k], w, activation, recurrent_activation,
             zero_output_for_mask, keep_sequence, None if prev_out0 is None else prev_out0[k])
        for k, (x, w) in enumerate(zip(xs, weights, strict=True))
    ]
    seqs, lasts, hs, cs = zip(*runs)
    return (np.stack(seqs) if keep_sequence else None), np.stack(lasts), np.stack(hs), np.stack(cs)


def scan_stack(
    xs: Sequence[Array],
    masks: Optional[Sequence[Array]],
    h0: Array,
    c0: Array,
    weights: Sequence[_Weights],
    activation: _act.Activation,
    recurrent_activation: _act.Activation,
    zero_output_for_mask: bool,
    keep_sequence: bool,
    prev_out0: Optional[Array] = None,
) -> tuple[Optional[Array], Array, Array, Array]:
    """The fast path: :func:`scan` for K directions with the same cell (a Bidirectional's two, or
    one LSTM), stepped together, with the same arithmetic in the same order (bit-identical results).

    Args:
        xs: K inputs ``(B, T, D)``, each in its direction's processing order, compute dtype.
        masks: K ``(B, T)`` bool masks in processing order, or None.
        h0, c0: ``(K, B, n)`` initial states.
        weights: K directions' weights.
        prev_out0: ``(K, B, n)`` output carried over leading masked steps (zeros when None).
    Returns:
        ``(seq (K, B, T, n) or None, last (K, B, n), h (K, B, n), c (K, B, n))``: fresh arrays.

    The long-sequence cost is per-step call overhead, so per step there is one small GEMM and one
    add per direction, and each elementwise operation is one call over all K directions, written
    into preallocated buffers. The step-t input projections of all steps come from one GEMM per
    direction made before the loop (row order t*B + b, as in :func:`scan`).
    """
    K = len(xs)
    B, T, D = xs[0].shape
    n = h0.shape[2]
    dt = h0.dtype
    xw = np.empty((K, T, B, 4 * n), dtype=dt)  # per direction one GEMM, written in place
    for k, (x, w) in enumerate(zip(xs, weights, strict=True)):
        np.matmul(x.transpose(1, 0, 2).reshape(T * B, D), w.kernel, out=xw[k].reshape(T * B, 4 * n))
        if w.bias is not None:
            xw[k] += w.bias
    Us = [w.recurrent_kernel for w in weights]
    h, c = h0.copy(), c0.copy()
    seq = np.empty((T, K, B, n), dtype=dt) if keep_sequence else None
    z = np.empty((K, B, 4 * n), dtype=dt)
    zs = list(z)  # per-direction (B, 4n) rows of z, for np.dot's contiguous out=
    zi, zf, zg, zo = z[..., :n], z[..., n:2 * n], z[..., 2 * n:3 * n], z[..., 3 * n:]
    fc, ig, tc = np.empty_like(h), np.empty_like(h), np.empty_like(h)
    # A tanh cell with sigmoid gates (the defaults): sigmoid(z) = 0.5 * tanh(0.5 * z) + 0.5 exactly
    # as activations.sigmoid computes it, so one tanh covers all four gate blocks; the g block is
    # scaled by 1 and shifted by -0.0, which leave every value (signed zeros included) unchanged.
    # Full-shape scale/shift arrays: broadcasting a (4n,) row costs more per call than it saves.
    fused = activation is _act.tanh and recurrent_activation is _act.sigmoid
    if fused:
        g_block = np.arange(4 * n) // n == 2
        scale = np.broadcast_to(np.where(g_block, 1.0, 0.5).astype(dt), z.shape).copy()
        shift = np.broadcast_to(np.where(g_block, -0.0, 0.5).astype(dt), z.shape).copy()
    dot, add, mul, tanh = np.dot, np.add, np.multiply, np.tanh

    h_rows = list(h)  # per-direction (B, n) rows of h, np.dot's inputs

    def cell(xw_t: Sequence[Array], c_out: Array, h_out: Array) -> None:
        """One step of every direction from (h, c): the new c into c_out, h into h_out."""
        for hk, Uk, zk, xk in zip(h_rows, Us, zs, xw_t):
            dot(hk, Uk, zk)  # h @ U: np.dot is the same GEMM as matmul, with less call overhead
            add(zk, xk, zk)  # + x_t @ W + b
        if fused:
            mul(z, scale, z)
            tanh(z, z)
            mul(z, scale, z)
            add(z, shift, z)
            i, f, g, o = zi, zf, zg, zo
        else:
            gates = recurrent_activation(z)  # elementwise: the g block's result is not used
            i, f, o = gates[..., :n], gates[..., n:2 * n], gates[..., 3 * n:]
            g = activation(zg)
        mul(f, c, fc)
        mul(i, g, ig)
        add(fc, ig, c_out)
        mul(o, tanh(c_out, tc) if fused else activation(c_out), h_out)

    steps = zip(*[xw[k] for k in range(K)])  # per step t: the K directions' (B, 4n) projections
    seq_steps = seq if seq is not None else itertools.repeat(None)
    if masks is None:
        for xw_t, seq_t in zip(steps, seq_steps):
            cell(xw_t, c, h)
            if seq_t is not None:
                np.copyto(seq_t, h)
        return (None if seq is None else seq.transpose(1, 2, 0, 3)), h.copy(), h, c

    valid = np.stack([m.T for m in masks], axis=1)[..., None]  # (T, K, B, 1)
    every = valid.all(axis=(1, 2, 3)).tolist()
    none = (~valid.any(axis=(1, 2, 3))).tolist()
    out = np.zeros_like(h) if prev_out0 is None else prev_out0.copy()
    h_new, c_new = np.empty_like(h), np.empty_like(h)
    for t, (xw_t, seq_t) in enumerate(zip(steps, seq_steps)):
        if every[t]:  # every row valid: the unmasked update
            cell(xw_t, c, h)
            np.copyto(out, h)
        elif none[t]:  # no row valid: states frozen, and nothing computed that a select would keep
            if zero_output_for_mask:
                out.fill(0)
        else:
            m = valid[t]
            cell(xw_t, c_new, h_new)
            np.copyto(h, h_new, where=m)
            np.copyto(c, c_new, where=m)
            np.copyto(out, h_new, where=m)
            if zero_output_for_mask:
                np.copyto(out, 0, where=~m)
        if seq_t is not None:
            np.copyto(seq_t, out)
    return (None if seq is None else seq.transpose(1, 2, 0, 3)), out, h, c


def run_pair(fw: "LSTM", bw: "LSTM", x: Any, mask: Any, fw_state: Any, bw_state: Any, training: Optional[bool]
             ) -> tuple[tuple[Optional[Array], Array, Array, Array], tuple[Optional[Array], Array, Array, Array]]:
    """Both directions of a Bidirectional: stepped together by :func:`scan_stack` when they compute
    with the same cell (units, activations, dtype, masking rule; each keeps its own weights and
    bias), else one after the other."""
    wf, wb = fw._require_weights(), bw._require_weights()
    same_cell = (
        fw.units == bw.units and fw.dtype == bw.dtype and fw.semantics == bw.semantics
        and fw.activation == bw.activation and fw.recurrent_activation == bw.recurrent_activation
        and fw.return_sequences == bw.return_sequences
        and not (training and (fw.dropout or fw.recurrent_dropout or bw.dropout or bw.recurrent_dropout))
    )
    if same_cell:
        pf, pb = fw._prepare(x, mask, fw_state, wf), bw._prepare(x, mask, bw_state, wb)
        same_cell = pf.zofm == pb.zofm and (pf.prev0 is None) == (pb.prev0 is None) and (pf.mask is None) == (pb.mask is None)
    if not same_cell:
        return fw.run(x, mask, fw_state, training), bw.run(x, mask, bw_state, training)
    with np.errstate(all="ignore"):  # as in LSTM.run: overflow and NaN are Keras's results too
        seq, last, h, c = scan_stack(
            [pf.x, pb.x], None if pf.mask is None else [pf.mask, pb.mask],
            np.stack([pf.h0, pb.h0]), np.stack([pf.c0, pb.c0]), [wf, wb], fw._phi, fw._sigma, pf.zofm,
            keep_sequence=fw.return_sequences,
            prev_out0=None if pf.prev0 is None else np.stack([pf.prev0, pb.prev0]),
        )
    out_f = fw._finish(pf, None if seq is None else seq[0], last[0], h[0], c[0])
    out_b = bw._finish(pb, None if seq is None else seq[1], last[1], h[1], c[1])
    return out_f, out_b


def _as_weight(value: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise DTypeMismatchError(f"{name}: expected a float array of shape {shape}, got dtype {arr.dtype}")
    if arr.shape != shape:
        hint = " (looks transposed)" if arr.shape == shape[::-1] and len(shape) == 2 else ""
        raise ShapeMismatchError(f"{name}: expected shape {shape}, got {arr.shape}{hint}")
    with np.errstate(invalid="ignore"):  # a signalling NaN (a damaged file) becomes a quiet one, silently
        return np.array(arr, dtype=dtype)  # a private copy: later changes to the caller's array don't leak in


class LSTM:
    """NumPy reference of ``keras.layers.LSTM`` (Keras 3 semantics unless ``semantics="keras2"``).

    Arguments mirror Keras's constructor; options that only affect training or initialization
    are accepted and recorded (so ``get_config`` round-trips) but have no effect.

    Keyword-only arguments specific to the reference:
        dtype: compute dtype, ``"float64"`` (default) or ``"float32"``.
        dtype_policy: the Keras dtype policy being emulated (``"float32"`` default); half-precision
            policies cast the returned arrays to that precision.
        semantics: ``"keras3"`` (default) or ``"keras2"`` (changes ``hard_sigmoid``).
        quirks: names from :data:`QUIRKS` to reproduce a backend's known deviation.

    Call: ``lstm(x, mask=None, initial_state=None)`` with ``x`` ``(B, T, D)``, ``mask`` ``(B, T)``
    bool (True = valid), ``initial_state`` ``[h0, c0]`` each ``(B, units)``. Returns, as Keras 3:
    ``h_last (B, n)``; ``seq (B, T, n)`` with ``return_sequences``; a tuple ``(out, h, c)`` with
    ``return_state``. Sequences are in processing order (reversed time for ``go_backwards``).
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        *,
        name: Optional[str] = None,
        dtype: Any = None,
        dtype_policy: Any = None,
        semantics: str = "keras3",
        quirks: Iterable[str] = (),
        time_major: bool = False,
        **kwargs: Any,
    ) -> None:
        for key in kwargs:
            if key not in _NO_FORWARD_EFFECT:
                raise UnsupportedModelError(
                    f"LSTM option {key!r} is not a Keras LSTM option the reference knows"
                )
        if time_major:
            raise UnsupportedModelError("LSTM option 'time_major=True' (Keras 2 only) is not supported")
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ConfigError(f"LSTM units: expected a positive integer, got {units!r}")
        flags = dict(use_bias=use_bias, return_sequences=return_sequences, return_state=return_state,
                     go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                     zero_output_for_mask=zero_output_for_mask)
        for key, flag in flags.items():
            if not isinstance(flag, (bool, np.bool_)):
                raise ConfigError(f"LSTM {key}: expected true or false, got {flag!r}")
        for key, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                    or not 0.0 <= float(rate) <= 1.0:
                raise ConfigError(f"LSTM {key}: expected a rate in [0, 1], got {rate!r}")
        unknown = set(quirks) - set(QUIRKS)
        if unknown:
            raise ConfigError(f"quirks: unknown {sorted(unknown)}, expected names from {QUIRKS}")
        self.units = int(units)
        self.activation = _act.canonical_name(activation)
        self.recurrent_activation = _act.canonical_name(recurrent_activation)
        self.semantics = semantics
        self._phi = _act.get(self.activation, semantics)  # type: ignore[arg-type]
        self._sigma = _act.get(self.recurrent_activation, semantics)  # type: ignore[arg-type]
        self.use_bias = bool(use_bias)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"LSTM name: expected a string, got {name!r}")
        self.name = name or "lstm"
        self.dtype = compute_dtype(dtype)
        self.dtype_policy = policy_name(dtype_policy)
        self.quirks = frozenset(quirks)
        self._extra = dict(kwargs)
        self._weights: Optional[_Weights] = None
        self._states: Optional[tuple[Array, Array]] = None

    # --- config -------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The layer's config in Keras's ``get_config()`` form (``dtype`` is the policy name)."""
        cfg: dict[str, Any] = dict(self._extra)
        cfg.update(
            name=self.name,
            dtype=self.dtype_policy,
            units=self.units,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            use_bias=self.use_bias,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            unroll=self.unroll,
            zero_output_for_mask=self.zero_output_for_mask,
        )
        return cfg

    @classmethod
    def from_config(
        cls, config: dict[str, Any], *, dtype: Any = None, semantics: str = "keras3",
        quirks: Iterable[str] = (),
    ) -> "LSTM":
        """Build from a Keras ``LSTM.get_config()`` dict; ``dtype`` there is the Keras policy."""
        cfg = dict(config)
        if "units" not in cfg:
            raise ConfigError("LSTM config: missing 'units'")
        if not all(isinstance(k, str) for k in cfg):
            raise ConfigError(f"LSTM config: option names must be strings, got {sorted(map(repr, cfg))}")
        policy = cfg.pop("dtype", None)
        return cls(**cfg, dtype=dtype, dtype_policy=policy, semantics=semantics, quirks=quirks)

    # --- weights ------------------------------------------------------------------------------
    @property
    def input_dim(self) -> Optional[int]:
        """Feature count ``D`` of the input, known once weights are set."""
        return None if self._weights is None else self._weights.kernel.shape[0]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set ``[kernel (D, 4n), recurrent_kernel (n, 4n), bias (4n,)]`` (no bias if ``use_bias=False``).

        Raises:
            ShapeMismatchError: wrong count or shape, naming the weight and expected vs actual.
        """
        weights = list(weights)
        want = 3 if self.use_bias else 2
        if len(weights) != want:
            raise ShapeMismatchError(
                f"{self.name}: expected {want} weights [kernel, recurrent_kernel"
                f"{', bias' if self.use_bias else ''}], got {len(weights)}"
            )
        n4 = 4 * self.units
        kernel = np.asarray(weights[0])
        if kernel.ndim != 2 or kernel.shape[1] != n4:
            hint = " (looks transposed)" if kernel.ndim == 2 and kernel.shape[0] == n4 else ""
            raise ShapeMismatchError(
                f"{self.name} kernel: expected shape (input_dim, 4*units={n4}), got {kernel.shape}{hint}"
            )
        d = kernel.shape[0]
        self._weights = _Weights(
            kernel=_as_weight(kernel, f"{self.name} kernel", (d, n4), self.dtype),
            recurrent_kernel=_as_weight(
                weights[1], f"{self.name} recurrent_kernel", (self.units, n4), self.dtype
            ),
            bias=_as_weight(weights[2], f"{self.name} bias", (n4,), self.dtype) if self.use_bias else None,
        )
        if self._states is not None and self._states[0].dtype != self.dtype:
            self._states = None

    def get_weights(self) -> list[Array]:
        """The weights in Keras's ``get_weights()`` order (copies)."""
        w = self._require_weights()
        out = [w.kernel.copy(), w.recurrent_kernel.copy()]
        if w.bias is not None:
            out.append(w.bias.copy())
        return out

    def _require_weights(self) -> _Weights:
        if self._weights is None:
            raise StateError(f"{self.name}: weights are not set; call set_weights() first")
        return self._weights

    # --- states -------------------------------------------------------------------------------
    @property
    def states(self) -> Optional[tuple[Array, Array]]:
        """The stored ``(h, c)`` of a stateful layer, each ``(B, units)``; None before the first call."""
        return None if self._states is None else (self._states[0].copy(), self._states[1].copy())

    def set_states(self, states: Sequence[Any]) -> None:
        """Load ``[h, c]`` into a stateful layer (Keras 3: ``layer.states[i].assign(...)``)."""
        if not self.stateful:
            raise StateError(f"{self.name}: layer must be stateful to hold states")
        h, c = self._initial_state(states, np.asarray(states[0]).shape[0] if len(states) else 0)
        self._states = (h, c)

    def reset_state(self) -> None:
        """Zero the stored states of a stateful layer (Keras 3 ``reset_state``)."""
        if not self.stateful:
            raise StateError(f"{self.name}: layer must be stateful to reset its state")
        if self._states is not None:
            self._states = (np.zeros_like(self._states[0]), np.zeros_like(self._states[1]))

    reset_states = reset_state

    def _initial_state(self, initial_state: Any, batch: int) -> tuple[Array, Array]:
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
            got = len(initial_state) if isinstance(initial_state, (list, tuple)) else type(initial_state).__name__
            raise ShapeMismatchError(f"{self.name} initial_state: expected 2 states [h, c], got {got}")
        out = []
        for label, s in zip(("h", "c"), initial_state, strict=True):
            arr = np.asarray(s)
            if arr.dtype.kind not in "fiu":
                raise DTypeMismatchError(f"{self.name} initial_state {label}: expected floats, got {arr.dtype}")
            if arr.shape != (batch, self.units):
                raise ShapeMismatchError(
                    f"{self.name} initial_state {label}: expected shape (batch, units) = "
                    f"({batch}, {self.units}), got {arr.shape}"
                )
            out.append(arr.astype(self.dtype))
        return out[0], out[1]

    # --- call ---------------------------------------------------------------------------------
    def __call__(
        self,
        x: Any,
        mask: Any = None,
        initial_state: Optional[Sequence[Any]] = None,
        training: Optional[bool] = None,
    ) -> Output:
        seq, last, h, c = self.run(x, mask=mask, initial_state=initial_state, training=training)
        out = seq if self.return_sequences else last
        out, h, c = (cast_output(a, self.dtype_policy, self.dtype) for a in (out, h, c))
        return (out, h, c) if self.return_state else out

    def run(
        self,
        x: Any,
        mask: Any = None,
        initial_state: Optional[Sequence[Any]] = None,
        training: Optional[bool] = None,
    ) -> tuple[Optional[Array], Array, Array, Array]:
        """Everything one call computes, in the compute dtype, before Keras's output selection.

        Returns:
            ``(seq, last, h, c)``: ``seq`` ``(B, T, n)`` in processing order (None unless
            ``return_sequences``), ``last`` ``(B, n)`` the last output, ``h``/``c`` final states.
        """
        if training and (self.dropout > 0 or self.recurrent_dropout > 0):
            raise UnsupportedModelError(
                f"{self.name}: training-mode dropout draws random masks and cannot be reproduced; "
                "call with training=False (inference, where dropout has no effect)"
            )
        w = self._require_weights()
        prep = self._prepare(x, mask, initial_state, w)
        # Overflow to inf and inf - inf = NaN happen exactly where Keras's do (exploding unbounded
        # activations, Inf inputs); they are results, not warnings for the caller's -W error run.
        with np.errstate(all="ignore"):
            seq, last, h, c = scan_stack(
                [prep.x], None if prep.mask is None else [prep.mask], prep.h0[None], prep.c0[None], [w],
                self._phi, self._sigma, prep.zofm, keep_sequence=self.return_sequences,
                prev_out0=None if prep.prev0 is None else prep.prev0[None],
            )
        return self._finish(prep, None if seq is None else seq[0], last[0], h[0], c[0])

    def _prepare(self, x: Any, mask: Any, initial_state: Optional[Sequence[Any]], w: "_Weights") -> "_Prepared":
        """Validated inputs in processing order, initial states and the quirk-adjusted masking rule."""
        arr = np.asarray(x)
        if arr.ndim == 3:  # before as_input casts (a copy as large as the input)
            B, T, D = arr.shape
            if B * T * (D + 5 * self.units) > MAX_WORK_ELEMENTS:
                raise ResourceLimitError(
                    f"{self.name}: one call needs B*T*(features+5*units) = {B}*{T}*({D}+5*{self.units}) "
                    f"elements (input copy, projections, sequence), over the limit "
                    f"MAX_WORK_ELEMENTS={MAX_WORK_ELEMENTS}"
                )
        xa = as_input(arr, w.kernel.shape[0], self.dtype)
        B, T, _ = xa.shape
        m = as_mask(mask, B, T)
        if initial_state is not None:
            h0, c0 = self._initial_state(initial_state, B)
        elif self.stateful and self._states is not None:
            h0, c0 = self._states
        else:
            h0 = c0 = np.zeros((B, self.units), dtype=self.dtype)
        if self.stateful and self._states is not None and self._states[0].shape[0] != B:
            raise StateError(
                f"{self.name}: stateful layer was called with batch {self._states[0].shape[0]}, "
                f"now {B}; Keras requires a fixed batch size for stateful layers"
            )
        xp, mp = processing_order(xa, m, self.go_backwards)
        zofm = self.zero_output_for_mask
        d_quirk = (
            "unroll_mask_reversed_zeroing" in self.quirks
            and self.unroll and zofm and self.go_backwards and self.return_sequences
        )
        if self.unroll and zofm and ("unroll_ignores_zero_output" in self.quirks or d_quirk):
            zofm = False
        prev0 = None
        if "masked_prefix_outputs_h0" in self.quirks and not self.unroll and not zofm:
            prev0 = h0
        return _Prepared(xp, mp, m, h0, c0, zofm, prev0, d_quirk)

    def _finish(self, prep: "_Prepared", seq: Optional[Array], last: Array, h: Array, c: Array
                ) -> tuple[Optional[Array], Array, Array, Array]:
        if prep.d_quirk and seq is not None and prep.mask_original is not None:
            seq = np.where(prep.mask_original[:, :, None], seq, np.zeros((), seq.dtype))
        if self.stateful:
            if "stateful_state_not_stored" in self.quirks:  # torch + mixed policy: Keras never stores them
                z = np.zeros_like(h)
                self._states = (z, z)
            else:
                self._states = (h, c)
        return seq, last, h, c

    def __repr__(self) -> str:
        flags = [k for k in ("return_sequences", "return_state", "go_backwards", "stateful") if getattr(self, k)]
        return f"LSTM({self.units}, name={self.name!r}{''.join(', ' + f + '=True' for f in flags)})"
