"""The autoencoder under `torchrun --nproc-per-node 2` (gloo): codebooks learn from the global batch and every
rank holds the same codebooks and weights."""

from __future__ import annotations

import io
import textwrap

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import run_torchrun
from PIL import Image

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from dctq.calibration.train.config import config_for
    from dctq.calibration.train.data import build_train_data
    from dctq.calibration.train.loop import train
    from dctq.models.dq.quantizer import Codebook

    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    rank = int(os.environ["RANK"])
    torch.distributed.init_process_group("gloo")
    # 1. One EMA step on each rank's own rows: the codebook of the concatenated rows, on both ranks.
    torch.manual_seed(0)
    book = Codebook(3, 4, restart_threshold=0.0)
    rows = [torch.randn(50, 3, generator=torch.Generator().manual_seed(10 + r)) for r in range(2)]
    book.update(rows[rank], book.nearest(rows[rank]))
    torch.save(book.state_dict(), out / f"book-rank{rank}.pt")
    # 2. Dead-code restarts draw from rank 0's rows, so both ranks restart alike.
    torch.manual_seed(0)
    dead = Codebook(3, 8)  # the same initial state on both ranks, as DDP makes it
    dead.embed.copy_(torch.full((8, 3), 100.0))
    dead.embed[0] = 0.0
    torch.manual_seed(rank)  # but each rank would draw other restart candidates
    dead.update(rows[rank], dead.nearest(rows[rank]))
    torch.save(dead.state_dict(), out / f"dead-rank{rank}.pt")
    # 3. A whole run.
    config = config_for("dq_ae_cpu", arch_kwargs={"channels": 8, "res_channels": 4, "code_dim": 2, "levels": [8, 8],
                        "n_mix": 2, "num_codebooks": 2}, epochs=2, batch_size=2, val_fraction=0.25)
    data = build_train_data(folder, config)
    result = train(config, data.train, data.val, out / "run")
    torch.save(result.model.state_dict(), out / f"ae-rank{rank}.pt")
    (out / f"val-rank{rank}.json").write_text(json.dumps([h.val.metrics for h in result.history]))
    torch.distributed.destroy_process_group()
    """
)


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ddp_ae(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ddp_ae")
    folder = tmp_path / "folder"
    for c, cls in enumerate(("cat", "dog")):
        (folder / cls).mkdir(parents=True)
        for i in range(4):
            (folder / cls / f"{i}.jpg").write_bytes(_jpeg(seed=10 * c + i))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_torchrun(script, str(folder), str(tmp_path))
    return tmp_path


@pytest.mark.dist
def test_codebook_ema_sums_over_ranks(ddp_ae):
    from dctq.models.dq.quantizer import Codebook

    torch.manual_seed(0)
    reference = Codebook(3, 4, restart_threshold=0.0)  # the same initial codes as the ranks'
    rows = torch.cat([torch.randn(50, 3, generator=torch.Generator().manual_seed(10 + r)) for r in range(2)])
    reference.update(rows, reference.nearest(rows))  # one process, the global batch
    for rank in (0, 1):
        state = torch.load(ddp_ae / f"book-rank{rank}.pt", weights_only=True)
        for key, value in reference.state_dict().items():
            assert torch.allclose(state[key], value, atol=1e-6), (rank, key)
    a, b = (torch.load(ddp_ae / f"dead-rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (a["embed"].abs() < 50).all()  # every dead code restarted from rank 0's rows


@pytest.mark.dist
def test_two_ranks_train_the_same_autoencoder(ddp_ae):
    rank0 = torch.load(ddp_ae / "ae-rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_ae / "ae-rank1.pt", weights_only=True)
    saved = torch.load(ddp_ae / "run" / "last.pt", weights_only=True)["state_dict"]
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], saved[key]), key
    assert (ddp_ae / "val-rank0.json").read_text() == (ddp_ae / "val-rank1.json").read_text()
