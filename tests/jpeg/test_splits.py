"""jpeg/splits.py: the shared validation split and the dataset chosen by input kind and size."""

from __future__ import annotations

import pytest
from helpers import permissions_enforced

from dctq.calibration.train.data import dataset_for_arch
from dctq.common.errors import DataError
from dctq.jpeg.dataset import JpegFolder
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.rgb import RgbJpegFolder
from dctq.jpeg.splits import make_dataset, split_data


def test_split_is_fixed_and_covers_every_file(jpeg_folder):
    a, b = split_data(jpeg_folder, 0.25), split_data(jpeg_folder, 0.25)
    assert a.train == b.train and a.val == b.val and a.val
    assert sorted(a.samples("all")) == sorted(a.train + a.val)
    with pytest.raises(DataError, match="--split"):
        a.samples("test")


def test_dataset_follows_the_input_kind_and_size(jpeg_folder):
    samples = split_data(jpeg_folder, 0.25).samples("all")
    dct = make_dataset("dct", 32, jpeg_folder, samples, train=False, policy=QualityPolicy())
    rgb = make_dataset("rgb", 32, jpeg_folder, samples, train=False, policy=QualityPolicy())
    assert isinstance(dct, JpegFolder) and tuple(dct[0].y.shape) == (64, 4, 4)
    assert isinstance(rgb, RgbJpegFolder) and tuple(rgb[0].x.shape) == (3, 32, 32)
    by_arch = dataset_for_arch("resnet20", jpeg_folder, samples, train=False, policy=QualityPolicy())
    assert isinstance(by_arch, RgbJpegFolder) and by_arch.input_size == 32
    with pytest.raises(DataError, match="input_kind"):
        make_dataset("yuv", 32, jpeg_folder, samples, train=False, policy=QualityPolicy())
    with pytest.raises(DataError, match="augment"):
        make_dataset("dct", 32, jpeg_folder, samples, train=True, policy=QualityPolicy(), augment="jitter")


def test_bad_file_policies(jpeg_folder):
    """stop: nothing read ahead; list: every refused file named; skip: those left out, the rest in place."""
    from dctq.common.errors import UnreadableFilesError
    from dctq.jpeg.splits import screen_split

    (jpeg_folder / "cat" / "x.jpg").write_text("text")
    (jpeg_folder / "dog" / "y.jpg").write_bytes(b"")
    split = split_data(jpeg_folder, 0.25)
    assert screen_split(split, "stop").split == split
    with pytest.raises(UnreadableFilesError, match=r"2 of 10 files .* --bad-files skip") as info:
        screen_split(split, "list")
    assert [p for p, _ in info.value.files] == [
        str(jpeg_folder / "cat" / "x.jpg"),
        str(jpeg_folder / "dog" / "y.jpg"),
    ]
    assert "not a JPEG file" in info.value.files[0][1] and "empty" in info.value.files[1][1]
    kept = screen_split(split, "skip")
    bad = {jpeg_folder / "cat" / "x.jpg", jpeg_folder / "dog" / "y.jpg"}
    assert kept.split.train == [s for s in split.train if s.path not in bad]
    assert kept.split.val == [s for s in split.val if s.path not in bad]
    assert len(kept.split.train) + len(kept.split.val) == 8 and len(kept.skipped) == 2
    only_val = screen_split(split, "skip", ("val",))  # only the images a run reads are read
    assert {p for p, _ in only_val.skipped} == {str(s.path) for s in split.val if s.path in bad}
    with pytest.raises(DataError, match="--bad-files must be one of stop, list, skip"):
        screen_split(split, "ignore")


def test_an_unreadable_class_folder_is_an_error_not_an_empty_class(jpeg_folder, tmp_path):
    """It was listed as holding no JPEG (a warning) and evaluation exited 0 without that class."""
    if not permissions_enforced(tmp_path):
        pytest.skip("this process reads any folder (root)")
    (jpeg_folder / "dog").chmod(0o000)
    try:
        with pytest.raises(DataError, match=r"class folder .*dog cannot be read"):
            split_data(jpeg_folder, 0.25)
    finally:
        (jpeg_folder / "dog").chmod(0o755)
