"""common/files.py: atomic writes keep the umask's mode, and outputs that cannot be written are refused
before any work, with a one-line ConfigError."""

from __future__ import annotations

import os
import stat

import pytest
from helpers import permissions_enforced

from dctq.common.errors import ConfigError
from dctq.common.files import check_output_dir, check_output_file, write_bytes_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_open_gives(tmp_path, umask, mask):
    umask(mask)
    write_text_atomic(tmp_path / "a.json", "{}")
    write_bytes_atomic(tmp_path / "sub" / "b.bin", b"x")
    with open(tmp_path / "plain", "w") as f:  # what open() (and so torch.save) gives under this umask
        f.write("x")
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert expected == 0o666 & ~mask
    for path in (tmp_path / "a.json", tmp_path / "sub" / "b.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == expected


def test_writing_onto_a_folder_is_a_config_error_and_leaves_nothing(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(ConfigError, match=r"out\.json: it is a folder"):
        write_text_atomic(tmp_path / "out.json", "{}")
    assert [p.name for p in (tmp_path / "out.json").iterdir()] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_writing_below_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        write_text_atomic(tmp_path / "file" / "out.json", "{}")


def test_output_file_checks(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*folder is a folder"):
        check_output_file(tmp_path / "folder", "--out")
    with pytest.raises(ConfigError, match=r"--plot .*file is a file, not a folder"):
        check_output_file(tmp_path / "file" / "deeper" / "p.png", "--plot")
    # A new file in a folder yet to be made is fine, and nothing is created by the check.
    assert check_output_file(tmp_path / "new" / "q.pt") == tmp_path / "new" / "q.pt"
    assert not (tmp_path / "new").exists()


def test_output_dir_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*file is a file, not a folder"):
        check_output_dir(tmp_path / "file", "--out")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "run", "--out")
    assert check_output_dir(tmp_path / "run") == tmp_path / "run"
    assert check_output_dir(tmp_path) == tmp_path


def test_output_checks_refuse_a_folder_without_write_permission(tmp_path):
    if not permissions_enforced(tmp_path):
        pytest.skip("this process writes into any folder (root)")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="no permission"):
            check_output_file(locked / "out.json", "--out")
        with pytest.raises(ConfigError, match="no permission"):
            check_output_dir(locked, "--out")
    finally:
        locked.chmod(0o700)


def test_an_output_that_is_an_input_is_refused(tmp_path):
    """`evaluate --out model.pt` and `profile --plot model.pt` wrote a report or a PNG over the model."""
    model = tmp_path / "m.pt"
    model.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(model)
    for target in (model, tmp_path / "." / "m.pt", tmp_path / "link.pt"):
        with pytest.raises(ConfigError, match=r"--out .* would overwrite the input .*m.pt"):
            check_output_file(target, "--out", inputs=(model,))
    assert check_output_file(tmp_path / "r.json", "--out", inputs=(model,)) == tmp_path / "r.json"
    assert model.read_bytes() == b"weights"
