"""`dctq adapt-bn`: a checkpoint with BatchNorm statistics measured at a deployment quality, all else kept."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_train_run
from typer.testing import CliRunner

from dctq.calibration.bn_stats import reestimate_bn
from dctq.calibration.workflow.adapt_bn import BN_ADAPT_KEY, adapt_bn_checkpoint
from dctq.calibration.workflow.data import calibration_loader
from dctq.calibration.workflow.plan import PtqData
from dctq.cli.main import app
from dctq.common.errors import DataError, ModelError
from dctq.models.checkpoint import load_checkpoint, save_checkpoint
from dctq.models.qabn import apply_qabn


@pytest.fixture(scope="module")
def fp_ckpt(tmp_path_factory):
    from helpers import jpeg_bytes, smooth_rgb

    root = tmp_path_factory.mktemp("adapt")
    for c, cls in enumerate(("cat", "dog")):
        (root / "data" / cls).mkdir(parents=True)
        for i in range(6):
            (root / "data" / cls / f"{i}.jpg").write_bytes(jpeg_bytes(smooth_rgb(32, 32, seed=10 * c + i)))
    result, _ = tiny_train_run(root / "data", root / "run")
    return result.best_path, root / "data"


def test_adapted_checkpoint_changes_only_the_statistics(fp_ckpt, tmp_path):
    ckpt, data = fp_ckpt
    images = PtqData(data, num_images=100, batch_size=4)
    result = adapt_bn_checkpoint(ckpt, tmp_path / "q20.pt", images, quality=20)
    before, after = load_checkpoint(ckpt), load_checkpoint(result.path)
    assert after.arch == before.arch and after.class_names == before.class_names
    assert after.extra["train_config"] == before.extra["train_config"]
    assert after.extra[BN_ADAPT_KEY]["quality"] == 20
    changed = [
        k for k, v in after.model.state_dict().items() if not torch.equal(v, before.model.state_dict()[k])
    ]
    assert changed and all("running" in k or "num_batches" in k for k in changed)
    # the statistics are those of the training images at quality 20, as reestimate_bn measures them
    loader, drawn = calibration_loader(before, data, num_images=100, batch_size=4, quality=20)
    assert result.images["images"] == drawn["images"] == len(loader.dataset) < 12  # the val images stay out
    expected = reestimate_bn(before.model, loader).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in after.model.state_dict().items())
    assert result.to_dict()["quality"] == 20


def test_refusals_name_the_fix(fp_ckpt, tmp_path):
    ckpt, data = fp_ckpt
    images = PtqData(data, num_images=4, batch_size=4)
    with pytest.raises(DataError, match="--quality must be a JPEG quality"):
        adapt_bn_checkpoint(ckpt, tmp_path / "a.pt", images, quality=0)
    with pytest.raises(DataError, match="would overwrite"):
        adapt_bn_checkpoint(ckpt, ckpt, images, quality=30)
    with pytest.raises(DataError, match="--split must be one of train, all"):
        adapt_bn_checkpoint(ckpt, tmp_path / "a.pt", PtqData(data, split="val"), quality=30)
    loaded = load_checkpoint(ckpt)
    qabn = save_checkpoint(
        tmp_path / "qabn.pt", apply_qabn(loaded.model), arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
        class_names=loaded.class_names, extra={**loaded.extra, "qabn": {"num_branches": 4}},
    )  # fmt: skip
    with pytest.raises(ModelError, match="QABN"):
        adapt_bn_checkpoint(qabn, tmp_path / "a.pt", images, quality=30)
    assert not (tmp_path / "a.pt").exists()


def test_cli_adapt_bn(fp_ckpt, tmp_path):
    ckpt, data = fp_ckpt
    runner = CliRunner()
    args = [
        "adapt-bn",
        str(ckpt),
        "--data",
        str(data),
        "--quality",
        "40",
        "--num-images",
        "8",
        "--batch-size",
        "4",
    ]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "q40.pt"), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["quality"] == 40 and (tmp_path / "q40.pt").is_file()
    failed = runner.invoke(app, [*args[:4], "--quality", "101", "--out", str(tmp_path / "bad.pt")])
    assert failed.exit_code == 1 and "--quality must be a JPEG quality" in failed.output
    assert not (tmp_path / "bad.pt").exists()
