"""common.torch_files and common.files' guarded reads against hostile files: a pickle that runs code, a FIFO
or a device where a torch file should be."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dctq.common.errors import ModelError
from dctq.common.files import NotRegularFileError, read_regular_file
from dctq.common.torch_files import load_torch_file
from dctq.models.checkpoint import load_checkpoint


class _Payload:
    """Unpickling it writes `marker`: what a stranger's .pt would do with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).write_text('ran')",))


def test_a_pickle_that_runs_code_is_refused_with_torchs_reason_and_not_its_advice(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dctq.checkpoint", "version": 1, "arch": _Payload(marker)}, evil)
    with pytest.raises(ModelError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert not marker.exists()
    assert "evil.pt is not a dctq checkpoint" in message
    # torch's line naming the refused global stays ...
    assert (
        "Unsupported global: GLOBAL builtins.eval" in message or "Unsupported global: GLOBAL eval" in message
    )
    # ... its advice to allow it or to drop weights_only (which would run the payload) does not.
    assert "weights_only" not in message and "add_safe_globals" not in message and "\n" not in message
    assert message.endswith("it was not written by dctq, or was altered since")


def _in_child(code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter; a hang fails the test instead of hanging the suite."""
    try:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout} s: {code}")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_like_a_checkpoint_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    done = _in_child(
        "from dctq.models.checkpoint import load_checkpoint\n"
        f"try:\n    load_checkpoint({str(fifo)!r})\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ModelError") and "FIFO" in done.stdout, done.stdout


def test_devices_and_folders_are_not_read_as_files(tmp_path):
    link = tmp_path / "zero.pt"
    link.symlink_to("/dev/zero")
    with pytest.raises(
        ModelError, match=r"zero\.pt is not a readable dctq checkpoint: it is a character device"
    ):
        load_torch_file(link, "dctq checkpoint", ModelError)
    with pytest.raises(NotRegularFileError, match="character device"):
        read_regular_file(link, max_bytes=1 << 20)
    with pytest.raises(IsADirectoryError):
        read_regular_file(tmp_path, max_bytes=1 << 20)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(OSError, match="more than the 1000-byte limit"):
        read_regular_file(big, max_bytes=1000)
    assert read_regular_file(big, max_bytes=1001) == b"x" * 1001


def test_a_zip_that_inflates_beyond_its_file_is_refused_before_torch_reads_it(tmp_path):
    """torch.load inflates deflated records although torch.save never writes them: a 200 KB file
    inflated to 200 MB; the reader refuses any compressed record."""
    import zipfile

    plain = tmp_path / "plain.pt"
    torch.save({"format": "dctq.checkpoint", "t": torch.zeros(5_000_000)}, plain)  # 20 MB of zeros
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    assert bomb.stat().st_size < plain.stat().st_size // 100
    with pytest.raises(
        ModelError, match=r"bomb\.pt is not a readable dctq checkpoint: its zip records are compressed"
    ):
        load_torch_file(bomb, "dctq checkpoint", ModelError)
    assert load_torch_file(plain, "dctq checkpoint", ModelError)["t"].shape == (5_000_000,)


def test_architecture_arguments_that_build_more_than_the_weights_are_refused(tmp_path):
    """A stranger's checkpoint passes weights_only but asks for num_classes=10**9: the loader allocated
    and initialised a 256 GB classifier before comparing any weight. It is now refused from a model
    built on the meta device (in a child with 2 GB of address space: a regression cannot take the machine)."""
    from helpers import TINY, saved_model

    _, path = saved_model(tmp_path / "m.pt", "dct_cifar_upsampling", [], **TINY)
    payload = torch.load(path, weights_only=True)
    payload["arch_kwargs"] = {**TINY, "num_classes": 10**9}
    torch.save(payload, path)
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from dctq.models.checkpoint import load_checkpoint\n"
        f"try:\n    load_checkpoint({str(path)!r})\nexcept BaseException as e:\n    print(type(e).__name__, e)"
    )
    done = _in_child(code, timeout=120)
    assert done.stdout.startswith("ModelError") and "is a model of" in done.stdout, (
        done.stdout + done.stderr[-2000:]
    )
    assert "num_classes': 1000000000" in done.stdout and "MiB of weights" in done.stdout
