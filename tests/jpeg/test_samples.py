"""jpeg/samples.py against hostile folders: links that loop back up the tree, into another class, or
twice to one folder never list an image twice, under the wrong class, or hang the listing."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import jpeg_bytes, smooth_rgb

from dctq.common.errors import DataError
from dctq.jpeg.samples import list_samples


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """root/{cat,dog}/{0..4}.jpg: 10 images in two classes."""
    root = tmp_path / "data"
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            (root / name / f"{i}.jpg").write_bytes(jpeg_bytes(smooth_rgb(16, 16, seed=10 * c + i)))
    return root


def _labels(root: Path) -> dict[str, str]:
    samples, classes = list_samples(root)
    return {str(s.path.relative_to(root)): classes[s.label] for s in samples}


def test_a_loop_to_the_root_adds_no_image_and_no_wrong_label(folder: Path, caplog) -> None:
    clean = _labels(folder)
    (folder / "cat" / "loop").symlink_to("..")  # root/cat/loop -> root: cat, dog, cat/loop, ...
    with caplog.at_level(logging.WARNING):
        assert _labels(folder) == clean and len(clean) == 10
    assert "loop" in caplog.text


def test_loops_inside_a_class_and_links_into_another_class_are_skipped(folder: Path) -> None:
    clean = _labels(folder)
    (folder / "cat" / "sub").mkdir()
    (folder / "cat" / "sub" / "5.jpg").write_bytes(jpeg_bytes(smooth_rgb(16, 16, seed=99)))
    (folder / "cat" / "sub" / "back").symlink_to("..")  # cat/sub/back -> cat
    (folder / "cat" / "dogs").symlink_to("../dog")  # dog's images must not become cats
    assert _labels(folder) == {**clean, "cat/sub/5.jpg": "cat"}


def test_a_folder_outside_is_followed_once(folder: Path, tmp_path: Path) -> None:
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    (extra / "x.jpg").write_bytes(jpeg_bytes(smooth_rgb(16, 16, seed=7)))
    (folder / "cat" / "more").symlink_to(extra)
    (folder / "dog" / "more").symlink_to(extra)  # the same images under a second class: skipped
    labels = _labels(folder)
    assert labels["cat/more/x.jpg"] == "cat" and "dog/more/x.jpg" not in labels and len(labels) == 11


def test_two_class_names_for_one_folder_are_refused(folder: Path) -> None:
    (folder / "kitten").symlink_to("cat")
    with pytest.raises(DataError, match=r"kitten is the same folder as .*cat"):
        list_samples(folder)
    (folder / "kitten").unlink()
    (folder / "all").symlink_to(".")
    with pytest.raises(DataError, match=r"all is the same folder as"):
        list_samples(folder)


def test_a_fan_of_loops_does_not_hang(folder: Path) -> None:
    """Two links to the folder itself give 2^40 paths before the kernel's link limit: a hang before."""
    (folder / "cat" / "a").symlink_to(".")
    (folder / "cat" / "b").symlink_to(".")
    code = f"from dctq.jpeg.samples import list_samples\nprint(len(list_samples({str(folder)!r})[0]))"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("listing a folder with two self-links hung")
    assert done.stdout.strip() == "10", done.stderr[-2000:]
