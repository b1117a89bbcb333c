"""Autoencoders (models.dq) as deployed: bits/dim, PSNR and code usage on a data set, and reconstructions of
JPEG files, from a checkpoint (PyTorch, float or fake-quant) or an exported encoder/decoder pair (ONNX Runtime).

What is reported (models.dq.rate): bits/dim = reconstruction NLL + code rate, the code rate both as the
uniform bound (log2 K per code) and under the learned factorised prior (EMA code counts); the NLL alone is
not a likelihood bound. PSNR (RGB and BT.601 Y) of the mean reconstruction rounded to 8 bits, per image,
averaged. An exported decoder's `head` output carries the likelihood, so ONNX Runtime results are scored the
same way as the checkpoint.

Images: decoded by Pillow and normalised like every RGB model (jpeg.rgb); the model is fully convolutional,
so any image whose sides are multiples of its total stride (8 for dq_ae_cpu, 16 for dq_ae) is
reconstructed at its own size; other sizes are refused with the multiple to use.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..common.devices import resolve_device
from ..common.errors import ConfigError, DataError, DctqError, ExportError, JpegError, ModelError
from ..common.files import atomic_path
from ..common.torch_files import load_torch_file
from ..jpeg.dataset import make_loader
from ..jpeg.recompress import QualityPolicy
from ..jpeg.rgb import decode_rgb, normalize_pixels
from ..jpeg.splits import make_dataset, split_data
from ..models.dq.autoencoder import HierarchicalAE
from ..models.dq.rate import CodeSpec, CodeStats, luma, prior_bits, psnr, uniform_bits
from ..models.flops import count_params
from .artifact import Artifact, load_artifact, sidecar_path
from .evaluate import EvalProgress
from .export.autoencoder import autoencoder_of

logger = logging.getLogger(__name__)


class TorchCodec:
    """A HierarchicalAE (float or fake-quant) in PyTorch."""

    backend = "torch"

    def __init__(self, model: HierarchicalAE, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.spec = CodeSpec.of(model)
        self.input_size, self.stride_multiple = model.input_size, model.stride_multiple

    @torch.no_grad()
    def encode(self, x: Tensor) -> list[Tensor]:
        return [c.cpu() for c in self.model.encode(x.to(self.device))]

    @torch.no_grad()
    def decode(self, codes: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(mean pixels [B, 3, H, W] float32, head output)."""
        out = self.model.decode([c.to(self.device) for c in codes])
        return self.model.mean_pixels(out).cpu(), out.float().cpu()


