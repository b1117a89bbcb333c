"""dq: Depthwise Quantization (Fostiropoulos & Boehm, CVPR 2022) and its hierarchical autoencoder.

- quantizer: QuantBottleneck (modes "dq", "vq" (the DQ code's baseline), "single"), Codebook (EMA k-means,
  dead-code restart), BottleneckOutput;
- autoencoder: HierarchicalAE (VQ-VAE-2-style top-down conditioning), AEOutput;
- heads: the "mse", "ce" and "mix" (discretized logistic mixture) output heads: NLL, loss, mean pixels;
- rate: code rates (uniform bound, the EMA-count prior), PSNR, CodeStats (what validation and
  `dctq evaluate` report);
- presets: the registered `dq_ae` (paper defaults) and `dq_ae_cpu` (CPU scale).
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("AEOutput", "HierarchicalAE"), "dctq.models.dq.autoencoder"),
    **dict.fromkeys(
        ("HEADS", "LIKELIHOOD_HEADS", "mean_pixels", "nll", "reconstruction_loss"), "dctq.models.dq.heads"
    ),
    **dict.fromkeys(("CPU", "PAPER", "TRAIN_DEFAULTS"), "dctq.models.dq.presets"),
    **dict.fromkeys(("BottleneckOutput", "Codebook", "MODES", "QuantBottleneck"), "dctq.models.dq.quantizer"),
    **dict.fromkeys(("CodeStats", "prior_bits", "psnr", "uniform_bits"), "dctq.models.dq.rate"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
