"""tensorrt: INT8 TensorRT 11 engines (strongly typed networks, explicit Q/DQ), an optional runtime.

- env: import_tensorrt (BackendUnavailable with `pip install 'dctq[tensorrt]'` when absent), the process-wide
  logger, the CUDA/driver/GPU description recorded with every engine;
- build: Q/DQ ONNX -> FP16-typed graph (deploy/onnx/fp16.py) -> engine plan with optimization profiles over
  the batch, a timing cache and a sidecar (export_engine, build_engine, BuildConfig);
- engine: TrtEngine (deserialise, check the environment against the sidecar, execute) and CudaGraphRunner;
- runner: the "tensorrt" backend (TrtRunner).
Importing this package does not import tensorrt; nothing here runs without it and a CUDA GPU.
"""

from .build import BuildConfig, BuildPlan, build_engine, export_engine, plan_build
from .env import describe_environment, import_tensorrt
from .runner import TrtBackend, TrtRunner

__all__ = [
    "BuildConfig",
    "BuildPlan",
    "TrtBackend",
    "TrtRunner",
    "build_engine",
    "describe_environment",
    "export_engine",
    "import_tensorrt",
    "plan_build",
]
