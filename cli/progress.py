"""Progress on stderr: the bars (make_progress, Bar) and one view per long-running command, a callable
that turns the library's progress events into bar updates and one line per finished epoch or batch.

The views hold the wording of those lines; the library only emits events (calibration.train.events,
calibration.zeroshot.config, calibration.qsam.meta, calibration.workflow.quantize).
"""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..calibration.qat.config import QatEpochEnd, QatStep
from ..calibration.qsam.meta import MetaEpochEnd
from ..calibration.train.events import EpochEnd, EpochStart, StepEnd, TrainEvent, ValMetrics
from ..calibration.workflow.control import LayerProgress
from ..calibration.workflow.quantize import CalibProgress, QuantizeEvent
from ..calibration.zeroshot.config import (
    SynthBatchEnd,
    SynthEvent,
    SynthStep,
    ZeroShotEpochEnd,
    ZeroShotStep,
)
from ..deploy.evaluate import EvalProgress
from .common import err_console


def make_progress(enabled: bool = True, *, detail: bool = True, transient: bool = False) -> Progress:
    """Bars on stderr: description, bar, done/total, then with `detail` elapsed, remaining and the task's
    `stats` field (so every task of a detailed Progress needs `stats=`). Without a terminal (logs, CI)
    or with `enabled` False it draws nothing; commands print their per-epoch / per-batch lines anyway.
    """
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]
    return Progress(
        *columns,
        console=err_console,
        transient=transient,
        disable=not (enabled and err_console.is_terminal),
    )


class Bar:
    """One bar of a detailed make_progress, added on first use. The inner bar of a two-level view (the
    steps of an epoch, the iterations of a batch) is restarted for each outer index, so finished bars
    do not pile up."""

    def __init__(self, progress: Progress, description: str = "") -> None:
        self.progress = progress
        self.description = description
        self.task: TaskID | None = None
        self.key: Any = None

    def ensure(self, total: float | None = None, completed: float = 0) -> TaskID:
        """Add the bar at `completed` of `total` (None: unknown) unless it is there already; its task id."""
        if self.task is None:
            self.task = self.progress.add_task(self.description, total=total, completed=completed, stats="")
        return self.task

    def update(self, completed: float, *, total: float | None = None, stats: str | None = None) -> None:
        """Move the bar to `completed` (of `total` when given) with `stats` (loss, rate...) beside it."""
        task = self.ensure(total, completed)
        fields = {} if stats is None else {"stats": stats}
        self.progress.update(task, completed=completed, total=total, **fields)

    def restart(self, description: str, total: float | None) -> None:
        """A fresh bar at 0 of `total` in place of this one."""
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.description = description
        self.ensure(total)

    def follow(self, key: Any, description: str, total: float | None) -> None:
        """restart() when `key` (the outer index: batch, epoch) differs from the last one followed."""
        if self.task is None or key != self.key:
            self.restart(description, total)
            self.key = key

    def note(self, line: str) -> None:
        """Print `line` (Rich markup) above the bars, unwrapped so that a log keeps it on one line."""
        self.progress.console.print(line, highlight=False, soft_wrap=True)


class NestedBars:
    """An outer bar (epochs, batches) above an inner one that restarts for each outer item (its steps or
    iterations), and one line per finished outer item: the shape of every long-running command."""

    def __init__(self, progress: Progress, outer: str) -> None:
        self.outer = Bar(progress, outer)
        self.inner = Bar(progress)

    def step(self, key: Any, description: str, completed: float, total: float | None, stats: str) -> None:
        """`completed` of `total` steps of outer item `key` (shown as `description`), `stats` beside them."""
        self.outer.ensure()  # the outer bar stays above the inner one
        self.inner.follow(key, description, total)
        self.inner.update(completed, stats=stats)

    def finish(self, done: float, total: float | None, line: str) -> None:
        """`done` of `total` outer items finished; `line` says how the last one went."""
        self.outer.update(done, total=total)
        self.outer.note(line)


class TrainProgressView:
    """`dctq train`: an epochs bar, a steps bar with loss/accuracy/img/s, one line per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.bars = NestedBars(progress, "epochs")

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, EpochStart):
            self.bars.outer.ensure(total=event.epochs, completed=event.epoch - 1)
            self.bars.inner.follow(event.epoch, f"epoch {event.epoch}", event.steps)
        elif isinstance(event, StepEnd):
            self.bars.step(
                event.epoch,
                f"epoch {event.epoch}",
                event.step,
                event.steps,
                stats=f"loss {event.loss:.4f}  {_train_stats(event.top1, event.metrics, event.psnr)}"
                f"{event.images_per_second:,.0f} img/s  lr {event.lr:.3g}",
            )
        elif isinstance(event, EpochEnd):
            line = f"epoch {event.epoch}/{event.epochs}  train loss {event.train_loss:.4f} "
            line += _train_stats(event.train_top1, event.train_metrics, event.train_psnr, width=0).rstrip()
            if event.val is not None:
                line += "  " + _val_stats(event.val)
            line += f"  {event.seconds:.1f}s" + ("  [green]best[/]" if event.is_best else "")
            self.bars.finish(event.epoch, None, line)


def _train_stats(
    top1: float | None, metrics: dict[str, float], psnr: float | None = None, width: int = 5
) -> str:
    """A training window's accuracy (classifiers, `width` characters), PSNR (SR models) or other running
    means, each followed by two spaces."""
    parts = [f"acc {100 * top1:{width}.1f}%"] if top1 is not None else []
    parts += [f"psnr {psnr:.2f} dB"] if psnr is not None else []
    parts += [f"{name} {value:.4f}" for name, value in metrics.items()]
    return "".join(p + "  " for p in parts)


def _val_stats(val: ValMetrics) -> str:
    """Validation: a classifier's loss and top-1/top-5; an SR model's PSNR/SSIM; an autoencoder's bits/dim, PSNR and code usage."""
    if val.top1 is not None and val.top5 is not None:
        return f"val loss {val.loss:.4f} top-1 {100 * val.top1:.2f}% top-5 {100 * val.top5:.2f}%"
    if val.psnr is not None:
        return f"val loss {val.loss:.4f} PSNR {val.psnr:.3f} dB SSIM {val.ssim:.4f}"
    m = val.metrics
    if "psnr_rgb" not in m:
        return f"val loss {val.loss:.4f}"
    line = (
        f"val bits/dim {m['bpd_uniform']:.4f} (prior {m['bpd_prior']:.4f})"
        if m.get("bpd_uniform") is not None
        else f"val mse {m['mse']:.2f}"
    )
    usage = "/".join(f"{100 * u:.0f}%" for u in m["usage"])
    return line + f" PSNR {m['psnr_rgb']:.2f} dB  codes used {usage}"