class OrtCodec:
    """An exported encoder/decoder pair (deploy.export.autoencoder) in ONNX Runtime."""

    backend = "ort"
    device = "cpu"

    def __init__(self, encoder: Artifact, decoder: Artifact, *, threads: int | None = None) -> None:
        from .backends.ort import OrtRunner  # the ORT session options dctq uses everywhere

        self.encoder = OrtRunner(encoder, threads=threads).session
        self.decoder = OrtRunner(decoder, threads=threads).session
        self.spec = CodeSpec.from_dict(decoder.meta.extra["code_spec"])
        self.input_size = encoder.meta.input_size
        self.stride_multiple = int(encoder.meta.extra.get("stride_multiple", 1))
        self.code_names = [i.name for i in self.decoder.get_inputs()]

    def encode(self, x: Tensor) -> list[Tensor]:
        outs = self.encoder.run(None, {"x": np.ascontiguousarray(x.float().numpy())})
        return [torch.from_numpy(o) for o in outs]

    def decode(self, codes: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        feeds = {n: np.ascontiguousarray(c.numpy()) for n, c in zip(self.code_names, codes, strict=True)}
        pixels, head = self.decoder.run(["pixels", "head"], feeds)
        return torch.from_numpy(pixels), torch.from_numpy(head)


Codec = TorchCodec | OrtCodec


def _sibling(art: Artifact, key: str) -> Artifact:
    name = art.meta.extra.get(key)
    if not name:
        raise ExportError(
            f"{sidecar_path(art.path)} names no {key}; re-export the autoencoder with `dctq export`"
        )
    path = art.path.with_name(str(name))
    if not path.is_file():
        raise ExportError(
            f"{art.path.name}'s {key} {path} is missing; export both parts again with `dctq export`"
        )
    return load_artifact(path)


def load_codec(artifact: Artifact | Path | str, *, device: str = "auto", threads: int | None = None) -> Codec:
    """The codec of an autoencoder checkpoint (.pt) or of either exported part (.encoder.onnx / .decoder.onnx,
    the other found through the sidecar).

    Raises ModelError for a model of another task, ExportError for other artifacts or a missing part.
    """
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    if art.meta.task != "autoencode":
        raise ModelError(f"{art.path} holds a {art.meta.task!r} model ({art.meta.arch}), not an autoencoder")
    if art.kind == "checkpoint":
        return TorchCodec(autoencoder_of(art.checkpoint), device)
    part = art.meta.extra.get("part")
    if art.kind == "onnx" and part in ("encoder", "decoder"):
        enc, dec = (art, _sibling(art, "decoder")) if part == "encoder" else (_sibling(art, "encoder"), art)
        return OrtCodec(enc, dec, threads=threads)
    raise ExportError(
        f"{art.path}: autoencoders run from their checkpoint (.pt) or their exported .encoder.onnx/.decoder.onnx"
    )


# --------------------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class AutoencoderReport:
    """`dctq evaluate` of an autoencoder: one models.dq.rate summary per JPEG quality (None: as stored)."""

    model: str
    arch: str | None
    backend: str
    rows: tuple[tuple[int | None, dict[str, Any]], ...]
    params: int | None
    train_epoch_seconds: float | None
    train_steps_per_epoch: int | None
    eval_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "autoencode",
            "model": self.model,
            "arch": self.arch,
            "backend": self.backend,
            "params": self.params,
            "train_epoch_seconds": self.train_epoch_seconds,
            "train_steps_per_epoch": self.train_steps_per_epoch,
            "eval_seconds": self.eval_seconds,
            "rows": [{"quality": q, **summary} for q, summary in self.rows],
        }


def score_loader(
    codec: Codec,
    loader: Any,
    *,
    quality: int | None = None,
    progress: Callable[[EvalProgress], None] | None = None,
) -> dict[str, Any]:
    """The models.dq.rate summary of `codec` over every batch of `loader` (RGB batches: "x").

    Raises DataError for an empty loader.
    """
    stats = CodeStats(codec.spec)
    total = len(loader)
    for i, batch in enumerate(loader, start=1):
        x = batch["x"].float()
        pixels = HierarchicalAE.pixels_of(x)
        codes = codec.encode(x)
        recon, head = codec.decode(codes)
        stats.add(pixels, head, codes, recon=recon)
        if progress is not None:
            progress(EvalProgress(quality, i, total))
    if stats.values[0] == 0:
        raise DataError("the evaluation set is empty; check --data and --split")
    return stats.summary()


def _train_timing(art: Artifact) -> tuple[float | None, int | None]:
    """(mean seconds per training epoch, steps per epoch) of the run that wrote a checkpoint, from its
    `extra` or the run folder's last.state.pt; (None, None) when unknown."""
    extra = art.extra
    seconds = extra.get("epoch_seconds")
    if not seconds and art.kind == "checkpoint":
        state = art.path.with_name("last.state.pt")
        if state.is_file():
            try:
                payload = load_torch_file(state, "dctq training state", ModelError)
                seconds = [h["seconds"] for h in payload.get("history", [])]
            except (ModelError, KeyError, TypeError):
                seconds = None
    steps = None
    config = extra.get("train_config")
    if isinstance(config, dict):
        steps = config.get("fields", {}).get("max_steps_per_epoch")
    return (sum(seconds) / len(seconds) if seconds else None), steps


