"""Super-resolution architectures: registry entries, sizes, shapes at any input size.

Reference counts: EDSR-baseline (Lim et al. 2017, Table 1 / EDSR-PyTorch model zoo) has 1.37M parameters
at x2 and 1.52M at x4 (16 blocks of two 3x3 64->64 convs with bias, head 3->64, body_end, pixel-shuffle
convs 64->256 per x2 stage, tail 64->3). The closed forms below are computed by hand from that layout,
independent of the module code.
"""

from __future__ import annotations

import pytest
import torch

from dctq.common.errors import ModelError
from dctq.models import count_macs, count_params, create_model, get_model_info, list_models
from dctq.models.flops import summarize_models

SR_MODELS = [info.name for info in list_models(task="sr")]


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def _edsr_params(blocks: int, feats: int, scale: int, channels: int = 3) -> int:
    shuffle = {2: _conv(feats, 4 * feats), 3: _conv(feats, 9 * feats), 4: 2 * _conv(feats, 4 * feats)}[scale]
    return (
        _conv(channels, feats)
        + 2 * blocks * _conv(feats, feats)
        + _conv(feats, feats)
        + shuffle
        + _conv(feats, channels)
    )


def test_registry_lists_every_sr_model_with_its_task():
    assert set(SR_MODELS) == {
        "edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4", "edsr_cpu_x2", "edsr_cpu_x3", "edsr_cpu_x4",
        "srresnet_x4",
    }  # fmt: skip
    assert all(get_model_info(n).task == "sr" for n in SR_MODELS)
    assert "resnet20" not in SR_MODELS and get_model_info("resnet20").task == "classify"


@pytest.mark.parametrize(
    ("name", "blocks", "feats", "scale"),
    [("edsr_baseline_x2", 16, 64, 2), ("edsr_baseline_x3", 16, 64, 3), ("edsr_baseline_x4", 16, 64, 4),
     ("edsr_cpu_x2", 8, 32, 2), ("edsr_cpu_x3", 8, 32, 3), ("edsr_cpu_x4", 8, 32, 4)],
)  # fmt: skip
def test_edsr_parameters_match_the_closed_form(name, blocks, feats, scale):
    with torch.device("meta"):
        model = create_model(name)
    assert count_params(model) == _edsr_params(blocks, feats, scale)


def test_edsr_baseline_matches_the_published_sizes():
    with torch.device("meta"):
        x2, x4 = create_model("edsr_baseline_x2"), create_model("edsr_baseline_x4")
    assert count_params(x2) == 1_369_859  # "1.37M"
    assert count_params(x4) == 1_517_571  # "1.52M"
    # MACs at a 64x64 LR input, by hand: 34 3x3 64->64 convs at 64x64, head/tail, shuffle stages at 64 and 128
    expected = (
        64 * 64 * (3 * 64 * 9 + 33 * 64 * 64 * 9 + 64 * 256 * 9)
        + 128 * 128 * 64 * 256 * 9
        + 256 * 256 * 64 * 3 * 9
    )
    assert count_macs(x4) == expected


def test_models_command_rows_state_the_lr_size():
    rows = {r.name: r for r in summarize_models("edsr_*")}
    assert rows["edsr_cpu_x4"].input_size == 64 and rows["edsr_cpu_x4"].params == 232_963
    assert rows["edsr_baseline_x4"].macs > rows["edsr_cpu_x4"].macs > 0


@pytest.mark.parametrize("name", SR_MODELS)
def test_any_input_size_gives_a_scaled_output(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        for h, w in ((7, 9), (12, 5)):
            out = model(torch.rand(2, 3, h, w))
            assert out.shape == (2, 3, model.scale * h, model.scale * w) and torch.isfinite(out).all()


def test_y_only_models_take_one_channel_and_bad_arguments_fail():
    model = create_model("edsr_cpu_x2", channels=1).eval()
    assert model(torch.rand(1, 1, 6, 6)).shape == (1, 1, 12, 12)
    with pytest.raises(ModelError, match="channels must be 3"):
        create_model("edsr_cpu_x2", channels=2)
    with pytest.raises(ModelError, match="does not take"):
        create_model("edsr_cpu_x4", num_classes=10)


def test_untrained_edsr_is_near_identity_of_the_mean_shift():
    """The mean shift is a buffer (never a conv, so no quantizer takes it) and the model's parameters
    carry no copy of it."""
    model = create_model("edsr_cpu_x2")
    names = [n for n, _ in model.named_parameters()]
    assert not any("mean" in n for n in names)
    assert {n for n, _ in model.named_buffers()} == {"sub_mean.mean", "add_mean.mean"}
