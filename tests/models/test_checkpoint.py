"""Checkpoints: save/load round trips, plain-data-only payloads, clear errors for bad files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dctq.calibration.zeroshot.data import load_synthetic
from dctq.common.errors import DataError, ModelError
from dctq.common.torch_files import load_torch_file
from dctq.models import compute_stem_stats, create_model, example_inputs, load_checkpoint, save_checkpoint


def _trained(name: str = "dct_cifar_late_concat", **kwargs) -> nn.Module:
    """A model whose weights, BN statistics and stem statistics all differ from a fresh build."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    inputs = example_inputs(model, 4, seed=1)
    if model.input_kind == "dct":
        model.stem.set_stats(compute_stem_stats([inputs]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss = model(*inputs).square().mean()
    loss.backward()
    opt.step()
    return model.eval()


def _outputs(model: nn.Module, seed: int = 2) -> torch.Tensor:
    with torch.no_grad():
        return model(*example_inputs(model, 3, seed=seed))


def test_round_trip_restores_function_and_metadata(tmp_path):
    model = _trained(num_classes=3)
    path = save_checkpoint(
        tmp_path / "ckpt" / "model.pt",
        model,
        arch="dct_cifar_late_concat",
        arch_kwargs={"num_classes": 3},
        class_names=["cat", "dog", "eel"],
        extra={"recipe": {"bits": 8, "rules": [["stem.*", "skip"]]}, "scale": torch.tensor([0.5])},
    )
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left behind
    loaded = load_checkpoint(path)
    assert loaded.arch == "dct_cifar_late_concat" and loaded.arch_kwargs == {"num_classes": 3}
    assert loaded.class_names == ["cat", "dog", "eel"]
    assert loaded.extra["recipe"] == {"bits": 8, "rules": [["stem.*", "skip"]]}
    assert torch.equal(loaded.extra["scale"], torch.tensor([0.5]))
    assert not loaded.model.training
    torch.testing.assert_close(_outputs(loaded.model), _outputs(model), rtol=0, atol=0)
    torch.testing.assert_close(loaded.model.stem.y_std, model.stem.y_std)
    assert not torch.equal(
        _outputs(create_model("dct_cifar_late_concat", num_classes=3).eval()), _outputs(model)
    )


def test_file_is_readable_with_weights_only(tmp_path):
    model = _trained("resnet20", num_classes=2)
    path = save_checkpoint(
        tmp_path / "r.pt", model, arch="resnet20", arch_kwargs={"num_classes": 2}, class_names=[]
    )
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "dctq.checkpoint" and payload["version"] == 1
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_arch_kwargs_rebuild_the_same_shape(tmp_path):
    model = _trained("dct_cifar_upsampling", num_classes=2, widths=(16, 24), depths=(1, 2))
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        arch="dct_cifar_upsampling",
        arch_kwargs={"num_classes": 2, "widths": [16, 24], "depths": [1, 2]},
        class_names=["a", "b"],
    )
    loaded = load_checkpoint(path).model
    assert len(loaded.stages[0]) == 1 and loaded.fc.in_features == 24
    torch.testing.assert_close(_outputs(loaded), _outputs(model), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"arch_kwargs": {"norm_layer": nn.GroupNorm}}, "arch_kwargs"),
        ({"extra": {"table": np.ones(3)}}, "extra"),
        ({"extra": {"path": Path("x")}}, "extra"),
        ({"extra": {1: "int key"}}, "non-string key"),
    ],
)
def test_save_rejects_non_plain_data_and_leaves_old_file(tmp_path, kwargs, where):
    model = create_model("resnet20")
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, arch="resnet20", arch_kwargs={}, class_names=[])
    before = path.read_bytes()
    args = {"arch_kwargs": {}, "class_names": [], **kwargs}
    with pytest.raises(ModelError, match=where):
        save_checkpoint(path, model, arch="resnet20", **args)
    assert path.read_bytes() == before


def test_save_rejects_unknown_arch_and_wrong_class_count(tmp_path):
    model = create_model("resnet20", num_classes=3)
    with pytest.raises(ModelError, match="resnet20"):
        save_checkpoint(tmp_path / "m.pt", model, arch="resnet2O", arch_kwargs={}, class_names=[])
    with pytest.raises(ModelError, match="2 class names"):
        save_checkpoint(tmp_path / "m.pt", model, arch="resnet20", arch_kwargs={}, class_names=["a", "b"])
    assert not (tmp_path / "m.pt").exists()


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip" * 10)
    with pytest.raises(ModelError, match="not a readable dctq checkpoint"):
        load_checkpoint(garbage)
    good = save_checkpoint(
        tmp_path / "g.pt", create_model("resnet20"), arch="resnet20", arch_kwargs={}, class_names=[]
    )
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match="not a readable dctq checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(ModelError, match="not a dctq checkpoint"):
        load_checkpoint(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "dctq.checkpoint", "obj": Path("x")}, pickled)  # needs unpickling a class
    with pytest.raises(ModelError, match="not a dctq checkpoint: it holds pickled code or objects"):
        load_checkpoint(pickled)


