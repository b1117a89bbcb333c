"""The registered autoencoders: `dq_ae` (the DQ paper's defaults) and `dq_ae_cpu` (a CPU-scale preset).

Both build models.dq.autoencoder.HierarchicalAE; every argument can be overridden (`--arch-kwargs
'{"mode": "vq", "num_codebooks": 2}'`), so the VQ baseline and single-codebook VQ are the same entries
with another `mode`. Their `train_defaults` are the DQ code's optimiser (Adam 2e-4, constant rate,
gradient-norm clip 2, batch 128, no weight decay), which `dctq train` takes where no option is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..registry import register_model
from .autoencoder import HierarchicalAE

PAPER = {
    "levels": (32, 32, 32),
    "channels": 256,
    "res_blocks": 3,
    "res_channels": 256,
    "coder_blocks": 2,
    "code_dim": 64,
    "num_codebooks": 5,
    "head": "mix",
}
"""METHODS.md section 5: channel 256, 3 ResBlocks of 256, 2 coder blocks, d = 64, M = 5, three levels of
K = 32 (the figure whose code rate is 2100 bits per CIFAR image), the discretized logistic mixture head."""

CPU = {
    **PAPER,
    "levels": (32, 32),
    "channels": 32,
    "res_blocks": 1,
    "res_channels": 16,
    "code_dim": 16,
    "n_mix": 5,
}
"""The CPU-scale preset of METHODS.md's plan: two levels of K = 32 (8x8 and 4x4 on CIFAR), 32 channels, one
ResBlock of 16 per block, d = 16 (M*d = 80 channels into the decoders at M = 5), 5 logistics: 0.29M
parameters and 50 MMACs per 32x32 image, about 1 s per step of 128 images on one core of this machine."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "nesterov": False,  # Adam has no Nesterov momentum (TrainConfig refuses the pair)
    "lr": 2e-4,
    "weight_decay": 0.0,
    "schedule": "constant",
    "clip_grad_norm": 2.0,
    "batch_size": 128,
    "augment": "flip",
}


def _build(preset: dict[str, Any], levels: Sequence[int] | None, **kwargs: Any) -> HierarchicalAE:
    options = {**preset, **{k: v for k, v in kwargs.items() if v is not None}}
    if levels is not None:
        options["levels"] = tuple(levels)
    return HierarchicalAE(**options)


@register_model(
    "dq_ae",
    input_kind="rgb",
    input_size=32,
    task="autoencode",
    train_defaults={**TRAIN_DEFAULTS, "epochs": 200},
    description="DQ hierarchical autoencoder, paper defaults: C 256, d 64, M 5, K 32 x 3 levels, logistic-mixture head",
)
def dq_ae(levels: Sequence[int] | None = None, **kwargs: Any) -> HierarchicalAE:
    """The DQ paper's CIFAR autoencoder; keyword arguments override HierarchicalAE's (levels, mode,
    num_codebooks, code_dim, channels, res_blocks, res_channels, coder_blocks, head, n_mix, ...)."""
    return _build(PAPER, levels, **kwargs)


@register_model(
    "dq_ae_cpu",
    input_kind="rgb",
    input_size=32,
    task="autoencode",
    train_defaults={**TRAIN_DEFAULTS, "epochs": 10},
    description="DQ hierarchical autoencoder, CPU scale: C 32, d 16, M 5, K 32 x 2 levels, 5-logistic mixture head",
)
def dq_ae_cpu(levels: Sequence[int] | None = None, **kwargs: Any) -> HierarchicalAE:
    """The CPU-scale preset; keyword arguments override HierarchicalAE's, as for `dq_ae`."""
    return _build(CPU, levels, **kwargs)
