"""`dctq report RUN_DIR`: one Markdown page of what a run folder holds, with its plots.

It reads what the commands leave behind (nothing is re-run but the TensorRT Q/DQ check, which only
reads the graphs):

- metrics.csv records (common/records.py): a record with an `epoch` column (training, zero-shot
  fine-tuning) becomes a table and curves of its loss and accuracy columns against epoch; records with a
  `quality` column (evaluations) are overlaid in one accuracy-per-JPEG-quality plot and summarised in one
  table; any other record (PTQ's quantizers) is shown as a table;
- every `.onnx` file: the TensorRT Q/DQ check (deploy/onnx/lint.py), one line each;
- every `*.profile.json` (`dctq profile --out`): the latency tables and one plot of them all overlaid
  (p50 with the p90-p99 band, throughput).

Columns are taken as they come, so tasks reporting other metrics (PSNR, bits per pixel) get their own
curves and columns. Plots go into a folder beside the page (report.md -> report/), PNG by default.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..common.errors import BackendUnavailable, DataError, DctqError
from ..common.files import write_text_atomic
from ..common.records import METRICS_CSV, Scalar, read_metrics
from .profiling.latency import ProfileReport
from .profiling.plot import PLOT_FORMATS, Panel, Series, plot_profiles, save_figure

logger = logging.getLogger(__name__)

PROFILE_SUFFIX = ".profile.json"
_BOOKKEEPING = {"epoch", "epochs", "seconds", "lr", "is_best", "images", "step", "steps", "quality"}
_ACCURACY = ("top1", "top5", "acc", "agreement")
_MAX_ROWS = 40


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What `render_report` wrote: the page, its plots, and what it found."""

    page: Path
    plots: tuple[Path, ...]
    records: tuple[Path, ...]
    graphs: tuple[Path, ...]
    profiles: tuple[Path, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            k: [str(p) for p in v] if isinstance(v, tuple) else str(v)
            for k, v in dataclasses.asdict(self).items()
        }


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(
        p
        for p in root.rglob(pattern)
        if p.is_file() and not any(q.startswith(".") for q in p.relative_to(root).parts)
    )


