"""qsam: QSAM (Ma et al., "Picking Up Quantization Steps for Compressed Image Classification").

The model side (QABN layers, the quant-table mixer, routing) lives in models/qabn.py and
models/qabn_routing.py; this package holds the training side:
- qac: the quantization-aware confidence weighting of the loss (qac_weighted_loss);
- data: every image at all base qualities for the base stage (MultiQualityDataset, collate_versions), the
  meta stage's episodes (QualityView, EpisodeSampler) and the base run's data split (meta_train_data);
- meta: the meta stage (meta_step, MetaConfig, train_meta). The base stage is calibration/train with
  TrainConfig(qabn=True).
"""

from .data import EpisodeSampler, MultiQualityDataset, QualityView, collate_versions, meta_train_data
from .meta import MetaConfig, MetaEpochEnd, MetaResult, MetaStepLosses, meta_step, train_meta
from .qac import qac_weighted_loss

__all__ = [
    "EpisodeSampler",
    "MetaConfig",
    "MetaEpochEnd",
    "MetaResult",
    "MetaStepLosses",
    "MultiQualityDataset",
    "QualityView",
    "collate_versions",
    "meta_step",
    "meta_train_data",
    "qac_weighted_loss",
    "train_meta",
]
