"""Atomic file writes: nothing half-written is left behind when a write fails or is killed; the check that
an output path can be written at all, made before the work that produces it. Guarded reads: only regular
files, never more than a bound (a FIFO or a link to /dev/zero named like a data file)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import ConfigError


def _umask() -> int:
    """The process's umask (Linux: read from /proc; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists (the folder a mkdir would start from)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_parent(target: Path, what: str) -> None:
    parent = target.parent
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise ConfigError(f"{what} {target}: {base} is a file, not a folder; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {target}: no permission to write in {base}; choose another path")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_file(
    target: Path | str, what: str = "output", *, inputs: tuple[Path | str, ...] = ()
) -> Path:
    """Raise ConfigError when the file `target` cannot be written; call it before the work that makes it.

    Refused: an existing folder at `target`, a file where one of its folders should be, a folder
    without write permission, and one of the command's `inputs` (a report written over the model it
    scored). `what` names the option in the message ("--out", "--plot").
    """
    target = Path(target)
    if target.is_dir():
        raise ConfigError(f"{what} {target} is a folder; give the path of a file to write")
    for source in inputs:
        if _same_file(target, Path(source)):
            raise ConfigError(f"{what} {target} would overwrite the input {source}; choose another path")
    _check_parent(target, what)
    return target


def check_output_dir(target: Path | str, what: str = "output folder") -> Path:
    """Raise ConfigError when the folder `target` cannot be made or written into (an existing file at
    `target`, a file where one of its parents should be, no write permission)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{what} {target} is a file, not a folder; give a folder path")
    if target.is_dir():
        if not os.access(target, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {target}: no permission to write in it; choose another folder")
        return target
    _check_parent(target, what)
    return target


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    The temporary file lives in the same folder so the final `os.replace` is atomic on POSIX. The
    file gets the mode a plain `open()` would give it (0666 less the umask, as torch.save's files),
    not mkstemp's 0600.

    Raises:
        ConfigError: `target` is a folder, or its folder cannot be made or written into.
    """
    target = Path(target)
    if target.is_dir():
        raise ConfigError(f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
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
