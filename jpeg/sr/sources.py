"""Where SR images come from: a folder of HR images, or a name for the shared archives.

    "sr"       ../shared/data/sr/train-bsd200-yang91.tar: BSD200 (PNG) + Yang91 (BMP), 291 HR training images
    "set5"     ../shared/data/sr/eval-set5-set14.tar, folder set5/  (5 HR evaluation images)
    "set14"    the same archive, folder set14/ (14 images)

Archives are found under $DCTQ_DATA or ../shared/data (jpeg.cifar.data_roots) and extracted once into the
cache ($DCTQ_CACHE, default ~/.cache/dctq) by jpeg.cifar.extract_once; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from ...common.errors import DataError
from ..cifar import data_roots, extract_once

SR_DIR = Path("sr")
TRAIN_ARCHIVE = "train-bsd200-yang91.tar"
EVAL_ARCHIVE = "eval-set5-set14.tar"
NAMED = {"sr": (TRAIN_ARCHIVE, None), "set5": (EVAL_ARCHIVE, "set5"), "set14": (EVAL_ARCHIVE, "set14")}
"""--data name -> (archive under <data>/sr/, sub-folder of the extracted archive or None for all of it)."""
EVAL_SETS = ("set5", "set14")


def sr_archive(name: str, data_root: Path | str | None = None) -> Path:
    """The shared archive file `name` under <data>/sr/. Raises DataError listing where it looked."""
    roots = data_roots(data_root)
    for root in roots:
        for candidate in (root / SR_DIR / name, root / name):
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(r / SR_DIR / name) for r in roots)
    raise DataError(
        f"SR archive {name} not found (looked at {looked}); set DCTQ_DATA=<data> with <data>/sr/{name}"
    )


def resolve_images(data: str | Path, *, cache_dir: Path | None = None) -> Path:
    """The folder of HR images `data` names: one of NAMED (extracted once from its archive) or a folder.
    A name wins over a folder of the same name in the working directory (write ./sr for that), as
    "cifar10" does for classifiers.

    Raises DataError for a missing archive or folder (a name that is neither lists the names).
    """
    key = str(data)
    if key in NAMED:
        archive, sub = NAMED[key]
        root = extract_once(sr_archive(archive), cache_dir)
        folder = root / sub if sub else root
        if not folder.is_dir():
            raise DataError(f"{root} has no {sub}/ folder; is {archive} the shared SR archive?")
        return folder
    folder = Path(data)
    if not folder.is_dir():
        raise DataError(
            f"--data {data}: no such folder of HR images, and not one of the named sets {', '.join(NAMED)}"
        )
    return folder
