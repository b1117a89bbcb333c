"""Run records: the metrics.csv that `train`, `quantize` and `evaluate` write beside their outputs.

One row per epoch (training, zero-shot fine-tuning), per JPEG quality (evaluation) or per quantizer (PTQ),
its columns whatever the command reports: rows are dataclasses or mappings, nested ones flattened with
"_" (`EpochEnd.val.top1` -> `val_top1`), so a task that reports other metrics (PSNR, bits per pixel) gets
its own columns without any change here. Columns are the union of the rows' keys in first-seen order; a
missing value is an empty cell. Files are written atomically (complete or absent), so a run killed
mid-epoch leaves the previous epoch's file. `dctq report` reads them back (read_metrics).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError
from .files import write_text_atomic

METRICS_CSV = "metrics.csv"
"""The file name of a run folder's record; a file output X.ext gets X.metrics.csv beside it."""

Scalar = int | float | str | bool | None


def metrics_path(output: Path | str) -> Path:
    """Where the record of a command's `output` goes: `DIR/metrics.csv` for a folder (a training run),
    `X.metrics.csv` beside a file `X.ext` (a quantized checkpoint, an evaluation report)."""
    output = Path(output)
    if output.is_dir() or not output.suffix:
        return output / METRICS_CSV
    return output.with_name(f"{output.stem}.{METRICS_CSV}")


def flatten(row: Any, prefix: str = "") -> dict[str, Scalar]:
    """A dataclass or mapping as one flat {column: scalar} dict: nested dataclasses/mappings joined
    with "_", lists and other values as JSON text, None kept (an empty cell)."""
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        items = [(f.name, getattr(row, f.name)) for f in dataclasses.fields(row)]
    elif isinstance(row, Mapping):
        items = list(row.items())
    else:
        raise TypeError(f"a metrics row is a dataclass or a mapping, got {type(row).__name__}")
    out: dict[str, Scalar] = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(value, Mapping):
            out.update(flatten(value, f"{name}_"))
        elif value is None or isinstance(value, int | float | str | bool):
            out[name] = value
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
            out[name] = value.item()
        else:
            out[name] = json.dumps(value if not isinstance(value, tuple) else list(value), default=str)
    return out


def _cell(value: Scalar) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def metrics_text(rows: Sequence[Any]) -> str:
    """The CSV text of `rows` (see flatten): a header of every column, one line per row."""
    flat = [flatten(r) for r in rows]
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in flat:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_metrics(path: Path | str, rows: Sequence[Any]) -> Path:
    """Write `rows` as CSV to `path`, atomically; returns the path."""
    write_text_atomic(path, metrics_text(rows))
    return Path(path)


def _value(text: str) -> Scalar:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def read_metrics(path: Path | str) -> list[dict[str, Scalar]]:
    """The rows of a metrics.csv, numbers as int/float, booleans as bool, empty cells as None.
    Raises DataError for a missing or unreadable file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise DataError(f"{path} is not a metrics file (no header)")
    return [{k: _value(v or "") for k, v in row.items()} for row in reader]