class MetaProgressView:
    """`dctq train-meta`: a bar of the `epochs` meta epochs, shown from the start; one line per epoch."""

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.epochs = Bar(progress, "meta epochs")
        self.epochs.ensure(total=epochs)

    def __call__(self, event: MetaEpochEnd) -> None:
        self.epochs.update(event.epoch)
        per_quality = " ".join(f"q{q} {100 * v:.1f}%" for q, v in event.val_top1.items())
        self.epochs.note(
            f"meta epoch {event.epoch}/{event.epochs}  loss {event.losses.total:.4f}  "
            f"val {per_quality}  mean {100 * event.mean_top1:.2f}%  {event.seconds:.1f}s"
            + ("  [green]best[/]" if event.is_best else "")
        )


class EvalProgressView:
    """`dctq evaluate`: one transient bar per JPEG quality, filled batch by batch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[int | None, TaskID] = {}

    def __call__(self, event: EvalProgress) -> None:
        if event.quality not in self.tasks:
            label = "stored" if event.quality is None else f"quality {event.quality}"
            self.tasks[event.quality] = self.progress.add_task(label, total=event.batches)
        self.progress.update(self.tasks[event.quality], completed=event.batch)


class SynthProgressView:
    """`dctq synthesize`: a batches bar and a steps bar (loss parts, learning rate); one line per batch."""

    def __init__(self, progress: Progress) -> None:
        self.bars = NestedBars(progress, "batches")

    def __call__(self, event: SynthEvent) -> None:
        if isinstance(event, SynthStep):
            self.bars.step(
                event.batch,
                f"batch {event.batch + 1}",
                event.iteration,
                event.iterations,
                stats=f"loss {event.loss:.4g}  bns {event.bns:.4g}  label {event.label:.3f}  "
                f"mdc {event.mdc:.3f}  lr {event.lr:.2g}",
            )
        elif isinstance(event, SynthBatchEnd):
            self.bars.finish(
                event.done,
                event.batches,
                f"batch {event.batch + 1}/{event.batches}  loss {event.loss:.4g}  bns {event.bns:.4g}  "
                f"{event.seconds:.1f}s",
            )


class QuantizeProgressView:
    """`dctq quantize`: bars for PTQ calibration batches, synthesis (as SynthProgressView) and the
    fine-tuning / QAT epochs and steps; one line per synthetic batch and per fine-tuning or QAT epoch."""

    def __init__(self, progress: Progress) -> None:
        self.synth = SynthProgressView(progress)
        self.calib = Bar(progress, "calibration")
        self.fine_tune = NestedBars(progress, "fine-tune epochs")
        self.layers = {stage: Bar(progress, f"{stage} (layers)") for stage in ("sensitivity", "fallback")}

    def __call__(self, event: QuantizeEvent) -> None:
        if isinstance(event, CalibProgress):
            self.calib.update(event.batch, total=event.batches)
        elif isinstance(event, LayerProgress):
            self.layers[event.stage].update(event.done, total=event.total, stats=event.layer)
        elif isinstance(event, ZeroShotStep):
            self.fine_tune.step(
                event.epoch,
                f"epoch {event.epoch}",
                event.step,
                event.steps,
                stats=f"loss {event.loss:.4g}  kd {event.kd:.4g}  ce {event.ce:.3f}  "
                f"agree {100 * event.agreement:.1f}%  lr {event.lr:.2g}",
            )
        elif isinstance(event, QatStep):
            conflict = f"  conflict {100 * event.conflict:.1f}%" if event.conflict is not None else ""
            self.fine_tune.step(
                event.epoch,
                f"QAT epoch {event.epoch}",
                event.step,
                event.steps,
                stats=f"loss {event.loss:.4g}  rec {event.rec:.4g}  reg {event.reg:.3g}  score {event.score:.4g}"
                f"{conflict}  lr {event.lr:.2g}",
            )
        elif isinstance(event, QatEpochEnd):
            conflict = (
                f"  gradient conflict {100 * event.conflict:.1f}%" if event.conflict is not None else ""
            )
            self.fine_tune.finish(
                event.epoch,
                event.epochs,
                f"QAT epoch {event.epoch}/{event.epochs}  loss {event.loss:.5g}  reconstruction {event.rec:.5g}  "
                f"regulariser {event.reg:.3g}  score {event.score:.4g}{conflict}  {event.seconds:.1f}s",
            )
        elif isinstance(event, ZeroShotEpochEnd):
            self.fine_tune.finish(
                event.epoch,
                event.epochs,
                f"fine-tune epoch {event.epoch}/{event.epochs}  loss {event.loss:.4g}  kd {event.kd:.4g}  "
                f"agreement with FP {100 * event.agreement:.1f}%  {event.seconds:.1f}s",
            )
        else:
            self.synth(event)
