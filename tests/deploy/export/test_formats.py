"""deploy/export/formats.py against kills: an export killed between writing its sidecar and its model
(a real SIGKILL of a forked exporting process, helpers.run_killed_at_write) never leaves one model paired
with another model's sidecar: the pair is the old one, or it is refused as mismatched until exported again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY, run_killed_at_write

from dctq.common.errors import ExportError
from dctq.deploy.artifact import load_artifact, sidecar_path
from dctq.deploy.backends.registry import load_runner
from dctq.deploy.export.formats import FORMATS, export_artifact
from dctq.models import create_model, example_inputs
from dctq.models.checkpoint import save_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kills fork an exporting process")


def _checkpoint(path: Path, seed: int, prefix: str) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(seed)
    model = create_model("dct_cifar_upsampling", **TINY).eval()
    names = [f"{prefix}{i}" for i in range(10)]
    return model, save_checkpoint(
        path, model, arch="dct_cifar_upsampling", arch_kwargs=TINY, class_names=names
    )


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", pytest.param("program", marks=pytest.mark.slow)])
def test_an_export_killed_between_its_writes_never_pairs_a_model_with_another_sidecar(fmt, tmp_path):
    old_model, old = _checkpoint(tmp_path / "old.pt", 0, "old")
    new_model, new = _checkpoint(tmp_path / "new.pt", 1, "new")
    fast = {"dynamo": False} if fmt == "onnx" else {}  # the TorchScript ONNX exporter: seconds faster
    batch = dict(zip(("y", "cbcr", "qt"), example_inputs(old_model, 3, seed=5), strict=True))
    with torch.no_grad():
        want = {"old": old_model(*batch.values()), "new": new_model(*batch.values())}
    assert not torch.allclose(want["old"], want["new"], atol=1e-3)

    def what_loads(path: Path) -> str:
        """Which model the pair at `path` runs, checked to run that model's numbers under its names."""
        art = load_artifact(path, trust_code=True)
        which = art.class_names[0][:3]
        got = load_runner(art, device="cpu").predict(batch)
        torch.testing.assert_close(got, want[which], atol=1e-4, rtol=1e-4)
        return which

    first = tmp_path / "first" / f"model{FORMATS[fmt]}"
    export_artifact(old, fmt, first, **fast)
    kill_at, outcomes = 1, []
    while True:
        folder = tmp_path / f"kill-{kill_at}"
        target, log = folder / first.name, folder / "writes.log"
        shutil.copytree(first.parent, folder)  # the old pair, as a finished export left it
        if not run_killed_at_write(
            lambda target=target: export_artifact(new, fmt, target, **fast), kill_at, log
        ):
            break
        try:
            outcomes.append(what_loads(target))
        except ExportError as exc:
            assert "does not match its sidecar" in str(exc) and "dctq export" in str(exc)
            outcomes.append("refused")
        kill_at += 1
    assert what_loads(target) == "new"  # the export that was not killed
    assert log.read_text().split() == [sidecar_path(target).name, target.name]  # sidecar first
    assert outcomes == ["old", "refused"]  # killed before the sidecar; between the sidecar and the model


def test_a_sidecar_refuses_a_replaced_model_and_an_older_one_is_still_read(tmp_path, caplog):
    _, old = _checkpoint(tmp_path / "old.pt", 0, "old")
    _, new = _checkpoint(tmp_path / "new.pt", 1, "new")
    first = export_artifact(old, "onnx", tmp_path / "a.onnx", dynamo=False).artifact
    second = export_artifact(new, "onnx", tmp_path / "b.onnx", dynamo=False).artifact
    first.write_bytes(second.read_bytes())  # a model copied over another by hand
    with pytest.raises(ExportError, match=r"a\.onnx does not match its sidecar a\.onnx\.json"):
        load_artifact(first)
    import json

    data = json.loads(sidecar_path(second).read_text())
    del data["artifact"]  # as written by an older dctq
    sidecar_path(second).write_text(json.dumps(data))
    assert load_artifact(second).class_names[0] == "new0"
    assert "older dctq" in caplog.text
