"""Keeping TensorFlow's native (C++) log lines out of the command line's output.

TensorFlow writes lines such as "oneDNN custom operations are on" and "Could not find cuda drivers"
straight to file descriptor 2, before and regardless of ``TF_CPP_MIN_LOG_LEVEL``. A command that
imports Keras runs inside :func:`native_logs_hidden`: descriptor 2 points to a temporary file, and
Python's ``sys.stderr`` to a copy of the real one, so the command's own messages still show. Worker
processes inherit the hidden descriptor. On an error the last captured lines are shown, and a
``TF_CPP_MIN_LOG_LEVEL`` the user set (below 3) keeps everything visible.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator

__all__ = ["native_logs_hidden"]


@contextlib.contextmanager
def native_logs_hidden(show_tail_on_error: int = 20) -> Iterator[None]:
    try:
        ours = sys.stderr.fileno() == 2
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        yield  # stderr is captured by someone else (pytest, a notebook), or the user asked for TensorFlow's logs
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (an embedding host): nothing to hide
        yield
        return
    tmp = tempfile.TemporaryFile()
    old_stderr = sys.stderr
    ok = False
    try:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), write_through=True,
                                      encoding=getattr(old_stderr, "encoding", None) or "utf-8", errors="replace")
        yield
        ok = True
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        replaced, sys.stderr = sys.stderr, old_stderr
        os.dup2(saved, 2)
        os.close(saved)
        with contextlib.suppress(Exception):
            replaced.close()
        if not ok and show_tail_on_error:
            tmp.seek(0)
            tail = tmp.read().decode("utf-8", "replace").splitlines()[-show_tail_on_error:]
            if tail:
                print("native log (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
        tmp.close()
