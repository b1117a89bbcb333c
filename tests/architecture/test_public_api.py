"""The public API: package re-exports resolve, `import dctq` stays cheap, loading a quantized checkpoint
imports no training or synthesis code, and the five-line flow of the README runs."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap

import pytest
from helpers import jpeg_bytes, smooth_rgb

PACKAGES = [
    "dctq",
    "dctq.common",
    "dctq.jpeg",
    "dctq.models",
    "dctq.models.dq",
    "dctq.calibration",
    "dctq.calibration.calibrators",
    "dctq.calibration.quant",
    "dctq.calibration.zeroshot",
    "dctq.calibration.qsam",
    "dctq.calibration.train",
    "dctq.calibration.workflow",
    "dctq.deploy",
    "dctq.deploy.export",
    "dctq.deploy.onnx",
    "dctq.deploy.backends",
    "dctq.deploy.backends.tensorrt",
    "dctq.deploy.profiling",
    "dctq.cli",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_states_its_api_and_every_name_resolves(name):
    package = importlib.import_module(name)
    assert package.__doc__ and len(package.__doc__.split()) > 10, f"{name} has no docstring stating its API"
    for export in getattr(package, "__all__", ()):
        # a name shared with a submodule would be the module or the object depending on import order
        assert importlib.util.find_spec(f"{name}.{export}") is None, f"{name}.{export} is also a module"
        assert getattr(package, export) is not None, f"{name}.{export}"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        package.nope  # noqa: B018


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_module_imports_first_in_a_fresh_process():
    # Re-exports must not make the import order matter: each module imported first, with nothing of dctq
    # loaded yet, would show a cycle (qsam.data <-> train.loop did, only when qsam came first).
    out = _run("""
        import importlib, pkgutil, sys
        import dctq
        names = sorted(m.name for m in pkgutil.walk_packages(dctq.__path__, "dctq.")
                       if not m.name.split(".")[1] in ("tests", "bench", "dev", "docs"))
        failed = []
        for name in names:
            for loaded in [m for m in sys.modules if m.startswith("dctq.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print(len(names))
        print("\\n".join(failed))
    """)
    count, *failed = out.strip().split("\n")
    assert int(count) > 100 and not [f for f in failed if f], failed


def test_import_dctq_imports_nothing_heavy():
    out = _run("""
        import sys, dctq
        print(sorted(m for m in sys.modules if m.startswith("dctq.") or m in ("torch", "numpy", "onnx")))
    """)
    assert out.strip() == "['dctq.common', 'dctq.common.lazy']"


def test_loading_a_quantized_checkpoint_imports_only_the_quantization_layer(tmp_path):
    out = _run(f"""
        import sys, torch
        from dctq.calibration.ptq import ptq
        from dctq.calibration.quant import get_recipe, save_quantized
        from dctq.models import LoadedCheckpoint, create_model, example_inputs
        torch.manual_seed(0)
        model = create_model("dct_cifar_upsampling", num_classes=2, widths=[8, 8], depths=[1, 1]).eval()
        fp = LoadedCheckpoint(model, "dct_cifar_upsampling", {{"num_classes": 2, "widths": [8, 8], "depths": [1, 1]}},
                              ["a", "b"], {{}})
        q = ptq(model, get_recipe("int8-max"), [example_inputs(model, 2)])
        save_quantized({str(tmp_path / "q.pt")!r}, q, fp)
    """)
    assert out == ""
    loaded = _run(f"""
        import sys, dctq
        dctq.load_checkpoint({str(tmp_path / "q.pt")!r})
        print(sorted({{".".join(m.split(".")[:3]) for m in sys.modules if m.startswith("dctq.calibration.")}}))
    """)
    assert loaded.strip() == "['dctq.calibration.calibrators', 'dctq.calibration.quant']"


def test_the_five_line_flow_of_the_readme(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    import torch

    import dctq

    for c, name in enumerate(("cat", "dog")):
        (tmp_path / "calib" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "calib" / name / f"{i}.jpg").write_bytes(
                jpeg_bytes(smooth_rgb(32, 32, seed=10 * c + i))
            )
    (tmp_path / "cat.jpg").write_bytes(jpeg_bytes(smooth_rgb(40, 48, seed=7)))
    torch.manual_seed(0)
    model = dctq.create_model("dct_cifar_upsampling", num_classes=2, widths=[8, 8], depths=[1, 1])
    dctq.save_checkpoint(
        tmp_path / "best.pt", model, arch="dct_cifar_upsampling",
        arch_kwargs={"num_classes": 2, "widths": [8, 8], "depths": [1, 1]}, class_names=["cat", "dog"],
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)

    fp = dctq.load_checkpoint("best.pt")
    calib = dctq.make_loader(dctq.JpegFolder("calib/", input_size=32, train=False), batch_size=4)
    q = fp.with_model(dctq.ptq(fp.model, dctq.get_recipe("int8"), calib))
    dctq.export_onnx(q, "q.onnx")
    (prediction,) = dctq.predict("q.onnx", ["cat.jpg"])

    assert prediction.label in ("cat", "dog")
    report = dctq.lint_qdq("q.onnx")
    assert report.ok and report.quantize_nodes > 0
    runner = dctq.load_runner("q.onnx")
    batch = next(iter(calib))
    torch_logits = q.model(*dctq.jpeg.model_inputs(batch, "cpu"))
    onnx_logits = runner.predict(batch)
    assert torch.nn.functional.cosine_similarity(torch_logits.flatten(), onnx_logits.flatten(), dim=0) > 0.99
