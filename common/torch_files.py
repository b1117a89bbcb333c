"""Reading dctq's `torch.save` files (checkpoints, synthetic sets, training states): one loader that
turns whatever torch raises on a damaged or foreign file into the caller's DctqError naming the file.

Every such file is a dict of tensors and plain data, so `torch.load(weights_only=True)` reads it and
never runs pickled code; most carry a "format" marker that tells dctq's kinds of file apart.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import DctqError
from .files import NotRegularFileError, open_regular_file

# What torch.load raises on truncated, damaged or non-torch files (and on pickles weights_only refuses).
LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def _unpickler_reason(exc: BaseException) -> str | None:
    """What torch's weights_only unpickler refused ("Unsupported global: GLOBAL posix.system was not an
    allowed global by default", "Unsupported operand 0"), without torch's advice around it to allow the
    global or to load the file with weights_only=False, which would run the file's code; None when the
    error is not the unpickler's."""
    text = " ".join(str(exc).split())
    _, found, rest = text.partition("WeightsUnpickler error:")
    if not found:
        return None
    reason = re.split(r"\. Please use|\.? Check the documentation", rest)[0].strip().rstrip(".")
    return reason[:300]


def _check_stored(f: BinaryIO, path: Path, what: str, error: type[DctqError]) -> None:
    """Refuse a torch zip whose members would inflate beyond the file: torch.save stores every record
    uncompressed, but torch.load inflates deflated ones too, so a 200 KB file could ask for 200 MB (and a
    20 MB one for 20 GB) before weights_only has seen a byte of its pickle. Non-zip (legacy) files pass."""
    try:
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        f.seek(0)
        return  # not a zip: torch.load reads it (or says why it cannot)
    f.seek(0)
    size = os.fstat(f.fileno()).st_size
    packed = [i for i in infos if i.compress_type != zipfile.ZIP_STORED]
    declared = sum(i.file_size for i in infos)
    if packed or declared > size:
        raise error(
            f"{path} is not a readable {what}: its zip records are compressed ({declared} bytes declared in "
            f"a {size}-byte file); torch.save never compresses them, so it was not written by torch or dctq"
        )


def load_torch_file(
    path: Path,
    what: str,
    error: type[DctqError],
    *,
    fmt: str | None = None,
    map_location: str | torch.device = "cpu",
    hint: str = "",
) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)`, checked to be a dict carrying format marker `fmt` (if given).

    Args:
        what: what the file should be, for the messages ("dctq checkpoint"). error: the DctqError
            subclass to raise. hint: appended to the unreadable-file message ("; was it cut short?").

    Raises:
        error: "{path} is not a readable {what} (...)" when torch cannot read it, "{path} is a torch
            file but not a {what} (...)" when it is not a dict or lacks the marker.
    """
    try:
        with open_regular_file(path) as f:  # a FIFO or a device never reaches torch
            _check_stored(f, path, what, error)
            payload = torch.load(f, map_location=map_location, weights_only=True)
    except LOAD_ERRORS as exc:
        reason = _unpickler_reason(exc)
        if reason is not None and reason.startswith("Unsupported global"):
            raise error(
                f"{path} is not a {what}: it holds pickled code or objects that dctq never loads "
                f"(torch: {reason}); it was not written by dctq, or was altered since"
            ) from None
        if isinstance(exc, NotRegularFileError | IsADirectoryError):
            raise error(f"{path} is not a readable {what}: it {exc.strerror}") from None
        detail = reason if reason is not None else _first_line(exc)
        raise error(f"{path} is not a readable {what} ({type(exc).__name__}: {detail}){hint}") from None
    if fmt is not None and (not isinstance(payload, dict) or payload.get("format") != fmt):
        raise error(f"{path} is a torch file but not a {what} (no format {fmt!r} marker)")
    return payload
