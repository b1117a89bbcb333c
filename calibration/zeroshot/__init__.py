"""zeroshot: quantization without real data, IntraQ (Zhong et al.) and the BN-statistics baseline.

- config: SynthConfig (synthesis) and ZeroShotConfig (calibration + KD fine-tuning), with their events;
- images: the synthetic images' parametrization (JPEG coefficients through the DCT stem, or pixels);
- losses: BN-statistics loss and hooks, IntraQ's SIL and MDC terms and its class-centre bank;
- synthesize: the synthesis loop (synthesize.synthesize: resumable, split over torchrun processes),
  synthesize_checkpoint;
- data: SyntheticData files, their compatibility checks for resume and reuse;
- distill: distill_on_synthetic (calibrate, then KD fine-tune on a synthetic set) and zero_shot_quantize
  (synthesize, then distill);
- grid: a PNG contact sheet of synthetic images.
"""

from .config import (
    SynthBatchEnd,
    SynthConfig,
    SynthEvent,
    SynthStep,
    ZeroShotConfig,
    ZeroShotEpochEnd,
    ZeroShotStep,
)
from .data import SyntheticData, load_synthetic, save_synthetic, teacher_fingerprint
from .distill import distill_on_synthetic, kd_loss, zero_shot_quantize
from .grid import synthetic_grid_png
from .synthesize import synthesize_checkpoint

__all__ = [
    "SynthBatchEnd",
    "SynthConfig",
    "SynthEvent",
    "SynthStep",
    "SyntheticData",
    "ZeroShotConfig",
    "ZeroShotEpochEnd",
    "ZeroShotStep",
    "distill_on_synthetic",
    "kd_loss",
    "load_synthetic",
    "save_synthetic",
    "synthesize_checkpoint",
    "synthetic_grid_png",
    "teacher_fingerprint",
    "zero_shot_quantize",
]
