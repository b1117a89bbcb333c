"""jpeg/splits.py: the shared validation split and the dataset chosen by input kind and size."""

from __future__ import annotations

import pytest

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
