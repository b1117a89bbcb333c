"""The super-resolution task of the training loop (models of registry task "sr"): its data, loss and
validation: the data (build_train_data), the loss and training score of a batch (`sr_step`) and
validation (`validate_sr`), which tasks.SrTask calls for the training loop.

- data: HR images of `--data` ("sr", "set5", "set14" or a folder; jpeg.sr), `val_fraction` of them
  (seeded with jpeg.splits.SPLIT_SEED) held out whole for validation, the rest cut into
  `samples_per_epoch` random `patch_size` HR patches per epoch (flips, 90-degree rotations);
- loss: L1 between the output and the HR patch (EDSR); the training score is the PSNR of the patches
  on Y (float, unrounded: a progress number, not a benchmark);
- validation: every held-out image whole, PSNR and SSIM on Y with `scale` border pixels cropped after
  rounding the output to 8 bits (models.sr.metrics), averaged over images; selects best.pt by PSNR.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset

from ...common.errors import DataError
from ...jpeg.dataset import make_loader
from ...jpeg.splits import SPLIT_SEED
from ...jpeg.sr.dataset import SrImages, SrPatches, load_pairs, split_pairs
from ...jpeg.sr.sources import resolve_images
from ...models.registry import create_model
from ...models.sr.metrics import psnr, score_images
from .. import distributed as dd
from .config import TrainConfig
from .events import ValMetrics


def sr_geometry(arch: str, arch_kwargs: dict) -> tuple[int, int]:
    """(scale, image channels) of an SR architecture with these arguments (built on the meta device)."""
    with torch.device("meta"):
        model = create_model(arch, **arch_kwargs)
    return model.scale, model.image_channels


def build_sr_data(
    data: str | Path, config: TrainConfig, *, cache_dir: Path | None = None
) -> tuple[SrPatches, SrImages, str]:
    """(training patches, validation images, description) for an SR `config` (see module docstring).

    Raises DataError for a missing folder/archive, no images, unusable images (read_image), images
    smaller than the patch, or too few images to split.
    """
    scale, channels = sr_geometry(config.arch, config.arch_kwargs)
    folder = resolve_images(data, cache_dir=cache_dir)
    pairs = load_pairs(folder, scale, channels)
    train, val = split_pairs(pairs, config.val_fraction, SPLIT_SEED)
    patches = SrPatches(
        train,
        scale=scale,
        patch_size=config.patch_size,
        length=config.samples_per_epoch or len(train),
        skip_small=config.skip_small_images,
        seed=config.seed,
    )
    cropped = sum(p.cropped for p in pairs)
    description = (
        f"{len(patches.pairs)} HR images of {data} ({config.patch_size}x{config.patch_size} patches, x{scale}), "
        f"validating on {len(val)} held out"
        + (f"; {cropped} cropped to multiples of {scale}" if cropped else "")
        + (f"; {len(patches.skipped)} smaller than the patch left out" if patches.skipped else "")
    )
    return patches, SrImages(val, scale), description


def sr_step(model: nn.Module, batch: dict[str, Tensor], device: torch.device) -> tuple[Tensor, Tensor, int]:
    """(L1 loss, sum of the patches' PSNR on Y, patches) of one training batch {"x": LR, "target": HR}."""
    x, target = batch["x"].to(device, non_blocking=True), batch["target"].to(device, non_blocking=True)
    out = model(x)
    loss = F.l1_loss(out, target)
    with torch.no_grad():
        score = psnr(out.detach().clamp(0, 1), target).sum()
    return loss, score, x.shape[0]


@torch.no_grad()
def validate_sr(model: nn.Module, val_set: SrImages, env: dd.DistEnv, device: torch.device) -> ValMetrics:
    """Mean L1 loss, PSNR and SSIM over every validation image (each process scores its share)."""
    model.eval()
    crop = int(getattr(model, "scale", 0))
    shard = Subset(val_set, range(env.rank, len(val_set), env.world_size))
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, psnr, ssim, images
    if len(shard):
        for batch in make_loader(shard, 1, shuffle=False):
            hr = batch["target"].to(device)
            out = model(batch["x"].to(device))
            scores = score_images("", out[0].cpu(), hr[0].cpu(), crop)
            sums += torch.tensor(
                [float(F.l1_loss(out, hr)), scores.psnr, scores.ssim, 1.0], dtype=torch.float64, device=device
            )
    loss, psnr_sum, ssim_sum, n = dd.all_reduce_sum(sums, env).tolist()
    if n == 0:
        raise DataError("the SR validation set is empty; give more images or a larger --val-fraction")
    return ValMetrics(loss / n, None, None, int(n), psnr=psnr_sum / n, ssim=ssim_sum / n)
