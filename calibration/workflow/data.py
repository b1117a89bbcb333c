"""The data `quantize_checkpoint` calibrates on: real images for PTQ (`calibration_loader`, a seeded
draw from a split made with the FP checkpoint's val_fraction) and, for the zero-shot methods,
synthetic sets made earlier by `dctq synthesize`, checked before they are reused or continued.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...common.errors import DataError
from ...jpeg.dataset import make_loader
from ...jpeg.recompress import QualityPolicy
from ...jpeg.splits import split_data
from ...models.checkpoint import LoadedCheckpoint
from ..train.config import saved_val_fraction
from ..train.data import dataset_for_arch
from ..zeroshot.config import SynthConfig
from ..zeroshot.data import SyntheticData, check_continuable, check_teacher, load_synthetic
from ..zeroshot.synthesize import run_config

logger = logging.getLogger(__name__)

CALIB_SPLITS = ("train", "all")


def calibration_loader(
    loaded: LoadedCheckpoint,
    data: str | Path,
    *,
    split: str = "train",
    num_images: int = 512,
    batch_size: int = 64,
    seed: int = 0,
    workers: int = 0,
    quality: int | None = None,
    split_flag: str = "--calib-split",
) -> tuple[Any, dict[str, Any]]:
    """(loader, info): `num_images` images drawn (seeded by `seed`) from `split` ("train" or "all") of
    `data` ("cifar10" or an ImageFolder), split with the FP checkpoint's val_fraction, files as stored
    (or re-compressed at JPEG `quality`), in the architecture's input layout. info records what was
    drawn (plain data). split_flag: the option the split error names.

    Raises DataError for a bad split name or count, ConfigError for a saved train_config this dctq
    cannot read, and what split_data / make_dataset raise.
    """
    if split not in CALIB_SPLITS:
        raise DataError(f"{split_flag} must be one of {', '.join(CALIB_SPLITS)}, got {split!r}")
    if num_images < 1 or batch_size < 1:
        raise DataError(f"--num-images and --batch-size must be >= 1, got {num_images}, {batch_size}")
    if workers < 0:
        raise DataError(f"--workers must be >= 0, got {workers}")
    val_fraction = saved_val_fraction(loaded.extra)
    splits = split_data(data, val_fraction)
    pool = splits.samples(split)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(pool), size=min(num_images, len(pool)), replace=False).tolist())
    samples = [pool[i] for i in chosen]
    policy = QualityPolicy(test_quality=quality)
    dataset = dataset_for_arch(loaded.arch, splits.root, samples, train=False, policy=policy)
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=workers)
    info = {
        "data": str(data),
        "split": split,
        "val_fraction": val_fraction,
        "images": len(samples),
        "batch_size": batch_size,
        "seed": seed,
        **({"quality": quality} if quality is not None else {}),
    }
    if len(samples) < num_images:
        logger.warning(
            "only %d calibration images in %s (%s split), asked for %d", len(samples), data, split, num_images
        )
    return loader, info


def reused_synthetic(path: Path, method: str | None, teacher: nn.Module) -> SyntheticData:
    """A finished synthetic set from `dctq synthesize`, checked to come from `teacher` (and by `method`)."""
    data = load_synthetic(path)
    made_by = data.config.get("method")
    if method is not None and made_by != method:
        raise DataError(
            f"{path} was synthesized with --method {made_by}, not {method}; pass --method {made_by} "
            "or synthesize a new file"
        )
    check_teacher(data, teacher, path)
    return data


def check_same_options(path: Path, config: SynthConfig, teacher: nn.Module | str, world_size: int) -> None:
    """Raise DataError unless the (possibly partial) synthetic file at `path` can be continued or reused
    by a run of `config` from `teacher` on `world_size` processes (synthesize's own resume check, with
    `dctq quantize`'s flags in the message)."""
    check_continuable(
        load_synthetic(path, allow_partial=True),
        run_config(config, world_size),
        teacher,
        path,
        context="--synthetic ",
        fix="leave out the synthesis options to reuse the file as it is, or give another --synthetic path",
    )
