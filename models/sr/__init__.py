"""sr: super-resolution networks (EDSR, SRResNet) and their image metrics (PSNR / SSIM on Y).

Importing it registers edsr_baseline_x2/x3/x4, edsr_cpu_x2/x3/x4 and srresnet_x4 (task "sr").
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("SuperResolution", "edsr", "LR_SIZE"), "dctq.models.sr.edsr"),
    **dict.fromkeys(("MeanShift", "ResBlock", "BnResBlock", "upsampler"), "dctq.models.sr.blocks"),
    **dict.fromkeys(
        ("ImageScores", "psnr", "ssim", "rgb_to_y", "score_images", "to_uint8_image"),
        "dctq.models.sr.metrics",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
