"""jpeg: JPEG files in, coefficient tensors out; knows nothing of models or quantization.

Reading: sniff (header checks), decoders (libjpeg-turbo extension `_turbo`, jpeglib fallback), reader
(read_jpeg -> JpegCoefficients: y [64, Hb, Wb], cbcr [128, Hb/2, Wb/2] on the 4:2:0 grid, qt [3, 64]),
chroma (4:4:4 / 4:2:2 / 4:4:0 mapped exactly in the DCT domain), quality (IJG tables and quality estimates),
inspect. Geometry and pixels: geometry (MCU-aligned crop/pad, flips), transforms (augmentations), dct (the
8x8 DCT in numpy and torch), pixels (coefficients back to RGB), rgb (the pixel path of RGB models),
recompress (JPEG re-compression, QSAM's quality policy), pixel_augment. Data: samples (ImageFolder
listing), splits (seeded train/val splits, the dataset a model reads), dataset (JpegFolder, collate,
make_loader), batch (a batch -> a model's ordered inputs), cifar (the shared CIFAR-10 archive), demo_data.
The names below resolve on first use.
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("read_jpeg", "read_blocks"), "dctq.jpeg.reader"),
    "JpegCoefficients": "dctq.jpeg.coefficients",
    "inspect_jpeg": "dctq.jpeg.inspect",
    **dict.fromkeys(("JpegFolder", "collate_samples", "make_loader", "preprocess_dct"), "dctq.jpeg.dataset"),
    **dict.fromkeys(("RgbJpegFolder", "preprocess_rgb"), "dctq.jpeg.rgb"),
    "QualityPolicy": "dctq.jpeg.recompress",
    **dict.fromkeys(("split_data", "make_dataset", "DataSplit"), "dctq.jpeg.splits"),
    **dict.fromkeys(("model_inputs", "model_arrays", "input_names"), "dctq.jpeg.batch"),
    **dict.fromkeys(("center_crop_or_pad", "block_grid"), "dctq.jpeg.geometry"),
    **dict.fromkeys(("ijg_quant_table", "estimate_ijg_quality"), "dctq.jpeg.quality"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
