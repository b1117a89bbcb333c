"""common/devices.resolve_device: the one `--device` resolver (CPU here; CUDA faked for the torchrun rule)."""

from __future__ import annotations

import pytest
import torch

from dctq.common.devices import resolve_device
from dctq.common.errors import BackendUnavailable, DctqError


def test_names_and_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), local_rank=1) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        for name in ("cuda", "cuda:1", torch.device("cuda")):
            with pytest.raises(BackendUnavailable, match=r"CUDA build of torch.*--device cpu"):
                resolve_device(name)
    with pytest.raises(DctqError, match="unknown device 'gpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_torchrun_processes_take_the_gpu_of_their_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)  # an explicit index wins
    with pytest.raises(BackendUnavailable, match="LOCAL_RANK=2 but only 2 CUDA devices"):
        resolve_device("cuda", local_rank=2)
