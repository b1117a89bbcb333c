"""`dctq compare A B`: two artifacts of one model on the same inputs, output by output and (with `layers`)
layer by layer, against tolerances (Polygraphy's `run --onnxrt --trt`, for dctq's artifacts).

    report = compare_artifacts("fp.pt", "q.onnx", data="cifar10", layers=True,
                               tolerances=Tolerances(min_sqnr_db=20, min_agreement=0.99))
    report.passed          # False when an output breaks a tolerance (the CLI exits 1)

A and B: any of .pt (float or quantized; run by PyTorch), .onnx (ONNX Runtime), .ts/.pt2 (PyTorch) and
.engine (TensorRT), each on its default backend unless one is given. A is the reference of every metric
(metrics.py). Inputs: the first `images` JPEGs of `data` ("cifar10": the validation split; a folder: its
JPEG files, recursively, sorted; a file), read as `dctq predict` reads them; without `data`, procedural
images of dctq's demo set at the model's size (JPEG quality 75), so a bare `dctq compare` needs no files.
Layers (taps.py) need PyTorch checkpoints or dynamo-exported ONNX; TensorRT engines expose their
outputs only.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...common.errors import DctqError
from ...jpeg.demo_data import DEMO_CLASSES, demo_image
from ...jpeg.splits import CIFAR10, split_data
from ..artifact import Artifact, load_artifact
from ..backends.registry import default_backend, load_runner
from ..predict import read_input, stack_inputs
from .metrics import Accumulator, TensorComparison, Tolerances
from .taps import OnnxTap, TorchTap, iter_common

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


@dataclasses.dataclass(frozen=True)
class CompareReport:
    """Every compared output (the CI gate) and, with layers, every layer both sides have, worst first."""

    a: str
    b: str
    backends: tuple[str, str]
    data: str
    images: int
    outputs: tuple[TensorComparison, ...]
    layers: tuple[TensorComparison, ...]
    unmatched: tuple[str, ...]
    tolerances: Tolerances

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "backends": list(self.backends),
            "data": self.data,
            "images": self.images,
            "passed": self.passed,
            "tolerances": self.tolerances.to_dict(),
            "outputs": [o.to_dict() for o in self.outputs],
            "layers": [x.to_dict() for x in self.layers],
            "unmatched_layers": list(self.unmatched),
        }


def _jpeg_files(data: str | Path, val_fraction: float) -> list[Path | bytes]:
    if str(data) == CIFAR10:
        return [s.path for s in split_data(CIFAR10, val_fraction).samples("val")]
    path = Path(data)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in JPEG_SUFFIXES and p.is_file())
        if files:
            return list(files)
    raise DctqError(f"--data {data}: no JPEG files there; give 'cifar10', a folder of JPEGs or a JPEG file")


def _demo_jpegs(size: int, count: int) -> list[Path | bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out: list[Path | bytes] = []
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(demo_image(DEMO_CLASSES[i % len(DEMO_CLASSES)], size, rng)).save(
            buf, format="JPEG", quality=75
        )
        out.append(buf.getvalue())
    return out


def comparison_inputs(
    meta: Any, data: str | Path | None, images: int, val_fraction: float = 0.1
) -> tuple[list[dict[str, np.ndarray]], str]:
    """(per-image model inputs, a description of the data) for the model `meta` describes."""
    if images < 1:
        raise DctqError(f"--images must be >= 1, got {images}")
    if data is None:
        sources = _demo_jpegs(meta.input_size, images)
        described = f"{images} procedural demo images ({meta.input_size} px, quality 75)"
    else:
        sources = _jpeg_files(data, val_fraction)[:images]
        described = f"{len(sources)} JPEGs of {data}" + (
            " (validation split)" if str(data) == CIFAR10 else ""
        )
    return [read_input(s, meta) for s in sources], described


def _check_pair(a: Artifact, b: Artifact) -> None:
    ma, mb = a.meta, b.meta
    if (ma.input_kind, ma.input_size) != (mb.input_kind, mb.input_size):
        raise DctqError(
            f"{a.path.name} reads {ma.input_kind} input at {ma.input_size} px, {b.path.name} {mb.input_kind} at "
            f"{mb.input_size} px; compare two artifacts of the same model"
        )


def _tap(art: Artifact, device: str) -> TorchTap | OnnxTap:
    if art.kind == "checkpoint" and art.checkpoint is not None:
        return TorchTap(art.checkpoint.model, "cpu" if device == "auto" else device)
    if art.kind == "onnx":
        return OnnxTap(art.path, art.meta.arch, art.meta.arch_kwargs, art.meta.input_names)
    raise DctqError(
        f"--layers compares PyTorch checkpoints (.pt) and ONNX graphs (.onnx); {art.path.name} is a {art.kind}, whose "
        "layers are not exposed (compare the .onnx it was built from instead)"
    )


def compare_artifacts(
    a: Artifact | Path | str,
    b: Artifact | Path | str,
    *,
    data: str | Path | None = None,
    images: int = 64,
    batch_size: int = 16,
    layers: bool = False,
    tolerances: Tolerances | None = None,
    backends: Sequence[str | None] = (None, None),
    device: str = "auto",
    val_fraction: float = 0.1,
    progress: Callable[[int, int], None] | None = None,
    trust_code: bool = False,
) -> CompareReport:
    """Run A and B on the same `images` inputs of `data` and compare every output (and with `layers`
    every layer both have, worst SQNR first) against `tolerances` (see the module docstring).

    backends: (A's, B's), None for the artifact's default; progress(done, total) per batch.
    trust_code: load code kinds (.ts, .pt2, .engine; deploy.artifact.CODE_KINDS), refused without it.

    Raises:
        DctqError: artifacts of different input kinds or sizes, no data, an artifact without layers
            for --layers, backend failures. ExportError / ModelError: unreadable artifacts.
        BackendUnavailable: a runtime that is not installed.
        UntrustedArtifactError: a code kind without `trust_code`.
    """
    if batch_size < 1:
        raise DctqError(f"--batch-size must be >= 1, got {batch_size}")
    arts = [x if isinstance(x, Artifact) else load_artifact(x, trust_code=trust_code) for x in (a, b)]
    _check_pair(*arts)
    names = [backends[i] or default_backend(arts[i]) for i in range(2)]
    runners = [load_runner(arts[i], names[i], device=device, trust_code=trust_code) for i in range(2)]
    taps = [_tap(x, device) for x in arts] if layers else None
    samples, described = comparison_inputs(arts[0].meta, data, images, val_fraction)
    fixed = [x.meta.fixed_batch for x in arts]
    size = min(f for f in fixed if f) if any(fixed) else batch_size
    out_acc = Accumulator()
    layer_acc: dict[str, Accumulator] = {}
    unmatched: set[str] = set()
    total = math.ceil(len(samples) / size)
    for i, start in enumerate(range(0, len(samples), size), start=1):
        chunk = samples[start : start + size]
        logits = [
            runner.predict(stack_inputs(chunk, fix))[: len(chunk)].float().cpu()
            for runner, fix in zip(runners, fixed, strict=True)
        ]
        out_acc.add(logits[0], logits[1])
        if taps is not None:
            batch = stack_inputs(chunk)
            (_, la), (_, lb) = taps[0].run(batch), taps[1].run(batch)
            common = list(iter_common(la, lb))
            unmatched |= (set(la) | set(lb)) - set(common)
            for key in common:
                layer_acc.setdefault(key, Accumulator()).add(la[key], lb[key])
        if progress is not None:
            progress(i, total)
    tol = tolerances or Tolerances()
    output_name = arts[0].meta.outputs[0].name if arts[0].meta.outputs else "logits"
    outputs = (out_acc.result(output_name).checked(tol),)
    compared = [acc.result(key) for key, acc in layer_acc.items()]
    compared.sort(key=lambda c: (c.sqnr_db, c.cosine_min))
    return CompareReport(
        a=str(arts[0].path),
        b=str(arts[1].path),
        backends=(names[0], names[1]),
        data=described,
        images=len(samples),
        outputs=outputs,
        layers=tuple(compared),
        unmatched=tuple(sorted(unmatched - set(layer_acc))),
        tolerances=tol,
    )
