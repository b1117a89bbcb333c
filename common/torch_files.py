"""Reading dctq's `torch.save` files (checkpoints, synthetic sets, training states): one loader that
turns whatever torch raises on a damaged or foreign file into the caller's DctqError naming the file.

Every such file is a dict of tensors and plain data, so `torch.load(weights_only=True)` reads it and
never runs pickled code; most carry a "format" marker that tells dctq's kinds of file apart.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import DctqError

# What torch.load raises on truncated, damaged or non-torch files (and on pickles weights_only refuses).
LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError)


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
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except LOAD_ERRORS as exc:
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise error(f"{path} is not a readable {what} ({type(exc).__name__}: {first_line}){hint}") from None
    if fmt is not None and (not isinstance(payload, dict) or payload.get("format") != fmt):
        raise error(f"{path} is a torch file but not a {what} (no format {fmt!r} marker)")
    return payload
