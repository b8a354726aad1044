"""Writing a text file whole or not at all (reports, exports, repro snippets)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


#: How every temporary file the package writes is named (fixture folders are swept of stale ones).
TMP_PREFIX = ".bilstm_ref-tmp-"


def write_text_atomic(path: Path, text: str, prefix: str = TMP_PREFIX) -> int:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it (named ``prefix...``), then
    rename it into place: a reader sees the old file or the new one, never half of one, and a failed write
    leaves no temporary behind. The file gets the usual permissions (0666 less the umask). Returns the
    number of bytes written."""
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent if str(path.parent) else Path("."))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the file private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return len(data)
