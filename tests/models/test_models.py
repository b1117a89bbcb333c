"""Architectures, the registry and FLOP counting (the `models` command: test_models_cli.py).

Where the reference numbers come from:
- ResNet-50: 25,557,032 parameters and "GFLOPS 4.09" (which is GMACs) for the v1.5 layout are
  torchvision's published figures (pytorch.org/vision/stable/models/generated/
  torchvision.models.resnet50.html, ResNet50_Weights.IMAGENET1K_V1). Stride placement does not
  change the parameter count; v1 (stride in the first 1x1, our default) costs 3.858 GMACs, the
  0.231 GMACs difference being the three stride-2 1x1 convs that run at a quarter of the positions.
- ResNet-20: He et al. report 0.27M parameters (option A shortcuts, no parameters); our option-B
  projections add 2,752, giving 272,474 with 10 classes. ResNet-18 (CIFAR stem): 11,173,962 is the
  well-known count of the kuangliu/QSAM CIFAR ResNet-18 with 10 classes.
- The seven Gueguen et al. variants: the paper's Table 1 (parameters / FLOPs) could not be read
  here and no third-party parameter or FLOP count was found. Topology sources: METHODS.md's table
  (read from uber-research/jpeg2dct diagrams/*.png); the paper's appendix figure as mirrored in
  text (fayllar.org copy: "CB4 (k=1, s=1), IB(k=2), IB" for the RFA stage, "C(256, 2, 2)" for
  DownSampling); D3lt4lph4/jpeg_deep networks/resnet_dct_v2.py, whose Deconvolution-RFA has exactly
  our stages (RFA 256/1024 k=1,2,3, res3 s1, res4 s2, res5 s2) but whose Late-Concat widths differ
  from METHODS.md (CbCr block 128/128/512 instead of 256/512; Thinner: RFA 256/384, res3 128/384,
  res4a 128/768 or 256/768) -- we follow METHODS.md. So each variant is checked twice: (1) against
  a closed-form count computed below by hand from METHODS.md's table, independent of the module
  code, and (2) against a regression table of measured counts (num_classes = 1000, input 224x224,
  BN weight+bias counted, convs without bias; Keras models would add conv biases).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dctq.common.errors import ModelError
from dctq.models import (
    ModelInfo,
    count_flops,
    count_macs,
    count_params,
    create_model,
    example_inputs,
    get_model_info,
    list_models,
    register_model,
)
from dctq.models.resnet import Bottleneck

# The classifiers: what the tests below assume (logits [N, classes], an `fc`). The autoencoders (task
# "autoencode") have their own tests in tests/models/dq/; SR models: test_sr_models.py.
ALL_MODELS = [info.name for info in list_models(task="classify")]

# name: (parameters, MACs) at num_classes=1000 (10 for CIFAR models), default input size; measured.
REGRESSION = {
    "resnet50": (25_557_032, 3_857_973_248),
    "resnet20": (272_474, 40_813_184),
    "resnet18_cifar": (11_173_962, 555_422_720),
    "dct_upsampling": (25_290_728, 3_039_903_744),
    "dct_upsampling_rfa": (28_308_456, 5_396_971_520),
    "dct_deconvolution_rfa": (28_341_352, 5_403_394_048),
    "dct_downsampling": (28_620_264, 3_001_368_576),
    "dct_late_concat": (25_111_528, 2_956_410_880),
    "dct_late_concat_rfa": (28_047_336, 5_249_253_376),
    "dct_late_concat_rfa_thinner": (24_679_016, 2_888_171_520),  # res3a projects 384 -> 384 (diagram)
    "dct_cifar_upsampling": (413_098, 3_994_240),
    "dct_cifar_late_concat": (350_634, 3_007_104),
    # by hand: ConvT 192*32*16 + BN 64; 3 blocks 2*(32*32*9)+128; 64-stage 57,728 + 2*73,984; fc 650.
    # MACs: 16*192*32*16 + 6*9216*256 + 13,107,200 + 640
    "dct_cifar_deconv": (360_394, 28_836_480),
    # ResNet-20 (272,474 params, 40,813,184 MACs) minus its 3x3 stem (432 + BN 32; 32*32*432 MACs)
    # plus ConvT 192*16*64 + BN 32 (16 input positions * 192*16*64 MACs)
    "dct_cifar_deconv32": (272_474 - 464 + 196_608 + 32, 40_813_184 - 442_368 + 3_145_728),
}


# ---- closed-form counts from METHODS.md's table (no module code involved) ----------------------


def _bottleneck(cin: int, mid: int, out: int, k: int, hw: int, project: bool) -> tuple[int, int]:
    """(params, MACs) of a v1 bottleneck at output size hw x hw; BN = 2 params per channel."""
    params = cin * mid + mid * mid * k * k + mid * out + 2 * (2 * mid + out)
    macs = hw * hw * (cin * mid + mid * mid * k * k + mid * out)
    if project:
        params += cin * out + 2 * out
        macs += hw * hw * cin * out
    return params, macs


def _stage(cin: int, blocks: int, mid: int, out: int, hw: int, kernels=None, *, conv_block: bool = True):
    """A stage of the diagrams: its first block a Keras conv_block (always a projection shortcut) unless
    `conv_block` is False (res4b..f after the Late-Concat merge: identity blocks only)."""
    params = macs = 0
    for i in range(blocks):
        k = 3 if kernels is None else kernels[i]
        first = cin if i == 0 else out
        p, m = _bottleneck(first, mid, out, k, hw, project=(i == 0 and conv_block) or first != out)
        params, macs = params + p, macs + m
    return params, macs


def _sum(*parts):
    return sum(p for p, _ in parts), sum(m for _, m in parts)


FC = (2048 * 1000 + 1000, 2048 * 1000)
RFA = (1, 2, 3)


def _expected(name: str) -> tuple[int, int]:
    res4_tail = _stage(1024, 5, 256, 1024, 14, conv_block=False)
    res5 = _stage(1024, 3, 512, 2048, 7)
    if name == "dct_upsampling":
        return _sum(_stage(192, 4, 128, 512, 28), _stage(512, 6, 256, 1024, 14), res5, FC)
    if name in ("dct_upsampling_rfa", "dct_deconvolution_rfa"):
        deconv = (2 * (64 * 64 * 4 + 64), 2 * 14 * 14 * 64 * 64 * 4) if "deconv" in name else (0, 0)
        return _sum(
            deconv,
            _stage(192, 3, 256, 1024, 28, RFA),
            _stage(1024, 4, 128, 512, 28),
            _stage(512, 6, 256, 1024, 14),
            res5,
            FC,
        )
    if name == "dct_downsampling":
        down = (64 * 256 * 4 + 2 * 256, 14 * 14 * 64 * 256 * 4)
        return _sum(
            down,
            _stage(384, 3, 256, 1024, 14, RFA),
            _stage(1024, 4, 128, 512, 14),
            _stage(512, 6, 256, 1024, 14),
            res5,
            FC,
        )
    if name == "dct_late_concat":
        y = _sum(_stage(64, 4, 128, 512, 28), _stage(512, 1, 256, 512, 14))
        return _sum(y, _stage(128, 1, 256, 512, 14, (1,)), res4_tail, res5, FC)
    if name == "dct_late_concat_rfa":
        y = _sum(
            _stage(64, 3, 256, 1024, 28, RFA),
            _stage(1024, 4, 128, 512, 28),
            _stage(512, 1, 256, 512, 14),
        )
        return _sum(y, _stage(128, 1, 256, 512, 14, (1,)), res4_tail, res5, FC)
    if name == "dct_late_concat_rfa_thinner":
        y = _sum(_stage(64, 3, 96, 384, 28, RFA), _stage(384, 4, 96, 384, 28), _stage(384, 1, 192, 768, 14))
        return _sum(y, _stage(128, 1, 128, 256, 14, (1,)), res4_tail, res5, FC)
    raise KeyError(name)


GUEGUEN = [
    "dct_upsampling",
    "dct_upsampling_rfa",
    "dct_deconvolution_rfa",
    "dct_downsampling",
    "dct_late_concat",
    "dct_late_concat_rfa",
    "dct_late_concat_rfa_thinner",
]


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


# ---- every registered model ---------------------------------------------------------------------


def test_registry_holds_the_promised_models():
    assert set(GUEGUEN) | {"resnet50", "resnet20", "resnet18_cifar"} <= set(ALL_MODELS)
    assert set(REGRESSION) == set(ALL_MODELS), "a new model needs a row in REGRESSION"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_small_input(name):
    """Each model on a 32x32 input (the smallest every topology takes), batch 2; the ImageNet-size
    ones at width 0.25 (same modules, 1/16 of the weights) to keep backward cheap on CPU."""
    torch.manual_seed(0)
    kwargs = {"width": 0.25} if get_model_info(name).input_size == 224 else {}
    model = create_model(name, num_classes=3, **kwargs)
    assert model.input_kind in ("dct", "rgb") and model.num_classes == 3
    inputs = example_inputs(model, 2, input_size=32)
    out = model(*inputs)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet50", "dct_late_concat_rfa_thinner"])
def test_forward_at_imagenet_size(name):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(*example_inputs(model, 1))
    assert out.shape == (1, 5) and torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in ALL_MODELS if n not in ("resnet50", "dct_late_concat_rfa_thinner")]
)
def test_forward_at_input_size_slow(name):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(*example_inputs(model, 1))
    assert out.shape == (1, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_params_and_macs_regression(name):
    params, macs = REGRESSION[name]
    model = _meta(name)
    assert count_params(model) == params
    assert count_macs(model) == macs
    assert count_flops(model) == 2 * macs


@pytest.mark.parametrize("name", GUEGUEN)
def test_gueguen_variants_match_closed_form_count(name):
    params, macs = _expected(name)
    model = _meta(name)
    assert count_params(model) == params
    assert count_macs(model) == macs


# Spatial size and channels after the merge and after each body stage, at 224 (METHODS.md table).
RESOLUTIONS = {
    "dct_upsampling": ((192, 28), [(512, 28), (1024, 14), (2048, 7)]),
    "dct_upsampling_rfa": ((192, 28), [(1024, 28), (512, 28), (1024, 14), (2048, 7)]),
    "dct_deconvolution_rfa": ((192, 28), [(1024, 28), (512, 28), (1024, 14), (2048, 7)]),
    "dct_downsampling": ((384, 14), [(1024, 14), (512, 14), (1024, 14), (2048, 7)]),
    "dct_late_concat": ((1024, 14), [(1024, 14), (2048, 7)]),
    "dct_late_concat_rfa": ((1024, 14), [(1024, 14), (2048, 7)]),
    "dct_late_concat_rfa_thinner": ((1024, 14), [(1024, 14), (2048, 7)]),
    "dct_cifar_upsampling": ((192, 4), [(48, 4), (64, 2)]),
    "dct_cifar_late_concat": ((64, 2), [(64, 2)]),
}


@pytest.mark.parametrize("name", sorted(RESOLUTIONS))
def test_dct_variant_resolutions(name):
    model = _meta(name, num_classes=2)
    seen = []
    hooks = [model.front.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))]
    hooks += [s.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:]))) for s in model.stages]
    model(*example_inputs(model, 1))
    merged, stages = RESOLUTIONS[name]
    assert seen == [(c, s, s) for c, s in [merged, *stages]]


def test_resnet50_v1_stride_placement_and_v15_cost():
    v1 = _meta("resnet50")
    block = v1.stages[1][0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert block.downsample[0].stride == (2, 2)
    v15 = _meta("resnet50", stride_in_1x1=False)
    assert v15.stages[1][0].conv2.stride == (2, 2) and v15.stages[1][0].conv1.stride == (1, 1)
    assert count_params(v15) == 25_557_032  # torchvision
    assert round(count_macs(v15) / 1e9, 2) == 4.09  # torchvision's "GFLOPS" (GMACs)
    assert count_macs(v15) - count_macs(v1) == 3 * 28 * 28 * 3 * (256 * 128)  # 1x1 convs at 4x the positions


def test_rfa_even_kernel_keeps_size_and_pads_after():
    block = Bottleneck(4, 1, 4, kernel_size=2)
    assert isinstance(block.pad2, nn.ZeroPad2d) and block.pad2.padding == (0, 1, 0, 1)
    with torch.no_grad():
        block.conv2.weight.fill_(1.0)
        x = torch.arange(16.0).reshape(1, 1, 4, 4)
        out = block.conv2(block.pad2(x))
    assert out.shape == x.shape
    # out[i, j] = x[i, j] + x[i, j+1] + x[i+1, j] + x[i+1, j+1], zeros past the bottom/right edge
    assert out[0, 0, 0, 0] == 0 + 1 + 4 + 5
    assert out[0, 0, 3, 3] == 15
    assert out[0, 0, 0, 3] == 3 + 7


def test_rgb_models_accept_and_ignore_qt():
    model = create_model("resnet20", num_classes=4).eval()
    x, qt = example_inputs(model, 2, with_qt=True)
    with torch.no_grad():
        assert torch.equal(model(x), model(x, qt))


def test_norm_layer_replaces_every_batchnorm():
    default = create_model("dct_cifar_late_concat")
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in default.modules())
    model = create_model("dct_cifar_late_concat", norm_layer=lambda c: nn.GroupNorm(1, c))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == n_bn > 0
    assert model(*example_inputs(model, 1)).shape == (1, 10)


def test_width_multiplier_keeps_topology():
    full, quarter = _meta("dct_late_concat_rfa_thinner"), _meta("dct_late_concat_rfa_thinner", width=0.25)
    assert len(list(full.modules())) == len(list(quarter.modules()))
    assert count_params(quarter) < count_params(full) / 10
    assert quarter.front.out_channels == 256  # 192 luma + 64 chroma


def test_input_size_argument_sets_example_shapes():
    model = _meta("dct_upsampling", input_size=128)
    y, cbcr, qt = example_inputs(model, 2)
    assert (y.shape, cbcr.shape, qt.shape) == ((2, 64, 16, 16), (2, 128, 8, 8), (2, 3, 64))
    with pytest.raises(ModelError, match="multiple of 16"):
        example_inputs(model, 1, input_size=40)


# ---- registry ------------------------------------------------------------------------------------


def test_unknown_name_lists_close_matches():
    with pytest.raises(ModelError, match="dct_late_concat_rfa_thinner"):
        create_model("dct_late_concat_rfa_thiner")
    with pytest.raises(ModelError, match="resnet50"):
        create_model("resnet5O")


def test_create_model_drops_none_and_rejects_unknown_kwargs():
    assert create_model("resnet20", num_classes=None, zero_init_residual=None).num_classes == 10
    with pytest.raises(ModelError, match="colour"):
        create_model("resnet20", colour="blue")


def test_list_models_filters_and_is_sorted():
    infos = list_models("dct_cifar_*")
    assert [i.name for i in infos] == [
        "dct_cifar_deconv",
        "dct_cifar_deconv32",
        "dct_cifar_late_concat",
        "dct_cifar_upsampling",
    ]
    assert all(isinstance(i, ModelInfo) and i.input_kind == "dct" and i.input_size == 32 for i in infos)
    assert list_models("nothing*") == []
    assert ALL_MODELS == sorted(ALL_MODELS)


def test_register_model_rejects_clashes_and_bad_kinds():
    with pytest.raises(ModelError, match="already registered"):

        @register_model("resnet20", input_kind="rgb", input_size=32, description="impostor")
        def resnet20(num_classes: int = 10) -> nn.Module:  # pragma: no cover - never called
            raise AssertionError

    assert create_model("resnet20").num_classes == 10  # the original survives
    with pytest.raises(ModelError, match="input_kind"):
        register_model("x", input_kind="yuv", input_size=32, description="")


def test_zero_init_residual_zeroes_last_norm():
    model = create_model("resnet20", zero_init_residual=True)
    assert float(model.stages[0][0].bn2.weight.detach().abs().sum()) == 0.0
    assert float(model.stages[0][0].bn1.weight.detach().abs().sum()) > 0.0


@pytest.mark.parametrize(
    "name", ["resnet20", "resnet18_cifar", *[n for n in ALL_MODELS if n.startswith("dct_cifar")]]
)
def test_cifar_models_build_every_norm_with_the_given_norm_layer(name):
    # dct_cifar_upsampling used to leave its body on the default BatchNorm2d.
    model = create_model(name, num_classes=3, norm_layer=lambda c: nn.GroupNorm(1, c))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())


def test_basic_stage_specs_refuses_mismatched_lists():
    from dctq.models.resnet import basic_stage_specs

    assert [(s.blocks, s.out_channels, s.stride) for s in basic_stage_specs([8, 16], [1, 2])] == [
        (1, 8, 1),
        (2, 16, 2),
    ]
    for widths, depths in [([8, 16], [1]), ([], []), ([8, 0], [1, 1])]:
        with pytest.raises(ModelError, match="equally long"):
            basic_stage_specs(widths, depths)
    with pytest.raises(ModelError, match="two positive"):
        create_model("dct_cifar_upsampling", widths=[8, 16, 32], depths=[1, 1, 1])


@pytest.mark.parametrize(
    "name", ["dct_late_concat_rfa_thinner", "dct_late_concat_rfa", "dct_upsampling", "resnet50"]
)
def test_every_stage_opening_block_projects_its_shortcut_as_kerass_conv_block(name):
    # The authors' diagrams are Keras ResNet-50s: each stage's "a" block (conv_block) has a 1x1 projection
    # shortcut even where the shape is unchanged (Late-Concat-RFA-Thinner's res3a: 384 -> 384); later
    # blocks (identity_block, also res4b..f after the Late-Concat merge) have none.
    from dctq.models.resnet import Bottleneck

    model = create_model(name)
    for stage in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        blocks = [b for b in stage if isinstance(b, Bottleneck)]
        if len(blocks) != len(stage) or not blocks:
            continue
        later = [b.downsample is None for b in blocks[1:]]
        assert all(later), f"{name}: a block after the first projects"
    thinner_res3a = create_model("dct_late_concat_rfa_thinner").front.y_stages[1][0]
    assert thinner_res3a.downsample is not None
    assert thinner_res3a.conv1.in_channels == thinner_res3a.conv3.out_channels == 384
