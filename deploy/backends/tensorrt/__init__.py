"""tensorrt: INT8 TensorRT 11 engines (strongly typed networks, explicit Q/DQ), an optional runtime.

- env: import_tensorrt (BackendUnavailable with `pip install 'dctq[tensorrt]'` when absent), the process-wide
  logger, the CUDA/driver/GPU description recorded with every engine;
- build: Q/DQ ONNX -> FP16-typed graph (deploy/onnx/fp16.py) -> engine plan with optimization profiles over
  the batch, a timing cache and a sidecar (export_engine, build_engine, BuildConfig);
- engine: TrtEngine (deserialise, check the environment against the sidecar, execute) and CudaGraphRunner;
- runner: the "tensorrt" backend (TrtRunner).
Importing this package does not import tensorrt; nothing here runs without it and a CUDA GPU.
"""

from ....common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("BuildConfig", "BuildPlan", "build_engine", "export_engine", "plan_build"),
        "dctq.deploy.backends.tensorrt.build",
    ),
    **dict.fromkeys(("describe_environment", "import_tensorrt"), "dctq.deploy.backends.tensorrt.env"),
    **dict.fromkeys(("TrtBackend", "TrtRunner"), "dctq.deploy.backends.tensorrt.runner"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