def test_one_reader_for_checkpoints_synthetic_sets_and_training_states(tmp_path):
    """common.torch_files.load_torch_file reads every dctq torch file: unreadable ones (garbage, empty,
    pickles) and foreign ones raise the caller's error naming the file and what it should be."""
    garbage, empty, foreign = tmp_path / "garbage.pt", tmp_path / "empty.pt", tmp_path / "foreign.pt"
    garbage.write_bytes(b"\x00not a zip" * 10)
    empty.write_bytes(b"")
    torch.save({"weights": torch.ones(2)}, foreign)
    # An empty file: torch raises EOFError with no message (the readers once failed on it with IndexError).
    with pytest.raises(ModelError, match=r"empty\.pt is not a readable dctq checkpoint \(EOFError: \)"):
        load_checkpoint(empty)
    for path in (garbage, empty):
        with pytest.raises(DataError, match=rf"{path.name} is not a readable dctq synthetic data file \("):
            load_synthetic(path)
        with pytest.raises(ModelError, match=r"not a readable dctq training state .*; was it cut short\?$"):
            load_torch_file(path, "dctq training state", ModelError, hint="; was it cut short?")
    with pytest.raises(DataError, match=r"foreign\.pt is a torch file but not a dctq synthetic data file"):
        load_synthetic(foreign)
    with pytest.raises(
        ModelError, match=r"not a dctq training state \(no format 'dctq.train_state' marker\)"
    ):
        load_torch_file(foreign, "dctq training state", ModelError, fmt="dctq.train_state")
    assert load_torch_file(foreign, "anything", ModelError)["weights"].tolist() == [1.0, 1.0]


def _rewrite(path: Path, **changes) -> Path:
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return path


def test_unknown_arch_and_mismatched_weights(tmp_path):
    model = create_model("resnet20", num_classes=4)
    path = save_checkpoint(
        tmp_path / "m.pt", model, arch="resnet20", arch_kwargs={"num_classes": 4}, class_names=[]
    )
    _rewrite(path, arch="resnet_20")
    with pytest.raises(ModelError, match=r"cannot rebuild.*resnet20"):
        load_checkpoint(path)
    _rewrite(path, arch="resnet20", arch_kwargs={"num_classes": 3})
    with pytest.raises(ModelError, match="do not fit"):
        load_checkpoint(path)
    _rewrite(path, arch_kwargs={"num_classes": 4}, state_dict={"fc.weight": torch.zeros(4, 64)})
    with pytest.raises(ModelError, match="missing"):
        load_checkpoint(path)
    _rewrite(path, version=99)
    with pytest.raises(ModelError, match="version 99"):
        load_checkpoint(path)


def test_qabn_checkpoint_round_trip(tmp_path):
    qabn = pytest.importorskip("dctq.models.qabn")
    torch.manual_seed(0)
    model = qabn.apply_qabn(create_model("dct_cifar_upsampling", num_classes=3), num_branches=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "qabn_mixer" in name or p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    path = save_checkpoint(
        tmp_path / "q.pt",
        model,
        arch="dct_cifar_upsampling",
        arch_kwargs={"num_classes": 3},
        class_names=["a", "b", "c"],
        extra={"qabn": {"num_branches": 2}},
    )
    loaded = load_checkpoint(path)
    assert qabn.is_qabn(loaded.model) and loaded.model.qabn_num_branches == 2
    torch.testing.assert_close(_outputs(loaded.model), _outputs(model), rtol=0, atol=0)


def test_qabn_checkpoint_without_qabn_module_is_a_clear_error(tmp_path, monkeypatch):
    model = create_model("resnet20")
    path = save_checkpoint(
        tmp_path / "q.pt",
        model,
        arch="resnet20",
        arch_kwargs={},
        class_names=[],
        extra={"qabn": {"num_branches": 4}},
    )
    monkeypatch.setitem(sys.modules, "dctq.models.qabn", None)  # makes the import fail like a missing file
    with pytest.raises(ModelError, match="QABN"):
        load_checkpoint(path)


def _tampered(tmp_path: Path, **changes) -> Path:
    """A valid dct_cifar_upsampling checkpoint (3 classes) with top-level fields replaced by `changes`."""
    model = create_model("dct_cifar_upsampling", num_classes=3, widths=[8, 16], depths=[1, 1])
    path = save_checkpoint(
        tmp_path / "ok.pt", model, arch="dct_cifar_upsampling",
        arch_kwargs={"num_classes": 3, "widths": [8, 16], "depths": [1, 1]}, class_names=["a", "b", "c"],
    )  # fmt: skip
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


def _with_weight(tmp_path: Path, value: float) -> Path:
    payload = torch.load(_tampered(tmp_path), weights_only=True)
    state = dict(payload["state_dict"])
    name = next(k for k, v in state.items() if k.endswith("conv.weight") or v.dim() == 4)
    state[name] = state[name].clone()
    state[name].view(-1)[0] = value
    return _tampered(tmp_path, state_dict=state)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"class_names": ["a", "b"]}, r"2 class names for a model with 3 outputs"),
        ({"class_names": [0, 1, 2]}, r"class names must be strings, got 0"),
        ({"extra": {"qabn": {"no_such_key": 1}}}, r"its 'qabn' entry .* cannot be applied \(TypeError"),
        ({"extra": {"qabn": {"num_branches": "four"}}}, r"its 'qabn' entry .* cannot be applied"),
        (
            {"arch_kwargs": {"widths": "abc"}},
            r"cannot rebuild architecture: model 'dct_cifar_upsampling' cannot be built from the arguments",
        ),
    ],
)
def test_malformed_fields_are_model_errors(tmp_path, changes, message):
    """Fewer class names than outputs labelled predictions wrongly; the others were tracebacks."""
    with pytest.raises(ModelError, match=message):
        load_checkpoint(_tampered(tmp_path, **changes))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    """A NaN weight made every prediction NaN (and `--json` wrote bare NaN) with exit code 0."""
    with pytest.raises(ModelError, match=r"holds NaN or infinite values"):
        load_checkpoint(_with_weight(tmp_path, value))
    assert load_checkpoint(_with_weight(tmp_path, 0.5)).model.num_classes == 3
