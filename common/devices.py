"""Which torch device a run uses: the one resolver behind every `--device` option (training, zero-shot,
QSAM, evaluation, the PyTorch backend, the profilers and the GPU input path)."""

from __future__ import annotations

import torch

from .errors import BackendUnavailable, DctqError

CUDA_INSTALL = (
    "install a CUDA build of torch, e.g. pip install torch --index-url https://download.pytorch.org/whl/cu126"
)


def resolve_device(requested: str | torch.device = "auto", *, local_rank: int | None = None) -> torch.device:
    """The torch device for a `--device` value.

    requested: "auto" (CUDA when torch sees a GPU, else the CPU), "cpu", "cuda", "cuda:N", or a
        torch.device (checked like its name).
    local_rank: the LOCAL_RANK of a process started by torchrun (`calibration.distributed.DistEnv`);
        "auto" and "cuda" then mean cuda:LOCAL_RANK, so each process of a job takes its own GPU.
        None (a lone process): "auto"/"cuda" mean torch's current CUDA device.

    Raises:
        BackendUnavailable: a CUDA device asked for where torch sees none (the message says how to
            install a CUDA build), or a LOCAL_RANK beyond the GPUs of this machine.
        DctqError: a device name torch does not know.
    """
    if isinstance(requested, torch.device):
        device = requested
    elif requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(requested)
        except (RuntimeError, TypeError):
            raise DctqError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"device {str(requested)!r}: this torch ({torch.__version__}) sees no CUDA device; "
            f"{CUDA_INSTALL}, or use --device cpu"
        )
    if device.index is None and local_rank is not None:
        if local_rank >= torch.cuda.device_count():
            raise BackendUnavailable(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices; "
                "lower --nproc-per-node."
            )
        return torch.device("cuda", local_rank)
    return device
