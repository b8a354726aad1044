"""The reference ``Bidirectional``: Keras 3's ``Bidirectional(LSTM)`` wrapper in NumPy.

What the wrapper does (docs/semantics.md#go_backwards-and-the-backward-layer), reproduced here:

1. the forward layer is a fresh copy of the wrapped layer's config, named ``forward_<name>``;
2. the backward layer is ``backward_layer`` as given, or a copy with ``go_backwards`` negated,
   named ``backward_<name>``;
3. both get ``zero_output_for_mask = return_sequences`` (overwriting any user value), so masked
   steps of a Bidirectional sequence are exactly 0;
4. both read the same input and the same un-reversed mask; ``initial_state`` is split in half,
   ``[h_fw, c_fw, h_bw, c_bw]``;
5. the backward sequence is flipped back to input time **only** when returning sequences, then
   the outputs are merged; states are appended unmerged: ``(out, h_fw, c_fw, h_bw, c_bw)``, or
   ``(y_fw, y_bw, h_fw, c_fw, h_bw, c_bw)`` for ``merge_mode=None``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np

from .dtypes import cast_output, policy_name
from ..errors import ConfigError, ShapeMismatchError, StateError, UnsupportedModelError
from .lstm import LSTM, run_pair
from .sequence import align_backward

__all__ = ["Bidirectional", "MERGE_MODES", "merge"]

Array = np.ndarray
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def merge(y_fw: Array, y_bw: Array, merge_mode: Optional[str]) -> Union[Array, tuple[Array, Array]]:
    """Combine the forward and the (re-aligned) backward outputs as Keras's ``merge_mode`` does."""
    with np.errstate(all="ignore"):  # inf * 0 from exploding activations is Keras's result too
        return _merge(y_fw, y_bw, merge_mode)


def _merge(y_fw: Array, y_bw: Array, merge_mode: Optional[str]) -> Union[Array, tuple[Array, Array]]:
    if merge_mode == "concat":
        return np.concatenate([y_fw, y_bw], axis=-1)
    if merge_mode == "sum":
        return y_fw + y_bw
    if merge_mode == "mul":
        return y_fw * y_bw
    if merge_mode == "ave":
        return (y_fw + y_bw) / np.asarray(2, dtype=y_fw.dtype)
    if merge_mode is None:
        return y_fw, y_bw
    raise ConfigError(f"merge_mode: expected one of {MERGE_MODES}, got {merge_mode!r}")


def _layer_config(entry: Any, where: str) -> dict[str, Any]:
    """The LSTM config inside a serialized Keras layer entry (``{"class_name": "LSTM", "config": {...}}``)."""
    if isinstance(entry, LSTM):
        return entry.get_config()
    if not isinstance(entry, dict):
        raise UnsupportedModelError(f"{where}: expected a serialized LSTM layer, got {type(entry).__name__}")
    if "class_name" not in entry:
        return dict(entry)  # already a bare config
    if entry["class_name"] != "LSTM":
        raise UnsupportedModelError(
            f"{where}: only LSTM layers are supported inside Bidirectional, got {entry['class_name']!r}"
        )
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise UnsupportedModelError(f"{where}.config: expected a dict, got {type(cfg).__name__}")
    return dict(cfg)


