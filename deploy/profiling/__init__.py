"""profiling: how fast an artifact runs.

- latency: profile(artifact, backend, batches) -> p50/p90/p99 latency, throughput and peak memory per batch
  size, model only or end to end from JPEG files (the CPU path of `dctq profile`);
- plot: plot_profiles (several profiles overlaid: p50 latency with the p90-p99 band, throughput) and the
  figures of `dctq report` (save_figure over Panel/Series), through matplotlib or the Pillow/SVG fallback
  (plot_fallback);
- cuda: CUDA-event timing of PyTorch models (profile_cuda) and the end-to-end GPU path
  (profile_end_to_end: JPEG bytes -> coefficients on the GPU -> model);
- gpu_input: the GPU input path itself (DctInput, RgbInput: threaded reads, pinned double buffers,
  side-stream uploads) and the bytes each image moves.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("BatchProfile", "Latency", "ProfileReport", "profile", "synthetic_batch"),
        "dctq.deploy.profiling.latency",
    ),
    **dict.fromkeys(
        ("Panel", "Series", "plot_profile", "plot_profiles", "save_figure"), "dctq.deploy.profiling.plot"
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
