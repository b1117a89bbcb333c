"""The samples of a JPEG folder in torchvision's ImageFolder layout (`root/<class>/<file>.jpg`):
listing them with their class index, splitting them into stratified train/val lists, and scanning
them for files the coefficient reader rejects.

Classes are the sorted, non-hidden sub-folder names; files are found recursively, non-JPEG extensions
and hidden entries ignored. Links to folders are followed, but no real folder is listed twice: a link
back up the tree (a loop), into another class or to a folder already listed is skipped with a warning,
so a loop can neither hang the listing nor give one image several copies or the wrong class.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..common.errors import DataError, JpegError
from .reader import read_jpeg

logger = logging.getLogger(__name__)

JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")
EXPECTED_LAYOUT = "root/<class>/<file>.jpg (one sub-folder per class, as torchvision's ImageFolder)"


class Sample(NamedTuple):
    """One file of a data set: its path and class index."""

    path: Path
    label: int


def list_classes(root: Path | str) -> list[str]:
    """Sorted class names: the non-hidden sub-folders of `root`.

    Raises:
        DataError: `root` is missing, not a folder, or has no class sub-folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder; expected {EXPECTED_LAYOUT}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"data folder {root} has no class sub-folders; expected {EXPECTED_LAYOUT}")
    return classes


def _folder_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder `path` leads to (links followed); None when it cannot be stat'ed."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _class_folders(root: Path, classes: list[str]) -> dict[tuple[int, int], Path]:
    """The real folders of `root` and its classes, by identity. Raises DataError when two class names
    (or a class and the root) are the same folder: its images would count under two labels."""
    seen: dict[tuple[int, int], Path] = {}
    for folder in (root, *(root / name for name in classes)):
        ident = _folder_id(folder)
        if ident is None:
            continue
        if ident in seen:
            raise DataError(
                f"{folder} is the same folder as {seen[ident]} (a link); its images would be listed under two "
                "classes: remove the link or make it a folder of its own"
            )
        seen[ident] = folder
    return seen


def list_samples(root: Path | str) -> tuple[list[Sample], list[str]]:
    """All JPEG files under `root/<class>/`, in sorted order, with their class index.

    A class folder without any JPEG keeps its index (labels stay stable) and is logged as a warning.
    Links to folders are followed once: one leading to a folder already listed (the root, a class, a
    folder reached before, an ancestor: a loop) is skipped with a warning.

    Returns:
        (samples, class_names).

    Raises:
        DataError: missing root, no class folders, two class names for one folder, or no JPEG file at all.
    """
    root = Path(root)
    classes = list_classes(root)
    seen = _class_folders(root, classes)
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        found = 0
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = _unseen(Path(dirpath), sorted(d for d in dirnames if not d.startswith(".")), seen)
            for fname in sorted(filenames):
                if not fname.startswith(".") and fname.lower().endswith(JPEG_EXTENSIONS):
                    samples.append(Sample(Path(dirpath) / fname, label))
                    found += 1
        if not found:
            logger.warning("class folder %s holds no JPEG file (%s)", root / name, ", ".join(JPEG_EXTENSIONS))
    if not samples:
        raise DataError(
            f"no JPEG files ({', '.join(JPEG_EXTENSIONS)}) under the class folders of {root}; "
            f"expected {EXPECTED_LAYOUT}"
        )
    return samples, classes


def _unseen(parent: Path, names: list[str], seen: dict[tuple[int, int], Path]) -> list[str]:
    """The sub-folders of `parent` to walk into: those whose real folder was not listed yet (marked now)."""
    keep = []
    for name in names:
        path = parent / name
        ident = _folder_id(path)
        if ident is None:
            continue
        if ident in seen:
            logger.warning("skipping %s: it leads to %s, which is listed already (a link)", path, seen[ident])
            continue
        seen[ident] = path
        keep.append(name)
    return keep


def split_samples(
    samples: Sequence[Sample], val_fraction: float, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split `samples` into (train, val), stratified: `round(n_c * val_fraction)` of each class c
    go to val, picked by a Generator seeded with `seed`. Both lists keep the input order.

    Raises:
        DataError: val_fraction outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.array([s[1] for s in samples], dtype=np.int64)
    is_val = np.zeros(len(samples), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val = round(len(members) * val_fraction)
        is_val[rng.permutation(members)[:n_val]] = True
    train = [Sample(Path(p), int(c)) for (p, c), v in zip(samples, is_val, strict=True) if not v]
    val = [Sample(Path(p), int(c)) for (p, c), v in zip(samples, is_val, strict=True) if v]
    return train, val


def scan_samples(samples: Sequence[Sample]) -> list[tuple[Path, str]]:
    """Read every file with the coefficient reader; return (path, error message) of those that fail.

    Datasets never skip a bad file silently; use this to find them before training.
    """
    bad = []
    for path, _ in samples:
        try:
            read_jpeg(path)
        except JpegError as exc:
            bad.append((Path(path), str(exc)))
    return bad
