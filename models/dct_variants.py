"""The seven DCT-input ResNet-50 variants of Gueguen et al. (NeurIPS 2018), for 224x224 4:2:0 JPEGs.

Input at 224: y [N, 64, 28, 28], cbcr [N, 128, 14, 14], qt [N, 3, 64]. The RGB stem (conv1,
max-pool) is gone; the variants differ in where luma and chroma meet (see METHODS.md section 2,
read from the authors' diagrams). Notation: a bottleneck stage "mid/out"; res3 = 128/512,
res4 = 256/1024, res5 = 512/2048; "RFA" = a 3-block 256/1024 stage whose middle kernels are 1, 2, 3.

| variant | merge | stages after the merge |
|---|---|---|
| dct_upsampling | Cb, Cr nearest x2, concat 192 @28 | res3 (s1) @28, res4 (s2) @14, res5 (s2) @7 |
| dct_upsampling_rfa | same | RFA @28, res3 (s1), res4 (s2), res5 (s2) |
| dct_deconvolution_rfa | Cb, Cr each ConvTranspose 2x2/2 64->64 | as UpSampling-RFA |
| dct_downsampling | Y conv 2x2/2 64->256 (+BN), concat 384 @14 | RFA @14, res3 (s1), res4 (s1), res5 (s2) @7 |
| dct_late_concat | Y: res3 (s1) @28, res4a (s2) 256/512; CbCr: one 1x1-only block 256/512 | res4b-f @14, res5 @7 |
| dct_late_concat_rfa | Y: RFA, res3 (s1), res4a (s2) 256/512; CbCr as above | res4b-f, res5 |
| dct_late_concat_rfa_thinner | Y: RFA 96/384, res3 96/384, res4a 192/768; CbCr 1x1 block 128/256 | res4b-f, res5 |

Every builder takes `width` (multiplies all stage channels, e.g. 0.25 for the CPU-scale
reproduction), `input_size` (pixels, a multiple of 16), `norm_layer`, `zero_init_residual`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .dct_resnet import DctFront, DctResNet
from .registry import register_model
from .resnet import NormLayer, StageSpec

RFA_KERNELS = (1, 2, 3)


# Stages that begin with Keras's conv_block (res2a, res3a, res4a, res5a in the diagrams) project their
# shortcut even where the shape does not change (res3a of Late-Concat-RFA-Thinner: 384 -> 384).


def _rfa(mid: int = 256, out: int = 1024) -> StageSpec:
    return StageSpec(3, out, stride=1, mid_channels=mid, kernels=RFA_KERNELS, project_first=True)


def _res3(stride: int = 1, mid: int = 128, out: int = 512) -> StageSpec:
    return StageSpec(4, out, stride=stride, mid_channels=mid, project_first=True)


def _res4(stride: int = 2) -> StageSpec:
    return StageSpec(6, 1024, stride=stride, mid_channels=256, project_first=True)


def _res5() -> StageSpec:
    return StageSpec(3, 2048, stride=2, mid_channels=512, project_first=True)


def _res4a(mid: int, out: int) -> StageSpec:
    return StageSpec(1, out, stride=2, mid_channels=mid, project_first=True)


def _res4_tail() -> StageSpec:
    """res4b..f after a Late-Concat merge (input 1024 channels): identity blocks, no projection."""
    return StageSpec(5, 1024, stride=1, mid_channels=256)


def _cbcr_block(mid: int, out: int) -> StageSpec:
    """The chroma path of the Late-Concat variants: one bottleneck of 1x1 convs ("res4x")."""
    return StageSpec(1, out, stride=1, mid_channels=mid, kernels=(1,), project_first=True)


def _build(
    *,
    num_classes: int,
    input_size: int,
    width: float,
    norm_layer: NormLayer,
    zero_init_residual: bool,
    body: Sequence[StageSpec],
    chroma: str = "nearest",
    y_downsample: int | None = None,
    y_specs: Sequence[StageSpec] = (),
    cbcr_specs: Sequence[StageSpec] = (),
) -> DctResNet:
    front = DctFront(
        chroma=chroma,
        y_downsample=None if y_downsample is None else max(1, round(y_downsample * width)),
        y_specs=[s.scaled(width) for s in y_specs],
        cbcr_specs=[s.scaled(width) for s in cbcr_specs],
        norm_layer=norm_layer,
    )
    return DctResNet(
        front,
        [s.scaled(width) for s in body],
        num_classes=num_classes,
        input_size=input_size,
        norm_layer=norm_layer,
        zero_init_residual=zero_init_residual,
    )


def _variant(name: str, description: str, **layout) -> None:
    """Register `name`: a builder with the common arguments over `_build(**layout)`."""

    def build(
        num_classes: int = 1000,
        *,
        input_size: int = 224,
        width: float = 1.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        zero_init_residual: bool = False,
    ) -> DctResNet:
        return _build(
            num_classes=num_classes,
            input_size=input_size,
            width=width,
            norm_layer=norm_layer,
            zero_init_residual=zero_init_residual,
            **layout,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = description
    register_model(name, input_kind="dct", input_size=224, description=description)(build)


_variant(
    "dct_upsampling",
    "Gueguen UpSampling: chroma nearest x2, concat 192 @28, res3-5 (no res2)",
    chroma="nearest",
    body=[_res3(stride=1), _res4(), _res5()],
)
_variant(
    "dct_upsampling_rfa",
    "Gueguen UpSampling-RFA: chroma nearest x2, RFA stage 256/1024 @28, res3-5",
    chroma="nearest",
    body=[_rfa(), _res3(stride=1), _res4(), _res5()],
)
_variant(
    "dct_deconvolution_rfa",
    "Gueguen Deconvolution-RFA: Cb, Cr 2x2/2 ConvTranspose 64->64, RFA, res3-5",
    chroma="deconv",
    body=[_rfa(), _res3(stride=1), _res4(), _res5()],
)
_variant(
    "dct_downsampling",
    "Gueguen DownSampling: Y conv 2x2/2 64->256, concat 384 @14, RFA, res3-4 s1, res5",
    chroma="none",
    y_downsample=256,
    body=[_rfa(), _res3(stride=1), _res4(stride=1), _res5()],
)
_variant(
    "dct_late_concat",
    "Gueguen Late-Concat: Y res3 @28 + res4a/2 (512), CbCr 1x1 block (512), concat @14",
    chroma="none",
    y_specs=[_res3(stride=1), _res4a(256, 512)],
    cbcr_specs=[_cbcr_block(256, 512)],
    body=[_res4_tail(), _res5()],
)
_variant(
    "dct_late_concat_rfa",
    "Gueguen Late-Concat-RFA: Y RFA + res3 @28 + res4a/2 (512), CbCr 1x1 block (512)",
    chroma="none",
    y_specs=[_rfa(), _res3(stride=1), _res4a(256, 512)],
    cbcr_specs=[_cbcr_block(256, 512)],
    body=[_res4_tail(), _res5()],
)
_variant(
    "dct_late_concat_rfa_thinner",
    "Gueguen Late-Concat-RFA-Thinner: Y RFA 96/384 + res3 96/384 + res4a 192/768, CbCr 128/256 (1.77x faster)",
    chroma="none",
    y_specs=[_rfa(96, 384), _res3(stride=1, mid=96, out=384), _res4a(192, 768)],
    cbcr_specs=[_cbcr_block(128, 256)],
    body=[_res4_tail(), _res5()],
)
