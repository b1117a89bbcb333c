"""train: the training loop of every registered model: classifiers (FP32, and QSAM's base stage with
TrainConfig(qabn=True)), super-resolution models (models.sr) and autoencoders (models.dq), one loop
calling the TrainTask of the model's task.

- config: TrainConfig (every option, saved in the checkpoints), config_for / TrainConfig.for_arch (the one
  place defaults combine: TASK_DEFAULTS, then the model's train_defaults, under the options) and the
  readers of a run's saved config;
- tasks: what differs per task (ClassifyTask, SrTask, AutoencodeTask; task_for picks by the registry);
- sr: SR data, step and validation (SrTask's);
- data: the datasets of a run (build_train_data) from a JPEG folder or the CIFAR-10 archive;
- loop: train(config, train_set, val_set, out_dir), one process or several under torchrun;
- state: the run folder's files (last.pt, best.pt, last.state.pt) and resume;
- events: what a run reports while it goes and returns; schedule: the learning-rate schedule.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("TrainConfig", "config_for", "saved_train_config", "saved_val_fraction"),
        "dctq.calibration.train.config",
    ),
    **dict.fromkeys(
        ("AutoencodeTask", "ClassifyTask", "SrTask", "TASKS_BY_NAME", "TrainTask", "task_for"),
        "dctq.calibration.train.tasks",
    ),
    **dict.fromkeys(("TrainData", "build_train_data", "dataset_for_arch"), "dctq.calibration.train.data"),
    **dict.fromkeys(
        ("EpochEnd", "EpochStart", "StepEnd", "TrainEvent", "TrainResult", "ValMetrics"),
        "dctq.calibration.train.events",
    ),
    **dict.fromkeys(("make_optimizer", "train"), "dctq.calibration.train.loop"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
