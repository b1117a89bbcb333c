"""sr: super-resolution data: HR images, their MATLAB-bicubic LR versions, training patches, evaluation sets.

resize (MATLAB's bicubic imresize), images (reading HR/LR files, modcrop, saving), sources (folders and
the shared archives by name: sr, set5, set14), dataset (SrPair, SrPatches, SrImages, split_pairs).
The names below resolve on first use.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("imresize", "bicubic_downscale"), "dctq.jpeg.sr.resize"),
    **dict.fromkeys(
        ("read_image", "list_images", "modcrop", "save_image", "image_format", "rgb_to_y_uint8"),
        "dctq.jpeg.sr.images",
    ),
    **dict.fromkeys(("resolve_images", "EVAL_SETS", "NAMED"), "dctq.jpeg.sr.sources"),
    **dict.fromkeys(
        ("SrPair", "SrPatches", "SrImages", "SrSample", "load_pairs", "split_pairs", "to_tensor"),
        "dctq.jpeg.sr.dataset",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
