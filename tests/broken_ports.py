"""More ports with one known fault each, written independently of bilstm_ref.diagnose (the explainer
must find them without sharing their code): layout mistakes and wrong call semantics."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import bilstm_ref as br
from broken_impls import _Wrapped, _per_gate


def onnx_gate_order(spec: br.LayerSpec) -> Any:
    """Reads Keras's i, f, c, o gate blocks as ONNX's i, o, f, c."""
    def reorder(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        i, f, c, o = (a[..., k * n:(k + 1) * n] for k in range(4))
        return np.concatenate([i, o, f, c], axis=-1)
    return br.build(_per_gate(spec, reorder))


def kernel_read_transposed(spec: br.LayerSpec) -> Any:
    """Takes a row-major (4n, D) buffer for Keras's (D, 4n) kernel."""
    def flip(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        return a.T.copy().reshape(a.shape) if kind == "kernel" else a
    return br.build(_per_gate(spec, flip))


def recurrent_blocks_transposed(spec: br.LayerSpec) -> Any:
    """Copies each gate's n x n recurrent block into a torch-style layout without transposing it."""
    def flip(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        if kind != "recurrent":
            return a
        b = a.copy()
        for g in range(4):
            b[:, g * n:(g + 1) * n] = a[:, g * n:(g + 1) * n].T
        return b
    return br.build(_per_gate(spec, flip))


class backward_not_realigned(_Wrapped):  # noqa: N801
    """Concatenates the backward direction's sequence in its processing order."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        y = self.ref(x, mask=mask, initial_state=initial_state)
        n = int(self.spec.config["layer"]["config"]["units"])
        first = y[0] if isinstance(y, tuple) else y
        first = np.concatenate([first[..., :n], first[:, ::-1, n:]], axis=-1)
        return (first, *y[1:]) if isinstance(y, tuple) else first


class go_backwards_ignored(_Wrapped):  # noqa: N801
    """Processes the sequence forward even with go_backwards=True."""

    def __init__(self, spec: br.LayerSpec) -> None:
        super().__init__(dataclasses.replace(spec, config={**spec.config, "go_backwards": False}))


class keras2_hard_sigmoid(_Wrapped):  # noqa: N801
    """Uses Keras 2's hard_sigmoid (0.2 x + 0.5, clipped) in a Keras 3 model."""

    def __init__(self, spec: br.LayerSpec) -> None:
        super().__init__(dataclasses.replace(spec, provenance={**spec.provenance, "semantics": "keras2"}))


class float32_port(_Wrapped):  # noqa: N801
    """Computes everything in float32."""

    def __init__(self, spec: br.LayerSpec) -> None:
        self.ref = br.build(spec, dtype="float32")
        self.spec = spec


class initial_state_c_h(_Wrapped):  # noqa: N801
    """Takes the initial states as (c, h) pairs."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        if initial_state is not None:
            s = list(initial_state)
            initial_state = [v for k in range(0, len(s), 2) for v in (s[k + 1], s[k])]
        return self.ref(x, mask=mask, initial_state=initial_state)


class always_concat(_Wrapped):  # noqa: N801
    """Sums the two directions whatever merge_mode says (for an 'ave' layer)."""

    def __init__(self, spec: br.LayerSpec) -> None:
        super().__init__(dataclasses.replace(spec, config={**spec.config, "merge_mode": "sum"}))


def sign_flipped_output(spec: br.LayerSpec) -> Any:
    """A fault outside the library: the output's sign flipped on every other unit."""
    ref = br.build(spec)

    class Impl(_Wrapped):
        def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
            y = self.ref(x, mask=mask, initial_state=initial_state)
            first = np.array(y[0] if isinstance(y, tuple) else y)
            first[..., ::2] *= -1
            return (first, *y[1:]) if isinstance(y, tuple) else first

    impl = Impl(spec)
    impl.ref = ref
    return impl


class mask_zeroes_state(_Wrapped):  # noqa: N801
    """Resets h and c to zero at masked steps (and outputs zeros there), one step at a time."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        if mask is None:
            return self.ref(x, initial_state=initial_state)
        x, mask = np.asarray(x), np.asarray(mask, dtype=bool)
        n = int(self.spec.config["units"])
        h = np.zeros((x.shape[0], n)) if initial_state is None else np.asarray(initial_state[0], dtype=np.float64)
        c = np.zeros((x.shape[0], n)) if initial_state is None else np.asarray(initial_state[1], dtype=np.float64)
        cell = br.LSTM.from_config({**self.spec.config, "return_sequences": False, "return_state": True,
                                    "go_backwards": False})
        cell.set_weights(self.spec.weights)
        order = range(x.shape[1] - 1, -1, -1) if self.spec.config.get("go_backwards") else range(x.shape[1])
        ys = []
        for t in order:
            _, h_new, c_new = cell(x[:, t:t + 1], initial_state=[h, c])
            keep = mask[:, t:t + 1]
            h, c = np.where(keep, h_new, 0.0), np.where(keep, c_new, 0.0)
            ys.append(np.where(keep, h_new, 0.0))
        seq = np.stack(ys, axis=1)
        out = seq if self.spec.config.get("return_sequences") else seq[:, -1]
        return (out, h, c) if self.spec.config.get("return_state") else out
