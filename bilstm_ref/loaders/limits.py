"""Resource limits for reading untrusted model files.

Module constants, read at call time, so tests (and cautious users) can shrink them with
``monkeypatch.setattr(bilstm_ref.loaders.limits, "MAX_MEMBER_BYTES", 64)``.
"""

from __future__ import annotations

#: Largest model or config file opened at all (bytes on disk).
MAX_FILE_BYTES = 8 * 1024**3
#: Largest uncompressed zip member read (``model.weights.h5`` is read into memory).
MAX_MEMBER_BYTES = 4 * 1024**3
#: Largest ``config.json`` / ``metadata.json`` / model JSON / ``model_config`` attribute.
MAX_JSON_BYTES = 64 * 1024**2
#: Largest uncompressed/compressed ratio accepted for a zip member (Keras uses 100).
MAX_COMPRESSION_RATIO = 100
#: Members smaller than this are exempt from the ratio check (tiny JSON compresses well).
RATIO_FLOOR_BYTES = 1024**2
#: Largest single weight dataset (declared bytes, before reading).
MAX_DATASET_BYTES = 2 * 1024**3
#: Largest declared/stored ratio of a chunked HDF5 dataset (a "shape bomb"; Keras uses 1000).
MAX_STORAGE_RATIO = 1000
#: Datasets declaring fewer bytes than this are exempt from the storage-ratio check.
STORAGE_RATIO_FLOOR_BYTES = 1024**2
#: Largest HDF5 attribute read (``model_config``, ``layer_names``, ``weight_names``).
MAX_ATTR_BYTES = 64 * 1024**2
#: Largest number of members in a ``.keras`` archive's central directory.
MAX_ZIP_MEMBERS = 10_000
#: Longest time HDF5 may spend reading an untrusted file's metadata, in seconds; the environment
#: variable ``BILSTM_REF_HDF5_SECONDS`` overrides it (``0`` switches the bound off).
HDF5_PARSE_SECONDS = 3.0
#: Most memory HDF5 may take, beyond what the process already has, to read a file's metadata.
HDF5_PARSE_BYTES = 1024**3


def dataset_size_problem(shape: tuple[int, ...], itemsize: int, stored: int) -> str | None:
    """Why a dataset of ``shape`` and ``itemsize`` storing ``stored`` bytes on disk is too big to read, or
    ``None``: its declared bytes are above :data:`MAX_DATASET_BYTES`, or (above
    :data:`STORAGE_RATIO_FLOOR_BYTES`) more than :data:`MAX_STORAGE_RATIO` times what it stores, a "shape bomb"."""
    declared = itemsize
    for n in shape:
        declared *= int(n)
    if declared > MAX_DATASET_BYTES:
        return f"declares {declared} bytes, exceeds the limit of {MAX_DATASET_BYTES}"
    if declared > STORAGE_RATIO_FLOOR_BYTES and declared > MAX_STORAGE_RATIO * max(stored, 1):
        return (f"declares {declared} bytes but stores {stored} (ratio above {MAX_STORAGE_RATIO}); "
                "refusing a possible shape bomb")
    return None
