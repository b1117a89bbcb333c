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
