"""train: the training loop of every classifier (FP32, and QSAM's base stage with TrainConfig(qabn=True)).

- config: TrainConfig (every option, saved in the checkpoints) and the readers of a run's saved config;
- data: the datasets of a run (build_train_data) from a JPEG folder or the CIFAR-10 archive;
- loop: train(config, train_set, val_set, out_dir), one process or several under torchrun;
- state: the run folder's files (last.pt, best.pt, last.state.pt) and resume;
- events: what a run reports while it goes and returns; schedule: the learning-rate schedule.
"""

from .config import TrainConfig, saved_train_config, saved_val_fraction
from .data import TrainData, build_train_data, dataset_for_arch
from .events import EpochEnd, EpochStart, StepEnd, TrainEvent, TrainResult, ValMetrics
from .loop import train

__all__ = [
    "EpochEnd",
    "EpochStart",
    "StepEnd",
    "TrainConfig",
    "TrainData",
    "TrainEvent",
    "TrainResult",
    "ValMetrics",
    "build_train_data",
    "dataset_for_arch",
    "saved_train_config",
    "saved_val_fraction",
    "train",
]
