"""DistributedDataParallel plumbing for runs under `torchrun`: environment, process group, reductions.

A process started by `torchrun --nproc-per-node N` finds RANK / WORLD_SIZE / LOCAL_RANK (and
MASTER_ADDR / MASTER_PORT) in its environment; a plain `python` process finds none and runs alone.
NCCL joins CUDA processes, gloo CPU ones. Nothing here is distribution of our own making: the
gradients are averaged by DDP, these helpers only set it up and reduce metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..common.errors import BackendUnavailable, DctqError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and reports progress."""
        return self.rank == 0


def detect_env() -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun; a lone process gets rank 0 of 1.

    Raises DctqError when the variables are present but not integers.
    """
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise DctqError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (as torchrun sets them): {exc}"
        ) from None
    if not 0 <= rank < world_size:
        raise DctqError(f"RANK={rank} is outside WORLD_SIZE={world_size}; start the job with torchrun.")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank)


@contextlib.contextmanager
def process_group(device: torch.device, env: DistEnv) -> Iterator[None]:
    """Join the job's process group for the duration of the block (a no-op for one process).

    A group the caller already initialised is used as is and left open on exit. Joining a second
    time after leaving hung in a test (gloo under torchrun): a process that trains several times
    initialises the group itself, once.
    """
    if not env.distributed or dist.is_initialized():
        yield
        return
    if not dist.is_available():
        raise BackendUnavailable("this torch build has no torch.distributed; install a build with it.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    logger.info("joined process group: rank %d of %d (%s)", env.rank, env.world_size, backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def wrap_model(
    model: nn.Module, device: torch.device, env: DistEnv, *, find_unused: bool = False
) -> nn.Module:
    """DistributedDataParallel around `model` when the job has several processes, else `model` itself.

    find_unused: needed when a step leaves some parameters without gradient (QABN branches not routed to).
    """
    if not env.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of `values` over all processes (returned as a new tensor; `values` unchanged)."""
    out = values.clone()
    if env.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def sync_buffers(model: nn.Module, env: DistEnv) -> None:
    """Make BatchNorm running statistics (and every other buffer) equal on all processes.

    DDP averages gradients but each process updates running statistics on its own shard; averaging
    floating buffers gives every rank the same model for validation and the checkpoint. Integer
    buffers (num_batches_tracked) are taken from rank 0.
    """
    if not env.distributed:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(env.world_size)
        else:
            dist.broadcast(buf, src=0)


def barrier(env: DistEnv) -> None:
    """Wait for every process (a no-op for one process)."""
    if env.distributed:
        dist.barrier()


def broadcast_flag(flag: bool, device: torch.device, env: DistEnv) -> bool:
    """Rank 0's value of `flag` on every process (e.g. "a checkpoint to resume from exists")."""
    if not env.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
