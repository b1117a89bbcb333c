"""Helpers shared by test modules (and their torchrun subprocesses): a tiny trained DCT teacher, a tiny
DCT net with non-trivial BN, a fresh model saved as a checkpoint, a one-step `dctq train` run, a data-free
environment for zero-shot tests, a guarded torchrun launcher; tiny JPEGs made with Pillow."""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dctq.jpeg.cifar
import dctq.jpeg.dataset
import dctq.jpeg.decoders
import dctq.jpeg.reader
from dctq.jpeg.chroma import round_half_away
from dctq.jpeg.dct import rgb_to_coefficients
from dctq.jpeg.quality import ijg_qt
from dctq.models.checkpoint import save_checkpoint
from dctq.models.registry import create_model
from dctq.models.stem import compute_stem_stats


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8: a smooth random image (low-pass noise plus gradients), photo-like enough for JPEG."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    img = PIL.Image.fromarray(small).resize((width, height), PIL.Image.BICUBIC)
    arr = np.asarray(img).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    arr[..., 0] += 40 * np.sin(xx / 7.0)
    arr[..., 1] += 40 * np.cos(yy / 5.0)
    return np.clip(arr, 0, 255).astype(np.uint8)


def jpeg_bytes(
    rgb: np.ndarray,
    quality: int = 75,
    subsampling: int | str = 2,
    progressive: bool = False,
    mode: str = "RGB",
) -> bytes:
    """Encode `rgb` with Pillow. subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0."""
    img = PIL.Image.fromarray(rgb)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    kwargs = {"quality": quality, "progressive": progressive}
    if mode != "L":
        kwargs["subsampling"] = subsampling
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


TINY = {"widths": [8, 8], "depths": [1, 1]}
"""dct_cifar_upsampling at a few thousand parameters."""


def tiny_dct(seed: int = 0, **arch_kwargs: Any) -> nn.Module:
    """A ~10k-parameter dct_cifar_upsampling (widths [8, 16], depths [1, 1] unless given) in eval mode,
    with non-trivial BN statistics and affine parameters (so folded convs get biases)."""
    torch.manual_seed(seed)
    model = create_model(
        "dct_cifar_upsampling", **{"widths": [8, 16], "depths": [1, 1], **arch_kwargs}
    ).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model


def saved_model(
    path: Path,
    arch: str,
    class_names: Sequence[str],
    *,
    extra: dict[str, Any] | None = None,
    **arch_kwargs: Any,
) -> tuple[nn.Module, Path]:
    """(model, checkpoint path): a fresh registered `arch` built after torch.manual_seed(0), in eval mode,
    saved to `path` with its arch_kwargs and `class_names` (and `extra`)."""
    torch.manual_seed(0)
    model = create_model(arch, **arch_kwargs).eval()
    saved = save_checkpoint(
        path, model, arch=arch, arch_kwargs=arch_kwargs, class_names=list(class_names), extra=extra
    )
    return model, saved


def tiny_train_run(folder: Path, out: Path, **changes):
    """`calibration.train.loop.train` of TINY dct_cifar_upsampling for one step on `folder` (a quarter held out):
    (TrainResult, TrainData). Checkpoints written by the real training loop, for scripts that need them."""
    from dctq.calibration.train.config import TrainConfig
    from dctq.calibration.train.data import build_train_data
    from dctq.calibration.train.loop import train

    config = TrainConfig(
        arch="dct_cifar_upsampling", arch_kwargs=TINY, epochs=1, batch_size=4, val_fraction=0.25,
        stem_stats_batches=2, max_steps_per_epoch=1, **changes,
    )  # fmt: skip
    data = build_train_data(folder, config)
    return train(config, data.train, data.val, out), data


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """[n, 3, size, size] float grey levels: upsampled low-resolution noise, photo-like enough."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=gen) * 255
    return F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 255)


def jpeg_like(rgb: torch.Tensor, quality: int = 75) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, cbcr, qt) of `rgb` as a JPEG encoder at IJG `quality` would quantize them (4:2:0)."""
    qt = ijg_qt([quality] * rgb.shape[0])
    y, c = rgb_to_coefficients(rgb)
    y = round_half_away(y / qt[:, 0, :, None, None])
    c = round_half_away(c / qt[:, 1:].reshape(-1, 128, 1, 1))
    return y, c, qt


