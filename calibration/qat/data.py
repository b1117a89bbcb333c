"""The real data QAT trains on, and what one step computes, by the model's registry task.

- SR models ("sr"): random HR/LR patches of the FP run's training images (its saved TrainConfig: the same
  held-out validation images, patch size, small-image rule; calibration/train/sr.py), L1 loss, patch PSNR.
- classifiers ("classify"): the FP run's training split of `data` (its val_fraction and augmentation),
  cross-entropy, top-1.

A new task adds a case to `qat_dataset` and `qat_step`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...common.errors import QuantizationError
from ...jpeg.batch import model_inputs
from ...jpeg.recompress import QualityPolicy
from ...jpeg.splits import split_data
from ...models.checkpoint import LoadedCheckpoint
from ...models.metrics import topk_correct
from ...models.registry import get_model_info
from ..train.config import TrainConfig, saved_train_config, saved_val_fraction
from ..train.data import check_data_for_task, dataset_for_arch
from ..train.sr import build_sr_data, sr_step


def qat_dataset(loaded: LoadedCheckpoint, data: str | Path, samples_per_epoch: int) -> tuple[Dataset, str]:
    """(training dataset, description) for QAT of `loaded` on `data` (module docstring); SR datasets draw
    `samples_per_epoch` patches per epoch.

    Raises DataError / JpegError for bad data, QuantizationError for a task QAT does not know.
    """
    task = get_model_info(loaded.arch).task
    check_data_for_task(data, task, loaded.arch)
    saved = saved_train_config(loaded.extra)
    if task == "sr":
        config = saved or TrainConfig.for_arch(loaded.arch, "sr", arch_kwargs=dict(loaded.arch_kwargs))
        patches, _, description = build_sr_data(data, config.replace(samples_per_epoch=samples_per_epoch))
        return patches, description
    if task == "classify":
        split = split_data(data, saved_val_fraction(loaded.extra))
        augment = saved.augment if saved is not None else "default"
        dataset = dataset_for_arch(
            loaded.arch,
            split.root,
            split.samples("train"),
            train=True,
            policy=QualityPolicy(),
            augment=augment,
        )
        return dataset, f"{len(dataset)} training images of {data} ({augment} augmentation)"
    raise QuantizationError(f"QAT does not know the task {task!r} of {loaded.arch}")


def qat_step(
    task: str, model: nn.Module, batch: dict[str, Any], device: torch.device
) -> tuple[Tensor, Tensor, int]:
    """(reconstruction loss, summed score: patch PSNR or correct top-1, samples) of one training batch."""
    if task == "sr":
        return sr_step(model, batch, device)
    inputs, labels = model_inputs(batch, device), batch["label"].to(device)
    logits = model(*inputs)
    loss = F.cross_entropy(logits, labels)
    with torch.no_grad():
        correct = topk_correct(logits, labels, (1,))[0]
    return loss, correct, labels.shape[0]
