"""dctq: PyTorch to INT8 inference engines that read JPEG DCT coefficients directly.

The whole path in Python, with the names below (each resolved on first use, so `import dctq` stays cheap
and free of side effects):

    import dctq

    fp = dctq.load_checkpoint("runs/dct/best.pt")                     # or dctq.create_model("dct_cifar_upsampling")
    calib = dctq.make_loader(dctq.JpegFolder("calib/", input_size=32, train=False), batch_size=64)
    q = fp.with_model(dctq.ptq(fp.model, dctq.get_recipe("int8"), calib))   # PTQ on your own batches
    dctq.export_onnx(q, "q.onnx")                                     # Q/DQ ONNX (TensorRT's rules) + sidecar
    print(dctq.predict("q.onnx", ["cat.jpg"])[0].label)               # ONNX Runtime on the JPEG's coefficients

Zero-shot instead of PTQ (no image at all): `dctq.zero_shot_quantize(fp.model, recipe, dctq.SynthConfig(),
dctq.ZeroShotConfig())` returns (quantized model, synthetic set). The packages hold the rest: jpeg (reading
coefficients, data sets), models (architectures, checkpoints), calibration (quantization, calibrators, PTQ,
IntraQ zero-shot, QSAM, training, the quantize workflow), deploy (export, ONNX passes, runtimes, evaluation,
profiling), cli (the `dctq` command).

Kept free of eager imports: `import dctq` must stay cheap for the CLI. pytest imports this file a second
time as a top-level module named after the checkout folder (the root is a package; see ARCHITECTURE.md),
where a relative import fails when that name is no identifier ("dctq-0.1.0" of an sdist): hence the one
absolute import of the package.
"""

from dctq.common.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # models
    "create_model": "dctq.models",
    "list_models": "dctq.models",
    "load_checkpoint": "dctq.models",
    "save_checkpoint": "dctq.models",
    "LoadedCheckpoint": "dctq.models",
    # JPEG coefficients and data
    "read_jpeg": "dctq.jpeg.reader",
    "JpegFolder": "dctq.jpeg.dataset",
    "RgbJpegFolder": "dctq.jpeg.rgb",
    "make_loader": "dctq.jpeg.dataset",
    "QualityPolicy": "dctq.jpeg.recompress",
    # quantization
    "QuantRecipe": "dctq.calibration.quant",
    "LayerRule": "dctq.calibration.quant",
    "PRESETS": "dctq.calibration.quant",
    "get_recipe": "dctq.calibration.quant",
    "quantize_model": "dctq.calibration.quant",
    "calibrate": "dctq.calibration.quant",
    "save_quantized": "dctq.calibration.quant",
    "ptq": "dctq.calibration.ptq",
    "SynthConfig": "dctq.calibration.zeroshot",
    "ZeroShotConfig": "dctq.calibration.zeroshot",
    "synthesize": "dctq.calibration.zeroshot.synthesize",
    "zero_shot_quantize": "dctq.calibration.zeroshot",
    "distill_on_synthetic": "dctq.calibration.zeroshot",
    "quantize_checkpoint": "dctq.calibration.workflow",
    "PtqData": "dctq.calibration.workflow",
    "ZeroShotPlan": "dctq.calibration.workflow",
    # training
    "TrainConfig": "dctq.calibration.train",
    "build_train_data": "dctq.calibration.train",
    "train": "dctq.calibration.train",
    # deployment
    "export_onnx": "dctq.deploy.export",
    "export_torchscript": "dctq.deploy.export",
    "export_program": "dctq.deploy.export",
    "lint_qdq": "dctq.deploy.onnx",
    "load_artifact": "dctq.deploy.artifact",
    "load_runner": "dctq.deploy.backends",
    "predict": "dctq.deploy.predict",
    "evaluate": "dctq.deploy.evaluate",
    "evaluate_artifact": "dctq.deploy.evaluate",
    "profile": "dctq.deploy.profiling",
    # errors
    "DctqError": "dctq.common.errors",
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
