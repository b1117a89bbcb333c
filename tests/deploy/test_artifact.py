"""deploy/artifact.py against hostile files: artifact kinds that hold code (.ts, .pt2, .engine) load only
with trust_code=True, proved with real malicious files whose payload writes a marker file."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import TINY, jpeg_bytes, saved_model, smooth_rgb
from torch import nn
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.common.errors import ExportError, UntrustedArtifactError
from dctq.deploy.artifact import CODE_KINDS, Artifact, artifact_binding, load_artifact, sidecar_path
from dctq.deploy.backends.registry import load_runner
from dctq.deploy.export.formats import export_artifact
from dctq.deploy.predict import predict
from dctq.deploy.profiling.latency import profile

CLASSES = [f"c{i}" for i in range(10)]


class _Payload:
    """Unpickled, it writes `marker` and then gives back what the file held before (`original`, a torch
    file's bytes), so the poisoned program still loads and predicts normally."""

    def __init__(self, marker: Path, original: bytes) -> None:
        self.marker, self.original = marker, original

    def __reduce__(self):
        code = (
            f"(__import__('pathlib').Path({str(self.marker)!r}).write_text('ran'), "
            f"__import__('torch').load(__import__('io').BytesIO({self.original!r}), weights_only=True))[1]"
        )
        return (eval, (code,))


def _poisoned(payload: _Payload) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _copy_sidecar(src: Path, dst: Path) -> None:
    """`src`'s sidecar beside `dst`, bound to `dst` as an attacker shipping both files would bind it."""
    data = json.loads(sidecar_path(src).read_text())
    data["artifact"] = artifact_binding(dst)
    sidecar_path(dst).write_text(json.dumps(data))


def _rewrite_zip(src: Path, dst: Path, change) -> None:
    """Copy the zip `src` to `dst`, each member's bytes passed through change(name, data)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, change(info.filename, zin.read(info.filename)))
    _copy_sidecar(src, dst)


def _evil_program_sample_inputs(good: Path, dst: Path, marker: Path) -> Path:
    """A .pt2 whose sample inputs unpickle the payload: torch.export.load tries weights_only=True on them
    and falls back to weights_only=False, so every .pt2 has this door."""
    _rewrite_zip(
        good,
        dst,
        lambda name, data: (
            _poisoned(_Payload(marker, data)) if name.endswith("sample_inputs/model.pt") else data
        ),
    )
    return dst


def _evil_program_pickled_weight(good: Path, dst: Path, marker: Path) -> Path:
    """A .pt2 whose first weight is marked use_pickle: torch.export.load runs torch.load(weights_only=False)."""
    with zipfile.ZipFile(good) as z:
        config = json.loads(z.read("archive/data/weights/model_weights_config.json"))
    fqn, entry = next(iter(config["config"].items()))
    with zipfile.ZipFile(good) as z:
        z_weight = z.read(f"archive/data/weights/{entry['path_name']}")
    sizes = [s["as_int"] for s in entry["tensor_meta"]["sizes"]]
    weight = torch.frombuffer(bytearray(z_weight), dtype=torch.float32).reshape(sizes).clone()
    buffer = io.BytesIO()
    torch.save(nn.Parameter(weight), buffer)
    entry["use_pickle"] = True

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            return json.dumps(config).encode()
        if name == f"archive/data/weights/{entry['path_name']}":
            return _poisoned(_Payload(marker, buffer.getvalue()))
        return data

    _rewrite_zip(good, dst, change)
    assert fqn
    return dst


class _EvilScript(nn.Module):
    """A TorchScript wrapper whose forward writes `marker` (aten::save) and then predicts normally."""

    def __init__(self, inner: torch.jit.ScriptModule, marker: str) -> None:
        super().__init__()
        self.inner, self.marker = inner, marker

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor, qt: torch.Tensor) -> torch.Tensor:
        torch.save(qt, self.marker)
        return self.inner(y, cbcr, qt)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint exported as .pt2 and .ts (with sidecars), and one JPEG to predict."""
    root = tmp_path_factory.mktemp("exported")
    _, ckpt = saved_model(root / "m.pt", "dct_cifar_upsampling", CLASSES, **TINY)
    image = root / "cat.jpg"
    image.write_bytes(jpeg_bytes(smooth_rgb(32, 32)))
    program = export_artifact(ckpt, "program", root / "m.pt2").artifact
    script = export_artifact(ckpt, "torchscript", root / "m.ts").artifact
    return {"pt": ckpt, "pt2": program, "ts": script, "image": image}


@pytest.fixture(params=["sample_inputs", "pickled_weight", "torchscript"])
def evil(request, exported, tmp_path):
    """(path of a malicious artifact with a valid sidecar, the marker its payload writes, whether the
    file still loads after its payload ran)."""
    marker = tmp_path / f"marker-{request.param}"
    if request.param == "sample_inputs":
        # torch 2.13 then fails to format its own fallback warning, so the load fails after the payload ran
        return _evil_program_sample_inputs(exported["pt2"], tmp_path / "evil.pt2", marker), marker, False
    if request.param == "pickled_weight":
        return _evil_program_pickled_weight(exported["pt2"], tmp_path / "evil.pt2", marker), marker, True
    inner = torch.jit.load(str(exported["ts"]))
    path = tmp_path / "evil.ts"
    torch.jit.script(_EvilScript(inner, str(marker))).save(str(path))
    _copy_sidecar(exported["ts"], path)
    return path, marker, True


def test_code_artifacts_are_refused_before_anything_runs(evil, exported):
    path, marker, _ = evil
    with pytest.raises(UntrustedArtifactError, match=r"--trust-code") as info:
        predict(path, [exported["image"]])
    assert "onnx" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UntrustedArtifactError):
        profile(path, "torch", (1,), warmup=0, iters=1)
    with pytest.raises(UntrustedArtifactError):
        load_runner(path, "torch")
    # an Artifact built by hand is not trusted either: the runner checks before torch sees the file
    meta = load_artifact(path, trust_code=True).meta
    with pytest.raises(UntrustedArtifactError):
        load_runner(Artifact(path, load_artifact(path, trust_code=True).kind, meta), "torch")
    assert not marker.exists()


