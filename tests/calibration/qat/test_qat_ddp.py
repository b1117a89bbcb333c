"""QAT under `torchrun --nproc-per-node 2` on CPU (gloo): plain QAT through DDP and ODM's cooperative path
(its two gradients averaged by hand) both end with the same model on every rank, as rank 0 saves it; SR
training (`dctq train` of an SR model) too, with its PSNR validation summed over the ranks' images."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from helpers import hr_folder, run_torchrun, tiny_sr_run

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

WORKER = """
import sys, torch
from pathlib import Path
from dctq.calibration.distributed import detect_env
from dctq.calibration.qat.config import QatConfig, method_defaults
from dctq.calibration.quant.recipe import build_recipe
from dctq.calibration.workflow.plan import QatPlan
from dctq.calibration.workflow.quantize import quantize_checkpoint

ckpt, folder, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
rank = detect_env().rank
torch.distributed.init_process_group("gloo")  # one group for both runs (see calibration.distributed)
from helpers import tiny_sr_run
result, _ = tiny_sr_run(Path(folder), out / "srtrain", epochs=2)
torch.save(result.model.state_dict(), out / f"train-rank{rank}.pt")
(out / f"train-rank{rank}.psnr").write_text(repr(result.history[-1].val.psnr))
for method in ("qat", "odm"):
    config = QatConfig(method=method, epochs=1, steps_per_epoch=2, batch_size=2, calib_batches=1,
                       **{**method_defaults(method), "offsets": "none"})
    result = quantize_checkpoint(ckpt, out / f"{method}.pt", method=method, recipe=build_recipe(bits="w4a4"),
                                 qat=QatPlan(folder, config))
    torch.save(result.model.state_dict(), out / f"{method}-rank{rank}.pt")
torch.distributed.destroy_process_group()
"""


@pytest.mark.dist
def test_two_cpu_ranks_end_identical(tmp_path):
    folder = hr_folder(tmp_path / "hr", n=6, size=(40, 36))
    result, _ = tiny_sr_run(folder, tmp_path / "fp")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_torchrun(script, str(result.best_path), str(folder), str(tmp_path), timeout=300)
    fp = torch.load(result.best_path, weights_only=True)["state_dict"]
    t0 = torch.load(tmp_path / "train-rank0.pt", weights_only=True)
    t1 = torch.load(tmp_path / "train-rank1.pt", weights_only=True)
    assert all(torch.equal(t0[k], t1[k]) for k in t0)
    assert (tmp_path / "train-rank0.psnr").read_text() == (tmp_path / "train-rank1.psnr").read_text()
    assert sorted(p.name for p in (tmp_path / "srtrain").iterdir()) == [
        "best.pt",
        "last.pt",
        "last.state.pt",
        "metrics.csv",
    ]
    for method in ("qat", "odm"):
        r0 = torch.load(tmp_path / f"{method}-rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{method}-rank1.pt", weights_only=True)
        saved = torch.load(tmp_path / f"{method}.pt", weights_only=True)["state_dict"]
        assert r0.keys() == r1.keys() == saved.keys()
        assert all(torch.equal(r0[k], r1[k]) and torch.equal(r0[k], saved[k]) for k in r0), method
        assert not torch.equal(r0["body.0.conv1.weight"], fp["body.0.conv1.weight"])  # it trained
