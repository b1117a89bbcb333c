"""qsam: QSAM (Ma et al., "Picking Up Quantization Steps for Compressed Image Classification").

The model side (QABN layers, the quant-table mixer, routing) lives in models/qabn.py and
models/qabn_routing.py; this package holds the training side:
- qac: the quantization-aware confidence weighting of the loss (qac_weighted_loss; qac_batch_loss, the
  meta stage's scale in QSAM's code);
- data: every image at all base qualities for the base stage (MultiQualityDataset, collate_versions), the
  meta stage's episodes (QualityView, EpisodeSampler) and the base run's data split (meta_train_data);
- episode: one meta-stage episode (meta_step, a second-order MAML step on the mixer);
- meta: the meta stage (train_meta; resumable, its files written as training's); config: its options
  (MetaConfig). The base stage is calibration/train with TrainConfig(qabn=True).
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("EpisodeSampler", "MultiQualityDataset", "QualityView", "collate_versions", "meta_train_data"),
        "dctq.calibration.qsam.data",
    ),
    **dict.fromkeys(("MetaStepLosses", "meta_step"), "dctq.calibration.qsam.episode"),
    **dict.fromkeys(("MetaEpochEnd", "MetaResult", "train_meta"), "dctq.calibration.qsam.meta"),
    "MetaConfig": "dctq.calibration.qsam.config",
    **dict.fromkeys(("qac_batch_loss", "qac_weighted_loss"), "dctq.calibration.qsam.qac"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
