"""models: DCT-input and RGB ResNets, the DCT input stem, a registry by name, checkpoints.

Importing the package registers every architecture (rgb, dct_variants, dct_cifar, sr.edsr, and dq.presets:
the autoencoders of Depthwise Quantization, whose layers live in models/dq/).
"""

from . import dct_cifar, dct_variants, rgb  # noqa: F401  (registration)
from .checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from .dct_resnet import DctFront, DctResNet
from .dq import presets  # noqa: F401  (registration)
from .flops import ModelSummary, count_flops, count_macs, count_params, example_inputs, summarize_models
from .registry import ModelInfo, create_model, get_model_info, list_models, register_model, task_of
from .resnet import ResNet, StageSpec
from .sr import edsr as _sr_edsr  # noqa: F401  (registration)
from .stem import DctStem, StemStats, compute_stem_stats

__all__ = [
    "DctFront",
    "DctResNet",
    "DctStem",
    "LoadedCheckpoint",
    "ModelInfo",
    "ModelSummary",
    "ResNet",
    "StageSpec",
    "StemStats",
    "compute_stem_stats",
    "count_flops",
    "count_macs",
    "count_params",
    "create_model",
    "example_inputs",
    "get_model_info",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
    "summarize_models",
    "task_of",
]
