"""Run records: metrics.csv rows flattened from what a command reports, written atomically, read back typed."""

from __future__ import annotations

import dataclasses

import pytest

from dctq.common.errors import DataError
from dctq.common.records import flatten, metrics_path, metrics_text, read_metrics, write_metrics


@dataclasses.dataclass(frozen=True)
class Val:
    loss: float
    psnr: float | None


@dataclasses.dataclass(frozen=True)
class Epoch:
    epoch: int
    train_loss: float
    val: Val | None
    is_best: bool


def test_nested_rows_flatten_and_columns_are_the_union(tmp_path):
    rows = [Epoch(1, 0.5, None, True), Epoch(2, 0.25, Val(0.3, 31.5), False), {"epoch": 3, "note": [1, 2]}]
    assert flatten(rows[1]) == {
        "epoch": 2,
        "train_loss": 0.25,
        "val_loss": 0.3,
        "val_psnr": 31.5,
        "is_best": False,
    }
    text = metrics_text(rows)
    assert text.splitlines()[0] == "epoch,train_loss,val,is_best,val_loss,val_psnr,note"  # val: None in row 1
    path = write_metrics(tmp_path / "run" / "metrics.csv", rows)
    back = read_metrics(path)
    assert back[0] == {
        "epoch": 1,
        "train_loss": 0.5,
        "val": None,
        "is_best": True,
        "val_loss": None,
        "val_psnr": None,
        "note": None,
    }
    assert back[1]["val_psnr"] == 31.5 and back[1]["is_best"] is False
    assert back[2]["note"] == "[1, 2]"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.csv"]  # no temporary file left


def test_floats_round_trip_exactly(tmp_path):
    value = 0.1 + 0.2
    (row,) = read_metrics(write_metrics(tmp_path / "m.csv", [{"x": value, "name": "a,b"}]))
    assert row == {"x": value, "name": "a,b"}


def test_where_the_record_goes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert metrics_path(run) == run / "metrics.csv"
    assert metrics_path(tmp_path / "q.pt") == tmp_path / "q.metrics.csv"
    assert metrics_path(tmp_path / "eval" / "fp32.json") == tmp_path / "eval" / "fp32.metrics.csv"


def test_bad_rows_and_files_are_refused(tmp_path):
    with pytest.raises(TypeError, match="dataclass or a mapping"):
        flatten(3)
    with pytest.raises(DataError, match="cannot read"):
        read_metrics(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="no header"):
        read_metrics(tmp_path / "empty.csv")
