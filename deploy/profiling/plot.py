"""Plots of dctq's measurements: latency against batch size (p50 with the p90-p99 band) and throughput,
several artifacts overlaid (FP32 vs INT8, ONNX Runtime vs TensorRT), and the line charts of `dctq report`
(training curves, accuracy per JPEG quality).

A figure is a row of `Panel`s, each holding `Series` (a line with markers, optionally a shaded band).
`save_figure` draws it with matplotlib when it is installed (`pip install 'dctq[plot]'`) and otherwise
with a small renderer of its own over Pillow (PNG, PDF) or plain SVG text; both give real axes: ticks at
round values with units, a log2 batch axis ticked at the measured batch sizes, a legend. The file format
is the path's extension: .png, .svg or .pdf (an SVG is SVG text, never PNG bytes). Files are written
atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from ...common.errors import DctqError
from ...common.files import atomic_path
from .latency import ProfileReport

logger = logging.getLogger(__name__)

PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
"""File extension -> the format written."""
ENGINES = ("auto", "matplotlib", "pillow")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclasses.dataclass(frozen=True)
class Series:
    """One line: points (x, y); `low`/`high` (same length) shade a band under it, named `band_label`."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    band_label: str | None = None


@dataclasses.dataclass(frozen=True)
class Panel:
    """One chart. log2_x: a base-2 x axis (batch sizes); xticks: where to tick x (default: round
    values); y_from_zero: the y axis starts at 0; y_max: the axis never goes above it (100 for percent)."""

    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    log2_x: bool = False
    xticks: tuple[float, ...] | None = None
    y_from_zero: bool = True
    y_max: float | None = None


def plot_format(path: Path | str) -> str:
    """The format a plot path asks for, by extension. Raises DctqError for any other extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise DctqError(f"--plot {path}: the format follows the extension, one of {', '.join(PLOT_FORMATS)}")
    return PLOT_FORMATS[suffix]


def plot_engine(engine: str = "auto") -> str:
    """ "matplotlib" when asked or (for "auto") installed, else "pillow". Raises DctqError for an unknown
    engine, or BackendUnavailable-like DctqError when matplotlib is asked for and missing."""
    if engine not in ENGINES:
        raise DctqError(f"plot engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "pillow":
        return engine
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if engine == "matplotlib":
            raise DctqError("matplotlib is not installed: pip install 'dctq[plot]'") from None
        return "pillow"
    return "matplotlib"


def save_figure(panels: Sequence[Panel], path: Path | str, *, title: str = "", engine: str = "auto") -> Path:
    """Draw `panels` side by side under `title` into `path` (.png, .svg or .pdf), atomically."""
    if not panels:
        raise DctqError("nothing to plot")
    fmt = plot_format(path)
    chosen = plot_engine(engine)
    with atomic_path(path) as tmp:
        if chosen == "matplotlib":
            _draw_matplotlib(panels, title, tmp, fmt)
        else:
            from .plot_fallback import draw_fallback

            draw_fallback(panels, title, tmp, fmt)
    logger.info("wrote %s (%s, %s)", path, fmt, chosen)
    return Path(path)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


def tick_label(value: float) -> str:
    """A tick's text: no trailing zeros, thousands as 1.5k."""
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:.6g}"


def _draw_matplotlib(panels: Sequence[Panel], title: str, tmp: Path, fmt: str) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig = Figure(figsize=(5.0 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        for i, s in enumerate(panel.series):
            color = COLORS[i % len(COLORS)]
            if s.low is not None and s.high is not None:
                ax.fill_between(s.x, s.low, s.high, color=color, alpha=0.2, linewidth=0, label=s.band_label)
            ax.plot(s.x, s.y, marker="o", markersize=4, color=color, label=s.label)
        if panel.log2_x:
            ax.set_xscale("log", base=2)
        if panel.xticks:
            ax.xaxis.set_major_locator(FixedLocator(list(panel.xticks)))
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: tick_label(v)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: tick_label(v)))
        if panel.y_from_zero:
            ax.set_ylim(bottom=0)
        low, high = ax.get_ylim()
        if panel.y_max is not None and high > panel.y_max:
            ax.set_ylim(top=panel.y_max + 0.03 * (panel.y_max - min(low, panel.y_max - 1)))
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        if any(s.label for s in panel.series):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None  # reproducible files
    fig.savefig(tmp, format=fmt, dpi=110, metadata=metadata)


def profile_panels(reports: Sequence[ProfileReport], labels: Sequence[str] | None = None) -> list[Panel]:
    """Latency (p50 line, p90-p99 band) and throughput against batch size, one series per report."""
    if labels is None:
        labels = [_profile_label(r, reports) for r in reports]
    batches = sorted({r.batch for rep in reports for r in rep.rows})
    latency, throughput = [], []
    for rep, label in zip(reports, labels, strict=True):
        x = tuple(float(r.batch) for r in rep.rows)
        latency.append(
            Series(
                f"{label} p50",
                x,
                tuple(r.p50_ms for r in rep.rows),
                low=tuple(r.p90_ms for r in rep.rows),
                high=tuple(r.p99_ms for r in rep.rows),
                band_label=f"{label} p90-p99",
            )
        )
        throughput.append(Series(label, x, tuple(r.throughput for r in rep.rows)))
    log2 = len(batches) > 1 and min(batches) >= 1
    ticks = tuple(float(b) for b in batches)
    return [
        Panel("latency per call", "batch size (images)", "latency (ms)", tuple(latency), log2, ticks),
        Panel("throughput", "batch size (images)", "throughput (images/s)", tuple(throughput), log2, ticks),
    ]


def _profile_label(report: ProfileReport, reports: Sequence[ProfileReport]) -> str:
    name = Path(report.artifact).name
    names = [Path(r.artifact).name for r in reports]
    backends = {r.backend for r in reports}
    if names.count(name) > 1 or len(backends) > 1:
        return f"{name} ({report.backend})"
    return name


def plot_profiles(
    reports: Sequence[ProfileReport],
    path: Path | str,
    *,
    labels: Sequence[str] | None = None,
    engine: str = "auto",
) -> Path:
    """One figure of several profiles overlaid (latency p50 with its p90-p99 band, throughput) at `path`
    (.png, .svg or .pdf). labels: one per report (default: file name, with the backend where needed)."""
    if not reports:
        raise DctqError("no profile to plot")
    if labels is not None and len(labels) != len(reports):
        raise DctqError(f"{len(labels)} labels for {len(reports)} profiles")
    first = reports[0]
    where = {f"{r.backend} ({r.device})" for r in reports}
    mode = ", end to end" if any(r.end_to_end for r in reports) else ""
    title = f"{Path(first.artifact).name if len(reports) == 1 else 'profiles'} on {', '.join(sorted(where))}{mode}"
    return save_figure(profile_panels(reports, labels), path, title=title, engine=engine)


def plot_profile(report: ProfileReport, path: Path | str, *, engine: str = "auto") -> Path:
    """`plot_profiles` of one report."""
    return plot_profiles([report], path, engine=engine)
