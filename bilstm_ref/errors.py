"""The error hierarchy: every error bilstm_ref raises is a :class:`BilstmRefError`."""

from __future__ import annotations

__all__ = [
    "BilstmRefError",
    "ConfigError",
    "DTypeMismatchError",
    "KerasUnavailableError",
    "ResourceLimitError",
    "ShapeMismatchError",
    "StateError",
    "UnsupportedModelError",
]


class BilstmRefError(ValueError):
    """Base class of every error raised by bilstm_ref.

    Subclasses ``ValueError`` because, like Keras's own errors for the same
    situations, they describe a bad value handed to the library.
    """


class ConfigError(BilstmRefError):
    """A layer configuration Keras itself would reject (e.g. both directions going backwards)."""


class UnsupportedModelError(BilstmRefError):
    """A configuration option or layer the reference cannot reproduce exactly; named in the message."""


class ShapeMismatchError(BilstmRefError):
    """An array has the wrong rank or shape; the message gives expected vs actual."""


class DTypeMismatchError(BilstmRefError):
    """An array has a dtype the reference cannot compute with (complex, object, str, ...)."""


class StateError(BilstmRefError):
    """Stateful-layer misuse: resetting a non-stateful layer, changing batch size mid-stream."""


class ResourceLimitError(BilstmRefError):
    """A request would allocate more than the configured limit."""


class KerasUnavailableError(BilstmRefError):
    """Keras (the live oracle) is needed for this operation but cannot be imported."""
