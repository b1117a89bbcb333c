"""common.config: every saved config round-trips strictly, and the forms older dctq wrote still load."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import pkgutil

import pytest
import torch
from torch import nn

import dctq
from dctq.calibration.qat.config import QatConfig
from dctq.calibration.qsam.meta import MetaConfig
from dctq.calibration.quant.recipe import PRESETS, LayerRule, QuantRecipe
from dctq.calibration.train.config import TrainConfig
from dctq.calibration.workflow.data import calibration_loader, check_same_options
from dctq.calibration.zeroshot.config import SynthConfig, ZeroShotConfig
from dctq.calibration.zeroshot.data import SyntheticData, load_resumable, save_synthetic
from dctq.common.config import RESERVED, Config
from dctq.common.errors import ConfigError, DataError, QuantizationConfigError, QuantizationError
from dctq.jpeg.input_policy import InputPolicy
from dctq.models.checkpoint import LoadedCheckpoint

CASES = {
    TrainConfig: [
        TrainConfig("resnet20"),
        TrainConfig(
            "dct_cifar_upsampling",
            arch_kwargs={"widths": [8, 16], "depths": [1, 1]},
            epochs=5,
            schedule="multistep",
            milestones=[2, 4],
            train_qualities=[90, 30],
            eval_quality=50,
            qac=True,
            qac_normalize=True,
            augment="crop",
            max_steps_per_epoch=3,
            device="cpu",
        ),
        TrainConfig.for_arch(
            "edsr_cpu_x2", "sr", patch_size=32, samples_per_epoch=64, skip_small_images=True
        ),
    ],
    QatConfig: [
        QatConfig(),
        QatConfig(
            method="odm", epochs=2, variance_weight=0.1, cooperative=True, offsets="both", odm_version=1
        ),
        QatConfig(
            method="odm", mismatch_weight=1.0, weight_clip_correction=True, odm_version=2, gradient="lsq"
        ),
    ],
    MetaConfig: [
        MetaConfig(),
        MetaConfig(
            epochs=3, steps_per_epoch=2, base_qualities=[90, 10], eval_qualities=[50], qac=False, device="cpu"
        ),
    ],
    QuantRecipe: [
        QuantRecipe(),
        QuantRecipe(
            weight_bits=4,
            act_bits=4,
            calibrator="percentile",
            calibrator_args={"percentile": 99.9},
            rules=[LayerRule("fc", "skip"), LayerRule("stages.*")],
            fold_bn=False,
            act_unsigned=True,
            add_inputs="both",
        ),
        QuantRecipe(act_bits=3, act_asymmetric=True, offsets=[("body.0.conv1", "both")]),
    ],
    SynthConfig: [
        SynthConfig(),
        SynthConfig(
            num=8,
            batch_size=4,
            method="bnstats",
            sil=True,
            crop_scale=(0.3, 0.9),
            qualities=(60, 70),
            dct_space="pixels",
            device="cpu",
        ),
    ],
    InputPolicy: [
        InputPolicy(),
        InputPolicy(
            "rgb",
            224,
            resize=256,
            dct_resize="pixels",
            tolerance=0.1,
            mean=(0.5, 0.4, 0.3),
            std=(0.2, 0.2, 0.2),
        ),
    ],
    ZeroShotConfig: [
        ZeroShotConfig(),
        ZeroShotConfig(
            epochs=2, milestones=[1], calib_images=16, crop_ratio=(0.5, 2.0), nesterov=False, augment=False
        ),
    ],
}
INSTANCES = [
    pytest.param(c, id=f"{type(c).__name__}-{i}") for cases in CASES.values() for i, c in enumerate(cases)
]
CLASSES = [pytest.param(cls, id=cls.__name__) for cls in CASES]


def _all_config_classes() -> set[type]:
    for info in pkgutil.walk_packages(dctq.__path__, "dctq."):
        if not info.name.startswith(("dctq.tests", "dctq.bench", "dctq.dev", "dctq.setup")):
            importlib.import_module(info.name)
    found, todo = set(), [Config]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if dataclasses.is_dataclass(sub):
                found.add(sub)
    return found


def test_every_config_in_dctq_has_round_trip_cases():
    assert _all_config_classes() == set(CASES)
    for cls in CASES:
        assert not {f.name for f in dataclasses.fields(cls)} & set(RESERVED), cls
        assert CASES[cls][0] != CASES[cls][1]


@pytest.mark.parametrize("config", INSTANCES)
def test_round_trip_through_json_and_torch(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert data["type"] == type(config).__name__ and data["version"] == type(config).VERSION
    again = type(config).from_dict(data)
    assert again == config and type(again) is type(config)
    buffer = io.BytesIO()
    torch.save({"config": config.to_dict()}, buffer)
    buffer.seek(0)
    assert type(config).from_dict(torch.load(buffer, weights_only=True)["config"]) == config


@pytest.mark.parametrize("cls", CLASSES)
def test_from_dict_is_strict(cls):
    saved = cls(**({"arch": "resnet20"} if cls is TrainConfig else {})).to_dict()
    fields = saved.get("fields", saved)

    def with_field(name, value):
        changed = dict(saved)
        if "fields" in saved:
            changed["fields"] = {**fields, name: value}
        else:
            changed[name] = value
        return changed

    with pytest.raises(ConfigError, match=r"has no field 'colour'.*upgrade dctq"):
        cls.from_dict(with_field("colour", "red"))
    newer = max(cls.READS) + 1
    with pytest.raises(ConfigError, match=rf"version {newer} is not supported.*newer dctq.*upgrade dctq"):
        cls.from_dict({**saved, "version": newer})
    with pytest.raises(ConfigError, match=r"version '1' is not supported"):
        cls.from_dict({**saved, "version": "1"})
    with pytest.raises(ConfigError, match=rf"not a {cls.__name__}: type is 'OtherConfig'"):
        cls.from_dict({**saved, "type": "OtherConfig"})
    with pytest.raises(ConfigError, match="must be a mapping"):
        cls.from_dict([saved])


def test_from_dict_names_missing_fields_and_bad_nested_objects():
    with pytest.raises(ConfigError, match=r"malformed TrainConfig.*arch"):
        TrainConfig.from_dict({"type": "TrainConfig", "version": 1, "fields": {"epochs": 3}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrainConfig.from_dict({"type": "TrainConfig", "version": 1, "fields": [1]})
    recipe = QuantRecipe().to_dict()
    with pytest.raises(
        QuantizationConfigError, match=r"malformed QuantRecipe.rules\[0\]: expected an object"
    ):
        QuantRecipe.from_dict({**recipe, "rules": ["fc"]})
    with pytest.raises(QuantizationConfigError, match=r"rules\[1\]: LayerRule has no field 'when'"):
        QuantRecipe.from_dict({**recipe, "rules": [{"pattern": "a"}, {"pattern": "fc", "when": "now"}]})


def test_quantization_configs_raise_errors_of_both_families():
    assert issubclass(QuantizationConfigError, ConfigError) and issubclass(
        QuantizationConfigError, QuantizationError
    )
    for make in (
        lambda: QuantRecipe(weight_bits=9),
        lambda: SynthConfig(num=0),
        lambda: ZeroShotConfig(lr=0),
    ):
        with pytest.raises(QuantizationConfigError):
            make()


def test_meta_config_refuses_an_unknown_device():
    """resolve_device would have run "cuda:1" on the CPU without a word."""
    with pytest.raises(ConfigError, match="--device"):
        MetaConfig(device="cuda:1")


# ------------------------------------------------------------------------------------ old forms
# Written literally as the dctq of before common.config saved them (checkpoints, synthetic files).

OLD_TRAIN = {
    "type": "TrainConfig",
    "version": 1,
    "fields": {
        "arch": "resnet20", "arch_kwargs": {}, "epochs": 30, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
        "weight_decay": 0.0005, "nesterov": True, "schedule": "multistep", "milestones": [10, 20], "gamma": 0.2,
        "warmup_epochs": 0.0, "label_smoothing": 0.0, "seed": 0, "amp": False, "train_qualities": [90, 10],
        "eval_quality": None, "qac": False, "qac_normalize": False, "qabn": False, "versions": False,
        "augment": "default", "num_workers": 0, "val_fraction": 0.25, "max_steps_per_epoch": None,
        "log_every": 10, "stem_stats_batches": 16, "device": "auto",
    },
}  # fmt: skip
OLD_META = {
    "type": "MetaConfig",
    "version": 1,
    "fields": {
        "epochs": 150, "steps_per_epoch": None, "batch_size": 128, "lr": 0.004, "weight_decay": 0.0005,
        "constant_epochs": 20, "final_factor": 0.001, "inner_lr": 0.001, "test_weight": 1.0, "base_weight": 1.0,
        "qac": True, "base_qualities": [90, 60, 30, 10], "held_out_qualities": [80, 70, 50, 40, 20],
        "eval_qualities": [90, 70, 50, 30, 10], "seed": 0, "num_workers": 0, "device": "auto",
    },
}  # fmt: skip
OLD_RECIPE = {
    "type": "QuantRecipe", "weight_bits": 8, "act_bits": 8, "calibrator": "percentile",
    "calibrator_args": {"percentile": 99.99}, "rules": [{"pattern": "qabn_mixer.*", "action": "skip"}],
    "fold_bn": True, "act_narrow_range": False, "act_unsigned": False, "add_inputs": "residual", "version": 1,
}  # fmt: skip
OLD_SYNTH = {
    "num": 8, "batch_size": 4, "iterations": 3, "method": "intraq", "lor": True, "sil": True, "mdc": True,
    "lr": 0.5, "plateau_patience": 50, "plateau_factor": 0.1, "min_lr": 0.0001, "lor_prob": 0.5,
    "crop_scale": [0.5, 1.0], "crop_ratio": [0.75, 1.3333333333333333], "sil_eps": 0.95, "mdc_lo": 0.05,
    "mdc_up": 0.8, "centre_every": 1, "qualities": [50, 95], "dct_space": "stem", "seed": 0, "device": "auto",
    "log_every": 10, "version": 1,
}  # fmt: skip
OLD_ZERO_SHOT = {
    "epochs": 1, "steps_per_epoch": 200, "batch_size": 256, "lr": 0.0001, "tune_unfolded": True,
    "milestones": [1], "gamma": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0001,
    "temperature": 20.0, "kd_alpha": 20.0, "ce_weight": 1.0, "augment": True, "crop_scale": [0.5, 1.0],
    "crop_ratio": [0.75, 1.3333333333333333], "flip_p": 0.5, "dct_pad_mcus": 1, "calib_images": None,
    "track_weight_ranges": True, "seed": 0, "device": "auto", "log_every": 20, "version": 1,
}  # fmt: skip


def test_forms_written_before_the_config_base_still_load():
    train = TrainConfig.from_dict(OLD_TRAIN)
    assert train.milestones == (10, 20) and train.train_qualities == (90, 10) and train.val_fraction == 0.25
    # TrainConfig's layout did not change; fields added later (SR's and the autoencoders' optimizer, SR's
    # patches, the gradient clip) read as their defaults from older forms and are written only when set
    assert train.to_dict() == OLD_TRAIN
    # version 1 had no qac_scale and trained with the per-sample scale (issue 20); the layout is unchanged
    assert MetaConfig.from_dict(OLD_META) == MetaConfig(qac_scale="sample")
    assert MetaConfig(qac_scale="sample").to_dict() == {
        **OLD_META,
        "version": 2,
        "fields": {**OLD_META["fields"], "qac_scale": "sample"},
    }
    recipe = QuantRecipe.from_dict(OLD_RECIPE)
    assert recipe == PRESETS["int8-percentile"]
    assert recipe.to_dict() == OLD_RECIPE  # the recipe in checkpoints and sidecars is written as before
    synth = SynthConfig.from_dict(OLD_SYNTH)
    assert synth == SynthConfig(num=8, batch_size=4, iterations=3)
    assert synth.to_dict() == {"type": "SynthConfig", **OLD_SYNTH}  # the same keys, now with its type
    zero_shot = ZeroShotConfig.from_dict(OLD_ZERO_SHOT)
    assert zero_shot == ZeroShotConfig(epochs=1, milestones=(1,))
    assert zero_shot.to_dict() == {"type": "ZeroShotConfig", **OLD_ZERO_SHOT}
    with pytest.raises(ConfigError, match="not a QuantRecipe: type is None"):  # the recipe always had one
        QuantRecipe.from_dict({k: v for k, v in OLD_RECIPE.items() if k != "type"})


def _synthetic_file(path, config: dict) -> SyntheticData:
    n = 4
    data = SyntheticData(
        kind="rgb",
        tensors={
            "x": torch.zeros(n, 3, 8, 8),
            "qt": torch.ones(n, 3, 64),
            "quality": torch.full((n,), 75),
            "label": torch.zeros(n, dtype=torch.int64),
        },
        config=config,
        class_names=["a", "b"],
        done_batches=1,
        num_batches=2,
        teacher={"arch": "resnet20", "num_classes": 2, "fingerprint": "f00"},
    )
    save_synthetic(path, data)
    return data


@pytest.mark.parametrize("form", ["old", "new"])
def test_synthetic_files_old_and_new_compare_field_by_field(tmp_path, form):
    config = SynthConfig(num=8, batch_size=4, iterations=3)
    path = tmp_path / "s.pt"
    _synthetic_file(path, OLD_SYNTH if form == "old" else config.to_dict())
    check_same_options(path, dataclasses.replace(config, device="cpu", log_every=1), "f00", 1)  # resumable
    resumed = load_resumable(path, True, config, "f00")
    assert resumed is not None and resumed.done_batches == 1
    with pytest.raises(DataError, match=r"other options \(iterations: file 3 vs now 4\)"):
        check_same_options(path, dataclasses.replace(config, iterations=4), "f00", 1)
    with pytest.raises(DataError, match=r"other options \(seed: file 0 vs now 1\)"):
        load_resumable(path, True, dataclasses.replace(config, seed=1), "f00")


def test_calibration_split_reads_the_saved_train_config(tmp_path):
    def loaded(extra):
        return LoadedCheckpoint(nn.Identity(), "resnet20", {}, ["a", "b"], extra)

    with pytest.raises(ConfigError, match="TrainConfig version 7 is not supported"):
        calibration_loader(loaded({"train_config": {**OLD_TRAIN, "version": 7}}), tmp_path)
    with pytest.raises(ConfigError, match="has no field 'val_frac'"):
        calibration_loader(loaded({"train_config": {**OLD_TRAIN, "fields": {"val_frac": 0.5}}}), tmp_path)


def test_changes_name_what_a_resumed_run_may_not_change():
    base = TrainConfig("resnet20", epochs=3)
    assert base.changes(base.replace(epochs=9, num_workers=2, log_every=1, device="cpu")) == {}
    assert base.changes(base.replace(lr=0.05, seed=1)) == {"lr": (0.1, 0.05), "seed": (0, 1)}
    synth = SynthConfig(num=8, batch_size=4)
    assert synth.changes(dataclasses.replace(synth, device="cpu", log_every=1)) == {}
    assert synth.changes(dataclasses.replace(synth, crop_scale=(0.25, 1.0))) == {
        "crop_scale": ([0.5, 1.0], [0.25, 1.0])
    }
    with pytest.raises(TypeError, match="cannot compare a TrainConfig with a SynthConfig"):
        base.changes(synth)
