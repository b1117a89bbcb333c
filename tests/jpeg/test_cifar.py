"""CIFAR-10 JPEG archive lookup, one-time extraction and splits (a tiny tar.gz; the real one is slow)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dctq.common.errors import DataError
from dctq.jpeg import cifar
from dctq.jpeg.cifar import MARKER_NAME, cifar10_archive, cifar10_splits, extract_once

CLASSES = ("bird", "cat", "plane")


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def _make_archive(data_root: Path, per_class: int = 10) -> Path:
    """data_root/cifar10-jpeg/train.tar.gz holding train/<class>/<nnnn>.jpg."""
    archive = data_root / "cifar10-jpeg" / "train.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for c, name in enumerate(CLASSES):
            for i in range(per_class):
                data = _jpeg(100 * c + i)
                info = tarfile.TarInfo(f"train/{name}/{i:04d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return archive


@pytest.fixture
def no_shared_data(monkeypatch, tmp_path: Path) -> None:
    """Hide the repository's shared data folder and the environment, so only explicit roots count."""
    monkeypatch.setattr(cifar, "SHARED_DATA", tmp_path / "no-shared-data")
    monkeypatch.delenv("DCTQ_DATA", raising=False)


def test_archive_found_by_argument_and_env(tmp_path: Path, monkeypatch, no_shared_data) -> None:
    archive = _make_archive(tmp_path / "data")
    assert cifar10_archive(tmp_path / "data") == archive
    monkeypatch.setenv("DCTQ_DATA", str(tmp_path / "data"))
    assert cifar10_archive() == archive


def test_missing_archive_says_where_to_put_it(tmp_path: Path, no_shared_data) -> None:
    with pytest.raises(DataError, match=r"DCTQ_DATA") as info:
        cifar10_archive(tmp_path / "empty")
    assert str(tmp_path / "empty" / "cifar10-jpeg" / "train.tar.gz") in str(info.value)


def test_extract_once_is_atomic_and_runs_once(tmp_path: Path) -> None:
    archive = _make_archive(tmp_path / "data")
    cache = tmp_path / "cache"
    root = extract_once(archive, cache)
    assert root == cache / "cifar10-jpeg-train"
    assert sorted(p.name for p in (root / "train").iterdir()) == list(CLASSES)
    assert json.loads((root / MARKER_NAME).read_text())["size"] == archive.stat().st_size
    assert [p.name for p in cache.iterdir()] == [root.name]  # no temporary folders left
    # a second call does not extract again: a file removed from the cache stays removed
    victim = root / "train" / "cat" / "0000.jpg"
    victim.unlink()
    assert extract_once(archive, cache) == root
    assert not victim.exists()


def test_extract_once_replaces_a_half_made_folder(tmp_path: Path) -> None:
    archive = _make_archive(tmp_path / "data")
    cache = tmp_path / "cache"
    stale = cache / "cifar10-jpeg-train"
    (stale / "train" / "junk").mkdir(parents=True)  # no marker: an interrupted older attempt
    root = extract_once(archive, cache)
    assert sorted(p.name for p in (root / "train").iterdir()) == list(CLASSES)
    assert [p.name for p in cache.iterdir()] == [root.name]


def test_extract_once_bad_archive(tmp_path: Path) -> None:
    bad = tmp_path / "data" / "train.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"not a tar file at all")
    with pytest.raises(DataError, match="cannot extract"):
        extract_once(bad, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(DataError, match="does not exist"):
        extract_once(tmp_path / "missing.tar.gz", tmp_path / "cache")


def test_cifar10_splits_from_env(tmp_path: Path, monkeypatch, no_shared_data) -> None:
    _make_archive(tmp_path / "data", per_class=10)
    monkeypatch.setenv("DCTQ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DCTQ_CACHE", str(tmp_path / "cache"))
    train, val, classes = cifar10_splits(val_fraction=0.2, seed=1)
    assert classes == list(CLASSES)
    assert len(train) == 24 and len(val) == 6
    assert sorted(s.label for s in val) == [0, 0, 1, 1, 2, 2]
    assert all(str(s.path).startswith(str(tmp_path / "cache")) for s in train + val)
    again = cifar10_splits(val_fraction=0.2, seed=1)
    assert again == (train, val, classes)


def _real_archive() -> Path | None:
    try:
        return cifar10_archive()
    except DataError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_real_archive() is None, reason="CIFAR-10 JPEG archive not found (set DCTQ_DATA)")
def test_real_cifar10_counts(tmp_path: Path) -> None:
    cache = Path(os.environ["DCTQ_CACHE"]) if os.environ.get("DCTQ_CACHE") else tmp_path
    train, val, classes = cifar10_splits(val_fraction=0.1, seed=0, cache_dir=cache)
    assert len(classes) == 10
    assert len(train) + len(val) == 50_000
    assert len(val) == 5_000
    assert np.bincount([s.label for s in val]).tolist() == [500] * 10


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_extract_once_refuses_links_even_inside_the_archive(tmp_path: Path, kind: bytes) -> None:
    """A link that stays inside the extraction folder passes tarfile's "data" filter; a loop back to the
    class folder's parent then lists every image again under the wrong class."""
    archive = _make_archive(tmp_path / "data", per_class=2)
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
        link = tarfile.TarInfo("train/cat/loop" if kind == tarfile.SYMTYPE else "train/cat/alias.jpg")
        link.type, link.linkname = kind, (".." if kind == tarfile.SYMTYPE else members[0][0].name)
        tar.addfile(link)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"holds a link \(train/cat/(loop|alias\.jpg) -> "):
        extract_once(archive, cache)
    assert not any(cache.iterdir())  # nothing half-extracted left behind


def test_extract_once_refuses_a_member_larger_than_any_jpeg(tmp_path: Path, monkeypatch) -> None:
    """A gzip of zeros inflates a thousandfold: no member may be larger than a JPEG the reader reads
    (MAX_FILE_BYTES, made 1000 bytes here so that the archive stays small)."""
    monkeypatch.setattr(cifar, "MAX_FILE_BYTES", 1000)
    archive = tmp_path / "zeros.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("train/cat/0.jpg")
        info.size = 1001
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"train/cat/0\.jpg of 1001 bytes, more than any JPEG"):
        extract_once(archive, cache)
    assert not any(cache.iterdir())


def test_a_replaced_archive_of_the_same_size_is_extracted_again(tmp_path: Path) -> None:
    """The cache was keyed on the archive's name and size: another archive of the same size (here: other
    class names of the same length, and the same modification time) kept the old images."""
    archive = tmp_path / "data" / "train.tar"
    archive.parent.mkdir()

    def write(classes: tuple[str, ...]) -> None:
        with tarfile.open(archive, "w") as tar:
            for c, name in enumerate(classes):
                data = _jpeg(c)
                info = tarfile.TarInfo(f"train/{name}/0000.jpg")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
        os.utime(archive, (1_000_000, 1_000_000))

    write(("bird", "cat1"))
    first_size = archive.stat().st_size
    root = extract_once(archive, tmp_path / "cache")
    assert sorted(p.name for p in (root / "train").iterdir()) == ["bird", "cat1"]
    write(("bird", "cat2"))
    assert archive.stat().st_size == first_size
    assert extract_once(archive, tmp_path / "cache") == root
    assert sorted(p.name for p in (root / "train").iterdir()) == ["bird", "cat2"]
