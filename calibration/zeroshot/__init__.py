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

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "SynthBatchEnd",
            "SynthConfig",
            "SynthEvent",
            "SynthStep",
            "ZeroShotConfig",
            "ZeroShotEpochEnd",
            "ZeroShotStep",
        ),
        "dctq.calibration.zeroshot.config",
    ),
    **dict.fromkeys(
        ("SyntheticData", "load_synthetic", "save_synthetic", "teacher_fingerprint"),
        "dctq.calibration.zeroshot.data",
    ),
    **dict.fromkeys(
        ("distill_on_synthetic", "kd_loss", "zero_shot_quantize"), "dctq.calibration.zeroshot.distill"
    ),
    "synthetic_grid_png": "dctq.calibration.zeroshot.grid",
    "synthesize_checkpoint": "dctq.calibration.zeroshot.synthesize",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