class Bidirectional:
    """NumPy reference of ``keras.layers.Bidirectional(LSTM(...))``.

    Args:
        layer: the wrapped :class:`LSTM` (its config is copied; it is not run itself).
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``None``.
        backward_layer: an optional custom backward :class:`LSTM`, used as is (Keras's
            constraints apply: ``go_backwards`` must differ from ``layer``'s; ``stateful``,
            ``return_sequences`` and ``return_state`` must be equal; ``units`` may differ only
            with ``concat`` or ``None``).
        name: the wrapper's name.
        dtype_policy: the wrapper's Keras dtype policy: outputs are cast to it after the merge;
            as in Keras it does not reach the inner layers.
        dtype: the reference's compute dtype for both directions, ``"float64"`` or ``"float32"``
            (default: the wrapped layers' own).

    Call: ``bi(x, mask=None, initial_state=None)``, ``x`` ``(B, T, D)``, ``mask`` ``(B, T)``,
    ``initial_state`` ``[h_fw, c_fw, h_bw, c_bw]`` each ``(B, units)``. Returns the merged output
    ``(B, T, n_fw + n_bw)`` for concat (``(B, T, n)`` for sum/mul/ave; ``(B, ·)`` without
    ``return_sequences``) and, with ``return_state``, a tuple ``(out, h_fw, c_fw, h_bw, c_bw)``.
    """

    def __init__(
        self,
        layer: LSTM,
        merge_mode: Optional[str] = "concat",
        backward_layer: Optional[LSTM] = None,
        *,
        name: Optional[str] = None,
        dtype_policy: Any = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        for key in kwargs:
            if key not in ("trainable", "weights", "input_shape", "batch_input_shape", "batch_size"):
                raise UnsupportedModelError(f"Bidirectional option {key!r} is not one the reference knows")
        if kwargs.get("weights") is not None:
            raise UnsupportedModelError("Bidirectional(weights=...) is not supported; call set_weights()")
        if not isinstance(layer, LSTM):
            raise UnsupportedModelError(
                f"Bidirectional layer: expected a bilstm_ref.LSTM, got {type(layer).__name__}"
            )
        if merge_mode not in MERGE_MODES:
            raise ConfigError(f"merge_mode: expected one of {MERGE_MODES}, got {merge_mode!r}")
        self.merge_mode = merge_mode
        self.name = name or "bidirectional"
        self.dtype_policy = policy_name(dtype_policy)
        self.trainable = kwargs.get("trainable", True)
        opts = dict(dtype=dtype or layer.dtype, semantics=layer.semantics, quirks=layer.quirks)
        fw_cfg = layer.get_config()
        base = layer.name.removeprefix("forward_")  # as Keras: a rebuilt config is not prefixed twice
        fw_cfg["name"] = f"forward_{base}"
        fw_cfg["zero_output_for_mask"] = layer.return_sequences
        self.forward_layer = LSTM.from_config(fw_cfg, **opts)
        if backward_layer is None:
            if layer.go_backwards:
                raise ConfigError(
                    "Bidirectional: the wrapped layer has go_backwards=True, so forward and backward "
                    "layers would not have different go_backwards (Keras 3 raises ValueError)"
                )
            bw_cfg = layer.get_config()
            bw_cfg["name"] = f"backward_{base}"
            bw_cfg["go_backwards"] = not layer.go_backwards
        else:
            if not isinstance(backward_layer, LSTM):
                raise UnsupportedModelError(
                    f"Bidirectional backward_layer: expected a bilstm_ref.LSTM, got {type(backward_layer).__name__}"
                )
            if backward_layer.go_backwards == layer.go_backwards:
                raise ConfigError(
                    f"Bidirectional: forward layer and backward_layer must have different go_backwards, "
                    f"both are {layer.go_backwards}"
                )
            for attr in ("stateful", "return_sequences", "return_state"):
                if getattr(backward_layer, attr) != getattr(layer, attr):
                    raise ConfigError(
                        f"Bidirectional: forward layer and backward_layer must have the same {attr}, "
                        f"got {getattr(layer, attr)} and {getattr(backward_layer, attr)}"
                    )
            if merge_mode in ("sum", "mul", "ave") and backward_layer.units != layer.units:
                raise ConfigError(
                    f"Bidirectional merge_mode={merge_mode!r} needs equal units, got forward "
                    f"{layer.units} and backward {backward_layer.units}"
                )
            bw_cfg = backward_layer.get_config()
            opts = dict(dtype=dtype or backward_layer.dtype, semantics=backward_layer.semantics,
                        quirks=backward_layer.quirks)
        bw_cfg["zero_output_for_mask"] = layer.return_sequences
        self.backward_layer = LSTM.from_config(bw_cfg, **opts)
        # As in Keras: a custom backward layer is used as is (its weights come along); the forward
        # and derived backward layers are fresh copies of a config, so they need set_weights().
        if backward_layer is not None and backward_layer._weights is not None:
            self.backward_layer.set_weights(backward_layer.get_weights())

    # --- flags (the forward layer's, as Keras reports them) ----------------------------------
    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    @property
    def return_state(self) -> bool:
        return self.forward_layer.return_state

    @property
    def stateful(self) -> bool:
        return self.forward_layer.stateful

    @property
    def dtype(self) -> np.dtype:
        return self.forward_layer.dtype

    # --- config -------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Keras's ``Bidirectional.get_config()`` form, with ``layer`` and ``backward_layer`` entries."""

        def entry(lstm: LSTM) -> dict[str, Any]:
            return {"module": "keras.layers", "class_name": "LSTM", "config": lstm.get_config(), "registered_name": None}

        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy,
            "merge_mode": self.merge_mode,
            "layer": entry(self.forward_layer),
            "backward_layer": entry(self.backward_layer),
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], *, dtype: Any = None, semantics: str = "keras3", quirks: Sequence[str] = ()
    ) -> "Bidirectional":
        """Build from a Keras ``Bidirectional.get_config()`` dict (``layer`` must be an LSTM)."""
        cfg = dict(config)
        if "layer" not in cfg:
            raise UnsupportedModelError("Bidirectional config: missing 'layer'")
        opts = dict(dtype=dtype, semantics=semantics, quirks=quirks)
        layer = LSTM.from_config(_layer_config(cfg.pop("layer"), "layer"), **opts)
        bw = cfg.pop("backward_layer", None)
        backward = None if bw is None else LSTM.from_config(_layer_config(bw, "backward_layer"), **opts)
        policy = cfg.pop("dtype", None)
        merge_mode = cfg.pop("merge_mode", "concat")
        name = cfg.pop("name", None)
        return cls(layer, merge_mode=merge_mode, backward_layer=backward, name=name, dtype_policy=policy, **cfg)

    # --- weights ------------------------------------------------------------------------------
    def set_weights(self, weights: Sequence[Any]) -> None:
        """``[fw_kernel, fw_recurrent, fw_bias, bw_kernel, bw_recurrent, bw_bias]`` (Keras's order)."""
        weights = list(weights)
        n_fw = 3 if self.forward_layer.use_bias else 2
        n_bw = 3 if self.backward_layer.use_bias else 2
        if len(weights) != n_fw + n_bw:
            raise ShapeMismatchError(
                f"{self.name}: expected {n_fw + n_bw} weights ({n_fw} forward + {n_bw} backward), got {len(weights)}"
            )
        self.forward_layer.set_weights(weights[:n_fw])
        self.backward_layer.set_weights(weights[n_fw:])
        if self.forward_layer.input_dim != self.backward_layer.input_dim:
            raise ShapeMismatchError(
                f"{self.name}: forward kernel has input_dim {self.forward_layer.input_dim}, "
                f"backward kernel {self.backward_layer.input_dim}"
            )

    def get_weights(self) -> list[Array]:
        return self.forward_layer.get_weights() + self.backward_layer.get_weights()

    # --- states -------------------------------------------------------------------------------
    @property
    def states(self) -> Optional[tuple[Array, Array, Array, Array]]:
        """``(h_fw, c_fw, h_bw, c_bw)`` of a stateful wrapper; None before the first call."""
        fw, bw = self.forward_layer.states, self.backward_layer.states
        return None if fw is None or bw is None else (*fw, *bw)

    def reset_state(self) -> None:
        """Zero both directions' states (Keras 3 ``reset_state``); only for stateful layers."""
        if not self.stateful:
            raise StateError(f"{self.name}: layer must be stateful to reset its state")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    reset_states = reset_state

    # --- call ---------------------------------------------------------------------------------
    def __call__(
        self,
        x: Any,
        mask: Any = None,
        initial_state: Optional[Sequence[Any]] = None,
        training: Optional[bool] = None,
    ) -> Union[Array, tuple[Array, ...]]:
        fw_state = bw_state = None
        if initial_state is not None:
            states = list(initial_state)
            if len(states) != 4:
                raise ShapeMismatchError(
                    f"{self.name} initial_state: expected 4 states [h_fw, c_fw, h_bw, c_bw], got {len(states)}"
                )
            fw_state, bw_state = states[:2], states[2:]
        (seq_f, last_f, h_f, c_f), (seq_b, last_b, h_b, c_b) = run_pair(
            self.forward_layer, self.backward_layer, x, mask, fw_state, bw_state, training)
        if self.return_sequences:
            y_f, y_b = seq_f, align_backward(seq_b)
        else:
            y_f, y_b = last_f, last_b
        # Keras casts each direction's output to the inner policy, then to the wrapper's.
        fp, bp, dt = self.forward_layer.dtype_policy, self.backward_layer.dtype_policy, self.dtype
        y_f = cast_output(cast_output(y_f, fp, dt), self.dtype_policy, dt)
        y_b = cast_output(cast_output(y_b, bp, dt), self.dtype_policy, dt)
        merged = merge(y_f, y_b, self.merge_mode)
        outputs = merged if isinstance(merged, tuple) else (merged,)
        # Keras merges in the wrapper's compute dtype: a bfloat16 sum/product/mean is rounded again
        # (float16 arrays round by themselves; bfloat16 values live in float32 arrays here).
        outputs = tuple(cast_output(o, self.dtype_policy, dt) for o in outputs)
        if self.return_state:
            states = (cast_output(h_f, fp, dt), cast_output(c_f, fp, dt), cast_output(h_b, bp, dt), cast_output(c_b, bp, dt))
            outputs = outputs + states
        return outputs[0] if len(outputs) == 1 else outputs

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r}, merge_mode={self.merge_mode!r}, name={self.name!r})"
