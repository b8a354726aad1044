"""Keras ``LSTM`` / ``Bidirectional(LSTM)`` on ``torch.nn.LSTM``: an ``--impl`` plug-in for bilstm_ref.

``factory(spec)`` takes a :class:`bilstm_ref.LayerSpec` and returns a callable with the Keras call
signature, ``impl(x, mask=None, initial_state=None)`` (plus ``reset_state()``), that runs the layer
through ``torch.nn.LSTM`` (``batch_first=True``) with weights converted from the Keras layout by
:func:`bilstm_ref.convert.keras_to_torch` (exact; see docs/weights.md)::

    Keras (gate blocks i, f, c, o)        torch (gate blocks i, f, g, o)
    kernel            (D, 4n)       ->    weight_ih_l0 (4n, D) = kernel.T
    recurrent_kernel  (n, 4n)       ->    weight_hh_l0 (4n, n) = recurrent_kernel.T
    bias              (4n,)         ->    bias_ih_l0 = bias,  bias_hh_l0 = 0

Everything Keras adds around the cell (time reversal, re-alignment, merge modes, masked-step
outputs, state bookkeeping) is written here in torch; what ``nn.LSTM`` cannot compute is refused
with ``NotImplementedError`` naming the reason, never approximated:

=========================================  =========  ===================================================
flag                                       supported  how / why not
=========================================  =========  ===================================================
return_sequences, return_state             yes        select ``nn.LSTM``'s sequence / ``(h_n, c_n)``
go_backwards                               yes        flip time; sequence returned in processing order
Bidirectional, merge_mode concat/sum/      yes        a second ``nn.LSTM`` on the reversed input; its
mul/ave/None                                          sequence flipped back when returning sequences
custom backward_layer (tanh/sigmoid cell)  yes        its own ``nn.LSTM`` (units may differ)
initial_state, stateful + reset_state()    yes        ``(h0, c0)`` passed in; final states kept
use_bias=False                             yes        ``nn.LSTM(bias=False)``
dropout, recurrent_dropout                 yes        no effect at inference (no ``training`` argument)
unroll                                     yes        changes Keras's loop, not the math
policies float32, float64                  yes        computed in that dtype
mixed_float16, mixed_bfloat16              yes        as Keras: the whole recurrence in the half type
                                                      (float32 weights cast), outputs in it; torch's
                                                      and TF's roundings differ, so this agrees within
                                                      the half-precision tolerance, not bit for bit
mask, right-padded rows (incl. all-valid   yes        ``pack_padded_sequence``; Keras's masked-step
and fully masked rows)                                outputs (repeated / zero, zero_output_for_mask)
                                                      rebuilt around it
mask with left padding or holes            no         packed sequences only drop a suffix per row;
                                                      ``nn.LSTM`` has no per-step mask to freeze states
activation != tanh, recurrent != sigmoid   no         ``nn.LSTM``'s cell is fixed to tanh / sigmoid
time_major=True (Keras 2)                  no         Keras 3 configs never carry it
=========================================  =========  ===================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bilstm_ref.convert import keras_to_torch, permute_gates

__all__ = [
    "KERAS_GATE_FOR_TORCH_GATE",
    "TorchBidirectional",
    "TorchLSTM",
    "factory",
    "reverse_valid_prefix",
    "right_padding_lengths",
    "to_torch_lstm",
]

#: Keras gate block feeding torch gate k (torch i, f, g, o = Keras i, f, c, o: the identity).
KERAS_GATE_FOR_TORCH_GATE = (0, 1, 2, 3)

#: Keras dtype policy -> the dtype Keras computes in and returns (mixed_*: float32 weights, cast).
_POLICIES = {
    "float32": torch.float32, "float64": torch.float64, "mixed_float16": torch.float16,
    "float16": torch.float16, "mixed_bfloat16": torch.bfloat16, "bfloat16": torch.bfloat16,
}
_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _policy_dtype(config: dict[str, Any]) -> torch.dtype:
    """The torch dtype of a config's Keras dtype policy (a name, or Keras 3's serialized DTypePolicy)."""
    p = config.get("dtype") or "float32"
    if isinstance(p, dict):
        p = (p.get("config") or {}).get("name")
    if p not in _POLICIES:
        raise NotImplementedError(f"dtype policy {p!r}: the adapter knows {sorted(_POLICIES)}")
    return _POLICIES[p]


def _merge(y_f: torch.Tensor, y_b: torch.Tensor, merge_mode: str | None) -> list[torch.Tensor]:
    if merge_mode == "concat":
        return [torch.cat([y_f, y_b], dim=-1)]
    if merge_mode == "sum":
        return [y_f + y_b]
    if merge_mode == "mul":
        return [y_f * y_b]
    if merge_mode == "ave":
        return [(y_f + y_b) / 2]
    return [y_f, y_b]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """float16/32/64 as themselves; bfloat16 (which NumPy lacks) as float32 holding bfloat16 values."""
    return (t.float() if t.dtype == torch.bfloat16 else t).detach().cpu().numpy()


def to_torch_lstm(kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray | None,
                  dtype: torch.dtype) -> nn.LSTM:
    """An ``nn.LSTM(D, n, batch_first=True)`` holding Keras's ``[kernel, recurrent_kernel, bias]``.

    The layout move is :func:`bilstm_ref.convert.keras_to_torch`, after reordering Keras's gate
    blocks by :data:`KERAS_GATE_FOR_TORCH_GATE` (the identity); each value is then rounded once to ``dtype``.
    """
    weights = [kernel, recurrent_kernel] + ([] if bias is None else [bias])
    state = keras_to_torch([permute_gates(np.asarray(w), KERAS_GATE_FOR_TORCH_GATE) for w in weights],
                           bidirectional=False)
    lstm = nn.LSTM(kernel.shape[0], kernel.shape[1] // 4, batch_first=True, bias=bias is not None, dtype=dtype)
    with torch.no_grad():  # float64 weights stay float64; float32 ones are widened exactly, then cast once
        for key, value in state.items():
            getattr(lstm, key).copy_(torch.from_numpy(np.asarray(value, np.float64)))
    return lstm.eval().requires_grad_(False)


def right_padding_lengths(mask: np.ndarray | None, batch: int, time: int) -> torch.Tensor | None:
    """Per-row valid lengths of a right-padded ``(B, T)`` mask (``1110``, ``0000``); None for no mask.

    Raises NotImplementedError for any other pattern (left padding, holes): ``nn.LSTM`` has no
    per-step mask, and a packed sequence can only drop each row's tail.
    """
    if mask is None:
        return None
    m = np.asarray(mask).astype(bool).reshape(batch, time)
    lengths = m.sum(axis=1)
    if not np.array_equal(m, np.arange(time)[None, :] < lengths[:, None]):
        raise NotImplementedError(
            "mask is not right-padded (left padding or holes): nn.LSTM has no per-step mask and "
            "pack_padded_sequence only drops a suffix of each row, so Keras's frozen states cannot be computed")
    return torch.from_numpy(lengths).long()


def reverse_valid_prefix(a: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` steps of each row of ``(B, T, F)``; later steps stay put.

    (``tf.reverse_sequence``.) Keras flips the *whole* padded axis for a backward direction, so a
    right-padded row becomes leading masked steps, which output zeros and leave the state alone:
    running ``nn.LSTM`` on the reversed valid prefix computes the same states and outputs.
    """
    t = torch.arange(a.shape[1])[None, :]
    L = lengths[:, None]
    idx = torch.where(t < L, L - 1 - t, t)
    return torch.gather(a, 1, idx[:, :, None].expand(-1, -1, a.shape[2]))