def _fmt(value: Scalar, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _table(rows: Sequence[dict[str, Scalar]], columns: Sequence[str] | None = None) -> list[str]:
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    shown = rows if len(rows) <= _MAX_ROWS else [*rows[: _MAX_ROWS // 2], None, *rows[-_MAX_ROWS // 2 :]]
    for row in shown:
        if row is None:
            lines.append("| " + " | ".join(["..."] * len(columns)) + " |")
            continue
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |")
    return lines


def _numeric(rows: Sequence[dict[str, Scalar]], column: str) -> bool:
    values = [r.get(column) for r in rows]
    return any(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
    )


def _is_accuracy(column: str) -> bool:
    return any(a in column for a in _ACCURACY)


def epoch_panels(rows: Sequence[dict[str, Scalar]]) -> list[Panel]:
    """Curves of a per-epoch record: losses, accuracies (percent), and any other metric, against epoch."""
    metrics = [
        c
        for c in dict.fromkeys(k for r in rows for k in r)
        if c not in _BOOKKEEPING and not c.endswith("_images") and _numeric(rows, c)
    ]
    groups: dict[str, list[str]] = {"loss": [], "accuracy": [], "other": []}
    for c in metrics:
        key = "loss" if ("loss" in c or c in ("kd", "ce")) else "accuracy" if _is_accuracy(c) else "other"
        groups[key].append(c)
    titles = {
        "loss": ("loss", "loss"),
        "accuracy": ("accuracy", "accuracy (%)"),
        "other": ("other metrics", "value"),
    }
    panels = []
    for key, columns in groups.items():
        series = []
        for c in columns:
            points = [(r["epoch"], r[c]) for r in rows if r.get(c) is not None and r.get("epoch") is not None]
            if not points:
                continue
            scale = 100.0 if key == "accuracy" else 1.0
            series.append(
                Series(c, tuple(float(x) for x, _ in points), tuple(scale * float(y) for _, y in points))
            )  # type: ignore[arg-type]
        if series:
            epochs = sorted({x for s in series for x in s.x})
            ticks = tuple(epochs) if len(epochs) <= 12 else None
            title, ylabel = titles[key]
            panels.append(
                Panel(
                    title,
                    "epoch",
                    ylabel,
                    tuple(series),
                    xticks=ticks,
                    y_from_zero=key == "accuracy",
                    y_max=100.0 if key == "accuracy" else None,
                )
            )
    return panels


def quality_panels(records: dict[str, list[dict[str, Scalar]]]) -> list[Panel]:
    """Accuracy (percent) against JPEG quality, one line per record and metric (top-1 first)."""
    panels = []
    columns = [
        c for c in dict.fromkeys(k for rows in records.values() for r in rows for k in r) if _is_accuracy(c)
    ]
    others = [
        c
        for c in dict.fromkeys(k for rows in records.values() for r in rows for k in r)
        if c not in _BOOKKEEPING
        and not _is_accuracy(c)
        and all(_numeric(rows, c) for rows in records.values() if rows and c in rows[0])
    ]
    for group, scale, ylabel in ((columns, 100.0, "accuracy (%)"), (others, 1.0, "value")):
        for column in group:
            series = []
            for name, rows in records.items():
                points = [
                    (r["quality"], r.get(column))
                    for r in rows
                    if isinstance(r.get("quality"), int) and r.get(column) is not None
                ]
                if points:
                    series.append(
                        Series(
                            name,
                            tuple(float(q) for q, _ in points),
                            tuple(scale * float(v) for _, v in points),
                        )
                    )  # type: ignore[arg-type]
            if series:
                qualities = tuple(sorted({x for s in series for x in s.x}))
                panels.append(
                    Panel(
                        column,
                        "JPEG quality",
                        "loss" if "loss" in column else ylabel,
                        tuple(series),
                        xticks=qualities,
                        y_from_zero=scale == 1.0,  # accuracies zoom in: INT8 vs FP32 differ by points
                        y_max=100.0 if scale == 100.0 else None,
                    )
                )
    return panels[:3]


def _lint_lines(root: Path, graphs: list[Path]) -> list[str]:
    try:
        from .onnx.lint import lint_qdq
    except ImportError:  # pragma: no cover - the module itself imports nothing optional
        return ["(the linter is unavailable)"]
    lines = ["| graph | Q / DQ nodes | errors | warnings | rules broken |", "|---|---|---|---|---|"]
    for path in graphs:
        try:
            rep = lint_qdq(path)
        except BackendUnavailable as exc:
            return [f"Not checked: {exc}"]
        except DctqError as exc:
            lines.append(f"| `{path.relative_to(root)}` | | | | unreadable: {exc} |")
            continue
        broken = ", ".join(sorted({v.rule for v in rep.violations})) or "none"
        lines.append(
            f"| `{path.relative_to(root)}` | {rep.quantize_nodes} / {rep.dequantize_nodes} | {len(rep.errors)} | "
            f"{len(rep.warnings)} | {broken} |"
        )
    return lines


def _load_profiles(path: Path) -> list[ProfileReport]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the profile {path}: {exc}") from None
    items = data if isinstance(data, list) else [data]
    return [ProfileReport.from_dict(d, str(path)) for d in items]


def _served_graph(path: Path) -> bool:
    """A model.onnx inside a Triton model repository (rewritten for ONNX Runtime, not meant for TensorRT)."""
    return (path.parent.parent / "config.pbtxt").is_file()


def render_report(
    run_dir: Path | str, out: Path | str | None = None, *, plot_format: str = "png", engine: str = "auto"
) -> RunReport:
    """Write the Markdown report of `run_dir` to `out` (default RUN_DIR/report.md) with its plots in the
    folder beside it named after it (report.md -> report/), as `plot_format` ("png", "svg" or "pdf").

    Raises DataError (not a folder, nothing to report, an unreadable record) and DctqError (a bad format).
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the --out folder of a run (or of `dctq demo`)")
    if f".{plot_format}" not in PLOT_FORMATS:
        raise DctqError(
            f"--plot-format must be one of {', '.join(s[1:] for s in PLOT_FORMATS)}, got {plot_format!r}"
        )
    page = Path(out) if out is not None else root / "report.md"
    plot_dir = page.with_suffix("")
    records = _files(root, f"*{METRICS_CSV}")
    graphs = [p for p in _files(root, "*.onnx") if not _served_graph(p)]
    profiles = _files(root, f"*{PROFILE_SUFFIX}")
    if not (records or graphs or profiles):
        raise DataError(f"{root} holds no metrics.csv, .onnx or {PROFILE_SUFFIX} file to report on")
    plots: list[Path] = []

    def figure(name: str, panels: list[Panel], title: str) -> str | None:
        if not panels:
            return None
        path = save_figure(panels, plot_dir / f"{name}.{plot_format}", title=title, engine=engine)
        plots.append(path)
        return f"![{title}]({path.relative_to(page.parent).as_posix()})"

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Run report: {root.name}", "", f"`{root}`, rendered {stamp} by dctq {__version__}.", ""]
    per_quality: dict[str, list[dict[str, Scalar]]] = {}
    for path in records:
        rows = read_metrics(path)
        rel = path.relative_to(root).as_posix()
        columns = set(rows[0]) if rows else set()
        if "quality" in columns:
            per_quality[rel.removesuffix(f".{METRICS_CSV}").removesuffix(METRICS_CSV).rstrip("/") or rel] = (
                rows
            )
            continue
        slug = rel.replace("/", "-").removesuffix(".csv")
        if "epoch" in columns:
            kind = "Training" if path.name == METRICS_CSV else "Fine-tuning"
            lines += [f"## {kind}: `{rel}`", ""]
            image = figure(slug, epoch_panels(rows), f"{kind} ({rel})")
            lines += [image, ""] if image else []
            best = [r for r in rows if r.get("is_best")]
            if best:
                lines += [f"Best epoch: {best[-1].get('epoch')} of {len(rows)}.", ""]
        else:
            kind = "Quantizers" if {"amax_min", "amax_max"} <= columns else "Record"
            lines += [f"## {kind}: `{rel}`", ""]
        lines += [*_table(rows), ""]
    if per_quality:
        lines += ["## Accuracy per JPEG quality", ""]
        image = figure("quality", quality_panels(per_quality), "accuracy per JPEG quality")
        lines += [image, ""] if image else []
        qualities = sorted(
            {r["quality"] for rows in per_quality.values() for r in rows if isinstance(r.get("quality"), int)}
        )
        key = "top1" if any("top1" in r for rows in per_quality.values() for r in rows) else None
        if key and qualities:
            head = ["record", *(f"q{q}" for q in qualities), "mean"]
            summary = []
            for name, rows in per_quality.items():
                by_q = {r["quality"]: r.get(key) for r in rows}
                values = [by_q.get(q) for q in qualities]
                known = [float(v) for v in values if isinstance(v, int | float)]
                row: dict[str, Scalar] = {"record": f"`{name}`"}
                row.update(
                    {
                        f"q{q}": (f"{100 * float(v):.1f}%" if isinstance(v, int | float) else None)
                        for q, v in zip(qualities, values, strict=True)
                    }
                )
                row["mean"] = f"{100 * sum(known) / len(known):.1f}%" if known else None
                summary.append(row)
            lines += [f"{key} per quality:", "", *_table(summary, head), ""]
    if graphs:
        lines += ["## TensorRT Q/DQ check", "", *_lint_lines(root, graphs), ""]
    if profiles:
        reports = [r for p in profiles for r in _load_profiles(p)]
        lines += ["## Latency profile", ""]
        path = plot_profiles(reports, plot_dir / f"profile.{plot_format}", engine=engine)
        plots.append(path)
        lines += [f"![latency profile]({path.relative_to(page.parent).as_posix()})", ""]
        for rep in reports:
            mode = "end to end" if rep.end_to_end else "model only"
            lines += [f"`{Path(rep.artifact).name}` on {rep.backend} ({rep.device}), {mode}:", ""]
            rows = [
                {
                    "batch": r.batch,
                    "p50 ms": r.p50_ms,
                    "p90 ms": r.p90_ms,
                    "p99 ms": r.p99_ms,
                    "images/s": r.throughput,
                    "peak MB": r.peak_mem_mb,
                }
                for r in rep.rows
            ]
            lines += [*_table(rows), ""]
    write_text_atomic(page, "\n".join(lines).rstrip() + "\n")
    logger.info("wrote %s with %d plots", page, len(plots))
    return RunReport(page, tuple(plots), tuple(records), tuple(graphs), tuple(profiles))
