"""deploy: a (quantized) model turned into artifacts and run, in reading order:

    artifact.py   what an artifact is (.pt / .onnx / .ts / .pt2 / .engine): ArtifactMeta, sidecars, load_artifact
    export/       PyTorch -> ONNX with Q/DQ (TensorRT's explicit quantization), TorchScript, torch.export
    onnx/         graph -> graph tools over ONNX files: the shared graph index, the TensorRT Q/DQ linter,
                  the ONNX Runtime integer rewrite, the FP16 pass for strongly typed TensorRT networks
    backends/     one runtime per module, named as --backend: ort, pytorch (torch), tensorrt/ (build + run)
    evaluate.py   accuracy per JPEG quality of any runner or artifact (evaluate.evaluate, evaluate_artifact)
    predict.py    top-k classes of JPEG files with any artifact (predict.predict)
    profiling/    latency percentiles and throughput (CPU and CUDA), the GPU input path, plots
    triton/       a Triton Inference Server model repository taking JPEG bytes (`dctq export --format triton`)
    environment.py  what this installation found: JPEG reader, torch/CUDA, ONNX, ONNX Runtime, TensorRT (`dctq env`)

deploy never imports training, synthesis or QSAM code: from calibration/ only quant/ and calibrators/
(docs/design.md). The names below resolve on first use; optional runtimes (onnx, onnxruntime, tensorrt)
are imported by the functions that need them and raise BackendUnavailable with the install command.
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Artifact", "ArtifactMeta", "load_artifact", "describe_model"), "dctq.deploy.artifact"),
    **dict.fromkeys(
        ("export_onnx", "export_torchscript", "export_program", "export_artifact"), "dctq.deploy.export"
    ),
    **dict.fromkeys(("lint_qdq", "rewrite_for_ort", "to_fp16"), "dctq.deploy.onnx"),
    **dict.fromkeys(
        ("Runner", "Backend", "get_backend", "list_backends", "load_runner", "register_backend"),
        "dctq.deploy.backends",
    ),
    **dict.fromkeys(("evaluate_artifact", "EvalReport"), "dctq.deploy.evaluate"),
    "Prediction": "dctq.deploy.predict",
    **dict.fromkeys(("profile", "plot_profile"), "dctq.deploy.profiling"),
    "describe_environment": "dctq.deploy.environment",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