def test_the_malicious_files_are_real(evil, exported):
    """Vouching runs the payload: the refusal above is what stands between a stranger's file and its code
    (and the poisoned file still predicts as the clean one does)."""
    path, marker, loads = evil
    (clean,) = predict(exported["pt"], [exported["image"]], top_k=3)
    if not loads:
        with pytest.raises(ExportError):
            predict(path, [exported["image"]], trust_code=True)
        assert marker.exists()
        return
    (poisoned,) = predict(path, [exported["image"]], top_k=3, trust_code=True)
    assert marker.exists()
    assert poisoned.label == clean.label and poisoned.probability == pytest.approx(
        clean.probability, abs=1e-5
    )


def test_cli_refuses_code_artifacts_in_one_line_and_runs_them_when_trusted(evil, exported):
    path, marker, loads = evil
    runner = CliRunner()
    for command in (
        ["predict", str(path), str(exported["image"])],
        ["profile", str(path), "--batch", "1", "--iters", "1", "--warmup", "0"],
        ["evaluate", str(path), "--data", str(exported["image"].parent)],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "--trust-code" in result.output and not marker.exists()
    result = runner.invoke(app, ["predict", str(path), str(exported["image"]), "--trust-code", "--json"])
    assert result.exit_code == (0 if loads else 1), result.output
    assert marker.exists()


def test_data_artifacts_need_no_trust_and_every_code_kind_asks_for_it(exported):
    assert predict(exported["pt"], [exported["image"]])[0].label in CLASSES
    assert set(CODE_KINDS) == {"torchscript", "program", "engine"}
    assert load_artifact(exported["pt2"], trust_code=True).trusted
    with pytest.raises(UntrustedArtifactError, match=r"torch\.export program"):
        load_artifact(exported["pt2"])
    with pytest.raises(UntrustedArtifactError, match="TorchScript archive"):
        load_artifact(exported["ts"])


def test_sidecars_declaring_unbounded_sizes_or_nesting_are_refused(exported, tmp_path):
    """A sidecar is JSON from wherever the model came from: an input size of a million pixels made every
    image's crop allocate terabytes, a fixed batch of a billion padded every batch to it, and JSON nested
    200,000 deep raised RecursionError (a traceback)."""
    onnx_path = export_artifact(exported["pt"], "onnx", tmp_path / "m.onnx", dynamo=False).artifact
    good = json.loads(sidecar_path(onnx_path).read_text())
    for change, said in (
        ({"input_size": 10**6}, "input_size 1000000"),
        (
            {"inputs": [{**good["inputs"][0], "shape": [10**9, 64, 4, 4]}, *good["inputs"][1:]]},
            "dimension 1000000000 of y",
        ),
    ):
        sidecar_path(onnx_path).write_text(json.dumps({**good, **change}))
        with pytest.raises(ExportError, match=rf"declares {said}, out of range"):
            load_artifact(onnx_path)
    sidecar_path(onnx_path).write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ExportError, match="not readable JSON"):
        load_artifact(onnx_path)
    sidecar_path(onnx_path).write_text(json.dumps(good))
    assert load_artifact(onnx_path).meta.input_size == 32
