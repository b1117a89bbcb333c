"""Small pieces of the training loop: the learning-rate schedule and deterministic kernels.
(Per-epoch seeds: common/seeding.py; batch -> model inputs: jpeg/batch.py; top-k counts: models/metrics.py.)"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from .config import TrainConfig


def lr_factor(step: int, *, config: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of config.lr for optimizer step `step` (0-based): linear warm-up, then the schedule."""
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "multistep":
        return config.gamma ** sum(step >= m * steps_per_epoch for m in config.milestones)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@contextlib.contextmanager
def determinism(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run where they are cheap (all CPU ops, cuDNN convolutions)."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
