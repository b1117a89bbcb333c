"""Packaging that is right by construction: the root is the package `dctq` (pyproject maps it), so the
explicit package list must name every folder with an __init__.py, the root must hold no other module,
and the wheel must hold the package and nothing else (no setup.py, tests, bench, dev or docs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]
NOT_PACKAGED = {"tests", "bench", "dev", "docs", "build", ".venv", ".git", ".ci"}


def package_folders(root: Path = ROOT) -> set[str]:
    """Dotted names of the folders under `root` that hold an __init__.py (the root is `dctq`)."""
    found = set()
    for init in root.rglob("__init__.py"):
        rel = init.parent.relative_to(root)
        if rel.parts and (rel.parts[0] in NOT_PACKAGED or rel.parts[0].endswith(".egg-info")):
            continue
        found.add(".".join(("dctq", *rel.parts)))
    return found


def test_pyproject_lists_every_folder_with_an_init_and_nothing_else():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert config["package-dir"] == {"dctq": "."}
    listed = set(config["packages"])
    assert listed == package_folders(), (
        f"pyproject.toml [tool.setuptools] packages: missing {sorted(package_folders() - listed)}, "
        f"stale {sorted(listed - package_folders())}"
    )
    assert config.get("include-package-data") is False  # else MANIFEST.in's tests/ would enter the wheel


def test_the_license_file_is_the_one_pyproject_declares():
    """pyproject says Apache-2.0; the repository had no LICENSE file to go with it."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
        and "END OF TERMS AND CONDITIONS" in text
    )


def test_the_root_holds_no_module_but_the_package_init():
    stray = sorted(p.name for p in ROOT.glob("*.py") if p.name != "__init__.py")
    assert not stray, f"{stray} at the root would be packaged as dctq.<name>; move them out of the root"


@pytest.mark.slow
def test_the_built_wheel_holds_exactly_the_package(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv", "build", "*.egg-info", "__pycache__", ".git", "*.so"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("dctq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    folders = {".".join(Path(n).parent.parts) for n in names if n.endswith(".py")}
    assert folders == package_folders()
    outside = [n for n in names if not n.startswith(("dctq/", "dctq-"))]
    assert not outside, outside
    assert "dctq/setup.py" not in names
    assert any(n.startswith("dctq-") and n.endswith("LICENSE") for n in names)  # the license travels along
    assert not [n for n in names if n.startswith(tuple(f"dctq/{d}/" for d in NOT_PACKAGED))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "dctq.calibration.quant.checkpoint:rebuild_quantized"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
