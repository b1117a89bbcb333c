"""tensorrt: INT8 TensorRT 11 engines (strongly typed networks, explicit Q/DQ), an optional runtime.

- env: import_tensorrt (BackendUnavailable with `pip install 'dctq[tensorrt]'` when absent), the process-wide
  logger, builder/runtime creation (a failure names the driver and CUDA versions found and needed), the
  CUDA/driver/GPU description recorded with every engine;
- device: CudaDevice, the torch.cuda calls of an engine in one place (guard, streams, aligned buffers, graphs);
- build: Q/DQ ONNX -> FP16-typed graph (deploy/onnx/fp16.py) -> engine plan with optimization profiles over
  the batch, a timing cache and a sidecar (export_engine, build_engine, BuildConfig);
- engine: TrtEngine (deserialise, check the environment against the sidecar, execute on its own stream) and
  CudaGraphRunner (its own execution context);
- runner: the "tensorrt" backend (TrtRunner).
Importing this package does not import tensorrt; nothing here runs without it and a CUDA GPU.
"""

from ....common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("BuildConfig", "BuildPlan", "build_engine", "export_engine", "plan_build"),
        "dctq.deploy.backends.tensorrt.build",
    ),
    **dict.fromkeys(("CudaDevice", "cuda_device"), "dctq.deploy.backends.tensorrt.device"),
    **dict.fromkeys(("CudaGraphRunner", "TrtEngine"), "dctq.deploy.backends.tensorrt.engine"),
    **dict.fromkeys(
        ("create_builder", "create_runtime", "describe_environment", "import_tensorrt", "trt_logger"),
        "dctq.deploy.backends.tensorrt.env",
    ),
    **dict.fromkeys(("TrtBackend", "TrtRunner"), "dctq.deploy.backends.tensorrt.runner"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
