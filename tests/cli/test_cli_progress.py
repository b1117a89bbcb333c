"""cli/progress.py: the bars and the per-command views, fed library events by hand (no terminal: the
Progress draws nothing, but its tasks and the lines the views print are there to check)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from dctq.calibration.qsam.episode import MetaStepLosses
from dctq.calibration.qsam.meta import MetaEpochEnd
from dctq.calibration.train.events import EpochEnd, EpochStart, StepEnd, ValMetrics
from dctq.calibration.workflow.quantize import CalibProgress
from dctq.calibration.zeroshot.config import SynthBatchEnd, SynthStep, ZeroShotEpochEnd, ZeroShotStep
from dctq.cli.progress import (
    Bar,
    MetaProgressView,
    NestedBars,
    QuantizeProgressView,
    SynthProgressView,
    TrainProgressView,
    make_progress,
)


def _progress(width: int = 200) -> tuple[Progress, io.StringIO]:
    text = io.StringIO()
    return Progress(console=Console(file=text, width=width), disable=True), text


def _bars(progress: Progress) -> list[tuple[str, float | None, float]]:
    return [(t.description, t.total, t.completed) for t in progress.tasks]


def test_make_progress_draws_nothing_without_a_terminal():
    assert make_progress().disable and make_progress(False).disable


def test_bar_follow_restarts_only_for_a_new_key():
    progress, _ = _progress()
    bar = Bar(progress)
    bar.follow(0, "batch 1", 10)
    bar.update(4, stats="loss 1")
    bar.follow(0, "batch 1", 10)
    assert _bars(progress) == [("batch 1", 10, 4)]
    bar.follow(1, "batch 2", 10)
    assert _bars(progress) == [("batch 2", 10, 0)]


def test_nested_bars_keep_the_outer_bar_above_and_notes_on_one_line():
    progress, text = _progress(width=40)
    bars = NestedBars(progress, "epochs")
    bars.step(1, "epoch 1", 5, 10, "loss 0.5")
    assert _bars(progress) == [("epochs", None, 0), ("epoch 1", 10, 5)]
    line = "epoch 1/3  " + "x" * 60
    bars.finish(1, 3, line)
    bars.step(2, "epoch 2", 1, 10, "loss 0.4")
    assert _bars(progress) == [("epochs", 3, 1), ("epoch 2", 10, 1)]
    # Not wrapped at the console's 40 columns: a log keeps each line whole.
    assert text.getvalue() == line + "\n"


def test_train_view():
    progress, text = _progress()
    view = TrainProgressView(progress)
    view(EpochStart(epoch=2, epochs=3, steps=8))  # a resumed run starts with 1 epoch done
    view(StepEnd(epoch=2, step=4, steps=8, loss=0.5, top1=0.25, images_per_second=1234.5, lr=0.1))
    assert _bars(progress) == [("epochs", 3, 1), ("epoch 2", 8, 4)]
    val = ValMetrics(loss=0.75, top1=0.5, top5=0.875, images=16)
    view(EpochEnd(2, 3, train_loss=0.5, train_top1=0.25, val=val, is_best=True, seconds=1.25, lr=0.1))
    view(EpochEnd(3, 3, train_loss=0.5, train_top1=0.25, val=None, is_best=False, seconds=1.0, lr=0.1))
    assert _bars(progress)[0] == ("epochs", 3, 3)
    assert text.getvalue().splitlines() == [
        "epoch 2/3  train loss 0.5000 acc 25.0%  val loss 0.7500 top-1 50.00% top-5 87.50%  1.2s  best",
        "epoch 3/3  train loss 0.5000 acc 25.0%  1.0s",
    ]


def test_meta_view_shows_every_epoch_from_the_start():
    progress, text = _progress()
    view = MetaProgressView(progress, epochs=4)
    assert _bars(progress) == [("meta epochs", 4, 0)]
    losses = MetaStepLosses(train=1.0, test=2.0, base=3.0, total=6.0)
    view(MetaEpochEnd(1, 4, losses, {90: 0.5, 10: 0.25}, mean_top1=0.375, is_best=True, seconds=2.0))
    assert _bars(progress) == [("meta epochs", 4, 1)]
    assert (
        text.getvalue() == "meta epoch 1/4  loss 6.0000  val q90 50.0% q10 25.0%  mean 37.50%  2.0s  best\n"
    )


def _synth_step(batch: int, iteration: int) -> SynthStep:
    return SynthStep(batch, iteration, 20, loss=12.5, bns=12.0, label=0.25, mdc=0.125, lr=0.5)


def test_synth_view():
    progress, text = _progress()
    view = SynthProgressView(progress)
    view(_synth_step(0, 10))
    assert _bars(progress) == [("batches", None, 0), ("batch 1", 20, 10)]
    view(SynthBatchEnd(batch=0, done=1, batches=3, loss=12.5, bns=12.0, seconds=3.0))
    view(_synth_step(1, 10))
    assert _bars(progress) == [("batches", 3, 1), ("batch 2", 20, 10)]
    assert text.getvalue() == "batch 1/3  loss 12.5  bns 12  3.0s\n"


def test_quantize_view_routes_calibration_synthesis_and_fine_tuning():
    progress, text = _progress()
    view = QuantizeProgressView(progress)
    view(CalibProgress(batch=2, batches=8))
    assert _bars(progress) == [("calibration", 8, 2)]

    progress, text = _progress()
    view = QuantizeProgressView(progress)
    view(_synth_step(0, 10))
    view(SynthBatchEnd(batch=0, done=1, batches=1, loss=12.5, bns=12.0, seconds=3.0))
    view(ZeroShotStep(epoch=1, step=5, steps=10, loss=0.5, kd=0.25, ce=0.125, agreement=0.75, lr=1e-4))
    assert _bars(progress) == [
        ("batches", 1, 1),
        ("batch 1", 20, 10),
        ("fine-tune epochs", None, 0),
        ("epoch 1", 10, 5),
    ]
    view(
        ZeroShotEpochEnd(epoch=1, epochs=2, loss=0.5, kd=0.25, ce=0.125, agreement=0.75, lr=1e-4, seconds=4.0)
    )
    assert _bars(progress)[2] == ("fine-tune epochs", 2, 1)
    assert text.getvalue().splitlines() == [
        "batch 1/1  loss 12.5  bns 12  3.0s",
        "fine-tune epoch 1/2  loss 0.5  kd 0.25  agreement with FP 75.0%  4.0s",
    ]
