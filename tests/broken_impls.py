"""Subtly wrong implementations, as ``--impl`` factories, that the committed fixtures must catch.

Each factory takes a :class:`bilstm_ref.LayerSpec` and returns something called like the
reference (``impl(x, mask=None, initial_state=None)``, ``reset_state()``), wrong in one way a
real port gets wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import bilstm_ref as br
from bilstm_ref.reference.dtypes import _round_bfloat16


def _directions(spec: br.LayerSpec) -> list[int]:
    if spec.class_name == "LSTM":
        return [int(spec.config["units"])]
    fw = int(spec.config["layer"]["config"]["units"])
    bw = spec.config.get("backward_layer")
    return [fw, fw if bw is None else int(bw["config"]["units"])]


def _per_gate(spec: br.LayerSpec, fn: Any) -> br.LayerSpec:
    """Apply ``fn(array, n, kind)`` to every weight (kind: kernel / recurrent / bias)."""
    weights = list(spec.weights)
    out, i = [], 0
    for n in _directions(spec):
        per_dir = 3 if len(weights) in (3, 6) else 2  # with or without bias
        for kind in ("kernel", "recurrent", "bias")[:per_dir]:
            out.append(fn(np.array(weights[i], dtype=np.float64), n, kind))
            i += 1
    return dataclasses.replace(spec, weights=tuple(out))


class _Wrapped:
    """The reference, with hooks around the call."""

    def __init__(self, spec: br.LayerSpec) -> None:
        self.ref = br.build(spec)
        self.spec = spec

    def reset_state(self) -> None:
        self.ref.reset_state()

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        return self.ref(x, mask=mask, initial_state=initial_state)


def swapped_gates(spec: br.LayerSpec) -> Any:
    """Reads Keras's i, f, c, o layout as f, i, c, o."""
    def swap(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        b = a.copy()
        b[..., 0:n], b[..., n:2 * n] = a[..., n:2 * n], a[..., 0:n]
        return b
    return br.build(_per_gate(spec, swap))


def forget_bias_off_by_one(spec: br.LayerSpec) -> Any:
    """Adds unit_forget_bias's +1 again at inference."""
    def shift(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        if kind == "bias":
            a[n:2 * n] += 1.0
        return a
    return br.build(_per_gate(spec, shift))


def permuted_units(spec: br.LayerSpec) -> Any:
    """Hidden units in another order (a consistent relabelling: same dynamics, outputs permuted)."""
    def permute(a: np.ndarray, n: int, kind: str) -> np.ndarray:
        perm = np.roll(np.arange(n), 1)
        cols = np.concatenate([g * n + perm for g in range(4)])
        b = a[..., cols]
        return b[perm] if kind == "recurrent" else b
    return br.build(_per_gate(spec, permute))


class ignored_mask(_Wrapped):  # noqa: N801  (a factory, named like one)
    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        return self.ref(x, mask=None, initial_state=initial_state)


class reversed_mask(_Wrapped):  # noqa: N801
    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        return self.ref(x, mask=None if mask is None else np.asarray(mask)[:, ::-1], initial_state=initial_state)


class ignored_initial_state(_Wrapped):  # noqa: N801
    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        return self.ref(x, mask=mask, initial_state=None)


class swapped_h_c(_Wrapped):  # noqa: N801
    """Returns each direction's states as (c, h)."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        y = self.ref(x, mask=mask, initial_state=initial_state)
        if not isinstance(y, tuple):
            return y
        if self.spec.class_name == "LSTM" and len(y) == 3:
            return (y[0], y[2], y[1])
        if len(y) >= 5:
            head = y[:-4]
            h1, c1, h2, c2 = y[-4:]
            return (*head, c1, h1, c2, h2)
        return y


class swapped_directions(_Wrapped):  # noqa: N801
    """Returns the backward direction's states first."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        y = self.ref(x, mask=mask, initial_state=initial_state)
        if self.spec.class_name == "Bidirectional" and isinstance(y, tuple) and len(y) >= 5:
            head = y[:-4]
            h1, c1, h2, c2 = y[-4:]
            return (*head, h2, c2, h1, c1)
        return y


class states_not_carried(_Wrapped):  # noqa: N801
    """A stateful layer that forgets its states between calls."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        if getattr(self.ref, "stateful", False) or getattr(getattr(self.ref, "forward_layer", None), "stateful", False):
            self.ref.reset_state()
        return self.ref(x, mask=mask, initial_state=initial_state)


class no_half_rounding(_Wrapped):  # noqa: N801
    """Computes in float32 and never rounds outputs to the half-precision policy's format."""

    def __init__(self, spec: br.LayerSpec) -> None:
        cfg = _float32_policy(spec.config)
        super().__init__(dataclasses.replace(spec, config=cfg))


def _float32_policy(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: ("float32" if k == "dtype" else _float32_policy(v)) for k, v in cfg.items()}
    return cfg


class half_everywhere(_Wrapped):  # noqa: N801
    """Rounds every output to float16, whatever the policy."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        y = self.ref(x, mask=mask, initial_state=initial_state)
        if isinstance(y, tuple):
            return tuple(np.asarray(v).astype(np.float16) for v in y)
        return np.asarray(y).astype(np.float16)


class off_by_a_tenth_percent(_Wrapped):  # noqa: N801
    """The first output 0.1% too large."""

    def __call__(self, x: Any, mask: Any = None, initial_state: Any = None) -> Any:
        y = self.ref(x, mask=mask, initial_state=initial_state)
        if isinstance(y, tuple):
            return (np.asarray(y[0]) * 1.001, *y[1:])
        return np.asarray(y) * 1.001


BROKEN = (
    "swapped_gates", "forget_bias_off_by_one", "permuted_units", "ignored_mask", "reversed_mask",
    "ignored_initial_state", "swapped_h_c", "swapped_directions", "states_not_carried", "no_half_rounding",
    "half_everywhere", "off_by_a_tenth_percent",
)

__all__ = list(BROKEN) + ["BROKEN", "_round_bfloat16"]
