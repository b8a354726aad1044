"""Direction and mask handling as small pure functions.

Keras's time conventions are easy to get wrong, so they live here, each with its own tests:

* ``go_backwards`` reverses the input **and the mask together**; the layer's outputs come back in
  *processing* order (``out[:, 0]`` is the state after ``x[:, T-1]``) and are never flipped back
  by a plain LSTM.
* ``Bidirectional`` flips the backward sequence back to input order **only when it returns
  sequences**; a last output is already the value aligned with ``t = 0``.
* A naive flip is correct here even for padded batches: Keras flips the whole padded time axis
  (it does not reverse each row's valid prefix, as ``tf.reverse_sequence`` would), so right
  padding becomes leading masked steps for the backward direction.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import DTypeMismatchError, ShapeMismatchError

__all__ = ["reverse_time", "align_backward", "as_mask", "as_input", "processing_order"]


def reverse_time(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Reverse axis 1 (time) of a ``(B, T, ...)`` array or ``(B, T)`` mask; ``None`` passes."""
    return None if a is None else a[:, ::-1]


def processing_order(
    x: np.ndarray, mask: Optional[np.ndarray], go_backwards: bool
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The input and mask in the order the recurrence consumes them.

    Args:
        x: ``(B, T, D)`` input in input order.
        mask: ``(B, T)`` boolean mask in input order, or ``None``.
        go_backwards: whether the layer reads ``x[:, T-1]`` first.
    Returns:
        ``(x, mask)`` in processing order (views, never copies of the caller's data).
    """
    if go_backwards:
        return reverse_time(x), reverse_time(mask)
    return x, mask


def align_backward(seq: np.ndarray) -> np.ndarray:
    """Re-align a backward layer's ``(B, T, n)`` sequence output to input time, as Bidirectional does.

    After this, ``out[:, t]`` is the backward state after reading ``x[:, T-1] ... x[:, t]``.
    Only Bidirectional does this and only for sequence outputs; a plain ``LSTM(go_backwards=True)``
    returns processing order.
    """
    return seq[:, ::-1]


def as_input(x: Any, features: Optional[int], dtype: np.dtype) -> np.ndarray:
    """Validate a forward-pass input and cast it to the compute dtype, as Keras casts.

    Floats of any width and integers are cast (Keras casts integer input silently); bool,
    complex, object and string input raise :class:`DTypeMismatchError`. The caller's array is
    never modified.

    Raises:
        ShapeMismatchError: rank is not 3, T or B is 0, or the feature count differs from
            the kernel's input dimension.
        DTypeMismatchError: non-numeric or complex input.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise DTypeMismatchError(
            f"x: expected a real floating or integer array, got dtype {arr.dtype}"
        )
    want = f"(batch, time, features={features if features is not None else 'D'})"
    if arr.ndim != 3:
        raise ShapeMismatchError(f"x: expected rank 3 {want}, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ShapeMismatchError(
            f"x: expected at least one time step {want}, got shape {arr.shape} "
            "(Keras raises on T=0 too)"
        )
    if arr.shape[0] == 0:
        raise ShapeMismatchError(
            f"x: expected batch >= 1 {want}, got shape {arr.shape} (Keras raises on B=0 too)"
        )
    if features is not None and arr.shape[2] != features:
        raise ShapeMismatchError(
            f"x: expected {features} features (kernel has input_dim={features}), "
            f"got shape {arr.shape}"
        )
    with np.errstate(invalid="ignore"):  # a signalling NaN input is quietly NaN, as in Keras
        return arr.astype(dtype, copy=False)


def as_mask(mask: Any, batch: int, time: int) -> Optional[np.ndarray]:
    """Validate a ``(B, T)`` mask and return it as bool (True = valid step); ``None`` passes.

    Numeric masks are cast to bool (non-zero = valid), as Keras casts them.

    Raises:
        ShapeMismatchError: the shape is not ``(B, T)``.
        DTypeMismatchError: the mask is not boolean or numeric.
    """
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise DTypeMismatchError(f"mask: expected a boolean array, got dtype {m.dtype}")
    if m.shape != (batch, time):
        raise ShapeMismatchError(
            f"mask: expected shape (batch, time) = ({batch}, {time}), got {m.shape}"
        )
    return m.astype(bool, copy=False)
