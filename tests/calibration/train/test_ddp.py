"""Training under `torchrun --nproc-per-node 2` on CPU (gloo): both ranks end with the same model."""

from __future__ import annotations

import io
import json
import textwrap

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import run_torchrun
from PIL import Image

from dctq.calibration.distributed import DistEnv, detect_env
from dctq.common.devices import resolve_device
from dctq.common.errors import DctqError
from dctq.models.registry import create_model

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from dctq.calibration.train.loop import train
    from dctq.calibration.train.config import TrainConfig
    from dctq.calibration.train.data import build_train_data

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    rank = os.environ["RANK"]
    # Two runs in one job; train() uses the group initialised here and leaves it open.
    torch.distributed.init_process_group("gloo")
    for mode in ("plain", "qabn"):
        config = TrainConfig(
            arch="dct_cifar_upsampling", arch_kwargs={"widths": [8, 8], "depths": [1, 1]}, epochs=2,
            batch_size=2, lr=0.05, val_fraction=0.25, stem_stats_batches=2, qabn=mode == "qabn",
        )
        data = build_train_data(folder, config)
        events = []
        result = train(config, data.train, data.val, out / mode, progress=events.append)
        torch.save(result.model.state_dict(), out / f"{mode}-rank{rank}.pt")
        summary = {
            "events": len(events),
            "val": [h.val.top1 for h in result.history],
            "steps": events[0].steps if events else None,
        }
        (out / f"{mode}-rank{rank}.json").write_text(json.dumps(summary))
    torch.distributed.destroy_process_group()
    """
)


def test_detect_env_reads_torchrun_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert detect_env() == DistEnv(0, 1, 0) and not detect_env().distributed
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = detect_env()
    assert env == DistEnv(1, 2, 1) and env.distributed and not env.is_main
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(DctqError, match="WORLD_SIZE"):
        detect_env()
    assert resolve_device("cpu", local_rank=env.local_rank) == torch.device("cpu")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One `torchrun --nproc-per-node 2` job training a plain and a QABN model (startup paid once)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    folder = tmp_path / "folder"
    for c, cls in enumerate(("cat", "dog")):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            (folder / cls / f"{i}.jpg").write_bytes(_jpeg(seed=10 * c + i))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_torchrun(script, str(folder), str(tmp_path))
    return tmp_path


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


@pytest.mark.dist
@pytest.mark.parametrize("mode", ["plain", "qabn"])
def test_two_cpu_ranks_end_identical(ddp_run, mode):
    rank0 = torch.load(ddp_run / f"{mode}-rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_run / f"{mode}-rank1.pt", weights_only=True)
    saved = torch.load(ddp_run / mode / "last.pt", weights_only=True)["state_dict"]
    assert rank0.keys() == rank1.keys() == saved.keys()
    # Parameters via DDP's gradient averaging; BN statistics via the end-of-epoch average.
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
        assert torch.equal(rank0[k], saved[k]), k
    # Training moved the weights away from the seeded initialisation.
    torch.manual_seed(0)
    init = create_model("dct_cifar_upsampling", num_classes=2, widths=[8, 8], depths=[1, 1]).state_dict()
    assert not torch.equal(rank0["fc.weight"], init["fc.weight"])

    s0 = json.loads((ddp_run / f"{mode}-rank0.json").read_text())
    s1 = json.loads((ddp_run / f"{mode}-rank1.json").read_text())
    # 6 training images over 2 ranks at batch 2: 2 steps per epoch on each; only rank 0 reports.
    assert s0["steps"] == 2 and s0["events"] > 0 and s1["events"] == 0
    assert s0["val"] == s1["val"]  # validation counts summed over the ranks' shards
    assert sorted(p.name for p in (ddp_run / mode).iterdir()) == [
        "best.pt",
        "last.pt",
        "last.state.pt",
        "metrics.csv",
    ]
