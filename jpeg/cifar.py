"""CIFAR-10 as JPEG files: find the archive, extract it once into a cache, split train/val.

The archive `cifar10-jpeg/train.tar.gz` holds `train/<class>/<nnnn>.jpg` (50,000 32x32 files,
4:2:0, IJG quality 75). It is looked up under `data_root`, then $DCTQ_DATA, then `../shared/data`
beside the repository; nothing is ever downloaded. It has no test split: validation is split off
the training set, stratified and seeded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..common.errors import DataError
from ..common.files import write_text_atomic
from .limits import MAX_FILE_BYTES
from .samples import Sample, list_samples, split_samples

logger = logging.getLogger(__name__)

CIFAR10_ARCHIVE = Path("cifar10-jpeg") / "train.tar.gz"
MARKER_NAME = ".dctq-extracted"
# The repository root is the package folder; the shared data folder sits beside it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_roots(data_root: Path | str | None = None) -> list[Path]:
    """Where shared data sets are looked up, in order: `data_root`, $DCTQ_DATA, ../shared/data."""
    roots = []
    if data_root is not None:
        roots.append(Path(data_root))
    if os.environ.get("DCTQ_DATA"):
        roots.append(Path(os.environ["DCTQ_DATA"]))
    roots.append(SHARED_DATA)
    return roots


def cifar10_archive(data_root: Path | str | None = None) -> Path:
    """Path of `cifar10-jpeg/train.tar.gz` under `data_root`, $DCTQ_DATA or ../shared/data.

    Raises:
        DataError: the archive is in none of them (the message lists where it looked).
    """
    roots = data_roots(data_root)
    for root in roots:
        for candidate in (root / CIFAR10_ARCHIVE, root / CIFAR10_ARCHIVE.name):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(r / CIFAR10_ARCHIVE) for r in roots)
    raise DataError(
        f"CIFAR-10 JPEG archive not found (looked at {looked}); put train.tar.gz "
        f"(train/<class>/<file>.jpg inside) at <data>/{CIFAR10_ARCHIVE} and set DCTQ_DATA=<data>"
    )


def default_cache_dir() -> Path:
    """$DCTQ_CACHE, else ~/.cache/dctq."""
    env = os.environ.get("DCTQ_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dctq"


def _archive_id(archive: Path) -> dict:
    """What identifies an archive's contents: name, size and SHA-256 (a replaced archive of the same name
    and size is extracted again; hashing the 16 MB CIFAR-10 archive takes tens of milliseconds)."""
    digest = hashlib.sha256()
    with archive.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"archive": archive.name, "size": archive.stat().st_size, "sha256": digest.hexdigest()}


def _is_extracted(target: Path, archive_id: dict) -> bool:
    marker = target / MARKER_NAME
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == archive_id
    except (OSError, ValueError):
        return False


def _files_and_folders_only(archive: Path, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's "data" filter (no absolute paths, no escape from `dest`, no devices), and no links at all:
    a symbolic or hard link, even one inside the archive, can loop a data folder back onto itself (every
    image listed many times under the wrong class) or alias one file under two classes."""
    member = tarfile.data_filter(member, dest)
    if member.size > MAX_FILE_BYTES:  # no file the reader would read (a gzip of zeros inflates 1000-fold)
        raise DataError(
            f"{archive} holds {member.name} of {member.size} bytes, more than any JPEG dctq reads "
            f"({MAX_FILE_BYTES} bytes); it is not an image archive"
        )
    if member.issym() or member.islnk():
        raise DataError(
            f"{archive} holds a link ({member.name} -> {member.linkname}); dctq extracts only files and "
            "folders: rebuild the archive without links (tar --dereference)"
        )
    return member


def extract_once(archive: Path | str, cache_dir: Path | str | None = None) -> Path:
    """Extract a tar archive into `cache_dir` once; later calls return at once.

    The archive is unpacked into a temporary folder beside the target, a marker recording the
    archive's name, size and SHA-256 is written, and the folder is renamed into place, so an interrupted
    extraction never looks finished and concurrent callers (torchrun ranks) end with one copy.

    Args:
        archive: a .tar / .tar.gz file.
        cache_dir: where extracted folders live; default `default_cache_dir()`.

    Returns:
        The extracted folder, `<cache_dir>/<archive folder>-<archive stem>` (e.g.
        `cifar10-jpeg-train`), holding the archive's top-level entries.

    Raises:
        DataError: the archive is missing, not a readable tar file, or holds a link or an unsafe path.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = archive.name.split(".")[0]
    target = cache_dir / f"{archive.parent.name}-{stem}" if archive.parent.name else cache_dir / stem
    archive_id = _archive_id(archive)
    if _is_extracted(target, archive_id):
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
    try:
        logger.info("extracting %s into %s (once)", archive, target)
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter=functools.partial(_files_and_folders_only, archive))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot extract {archive}: {exc}; is it a complete .tar(.gz) file?") from exc
        write_text_atomic(tmp / MARKER_NAME, json.dumps(archive_id))
        if target.exists() and not _is_extracted(target, archive_id):
            # a stale or half-made folder from an older archive: move it out of the way first
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=cache_dir))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_extracted(target, archive_id):  # not a concurrent caller that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def cifar10_splits(
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    data_root: Path | str | None = None,
) -> tuple[list[Sample], list[Sample], list[str]]:
    """CIFAR-10 JPEG training files split into (train, val, class_names), stratified by class.

    Extracts the archive on first use (see `extract_once`). Build datasets with
    `JpegFolder(cifar10_root(...), samples=train, train=True, ...)`.

    Raises:
        DataError: archive missing or unreadable.
    """
    samples, classes = list_samples(cifar10_root(cache_dir, data_root))
    train, val = split_samples(samples, val_fraction, seed)
    return train, val, classes


def cifar10_root(cache_dir: Path | str | None = None, data_root: Path | str | None = None) -> Path:
    """The extracted ImageFolder root (`.../train`) of CIFAR-10 JPEG, extracting it if needed.

    Raises:
        DataError: archive missing, unreadable, or without a `train/` folder.
    """
    root = extract_once(cifar10_archive(data_root), cache_dir) / "train"
    if not root.is_dir():
        raise DataError(f"{root.parent} has no train/ folder; the archive must hold train/<class>/<file>.jpg")
    return root