def tiny_dct_teacher() -> nn.Module:
    """A tiny DCT net trained for a few steps on smooth images (label: the dominant colour), in eval mode."""
    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling", num_classes=3, **TINY)
    rgb = smooth_images(64, 32, seed=1)
    y, c, qt = jpeg_like(rgb)
    model.stem.set_stats(compute_stem_stats([(y, c, qt)]))
    labels = rgb.mean(dim=(2, 3)).argmax(dim=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(20):
        loss = F.cross_entropy(model(y, c, qt), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def forbid_images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No data directory anywhere, and every way dctq reads an image raises: a zero-shot path that
    touches a real image fails its test."""
    nowhere = tmp_path / "no-data"
    monkeypatch.setenv("DCTQ_DATA", str(nowhere))
    monkeypatch.setattr(dctq.jpeg.cifar, "SHARED_DATA", nowhere / "shared")

    def forbidden(*args, **kwargs):
        raise AssertionError(f"zero-shot quantization read an image: {args[:1]}")

    for module, name in (
        (PIL.Image, "open"),
        (dctq.jpeg.reader, "read_jpeg"),
        (dctq.jpeg.reader, "read_blocks"),
        (dctq.jpeg.dataset, "read_file_bytes"),
    ):
        monkeypatch.setattr(module, name, forbidden)
    # The one entry point every coefficient read goes through, whoever imported read_jpeg by name
    # (JpegFolder, inspect_jpeg, predict, the GPU input path), and the decoders behind it.
    monkeypatch.setattr(dctq.jpeg.reader, "_read", forbidden)
    for backend in list(dctq.jpeg.decoders.DECODERS):
        monkeypatch.setitem(dctq.jpeg.decoders.DECODERS, backend, forbidden)


TESTS_DIR = Path(__file__).resolve().parent


def permissions_enforced(tmp_path: Path) -> bool:
    """Whether this process is refused a folder without permissions (not so for root with its usual
    capabilities; `setpriv --inh-caps=-dac_override,-dac_read_search ...` makes root subject to them)."""
    probe = tmp_path / "permission-probe"
    probe.mkdir()
    probe.chmod(0)
    try:
        with os.scandir(probe):
            return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o700)
        probe.rmdir()


def run_torchrun(script: Path, *args: str, nproc: int = 2, timeout: float = 120) -> str:
    """Run `script` under `torchrun --standalone --nproc-per-node nproc`; returns its output and fails
    the test on a non-zero exit or a hang (the whole process group is killed then). The workers find
    these helpers (`from helpers import ...`) on their PYTHONPATH."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    # A session of its own, so a hung job is killed with its worker processes.
    proc = subprocess.Popen(
        [*cmd, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail("torchrun job hung:\n" + output[-3000:])
    assert proc.returncode == 0, output[-3000:]
    return output


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py imported as a module (the bench folder is not a package)."""
    script = TESTS_DIR.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
"""scikit-image's bundled colour photographs, all public domain or CC0 (NASA, SpaceX, CC0 by their
photographers; see skimage.data's docstrings)."""


def photo(name: str = "chelsea") -> np.ndarray:
    """[H, W, 3] uint8 RGB photograph `name` of PHOTOS (skimage.data; a dev dependency)."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(getattr(skimage_data, name)()[..., :3])


def photo_jpeg(
    name: str = "chelsea",
    size: tuple[int, int] | None = None,
    *,
    subsampling: str = "4:2:0",
    quality: int = 90,
) -> bytes:
    """A photograph re-encoded as a JPEG: resized to `size` (H, W; None keeps its own), at `subsampling`
    ("4:2:0", "4:2:2", "4:4:4" by Pillow, "4:4:0" by libjpeg through jpeglib, "gray") and IJG `quality`."""
    img = PIL.Image.fromarray(photo(name))
    if size is not None:
        img = img.resize((size[1], size[0]), PIL.Image.LANCZOS)
    if subsampling == "gray":
        img = img.convert("L")
    buf = io.BytesIO()
    if subsampling == "4:4:0":
        import tempfile

        import jpeglib

        im = jpeglib.from_spatial(np.ascontiguousarray(np.asarray(img)))
        im.samp_factor = "4:4:0"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "p.jpg"
            im.write_spatial(str(path), qt=quality)
            return path.read_bytes()
    kwargs: dict[str, Any] = {"quality": quality}
    if subsampling != "gray":
        kwargs["subsampling"] = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[subsampling]
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def hr_folder(folder: Path, n: int = 6, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """A folder of `n` smooth RGB PNGs (width x height `size`; odd sides exercise modcrop), as HR images of
    super-resolution data."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        PIL.Image.fromarray(smooth_rgb(size[1], size[0], seed=seed + i)).save(folder / f"img_{i:03d}.png")
    return folder


def tiny_sr_run(folder: Path, out: Path, arch: str = "edsr_cpu_x2", **changes):
    """`calibration.train.loop.train` of an SR model for 2 steps of 16x16 HR patches on `folder` (a third of
    its images held out): (TrainResult, TrainData). A real SR checkpoint (with its TrainConfig) in seconds."""
    from dctq.calibration.train.config import TrainConfig
    from dctq.calibration.train.data import build_train_data
    from dctq.calibration.train.loop import train

    options = {
        "epochs": 1,
        "batch_size": 4,
        "patch_size": 16,
        "samples_per_epoch": 8,
        "val_fraction": 0.34,
        **changes,
    }
    config = TrainConfig.for_arch(arch, "sr", **options)
    data = build_train_data(folder, config)
    return train(config, data.train, data.val, out), data


def flat_jpeg(width: int, height: int) -> bytes:
    """A valid baseline 4:2:0 JPEG of a flat grey `width` x `height` image, built by hand in a few
    milliseconds whatever its size: one quant table of ones, one-symbol Huffman tables (DC difference 0,
    end of block), so every block is two zero bits and a 16384x16384 image is 1.5 MB (the pixel bomb a
    32-px model must not read into gigabytes)."""
    mcus = -(-width // 16) * -(-height // 16)

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    one_code = bytes([1] + [0] * 15)  # one code of length 1
    return b"".join(
        (
            b"\xff\xd8",
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03"
                    + b"\x01\x22\x00" + b"\x02\x11\x00" + b"\x03\x11\x00"),
            segment(0xC4, b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\x00"),
            segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00"),
            b"\x00" * -(-12 * mcus // 8),  # 6 blocks of 2 zero bits per MCU
            b"\xff\xd9",
        )
    )  # fmt: skip


def run_killed_at_write(fn: Any, kill_at: int, log: Path) -> bool:
    """Run `fn()` in a forked child process that kills itself (SIGKILL) just before its `kill_at`-th
    `os.replace`: the commit of every atomic write (common/files.py), so the child dies between two of its
    writes exactly as a killed job would. `log` gets one line per os.replace the child reached: the name
    of the file it was putting in place (the last line's never landed when it was killed).

    Returns True when the child was killed there, False when `fn` finished first (fewer writes).
    """
    import traceback

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            real_replace, count = os.replace, [0]

            def replace(src, dst, *args, **kwargs):
                count[0] += 1
                with open(log, "a") as f:
                    f.write(f"{Path(dst).name}\n")
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_replace(src, dst, *args, **kwargs)

            os.replace = replace
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL, f"the child died of signal {os.WTERMSIG(status)}"
        return True
    assert os.WEXITSTATUS(status) == 0, "the child failed before its kill point (its traceback is above)"
    return False


def scan_bomb_jpeg(width: int, height: int, scans: int) -> bytes:
    """A progressive grayscale JPEG of a flat image whose DC scan is followed by `scans` AC scans of a
    few bytes each (end-of-band runs of 32767 blocks): libjpeg walks every block once per scan, so a file
    of ~100 bytes per scan costs the decoder width * height / 64 block visits per scan."""

    class Bits:
        def __init__(self) -> None:
            self.out, self.acc, self.n = bytearray(), 0, 0

        def put(self, value: int, length: int) -> None:
            for i in range(length - 1, -1, -1):
                self.acc, self.n = (self.acc << 1) | ((value >> i) & 1), self.n + 1
                if self.n == 8:
                    self.out.append(self.acc)
                    if self.acc == 0xFF:
                        self.out.append(0)  # byte stuffing
                    self.acc, self.n = 0, 0

        def done(self) -> bytes:
            if self.n:
                self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with ones
            return bytes(self.out)

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    blocks = -(-width // 8) * -(-height // 8)
    dc = Bits()
    for _ in range(blocks):
        dc.put(0, 1)  # DC difference category 0: code "0"
    runs, left = [], blocks
    while left:
        runs.append(min(left, 32767))
        left -= runs[-1]
    sizes = sorted({run.bit_length() - 1 for run in runs}, reverse=True)  # EOBn: run = 2^n + n extra bits
    codes = {n: (0, 1) if i == 0 else (2, 2) for i, n in enumerate(sizes)}  # "0", then "10"
    ac = Bits()
    for run in runs:
        n = run.bit_length() - 1
        ac.put(*codes[n])
        ac.put(run - (1 << n), n)
    counts = bytes([1, len(sizes) - 1] + [0] * 14)
    header = b"".join(
        (
            b"\xff\xd8",
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(
                0xC2, b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"
            ),
            segment(
                0xC4,
                b"\x00" + bytes([1] + [0] * 15) + b"\x00" + b"\x10" + counts + bytes(n << 4 for n in sizes),
            ),
            segment(0xDA, b"\x01\x01\x00\x00\x00\x00"),
            dc.done(),
        )
    )
    ac_scan = segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + ac.done()
    return header + ac_scan * scans + b"\xff\xd9"
