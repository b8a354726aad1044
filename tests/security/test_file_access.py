"""Paths that are not local regular files (rows D4, D13 of the hostile-input table): refused with a
FileAccessError before any read, never hanging on a FIFO, never reaching the network."""

from __future__ import annotations

import os
import re
import socket
import stat

import pytest

import bilstm_ref
from bilstm_ref import FileAccessError, ResourceLimitError


def rx(path) -> str:
    return re.escape(str(path))


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "model.keras"
    os.mkfifo(path)  # no writer: a blocking open would hang
    return path


LOADERS = {
    "load_spec": lambda p: bilstm_ref.load_spec(p),
    "load": lambda p: bilstm_ref.load(p),
    "inspect_file": lambda p: bilstm_ref.inspect_file(p),
}


@pytest.mark.parametrize("api", sorted(LOADERS))
def test_nonexistent(tmp_path, no_side_effects, api):
    path = tmp_path / "missing.keras"
    with no_side_effects():
        with pytest.raises(FileAccessError, match=rf"'{rx(path)}': no such file"):
            LOADERS[api](path)
    assert not path.exists()


@pytest.mark.parametrize("api", sorted(LOADERS))
def test_directory(tmp_path, no_side_effects, api):
    path = tmp_path / "model.keras"
    path.mkdir()
    with no_side_effects():
        with pytest.raises(FileAccessError, match=rf"'{rx(path)}': is a directory, expected a regular file"):
            LOADERS[api](path)


@pytest.mark.parametrize("api", sorted(LOADERS))
def test_fifo_without_writer_does_not_hang(fifo, no_side_effects, api):
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=rf"'{rx(fifo)}': is a FIFO, device or socket, expected a regular "
                                                  r"file"):
            LOADERS[api](fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_symlink_to_fifo(tmp_path, fifo, no_side_effects):
    link = tmp_path / "link.h5"
    link.symlink_to(fifo)
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=rf"'{rx(link)}': is a FIFO, device or socket"):
            bilstm_ref.load_spec(link)


def test_unix_socket(tmp_path, no_side_effects):
    path = tmp_path / "sock.keras"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        server.listen(1)
        with no_side_effects(seconds=2):
            with pytest.raises(FileAccessError, match=rf"'{rx(path)}': (cannot open|is a FIFO, device or socket)"):
                bilstm_ref.load_spec(path)
    finally:
        server.close()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_character_devices(no_side_effects, device):
    if not os.path.exists(device):
        pytest.skip(f"{device} not present")
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=rf"'{rx(device)}': is a FIFO, device or socket, expected a regular "
                                                  r"file"):
            bilstm_ref.load_spec(device)


@pytest.mark.parametrize("url", ["http://x/model.keras", "https://example.com/m.h5", "hf://user/repo/model.keras",
                                 "gs://bucket/model.keras", "s3://bucket/model.weights.h5", "file:///etc/passwd"])
def test_remote_paths_refused(no_side_effects, url):
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=rf"'{rx(url)}': remote paths are not read"):
            bilstm_ref.load_spec(url)




@pytest.mark.parametrize("value", [b"/tmp/model.keras",
                                   0, 3,
                                   None, 1.5])
@pytest.mark.parametrize("api", sorted(LOADERS))
def test_not_a_path(no_side_effects, value, api):
    """An int would be an open file descriptor to os.open: refused by type, like bytes and None."""
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=r"model path: expected a str or os\.PathLike, got "):
            LOADERS[api](value)


@pytest.mark.parametrize("value", [b"/tmp/model.json", 3])
def test_config_not_a_path(build, no_side_effects, value):
    weights = build.weights_h5()
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=r"expected a str or os\.PathLike, got "):
            bilstm_ref.load_spec(weights, config=value)


def test_unreadable_file(build, no_side_effects):
    if os.geteuid() == 0:
        pytest.skip("root can read a mode-000 file")
    path = build.keras()
    path.chmod(0)
    try:
        with no_side_effects():
            with pytest.raises(FileAccessError, match=rf"'{rx(path)}': cannot open \(Permission denied\)"):
                bilstm_ref.load_spec(path)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("kind", ["fifo", "url", "directory", "missing", "device"])
def test_config_argument_is_checked_too(build, tmp_path, no_side_effects, kind):
    weights = build.weights_h5()
    config = {"fifo": tmp_path / "model.json", "url": "https://x/model.json", "directory": tmp_path / "cfgdir",
              "missing": tmp_path / "nope.json", "device": "/dev/zero"}[kind]
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "directory":
        config.mkdir()
    with no_side_effects(seconds=2):
        with pytest.raises(FileAccessError, match=rf"'{rx(config)}': "):
            bilstm_ref.load_spec(weights, config=config)


def test_symlink_to_a_regular_model_loads(build, tmp_path, no_side_effects):
    """Input symlinks are followed (reading is harmless); the target is still checked as a regular file."""
    real = build.keras()
    link = tmp_path / "link.keras"
    link.symlink_to(real)
    with no_side_effects():
        assert bilstm_ref.load_spec(link).class_name == "Bidirectional"


def test_file_over_size_limit_small_limits(build, small_limits, no_side_effects):
    path = build.keras()
    small_limits(MAX_FILE_BYTES=1024)
    with no_side_effects():
        with pytest.raises(ResourceLimitError, match=rf"'{rx(path)}': {path.stat().st_size} bytes exceeds the limit "
                                                     r"of 1024 \(bilstm_ref\.loaders\.limits\.MAX_FILE_BYTES\)"):
            bilstm_ref.load_spec(path)


def test_sparse_9gib_file_default_limits(tmp_path, no_side_effects):
    """A 9 GiB (sparse) file is refused from fstat, before any read, with the shipped 8 GiB limit."""
    path = tmp_path / "huge.keras"
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(9 * 1024**3)
    with no_side_effects(seconds=5, max_mb=100):
        with pytest.raises(ResourceLimitError, match=rf"'{rx(path)}': 9663676416 bytes exceeds the limit of "
                                                     r"8589934592"):
            bilstm_ref.load_spec(path)
