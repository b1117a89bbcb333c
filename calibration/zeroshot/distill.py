"""Zero-shot quantization: calibrate on synthetic data, then distil the FP teacher into the fake-quant student.

`distill_on_synthetic(teacher, recipe, synthetic, ZeroShotConfig())` (METHODS.md section 3, IntraQ;
`zero_shot_quantize(teacher, recipe, SynthConfig(), ZeroShotConfig())` synthesizes the set first):
1. `quantize_model(teacher, recipe)` (a copy; BN folded when recipe.fold_bn, the default) and
   `calibrate` its activation ranges on the synthetic set, unaugmented. IntraQ calibrated with a GDFQ
   generator's images during 4 warm-up epochs; METHODS calls calibrating on the IntraQ images the
   paper-faithful variant, and it is what we do (no generator). Activation ranges then stay frozen.
2. Fine-tune the student (SGD Nesterov, momentum 0.9, wd 1e-4, lr 1e-4, x0.1 at `milestones`) on
   `L = kd_alpha * T^2 * KL_batchmean(softmax(t/T) || softmax(s/T)) + CE(s, y)`, T = 20, alpha = 20,
   t/s the teacher/student logits of the same augmented batch and y the synthetic hard labels.
   Weight ranges follow the weights: per-output-channel max recomputed after every step, as IntraQ's
   quantizers take min/max of the current weights on the fly.
   The student stays in eval mode with BN unfolded, as in IntraQ: running statistics frozen, affine
   parameters trained. A folding recipe gets its BN folded into the quantized convs afterwards
   (`tune_unfolded`); `tune_unfolded=False` tunes the folded student, which needs lr ~1e-6.
Augmentation of stored samples: RGB, per-image RandomResizedCrop(0.5, 1) + horizontal flip as IntraQ;
DCT, the block-grid equivalents (a JPEG's coefficients cannot be resampled without re-encoding): the
DCT-domain mirror (jpeg.geometry.hflip) and a random MCU-aligned shift inside `dct_pad_mcus` MCUs of
zero-block padding (jpeg.transforms.RandomPadCrop's scheme).

Quantization follows dctq's contract (symmetric, zero point 0, per-channel weights, TensorRT's grid);
IntraQ's own quantizer is asymmetric min/max (ZeroQ style), so low-bit numbers are not identical.
`epochs=0` stops after calibration (ZeroQ's recipe: ranges from synthetic data, no fine-tuning).
Under torchrun the student is wrapped in DDP, each process takes its own `batch_size` slice of every
step's indices, and all processes return the same model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...common.devices import resolve_device
from ...common.errors import QuantizationError
from ...common.seeding import mix_seed
from ...jpeg.transforms import random_flip_pad_crop, random_resized_crop_flip
from .. import distributed as dd
from ..frozen import frozen_eval
from ..ptq import model_args
from ..quant.model import calibrate, calibrate_weights, fold_quantized_bn, quantize_model
from ..quant.recipe import QuantRecipe
from .config import SynthConfig, SynthEvent, ZeroShotConfig, ZeroShotEpochEnd, ZeroShotEvent, ZeroShotStep
from .data import SyntheticData, check_fits
from .synthesize import synthesize

logger = logging.getLogger(__name__)


def kd_loss(
    student: Tensor, teacher: Tensor, labels: Tensor, config: ZeroShotConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """(total, kd, ce): student/teacher logits [B, K], labels [B] -> scalars (see module docstring)."""
    t = config.temperature
    kd = F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean")
    ce = F.cross_entropy(student, labels)
    return config.kd_alpha * t * t * kd + config.ce_weight * ce, kd, ce


def augment_batch(
    batch: dict[str, Tensor], gen: torch.Generator, config: ZeroShotConfig
) -> dict[str, Tensor]:
    """A copy of a synthetic batch with the configured augmentation applied (see module docstring)."""
    out = dict(batch)
    if "y" in batch:
        out["y"], out["cbcr"] = random_flip_pad_crop(
            batch["y"], batch["cbcr"], gen, flip_p=config.flip_p, pad_mcus=config.dct_pad_mcus
        )
    else:
        out["x"] = random_resized_crop_flip(
            batch["x"], gen, scale=config.crop_scale, ratio=config.crop_ratio, flip_p=config.flip_p
        )
    return out


def step_indices(n: int, epoch: int, steps: int, batch: int, env: dd.DistEnv, seed: int) -> Tensor:
    """[steps, batch] sample indices of this process for one epoch: one shuffled stream of whole passes
    over the n samples, split into global batches of batch * world_size, rank r taking slice r."""
    gen = torch.Generator().manual_seed(mix_seed(seed, epoch))
    total = steps * batch * env.world_size
    passes = -(-total // n)
    stream = torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])[:total]
    return stream.reshape(steps, env.world_size, batch)[:, env.rank]


def distill_on_synthetic(
    teacher: nn.Module,
    recipe: QuantRecipe | None,
    synthetic: SyntheticData,
    config: ZeroShotConfig | None = None,
    *,
    progress: Callable[[ZeroShotEvent], None] | None = None,
    env: dd.DistEnv | None = None,
    calib_synthetic: SyntheticData | None = None,
) -> nn.Module:
    """A quantized copy of `teacher`, calibrated and fine-tuned on `synthetic` only (no real image).

    teacher: the FP model (moved to the run's device, used in eval mode, not modified otherwise).
    calib_synthetic: calibrate activation ranges on this set instead of `synthetic` (still synthetic).
    IntraQ's reference code does so: its ranges come from GDFQ-generator images trained on BN
    statistics + CE, and the IntraQ images only feed the fine-tuning; a BN-statistics set plays
    that part here. Measured on the CIFAR DCT model: MSE ranges from the IntraQ set alone cost
    1.7-2 points at W4A4/W5A5 before fine-tuning (docs/benchmarks.md).
    Returns the student in eval mode with every quantizer QUANTIZING (recipe_of(student) is `recipe`).
    Raises QuantizationError for a synthetic set of another kind or class count, and what
    quantize_model / calibrate raise.
    """
    config = config or ZeroShotConfig()
    env = env or dd.detect_env()
    check_fits(synthetic, teacher)
    calib_set = synthetic if calib_synthetic is None else calib_synthetic
    if calib_synthetic is not None:
        check_fits(calib_synthetic, teacher)
    device = resolve_device(config.device, local_rank=env.local_rank)
    teacher.to(device)
    recipe = recipe or QuantRecipe()
    fold_later = config.tune_unfolded and config.epochs > 0 and recipe.fold_bn
    qmodel = quantize_model(teacher, dataclasses.replace(recipe, fold_bn=False) if fold_later else recipe)

    def forward_loop(model: nn.Module) -> None:
        for batch in calib_set.batches(config.batch_size, config.calib_images):
            model(*model_args(batch, device))

    with frozen_eval(teacher), dd.process_group(device, env):
        calibrate(qmodel, forward_loop)
        if config.epochs > 0:
            _fine_tune(teacher, qmodel, synthetic, config, device, env, progress)
    if fold_later:
        fold_quantized_bn(qmodel, recipe)
    qmodel.eval()
    return qmodel


def _fine_tune(
    teacher: nn.Module,
    qmodel: nn.Module,
    synthetic: SyntheticData,
    config: ZeroShotConfig,
    device: torch.device,
    env: dd.DistEnv,
    progress: Callable[[ZeroShotEvent], None] | None,
) -> None:
    qmodel.eval()  # frozen BN statistics (see module docstring); dropout-free models otherwise unaffected
    student = dd.wrap_model(qmodel, device, env)
    params = [p for p in qmodel.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    report = progress if (progress is not None and env.is_main) else None
    steps = config.steps_per_epoch
    for epoch in range(config.epochs):
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = step_indices(len(synthetic), epoch, steps, config.batch_size, env, config.seed)
        # Augmentation: a stream per rank, apart from the (seed, epoch) index stream by its extra parts.
        gen = torch.Generator().manual_seed(mix_seed(config.seed, epoch, env.rank, 1))
        tick = time.perf_counter()
        epoch_sums = torch.zeros(5, dtype=torch.float64)  # loss, kd, ce, agreement, batches
        window = torch.zeros(5, dtype=torch.float64)
        for step in range(steps):
            batch = synthetic.batch(indices[step])
            if config.augment:
                batch = augment_batch(batch, gen, config)
            args = model_args(batch, device)
            labels = batch["label"].to(device)
            with torch.no_grad():
                t_logits = teacher(*args)
            s_logits = student(*args)
            loss, kd, ce = kd_loss(s_logits, t_logits, labels, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if config.track_weight_ranges:
                with torch.no_grad():
                    calibrate_weights(qmodel)
            agree = (s_logits.argmax(1) == t_logits.argmax(1)).double().mean()
            window += torch.tensor(
                [float(loss.detach()), float(kd.detach()), float(ce.detach()), float(agree), 1.0],
                dtype=torch.float64,
            )
            if report is not None and ((step + 1) % config.log_every == 0 or step + 1 == steps):
                w = (window[:4] / window[4]).tolist()
                report(ZeroShotStep(epoch + 1, step + 1, steps, *w, lr=lr))
            if (step + 1) % config.log_every == 0 or step + 1 == steps:
                epoch_sums += window
                window.zero_()
        if report is not None:
            m = (epoch_sums[:4] / epoch_sums[4]).tolist()
            report(ZeroShotEpochEnd(epoch + 1, config.epochs, *m, lr=lr, seconds=time.perf_counter() - tick))
        logger.info(
            "zero-shot epoch %d/%d: loss %.4f", epoch + 1, config.epochs, float(epoch_sums[0] / epoch_sums[4])
        )


def zero_shot_quantize(
    teacher: nn.Module,
    recipe: QuantRecipe | None = None,
    synth_config: SynthConfig | None = None,
    config: ZeroShotConfig | None = None,
    *,
    synthetic_out: Path | str | None = None,
    resume: bool = False,
    class_names: Sequence[str] | None = None,
    arch: str | None = None,
    progress: Callable[[SynthEvent | ZeroShotEvent], None] | None = None,
    calib_synthetic: SyntheticData | None = None,
) -> tuple[nn.Module, SyntheticData]:
    """Zero-shot quantization from the model alone: synthesize (or resume `synthetic_out`) with
    `synth_config`, then `distill_on_synthetic` (activation ranges from `calib_synthetic` when given).

    synth_config.method picks IntraQ ("intraq") or the BN-statistics baseline ("bnstats"); both are
    fine-tuned the same way, so the comparison isolates the data. Returns (student, synthetic set).
    Raises QuantizationError when synth_config is not a SynthConfig (a SyntheticData belongs to
    distill_on_synthetic), and what synthesize and distill_on_synthetic raise.
    """
    if synth_config is not None and not isinstance(synth_config, SynthConfig):
        # The name used to mean today's distill_on_synthetic(teacher, recipe, synthetic, config).
        raise QuantizationError(
            f"zero_shot_quantize synthesizes its own set from a SynthConfig, got {type(synth_config).__name__}; "
            "to calibrate and fine-tune on a synthetic set you already have, call "
            "distill_on_synthetic(teacher, recipe, synthetic, config)"
        )
    env = dd.detect_env()
    device = resolve_device((synth_config or SynthConfig()).device, local_rank=env.local_rank)
    # One process group for both stages (torchrun's rendezvous does not expect a second init).
    with dd.process_group(device, env):
        synthetic = synthesize(
            teacher,
            synth_config,
            synthetic_out,
            resume=resume,
            class_names=class_names,
            arch=arch,
            progress=progress,  # type: ignore[arg-type]
            env=env,
        )
        student = distill_on_synthetic(
            teacher,
            recipe,
            synthetic,
            config,
            progress=progress,  # type: ignore[arg-type]
            env=env,
            calib_synthetic=calib_synthetic,
        )
    return student, synthetic
