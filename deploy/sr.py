"""Super-resolution artifacts: PSNR / SSIM per evaluation set and per image (`dctq evaluate`), and
upscaled image files (`dctq predict --out`). Classifier artifacts go through evaluate.py / predict.py;
the commands dispatch on the artifact's task (ArtifactMeta.task, from the registry's ModelInfo.task).

Evaluation follows the SR literature (models.sr.metrics): each HR image is cropped to a multiple of the
scale, its LR input made by MATLAB-style bicubic downscaling (jpeg.sr), the output rounded to 8 bits,
PSNR and SSIM taken on Y (BT.601) with `scale` border pixels cropped, and averaged per set.
Every artifact kind runs through its Runner (checkpoints in PyTorch, ONNX in ONNX Runtime, ...), one
image at a time (sizes differ), so ONNX and PyTorch numbers come from the same loop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..common.errors import ConfigError, DataError, DctqError
from ..common.files import atomic_path
from ..jpeg.sr.dataset import SrImages, load_pairs, to_tensor
from ..jpeg.sr.images import image_format, read_image, save_image
from ..jpeg.sr.sources import resolve_images
from ..models.sr.metrics import ImageScores, score_images, to_uint8_image
from .artifact import Artifact, load_artifact
from .backends.registry import Runner, load_runner

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SrSetScores:
    """Mean PSNR (dB) / SSIM of one evaluation set, and every image's."""

    name: str
    psnr: float
    ssim: float
    images: tuple[ImageScores, ...]
    cropped: int = 0
    """Images whose sides were cropped to multiples of the scale first."""


@dataclasses.dataclass(frozen=True)
class SrEvalReport:
    """An SR artifact on one or more evaluation sets."""

    model: str
    arch: str | None
    scale: int
    backend: str
    sets: tuple[SrSetScores, ...]

    def to_dict(self, per_image: bool = True) -> dict[str, Any]:
        sets = []
        for s in self.sets:
            row: dict[str, Any] = {
                "name": s.name,
                "images": len(s.images),
                "psnr": s.psnr,
                "ssim": s.ssim,
                "cropped": s.cropped,
            }
            if per_image:
                row["per_image"] = [dataclasses.asdict(i) for i in s.images]
            sets.append(row)
        return {
            "model": self.model,
            "arch": self.arch,
            "task": "sr",
            "scale": self.scale,
            "backend": self.backend,
            "sets": sets,
        }


def _sr_meta(art: Artifact) -> tuple[int, int]:
    """(scale, channels) of an SR artifact; ConfigError naming the fix for a classifier."""
    if art.meta.task != "sr" or not art.meta.scale:
        raise ConfigError(
            f"{art.path} is an image classifier, not a super-resolution model; evaluate it on --data cifar10 or a "
            "JPEG folder (SR sets such as set5 are for SR models)"
        )
    channels = int(art.meta.inputs[0].shape[1])
    return int(art.meta.scale), channels


def upscale_array(runner: Runner, lr: np.ndarray) -> np.ndarray:
    """One LR image uint8 [h, w, C] through `runner` -> the 8-bit SR image uint8 [s*h, s*w, C]."""
    out = runner.predict({"x": to_tensor(lr)[None]})
    if out.dim() != 4 or out.shape[0] != 1:
        raise DctqError(f"the SR model returned a tensor of shape {tuple(out.shape)}; expected [1, C, H, W]")
    image = to_uint8_image(out[0].float().cpu())
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def evaluate_sr(
    artifact: Artifact | Path | str,
    data: Sequence[str | Path],
    *,
    backend: str | None = None,
    device: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
) -> SrEvalReport:
    """PSNR / SSIM of an SR artifact on each of `data` ("set5", "set14", or folders of HR images).

    progress(set name, images done, images) after every image.
    Raises ConfigError for a classifier artifact, DataError for missing sets / unusable images (naming the
    file and the fix), and the runner's errors.
    """
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    scale, channels = _sr_meta(art)
    if not data:
        raise DataError("no SR evaluation set given; use --data set5,set14 or a folder of HR images")
    runner = load_runner(art, backend, device=device)
    sets = []
    for source in data:
        folder = resolve_images(source)
        pairs = SrImages(load_pairs(folder, scale, channels, gray="rgb"), scale).pairs  # all scorable
        scores = []
        for i, pair in enumerate(pairs, start=1):
            lr = to_tensor(pair.lr)[None]
            out = runner.predict({"x": lr})
            scores.append(score_images(pair.name, out[0].float().cpu(), to_tensor(pair.hr), scale))
            if progress is not None:
                progress(str(source), i, len(pairs))
        sets.append(
            SrSetScores(
                str(source),
                float(np.mean([s.psnr for s in scores])),
                float(np.mean([s.ssim for s in scores])),
                tuple(scores),
                sum(p.cropped for p in pairs),
            )
        )
        logger.info(
            "%s: PSNR %.3f dB, SSIM %.4f (%d images)", source, sets[-1].psnr, sets[-1].ssim, len(scores)
        )
    return SrEvalReport(str(art.path), art.meta.arch, scale, runner.backend, tuple(sets))


@dataclasses.dataclass(frozen=True)
class Upscaled:
    """One upscaled file: where it came from and went, and both sizes (width, height)."""

    source: str
    output: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]


def upscale_files(
    artifact: Artifact | Path | str,
    images: Sequence[Path | str],
    out: Path | str,
    *,
    backend: str | None = None,
    device: str = "auto",
) -> list[Upscaled]:
    """Upscale each of `images` (PNG, JPEG, BMP...) with an SR artifact. One image: `out` is the file
    written (format by suffix, PNG recommended); several: `out` is a folder, created, holding
    <stem>_x<scale>.png. Each file is written atomically, and nothing is written before every input has
    been read.

    Grayscale inputs are read as RGB with three equal channels (jpeg.sr.images).
    Raises ConfigError for a classifier artifact, DataError for an unreadable, CMYK or transparent image
    (naming it) or an output suffix that is no image format.
    """
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    scale, channels = _sr_meta(art)
    if not images:
        raise DataError("no image to upscale")
    out = Path(out)
    arrays = [
        read_image(p, channels, gray="rgb") for p in images
    ]  # all inputs checked before anything is written
    if len(images) == 1 and out.suffix:
        targets = [out]
    else:
        if out.suffix:
            raise DataError(f"--out {out} names a file but {len(images)} images were given; give a folder")
        targets = [out / f"{Path(p).stem}_x{scale}.png" for p in images]
    for target in targets:
        image_format(target)  # a bad suffix fails before any work
    runner = load_runner(art, backend, device=device)
    done = []
    for path, lr, target in zip(images, arrays, targets, strict=True):
        sr = upscale_array(runner, lr)
        with atomic_path(target) as tmp:
            save_image(tmp, sr, fmt_from=target)
        done.append(Upscaled(str(path), str(target), (lr.shape[1], lr.shape[0]), (sr.shape[1], sr.shape[0])))
    return done
