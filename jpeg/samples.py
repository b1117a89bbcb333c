"""The samples of a JPEG folder in torchvision's ImageFolder layout (`root/<class>/<file>.jpg`):
listing them with their class index, splitting them into stratified train/val lists, and scanning
them for files the coefficient reader rejects.

Classes are the sorted, non-hidden sub-folder names; files are found recursively, non-JPEG extensions
and hidden entries ignored.
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


def list_samples(root: Path | str) -> tuple[list[Sample], list[str]]:
    """All JPEG files under `root/<class>/`, in sorted order, with their class index.

    A class folder without any JPEG keeps its index (labels stay stable) and is logged as a warning.

    Returns:
        (samples, class_names).

    Raises:
        DataError: missing root, no class folders, or no JPEG file at all.
    """
    root = Path(root)
    classes = list_classes(root)
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        found = 0
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
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
