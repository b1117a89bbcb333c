"""Atomic file writes: nothing half-written is left behind when a write fails or is killed. Guarded reads:
only regular files, never more than a bound (a FIFO or a link to /dev/zero named like a data file)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temporary file lives in the same folder so the final `os.replace` is atomic on POSIX.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(target: Path | str, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: Path | str, text: str) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


class NotRegularFileError(OSError):
    """A path that leads (links followed) to a FIFO, a device, a socket: nothing dctq reads as a file."""


class FileTooLargeError(OSError):
    """A regular file larger than the reader's bound."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@contextlib.contextmanager
def open_regular_file(path: Path | str, *, max_bytes: int | None = None) -> Iterator[BinaryIO]:
    """Open `path` for binary reading only if it is a regular file (links followed) of at most `max_bytes`.

    The open itself never blocks: the file is opened non-blocking and checked with fstat before any read,
    so a FIFO named `x.jpg` (which would wait for a writer forever) or a link to /dev/zero (which never
    ends) is refused at once, and the check cannot be raced by swapping the path.

    Raises (all OSError, naming the path): FileNotFoundError, PermissionError, IsADirectoryError,
    NotRegularFileError, FileTooLargeError.
    """
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    )
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
            raise NotRegularFileError(errno.EINVAL, f"is {kind}, not a regular file", str(path))
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileTooLargeError(
                errno.EFBIG, f"is {info.st_size} bytes, more than the {max_bytes}-byte limit", str(path)
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_regular_file(path: Path | str, *, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, refused beyond `max_bytes` (even when it grows meanwhile).

    Raises as `open_regular_file`.
    """
    with open_regular_file(path, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(errno.EFBIG, f"grew past the {max_bytes}-byte limit while read", str(path))
    return data
