"""One TrainTask per registered task: the registry and the training loop agree."""

from __future__ import annotations

from dctq.calibration.train.config import TASK_DEFAULTS, config_for
from dctq.calibration.train.events import ValMetrics
from dctq.calibration.train.tasks import TASKS_BY_NAME, AutoencodeTask, SrTask, task_for
from dctq.models.registry import TASK_ATTRIBUTES, list_models


def test_every_registered_task_has_a_train_task_and_defaults():
    assert set(TASKS_BY_NAME) == set(TASK_ATTRIBUTES) == set(TASK_DEFAULTS)
    for task in TASK_ATTRIBUTES:
        assert list_models(task=task), task  # each task has at least one model


def test_defaults_combine_task_then_model_then_options():
    sr = config_for("edsr_cpu_x4", epochs=1)
    assert (sr.optimizer, sr.lr, sr.batch_size, sr.epochs) == ("adam", 4e-4, 16, 1)  # TASK_DEFAULTS["sr"]
    ae = config_for("dq_ae_cpu", lr=1e-3)
    assert (ae.optimizer, ae.schedule, ae.clip_grad_norm, ae.lr) == ("adam", "constant", 2.0, 1e-3)
    assert isinstance(task_for(sr), SrTask) and isinstance(task_for(ae), AutoencodeTask)


def test_sr_best_epoch_is_the_highest_psnr():
    task = task_for(config_for("edsr_cpu_x4"))
    low, high = (
        ValMetrics(0.1, None, None, 3, psnr=20.0, ssim=0.5),
        ValMetrics(0.2, None, None, 3, psnr=25.0, ssim=0.6),
    )
    assert task.score(high) > task.score(low)
