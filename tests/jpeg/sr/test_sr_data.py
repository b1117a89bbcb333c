"""SR data: MATLAB-style bicubic resizing, HR/LR pairs, training patches, named sets, bad images."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import hr_folder, smooth_rgb

import dctq.jpeg.cifar
from dctq.common.errors import DataError
from dctq.jpeg.sr.dataset import SrImages, SrPair, SrPatches, load_pairs, split_pairs
from dctq.jpeg.sr.images import list_images, modcrop, read_image
from dctq.jpeg.sr.resize import bicubic_downscale, imresize, resize_matrix
from dctq.jpeg.sr.sources import resolve_images, sr_archive


def test_resize_weights_sum_to_one_and_reproduce_linear_ramps():
    m = resize_matrix(40, 10, 0.25)
    assert m.shape == (10, 40) and np.allclose(m.sum(1), 1.0)
    # Bicubic reproduces linear functions: away from the mirrored borders, output x (1-based) of a ramp
    # holds the input position u = x / s + (1 - 1 / s) / 2, minus 1 for 0-based values.
    ramp = np.arange(40, dtype=np.float64)
    out = m @ ramp
    x = np.arange(1, 11)
    u = x / 0.25 + 0.5 * (1 - 4) - 1
    assert np.allclose(out[3:-3], u[3:-3])


def test_uint8_rounds_after_each_pass_and_constant_images_stay():
    flat = np.full((16, 12, 3), 77, np.uint8)
    assert np.array_equal(imresize(flat, 0.5), np.full((8, 6, 3), 77, np.uint8))
    img = smooth_rgb(24, 20)
    lr = bicubic_downscale(img, 4)
    assert lr.shape == (6, 5, 3) and lr.dtype == np.uint8
    as_float = np.clip(imresize(img.astype(np.float64), 0.25), 0, 255)
    diff = np.abs(as_float - lr)
    assert (
        diff.max() <= 2.0 and diff.mean() < 0.5
    )  # rounding (and clipping) after each pass, not only at the end
    assert not np.array_equal(np.floor(as_float + 0.5), lr)
    with pytest.raises(DataError, match="multiple of the scale"):
        bicubic_downscale(img[:23], 4)


def test_modcrop_pairs_and_named_order(tmp_path):
    folder = hr_folder(tmp_path / "hr", n=3, size=(50, 41))
    pairs = load_pairs(folder, 4)
    assert [p.name for p in pairs] == ["img_000.png", "img_001.png", "img_002.png"]
    assert all(p.hr.shape == (40, 48, 3) and p.lr.shape == (10, 12, 3) and p.cropped for p in pairs)
    train, val = split_pairs(pairs, 0.34, seed=0)
    assert len(train) == 2 and len(val) == 1 and {p.name for p in train + val} == {p.name for p in pairs}
    assert SrImages(val)[0].x.shape == (3, 10, 12)


def test_patches_stay_aligned_under_flips_and_rotations():
    """HR = each LR pixel repeated s x s: any aligned patch pair keeps that relation through the flips
    and the transpose; a misaligned one would not."""
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    hr = np.repeat(np.repeat(lr, 3, 0), 3, 1)
    patches = SrPatches([SrPair("a", hr, lr)], scale=3, patch_size=12, length=64, seed=1)
    seen = set()
    for i in range(64):
        s = patches[i]
        assert s.x.shape == (3, 4, 4) and s.target.shape == (3, 12, 12)
        assert torch.equal(s.target, s.x.repeat_interleave(3, 1).repeat_interleave(3, 2))
        seen.add(s.x.sum().item())
    assert len(seen) > 10
    again = SrPatches([SrPair("a", hr, lr)], scale=3, patch_size=12, length=64, seed=1)
    assert torch.equal(
        again[5].x, SrPatches([SrPair("a", hr, lr)], scale=3, patch_size=12, length=64, seed=1)[5].x
    )


def test_images_smaller_than_the_patch_are_refused_or_left_out():
    small = SrPair("tiny.png", np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2, 3), np.uint8))
    big = SrPair("big.png", np.zeros((16, 16, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"tiny.png \(8x8.*--skip-small-images"):
        SrPatches([small, big], scale=4, patch_size=12, length=4)
    patches = SrPatches([small, big], scale=4, patch_size=12, length=4, skip_small=True)
    assert patches.skipped == ["tiny.png"] and len(patches.pairs) == 1
    with pytest.raises(DataError, match="none is large enough"):
        SrPatches([small], scale=4, patch_size=12, length=4, skip_small=True)
    with pytest.raises(DataError, match="multiple of the scale"):
        SrPatches([big], scale=4, patch_size=10, length=4)


@pytest.mark.parametrize(
    ("mode", "message"), [("L", "grayscale"), ("CMYK", "CMYK"), ("RGBA", "alpha channel")]
)
def test_bad_colour_modes_are_one_line_errors(tmp_path, mode, message):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    PIL.Image.new(mode, (20, 16)).save(path)
    with pytest.raises(DataError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_grayscale_reads_as_rgb_for_evaluation_and_as_luma_for_y_models(tmp_path):
    path = tmp_path / "g.png"
    PIL.Image.fromarray(np.full((8, 8), 255, np.uint8)).save(path)
    rgb = read_image(path, gray="rgb")
    assert rgb.shape == (8, 8, 3) and (rgb == 255).all()
    assert (read_image(path, channels=1) == 235).all()
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="not a readable image"):
        read_image(tmp_path / "junk.png")


def test_empty_folders_and_missing_sets(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no image"):
        list_images(tmp_path / "empty")
    monkeypatch.setenv("DCTQ_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(
        dctq.jpeg.cifar, "SHARED_DATA", tmp_path / "no-shared-data"
    )  # ../shared/data may exist
    with pytest.raises(DataError, match="not found"):
        sr_archive("eval-set5-set14.tar", tmp_path / "nowhere")
    with pytest.raises(DataError, match="named sets"):
        resolve_images(tmp_path / "missing")
    with pytest.raises(DataError, match="smaller than the scale"):
        modcrop(np.zeros((3, 9, 3), np.uint8), 4)


def test_named_sets_come_from_the_archive(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "sr").mkdir(parents=True)
    with tarfile.open(data / "sr" / "eval-set5-set14.tar", "w") as tar:
        for name in ("set5/img_001.png", "set14/img_001.png"):
            buf = io.BytesIO()
            PIL.Image.fromarray(smooth_rgb(16, 16)).save(buf, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    monkeypatch.setenv("DCTQ_DATA", str(data))
    monkeypatch.setenv("DCTQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    Path("set5").mkdir()  # a folder of the same name does not shadow the set
    folder = resolve_images("set5")
    assert folder.name == "set5" and (folder / "img_001.png").is_file() and folder != tmp_path / "set5"


@pytest.mark.slow
def test_bicubic_baseline_of_set5_matches_the_published_one():
    """Bicubic down and up (both MATLAB-style) on Set5 x4: the SR papers' 'Bicubic' row is 28.42 dB."""
    from dctq.models.sr.metrics import psnr

    try:
        folder = resolve_images("set5")
    except DataError as exc:
        pytest.skip(str(exc))
    values = []
    for pair in load_pairs(folder, 4):
        up = imresize(pair.lr, 4, pair.hr.shape[:2])
        to = lambda a: torch.from_numpy(a).permute(2, 0, 1).double() / 255  # noqa: E731
        values.append(float(psnr(to(up), to(pair.hr), 4)))
    assert np.mean(values) == pytest.approx(28.42, abs=0.02)
