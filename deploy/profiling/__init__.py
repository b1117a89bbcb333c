"""profiling: how fast an artifact runs.

- latency: profile(artifact, backend, batches) -> p50/p90/p99 latency, throughput and peak memory per batch
  size, model only or end to end from JPEG files (the CPU path of `dctq profile`), plot_profile;
- cuda: CUDA-event timing of PyTorch models (profile_cuda) and the end-to-end GPU path
  (profile_end_to_end: JPEG bytes -> coefficients on the GPU -> model);
- gpu_input: the GPU input path itself (DctInput, RgbInput: threaded reads, pinned double buffers,
  side-stream uploads) and the bytes each image moves.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("BatchProfile", "Latency", "ProfileReport", "plot_profile", "profile", "synthetic_batch"),
        "dctq.deploy.profiling.latency",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
