"""The error hierarchy: every error bilstm_ref raises is a :class:`BilstmRefError`."""

from __future__ import annotations

__all__ = [
    "BilstmRefError",
    "ConfigError",
    "CorruptFileError",
    "DTypeMismatchError",
    "FileAccessError",
    "FixtureExistsError",
    "FixtureIntegrityError",
    "FixtureLockError",
    "InputDataError",
    "KerasModelError",
    "KerasUnavailableError",
    "ResourceLimitError",
    "ShapeMismatchError",
    "StateError",
    "UnsafeModelError",
    "UnsupportedModelError",
]


def a_or_an(word: str) -> str:
    """``"an Embedding"``, ``"a GRU"``: the word with its indefinite article, for messages."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


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


class UnsafeModelError(BilstmRefError):
    """A model file asks for something that would run code or reach outside the file
    (a Lambda, a non-Keras module, an external HDF5 link or storage); nothing of it was executed."""


class CorruptFileError(BilstmRefError):
    """A model or config file cannot be parsed: wrong signature, truncated, bad JSON, missing members."""


class FileAccessError(BilstmRefError):
    """A path is not a readable local regular file (missing, a directory, a FIFO, a device, a URL)."""


class FixtureIntegrityError(BilstmRefError):
    """A fixture is incomplete, tampered with or malformed (missing manifest, sha256 mismatch, bad schema)."""


class FixtureExistsError(BilstmRefError, FileExistsError):
    """A fixture exists already and ``--force`` was not given; nothing was written."""


class FixtureLockError(BilstmRefError):
    """Another run holds the fixture directory's lock."""


class InputDataError(BilstmRefError):
    """A user's input data does not fit the model: missing or extra inputs, an empty file, token ids
    outside the Embedding's vocabulary, samples that disagree in number. The message names the file,
    the array and expected vs actual."""


class KerasModelError(BilstmRefError):
    """Keras itself cannot load or run the user's model (the message carries Keras's own error and,
    where there is one, what to do)."""