def evaluate_autoencoder(
    artifact: Artifact | Path | str,
    data: str | Path,
    *,
    val_fraction: float,
    split: str = "val",
    qualities: Sequence[int] | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str = "auto",
    max_images: int | None = None,
    progress: Callable[[EvalProgress], None] | None = None,
) -> AutoencoderReport:
    """`dctq evaluate` for an autoencoder: bits/dim, code rates, PSNR and usage on `split` of `data`.

    Raises ConfigError (bad sizes), DataError / JpegError (bad data), ModelError / ExportError (artifacts).
    """
    if batch_size < 1 or num_workers < 0 or (max_images is not None and max_images < 1):
        raise ConfigError(
            f"--batch-size and --max-images must be >= 1 and --workers >= 0, got {batch_size}, {max_images}, {num_workers}"
        )
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    codec = load_codec(art, device=device)
    splits = split_data(data, val_fraction)
    samples = splits.samples(split)
    if max_images is not None:
        samples = samples[:max_images]
    rows = []
    tick = time.perf_counter()
    for quality in list(qualities) if qualities else [None]:
        dataset = make_dataset(
            "rgb",
            codec.input_size,
            splits.root,
            samples,
            train=False,
            policy=QualityPolicy(test_quality=quality),
        )
        loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers)
        rows.append((quality, score_loader(codec, loader, quality=quality, progress=progress)))
    params = count_params(codec.model) if isinstance(codec, TorchCodec) else None
    epoch_seconds, steps = _train_timing(art)
    return AutoencoderReport(
        str(art.path),
        art.meta.arch,
        codec.backend,
        tuple(rows),
        params,
        epoch_seconds,
        steps,
        time.perf_counter() - tick,
    )


# ----------------------------------------------------------------------------------- reconstruction


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """One image through the autoencoder: where the PNG went, what the codes cost, how close it is."""

    path: str
    out: str | None
    width: int
    height: int
    code_bits_uniform: float
    code_bits_prior: float
    jpeg_bytes: int
    psnr_rgb: float
    psnr_y: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_image(path: Path | str, stride_multiple: int) -> np.ndarray:
    """[H, W, 3] uint8 pixels of a JPEG file. Raises JpegError naming the file, ModelError for a size the
    model cannot take (sides not multiples of `stride_multiple`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JpegError(f"{path}: cannot read ({exc.strerror})") from None
    rgb, _ = decode_rgb(data, path)
    h, w = rgb.shape[:2]
    if h % stride_multiple or w % stride_multiple:
        raise ModelError(
            f"{path} is {w}x{h}; this autoencoder takes images whose sides are multiples of {stride_multiple} pixels "
            "(crop or pad it)"
        )
    return rgb


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write [H, W, 3] uint8 pixels as a PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def reconstruct(
    artifact: Artifact | Path | str,
    images: Sequence[Path | str],
    out: Path | str | None = None,
    *,
    device: str = "auto",
) -> list[Reconstruction]:
    """Encode and decode each JPEG file; write the reconstructions as PNG to `out` (a file for one image, a
    folder for several; None: write nothing) and report the bits its codes take.

    Raises DctqError for no images, JpegError / ModelError for unreadable files or wrong sizes, ModelError for
    a model that is not an autoencoder.
    """
    if not images:
        raise DctqError("no images to reconstruct")
    codec = load_codec(artifact, device=device)
    targets: list[Path | None] = [None] * len(images)
    if out is not None:
        out = Path(out)
        if len(images) == 1 and out.suffix.lower() == ".png":
            targets = [out]
        elif out.suffix:
            raise DctqError(f"--out {out}: give a .png file for one image, or a folder for several")
        else:
            out.mkdir(parents=True, exist_ok=True)
            targets = [out / (Path(p).stem + ".png") for p in images]
    results = []
    for path, target in zip(images, targets, strict=True):
        rgb = read_image(path, codec.stride_multiple)
        x = torch.from_numpy(normalize_pixels(rgb[None]))
        codes = codec.encode(x)
        recon, _ = codec.decode(codes)
        recon_u8 = recon[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        if target is not None:
            write_png(target, recon_u8)
        ref = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
        rec = torch.from_numpy(recon_u8).permute(2, 0, 1)[None].double()
        results.append(
            Reconstruction(
                str(path),
                None if target is None else str(target),
                rgb.shape[1],
                rgb.shape[0],
                float(uniform_bits(codec.spec, codes)[0]),
                float(prior_bits(codec.spec, codes)[0]),
                Path(path).stat().st_size,
                float(psnr(ref, rec)[0]),
                float(psnr(luma(ref), luma(rec))[0]),
            )
        )
    return results
