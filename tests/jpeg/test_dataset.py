"""JPEG folders as coefficient / RGB datasets, transforms, splits and seeded loaders."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from dctq.common.errors import DataError, DctqError, JpegError
from dctq.jpeg.dataset import DctSample, JpegFolder, collate_samples, make_loader
from dctq.jpeg.geometry import hflip
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.recompress import QualityPolicy, ijg_quant_tables
from dctq.jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD, RgbJpegFolder
from dctq.jpeg.samples import Sample, list_samples, split_samples
from dctq.jpeg.transforms import CenterCropPad, Compose, RandomHFlip, RandomPadCrop, grid_for_input_size

# ------------------------------------------------------------------------------- listing, splits


def test_listing_sorted_classes_and_jpeg_only(tmp_path: Path, make_jpeg) -> None:
    root = tmp_path / "root"
    make_jpeg("root/zebra/b.JPG")
    make_jpeg("root/zebra/a.jpeg")
    make_jpeg("root/ant/sub/deep.jpg")
    make_jpeg("root/ant/.hidden.jpg")
    (root / "ant" / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(root / "ant" / "pic.png")
    (root / ".cache").mkdir()
    (root / "stray.jpg").write_bytes(b"files at the top level are not samples")
    samples, classes = list_samples(root)
    assert classes == ["ant", "zebra"]
    assert [(p.relative_to(root).as_posix(), c) for p, c in samples] == [
        ("ant/sub/deep.jpg", 0),
        ("zebra/a.jpeg", 1),
        ("zebra/b.JPG", 1),
    ]


def test_listing_errors_say_the_layout(tmp_path: Path, make_jpeg, caplog) -> None:
    with pytest.raises(DataError, match=r"does not exist.*root/<class>/<file>.jpg"):
        list_samples(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    make_jpeg("flat/a.jpg")
    with pytest.raises(DataError, match="no class sub-folders"):
        list_samples(tmp_path / "flat")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no JPEG files"):
        JpegFolder(tmp_path / "empty", train=False)
    make_jpeg("partial/a/x.jpg")
    (tmp_path / "partial" / "b").mkdir()
    with caplog.at_level(logging.WARNING):
        samples, classes = list_samples(tmp_path / "partial")
    assert classes == ["a", "b"] and len(samples) == 1
    assert "holds no JPEG" in caplog.text


def test_split_samples_stratified_and_seeded() -> None:
    samples = [Sample(Path(f"{c}/{i}.jpg"), c) for c in range(3) for i in range(20)]
    train, val = split_samples(samples, 0.25, seed=0)
    assert np.bincount([s.label for s in val]).tolist() == [5, 5, 5]
    assert sorted(train + val) == sorted(samples)
    assert split_samples(samples, 0.25, seed=0) == (train, val)
    assert split_samples(samples, 0.25, seed=1)[1] != val
    assert split_samples(samples, 0.0, seed=0) == (samples, [])
    with pytest.raises(DataError, match="val_fraction"):
        split_samples(samples, 1.0)


# ----------------------------------------------------------------------------- coefficient dataset


def test_jpeg_folder_sample(jpeg_folder: Path) -> None:
    ds = JpegFolder(jpeg_folder, train=False)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 8
    s = ds[5]
    assert isinstance(s, DctSample)
    assert s.y.dtype == torch.int16 and s.y.shape == (64, 4, 4)
    assert s.cbcr.dtype == torch.int16 and s.cbcr.shape == (128, 2, 2)
    assert s.qt.dtype == torch.float32 and s.qt.shape == (3, 64)
    assert s.label == 1
    assert s.quality == 75  # conftest writes quality 75; estimated from the tables
    coefs = read_jpeg(ds.samples[5].path)
    np.testing.assert_array_equal(s.y.numpy(), coefs.y)  # evaluation: no augmentation
    np.testing.assert_array_equal(s.qt.numpy(), coefs.qt)


def test_jpeg_folder_recompresses_at_policy_quality(jpeg_folder: Path) -> None:
    ds = JpegFolder(jpeg_folder, train=False, qualities=QualityPolicy((90, 10), test_quality=30))
    s = ds[0]
    assert s.quality == 30
    np.testing.assert_array_equal(s.qt.numpy(), ijg_quant_tables(30))
    train = JpegFolder(jpeg_folder, train=True, transforms=None, qualities=QualityPolicy((90, 10)), seed=0)
    seen = {train[i % 8].quality for i in range(24)}
    assert seen == {90, 10}
    for i in range(4):
        s = train[i]
        np.testing.assert_array_equal(s.qt.numpy(), ijg_quant_tables(s.quality))


def test_bad_file_raises_with_name_and_scan_lists_it(jpeg_folder: Path) -> None:
    bad = jpeg_folder / "cat" / "9.jpg"
    good = (jpeg_folder / "cat" / "0.jpg").read_bytes()
    bad.write_bytes(good[:200])
    ds = JpegFolder(jpeg_folder, train=False)
    index = [s.path for s in ds.samples].index(bad)
    with pytest.raises(JpegError, match=r"9\.jpg"):
        ds[index]
    recompressing = JpegFolder(jpeg_folder, train=False, qualities=QualityPolicy(None, 50))
    with pytest.raises(JpegError, match=r"9\.jpg"):
        recompressing[index]
    assert [p for p, _ in ds.scan()] == [bad]


def test_gray_files_zero_chroma_or_error(tmp_path: Path, make_jpeg) -> None:
    make_jpeg("root/a/gray.jpg", mode="L")
    s = JpegFolder(tmp_path / "root", train=False)[0]
    assert s.cbcr.shape == (128, 2, 2) and not s.cbcr.any()
    assert s.y.any()
    with pytest.raises(DataError, match="grayscale"):
        JpegFolder(tmp_path / "root", train=False, allow_gray=False)[0]


def test_collate_needs_equal_grids_and_input_size_fixes_it(tmp_path: Path, make_jpeg) -> None:
    make_jpeg("root/a/small.jpg", 32, 32)
    make_jpeg("root/a/wide.jpg", 32, 64, seed=1)
    ds = JpegFolder(tmp_path / "root", train=False)
    with pytest.raises(DataError, match="input_size"):
        collate_samples([ds[0], ds[1]])
    fixed = JpegFolder(tmp_path / "root", train=False, input_size=32)
    batch = collate_samples([fixed[0], fixed[1]])
    assert batch["y"].shape == (2, 64, 4, 4) and batch["cbcr"].shape == (2, 128, 2, 2)
    assert batch["qt"].shape == (2, 3, 64) and batch["label"].dtype == torch.int64
    # the wide image is centre-cropped: its middle MCU columns survive
    wide = read_jpeg(tmp_path / "root" / "a" / "wide.jpg")
    np.testing.assert_array_equal(batch["y"][1].numpy(), wide.y[:, :, 2:6])
    with pytest.raises(DctqError, match="multiple of 16"):
        JpegFolder(tmp_path / "root", train=False, input_size=30)


def test_samples_argument_and_label_check(jpeg_folder: Path) -> None:
    samples, _ = list_samples(jpeg_folder)
    ds = JpegFolder(jpeg_folder, train=False, samples=samples[2:4])
    assert len(ds) == 2 and ds.class_names == ["cat", "dog"]
    with pytest.raises(DataError, match="label 5"):
        JpegFolder(jpeg_folder, train=False, samples=[(samples[0].path, 5)])


# ------------------------------------------------------------------------------------ transforms


def _coefs(make_jpeg) -> tuple[np.ndarray, np.ndarray]:
    c = read_jpeg(make_jpeg("t.jpg", 32, 48, seed=4))
    return c.y, c.cbcr


def test_flip_twice_is_identity_and_flips_half(make_jpeg) -> None:
    y, cbcr = _coefs(make_jpeg)
    always = RandomHFlip(1.0)
    rng = np.random.default_rng(0)
    y2, c2 = always(*always(y, cbcr, rng), rng)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(c2, cbcr)
    flipped_y, _ = hflip(y, cbcr)
    assert not np.array_equal(flipped_y, y)
    half = RandomHFlip(0.5)
    outs = [half(y, cbcr, rng)[0] for _ in range(2000)]
    n_flipped = sum(np.array_equal(o, flipped_y) for o in outs)
    assert sum(np.array_equal(o, y) for o in outs) + n_flipped == 2000
    assert 900 < n_flipped < 1100
    with pytest.raises(DctqError):
        RandomHFlip(1.5)


def test_pad_crop_moves_by_whole_mcus() -> None:
    y = np.arange(64 * 4 * 6, dtype=np.int16).reshape(64, 4, 6) + 1
    cbcr = np.arange(128 * 2 * 3, dtype=np.int16).reshape(128, 2, 3) + 1
    py = np.pad(y, ((0, 0), (2, 2), (2, 2)))
    pc = np.pad(cbcr, ((0, 0), (1, 1), (1, 1)))
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(200):
        oy, oc = RandomPadCrop(1)(y, cbcr, rng)
        assert oy.shape == y.shape and oc.shape == cbcr.shape
        match = [
            (t, left)
            for t in (0, 2, 4)
            for left in (0, 2, 4)
            if np.array_equal(oy, py[:, t : t + 4, left : left + 6])
            and np.array_equal(oc, pc[:, t // 2 : t // 2 + 2, left // 2 : left // 2 + 3])
        ]
        assert len(match) == 1
        offsets.add(match[0])
    assert len(offsets) == 9


def test_center_crop_pad_and_compose() -> None:
    assert grid_for_input_size(224) == (28, 28)
    y = np.ones((64, 4, 4), dtype=np.int16)
    cbcr = np.ones((128, 2, 2), dtype=np.int16)
    oy, oc = Compose([CenterCropPad(8, 8), CenterCropPad(6, 6)])(y, cbcr, np.random.default_rng(0))
    assert oy.shape == (64, 6, 6) and oc.shape == (128, 3, 3)
    assert oy.sum() == y.sum() and oc.sum() == cbcr.sum()
    with pytest.raises(DctqError, match="even"):
        CenterCropPad(3, 4)


def test_dataset_applies_flip(jpeg_folder: Path) -> None:
    plain = JpegFolder(jpeg_folder, train=False)[3]
    flipped = JpegFolder(jpeg_folder, train=True, transforms=RandomHFlip(1.0))[3]
    expected, _ = hflip(plain.y.numpy(), plain.cbcr.numpy())
    np.testing.assert_array_equal(flipped.y.numpy(), expected)


# --------------------------------------------------------------------------------------- loaders


def _batches(ds, seed: int, workers: int, shuffle: bool = True) -> list[dict]:
    return list(make_loader(ds, batch_size=3, shuffle=shuffle, num_workers=workers, seed=seed))


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


def test_loader_with_workers_is_reproducible(jpeg_folder: Path) -> None:
    ds = JpegFolder(jpeg_folder, train=True, qualities=QualityPolicy((90, 60, 30, 10)))
    first = _batches(ds, seed=7, workers=2)
    assert sum(len(b["label"]) for b in first) == 8
    assert first[0]["y"].shape == (3, 64, 4, 4)
    assert _same(first, _batches(ds, seed=7, workers=2))
    assert not _same(first, _batches(ds, seed=8, workers=2))
    # the seed reaches the workers' augmentation, not only the shuffling
    assert not _same(_batches(ds, 7, 2, shuffle=False), _batches(ds, 8, 2, shuffle=False))
    # without workers, the seed reseeds the dataset's own Generator
    assert _same(_batches(ds, seed=7, workers=0), _batches(ds, seed=7, workers=0))


def test_distributed_loader_uses_a_seeded_sampler(jpeg_folder: Path, tmp_path: Path) -> None:
    ds = JpegFolder(jpeg_folder, train=True)
    with pytest.raises(DataError, match="torchrun"):
        make_loader(ds, 2, True, distributed=True)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1
    )
    try:
        loader = make_loader(ds, 2, True, seed=3, distributed=True)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.seed == 3
        labels = torch.cat([b["label"] for b in loader])
        assert sorted(labels.tolist()) == [0] * 4 + [1] * 4
    finally:
        torch.distributed.destroy_process_group()


# -------------------------------------------------------------------------------------- RGB path


def test_rgb_folder_matches_pillow_and_coefficient_tables(jpeg_folder: Path) -> None:
    ds = RgbJpegFolder(jpeg_folder, train=False)
    s = ds[2]
    assert s.x.shape == (3, 32, 32) and s.x.dtype == torch.float32
    path = ds.samples[2].path
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    mean, std = np.array(CIFAR10_MEAN)[:, None, None], np.array(CIFAR10_STD)[:, None, None]
    np.testing.assert_allclose(s.x.numpy() * std + mean, pixels.transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_array_equal(s.qt.numpy(), read_jpeg(path).qt)
    assert s.quality == 75 and s.label == 0

    q30 = RgbJpegFolder(jpeg_folder, train=False, qualities=QualityPolicy(None, 30))[2]
    assert q30.quality == 30
    np.testing.assert_array_equal(q30.qt.numpy(), ijg_quant_tables(30))


def test_rgb_augmentation_and_loader(jpeg_folder: Path) -> None:
    plain = RgbJpegFolder(jpeg_folder, train=False)[1].x
    flipped = RgbJpegFolder(jpeg_folder, train=True, pad=0, flip_p=1.0)[1].x
    assert torch.equal(flipped, plain.flip(-1))
    aug = RgbJpegFolder(jpeg_folder, train=True, seed=0)
    views = [aug[1].x for _ in range(8)]
    assert all(v.shape == (3, 32, 32) for v in views)
    assert len({v.numpy().tobytes() for v in views}) > 1
    small = RgbJpegFolder(jpeg_folder, train=False, input_size=16)
    batch = next(iter(make_loader(small, batch_size=4, shuffle=False)))
    assert batch["x"].shape == (4, 3, 16, 16) and batch["qt"].shape == (4, 3, 64)
    assert torch.equal(batch["x"][1], plain[:, 8:24, 8:24])


def test_one_collate_for_both_sample_types(tmp_path: Path, make_jpeg) -> None:
    """collate_samples stacks DctSamples and RgbSamples field by field: the loaders' dict, dtypes and
    the DataError naming what differs (block grid or image) when input_size is unset."""
    make_jpeg("root/a/small.jpg", 32, 32)
    make_jpeg("root/b/wide.jpg", 32, 64, seed=1)
    rgb = RgbJpegFolder(tmp_path / "root", train=False, input_size=32)
    batch = collate_samples([rgb[0], rgb[1]])
    assert list(batch) == ["x", "qt", "label", "quality"]
    assert batch["x"].dtype == torch.float32 and batch["qt"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 1] and batch["quality"].dtype == torch.int64
    with pytest.raises(DataError, match=r"image shapes differ.*set input_size"):
        collate_samples([RgbJpegFolder(tmp_path / "root", train=False)[i] for i in (0, 1)])
    dct = collate_samples([JpegFolder(tmp_path / "root", train=False, input_size=32)[i] for i in (0, 1)])
    assert list(dct) == ["y", "cbcr", "qt", "label", "quality"]
    assert dct["y"].dtype == dct["cbcr"].dtype == torch.int16 and dct["label"].dtype == torch.int64
    with pytest.raises(DataError, match=r"block grid \(y\) shapes differ"):
        collate_samples([JpegFolder(tmp_path / "root", train=False)[i] for i in (0, 1)])


def test_rgb_gray_file_decodes_to_three_equal_channels(tmp_path: Path, make_jpeg) -> None:
    make_jpeg("root/a/gray.jpg", mode="L")
    s = RgbJpegFolder(tmp_path / "root", train=False, mean=(0, 0, 0), std=(1, 1, 1))[0]
    assert torch.equal(s.x[0], s.x[1]) and torch.equal(s.x[1], s.x[2])
    assert torch.equal(s.qt[0], s.qt[2])


def test_rgb_not_a_jpeg_names_file(tmp_path: Path) -> None:
    (tmp_path / "root" / "a").mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    (tmp_path / "root" / "a" / "fake.jpg").write_bytes(buf.getvalue())
    with pytest.raises(JpegError, match=r"fake\.jpg"):
        RgbJpegFolder(tmp_path / "root", train=False)[0]