class _Direction:
    """One Keras LSTM (a layer, or one half of a Bidirectional) on ``nn.LSTM``.

    ``run`` returns ``(seq, last, h, c)`` with ``seq`` ``(B, T, n)`` in *processing* order, as the
    Keras RNN loop produces it before any Bidirectional re-alignment.
    """

    def __init__(self, config: dict[str, Any], weights: Sequence[np.ndarray],
                 zero_output_for_mask: bool | None = None) -> None:
        for key in ("activation", "recurrent_activation"):
            want = "tanh" if key == "activation" else "sigmoid"
            if config.get(key, want) != want:
                raise NotImplementedError(f"{config.get('name', 'lstm')}: {key}={config.get(key)!r}: "
                                          "nn.LSTM's cell is fixed to tanh / sigmoid")
        if config.get("time_major"):
            raise NotImplementedError("time_major=True (Keras 2 only)")
        self.units = int(config["units"])
        self.go_backwards = bool(config.get("go_backwards", False))
        self.stateful = bool(config.get("stateful", False))
        self.zero_output_for_mask = bool(config.get("zero_output_for_mask", False)
                                         if zero_output_for_mask is None else zero_output_for_mask)
        self.dtype = _policy_dtype(config)
        use_bias = bool(config.get("use_bias", True))
        kernel, recurrent = weights[0], weights[1]
        self.lstm = to_torch_lstm(kernel, recurrent, weights[2] if use_bias else None, self.dtype)
        self.states: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset_state(self) -> None:
        if self.states is not None:
            self.states = (torch.zeros_like(self.states[0]), torch.zeros_like(self.states[1]))

    def run(self, x: torch.Tensor, lengths: torch.Tensor | None, initial: Sequence[Any] | None) -> tuple:
        B = x.shape[0]
        x = x.to(self.dtype)
        if initial is not None:
            h0, c0 = (torch.tensor(np.asarray(s)).to(self.dtype) for s in initial)
        elif self.stateful and self.states is not None:
            h0, c0 = self.states
        else:
            h0 = c0 = torch.zeros(B, self.units, dtype=self.dtype)
        with torch.no_grad():
            if lengths is None:
                seq, (h, c) = self.lstm(x.flip(1) if self.go_backwards else x, (h0[None], c0[None]))
                h, c, last = h[0], c[0], seq[:, -1]
            else:
                seq, last, h, c = self._run_masked(x, lengths, h0, c0)
        if self.stateful:
            self.states = (h, c)
        return seq, last, h, c

    def _run_masked(self, x: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> tuple:
        """Keras's masked loop for right-padded rows (states frozen at masked steps)."""
        T = x.shape[1]
        if self.go_backwards:
            x = reverse_valid_prefix(x, lengths)
        packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.lstm(packed, (h0[None], c0[None]))
        seq, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # zeros past each row's length
        h, c = h[0], c[0]
        empty = (lengths == 0)[:, None]  # fully masked rows: states untouched, outputs zero
        h, c = torch.where(empty, h0, h), torch.where(empty, c0, c)
        h_out = torch.where(empty, torch.zeros_like(h), h)
        seq = torch.where(empty[:, :, None], torch.zeros_like(seq), seq)
        if self.go_backwards:
            # Processing order reads the padding first: zeros (the carried output starts at 0),
            # then the valid steps; the last processed step (x[:, 0]) is valid.
            return reverse_valid_prefix(seq, lengths).flip(1), h_out, h, c
        valid_tail = (lengths == T)[:, None]
        if self.zero_output_for_mask:  # masked tail steps output 0, the last output included
            return seq, torch.where(valid_tail, h_out, torch.zeros_like(h_out)), h, c
        tail = torch.arange(T)[None, :, None] >= lengths[:, None, None]
        return torch.where(tail, h_out[:, None, :], seq), h_out, h, c  # tail repeats the last output


def _as_tensor(x: Any) -> torch.Tensor:
    return torch.tensor(np.asarray(x))


class TorchLSTM:
    """``keras.layers.LSTM`` on ``nn.LSTM``: returns ``out`` or ``(out, h, c)``, as Keras."""

    def __init__(self, config: dict[str, Any], weights: Sequence[np.ndarray]) -> None:
        self.layer = _Direction(config, weights)
        self.return_sequences = bool(config.get("return_sequences", False))
        self.return_state = bool(config.get("return_state", False))

    def reset_state(self) -> None:
        self.layer.reset_state()

    def __call__(self, x: Any, mask: Any = None, initial_state: Sequence[Any] | None = None) -> Any:
        xt = _as_tensor(x)
        lengths = right_padding_lengths(mask, xt.shape[0], xt.shape[1])
        seq, last, h, c = self.layer.run(xt, lengths, initial_state)
        out = [_to_numpy(o) for o in [seq if self.return_sequences else last] + ([h, c] if self.return_state else [])]
        return tuple(out) if self.return_state else out[0]


class TorchBidirectional:
    """``keras.layers.Bidirectional(LSTM)`` on two ``nn.LSTM``s.

    As Keras: both halves read the same input and mask and get ``zero_output_for_mask =
    return_sequences``; the backward sequence is flipped back to input time only when returning
    sequences; states are appended unmerged, ``(h_fw, c_fw, h_bw, c_bw)``.
    """

    def __init__(self, config: dict[str, Any], weights: Sequence[np.ndarray]) -> None:
        fw_cfg = dict(config["layer"]["config"])
        bw_entry = config.get("backward_layer")
        if bw_entry is None:
            bw_cfg = dict(fw_cfg, go_backwards=not fw_cfg.get("go_backwards", False))
        else:
            bw_cfg = dict(bw_entry["config"])
        self.merge_mode = config.get("merge_mode", "concat")
        if self.merge_mode not in _MERGE_MODES:
            raise NotImplementedError(f"merge_mode {self.merge_mode!r}")
        self.return_sequences = bool(fw_cfg.get("return_sequences", False))
        self.return_state = bool(fw_cfg.get("return_state", False))
        n_fw = 3 if fw_cfg.get("use_bias", True) else 2
        self.forward = _Direction(fw_cfg, weights[:n_fw], zero_output_for_mask=self.return_sequences)
        self.backward = _Direction(bw_cfg, weights[n_fw:], zero_output_for_mask=self.return_sequences)
        self.dtype = _policy_dtype(config)  # as Keras, the wrapper's policy does not reach the halves

    def reset_state(self) -> None:
        self.forward.reset_state()
        self.backward.reset_state()

    def __call__(self, x: Any, mask: Any = None, initial_state: Sequence[Any] | None = None) -> Any:
        xt = _as_tensor(x)
        lengths = right_padding_lengths(mask, xt.shape[0], xt.shape[1])
        init = list(initial_state) if initial_state is not None else None
        seq_f, last_f, h_f, c_f = self.forward.run(xt, lengths, init[:2] if init else None)
        seq_b, last_b, h_b, c_b = self.backward.run(xt, lengths, init[2:] if init else None)
        y_f, y_b = (seq_f, seq_b.flip(1)) if self.return_sequences else (last_f, last_b)
        # Each half returns in its own policy's dtype; Keras merges in the wrapper's.
        outputs = _merge(y_f.to(self.dtype), y_b.to(self.dtype), self.merge_mode)
        if self.return_state:
            outputs += [h_f, c_f, h_b, c_b]
        result = tuple(_to_numpy(o) for o in outputs)
        return result if len(result) > 1 else result[0]


def factory(spec: Any) -> Any:
    """The ``--impl examples.torch_adapter:factory`` entry point: a LayerSpec -> a torch-backed layer."""
    if spec.class_name == "LSTM":
        return TorchLSTM(spec.config, spec.weights)
    if spec.class_name == "Bidirectional":
        inner = spec.config["layer"]
        if inner.get("class_name", "LSTM") != "LSTM":
            raise NotImplementedError(f"Bidirectional around {inner.get('class_name')!r}: only LSTM")
        return TorchBidirectional(spec.config, spec.weights)
    raise NotImplementedError(f"layer class {spec.class_name!r}: only LSTM and Bidirectional(LSTM)")
