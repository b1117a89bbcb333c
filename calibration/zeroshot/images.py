"""What zero-shot synthesis optimises, and how it reaches the model: RGB pixels or JPEG coefficients.

`SynthImages` holds one batch of images being optimised, initialised N(0, 1) in a normalised space,
never clamped (as IntraQ), and turns them into the model's arguments:

- "rgb" models: `z: [B, 3, H, W]` is their own (CIFAR-10 mean/std) normalised input, given with `qt`.
- "dct" models, space "stem" (default): the variables are the coefficients in the model's *normalised*
  input space, i.e. the DCT stem's output `(coef * q - mean) / std` per frequency: `wy: [B, 64, Hb, Wb]`,
  `wc: [B, 128, Hb/2, Wb/2]`, unquantized coefficients `mean + std * w`. This is IntraQ's rule (N(0, 1)
  in the network's normalised input space) applied to DCT nets, and the adaptation the DCT input needs:
  white N(0, 1) *pixels* have as much energy at the highest frequencies as at the lowest, many stem
  standard deviations off the data there, and Adam's equal-size steps on every pixel keep adding such
  energy. Measured on dct_cifar_upsampling trained 4 epochs on CIFAR-10 (FP 40.8% on 2000 held-out
  images), batches of 64, 200 steps: "pixels" ended at L_BNS 30 (lr 0.5) / 100 (lr 0.05) and the teacher
  gave 9% of the images their label; "stem" ended at L_BNS 0.01-0.03 (lr 0.5, 0.1, 0.05; real batches
  score 1.1) with 100% labelled as asked; W4A4 PTQ calibrated on 128 of those images reached 38-39%
  ("stem"), 27-32% ("pixels"), 34.7% calibrated on 128 real images. In this space Adam's lr 0.5 moves
  every coefficient by half of its frequency's data spread, as lr 0.5 does for IntraQ's normalised pixels.
  The images are still YCbCr 4:2:0 pixels in an orthonormal basis: LOR crops and flips the luma and
  chroma planes (block IDCT, one affine resampling in normalised coordinates for both planes, block DCT).
- "dct" models, space "pixels": `z` in normalised RGB as for RGB models; `255 * (z * std + mean)` goes
  through `rgb_to_coefficients` (JFIF colour conversion, level shift, 2x2 chroma averaging, 8x8 DCT).

Either way the unquantized coefficients are divided by the sample's IJG quant tables and rounded half
away from zero (libjpeg's quantizer), clamped to +-1023 (what 8-bit baseline JPEG codes), with a
straight-through estimator: the model sees integer (y, cbcr, qt), exactly what it reads from a file,
and the gradient passes the rounding unchanged. LOR always crops in pixel space and resizes back to the
full input size, so DCT inputs stay whole images on the 16-px MCU grid.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ...common.errors import QuantizationError
from ...jpeg.chroma import round_half_away
from ...jpeg.dct import block_dct, block_idct, rgb_to_coefficients
from ...jpeg.quality import ijg_qt
from ...jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD
from ...jpeg.transforms import resized_crop_flip
from ...models.stem import DctStem

logger = logging.getLogger(__name__)

COEF_LIMIT = 1023
"""Largest coefficient magnitude kept: 8-bit baseline JPEG codes AC values up to 1023."""

INPUT_KINDS = ("dct", "rgb")


def _pixel_affine(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(CIFAR10_MEAN, device=device, dtype=dtype).reshape(1, 3, 1, 1) * 255.0
    std = torch.tensor(CIFAR10_STD, device=device, dtype=dtype).reshape(1, 3, 1, 1) * 255.0
    return mean, std


def z_to_pixels(z: Tensor) -> Tensor:
    """Normalised RGB z: [B, 3, H, W] -> RGB in grey levels (0..255 for in-range values), float."""
    mean, std = _pixel_affine(z.device, z.dtype)
    return z * std + mean


def pixels_to_z(rgb: Tensor) -> Tensor:
    """Inverse of `z_to_pixels`: [B, 3, H, W] grey levels -> normalised RGB."""
    mean, std = _pixel_affine(rgb.device, rgb.dtype)
    return (rgb - mean) / std


def ste_quantize(coef: Tensor, steps: Tensor) -> Tensor:
    """Quantized coefficients with a straight-through gradient.

    coef: [B, C, h, w] float unquantized coefficients; steps: [B, C] quantization steps (>= 1).
    Returns [B, C, h, w] float holding integers in [-COEF_LIMIT, COEF_LIMIT]; d out / d coef = 1 / steps.
    """
    q = coef / steps[:, :, None, None]
    hard = round_half_away(q).clamp(-COEF_LIMIT, COEF_LIMIT)
    return q + (hard - q).detach()


def coefficients_from_z(z: Tensor, qt: Tensor) -> tuple[Tensor, Tensor]:
    """JPEG-quantized 4:2:0 coefficients of the images z (differentiable through the STE).

    z: [B, 3, H, W] normalised RGB, H and W multiples of 16; qt: [B, 3, 64] steps (Y, Cb, Cr).
    Returns y: [B, 64, H/8, W/8], cbcr: [B, 128, H/16, W/16], float holding integers.
    Raises BlockGridError (from jpeg.dct) when H or W is not a multiple of 16.
    """
    y, cbcr = rgb_to_coefficients(z_to_pixels(z))
    qt = qt.to(y.dtype)
    return ste_quantize(y, qt[:, 0]), ste_quantize(cbcr, qt[:, 1:3].reshape(qt.shape[0], 128))


DCT_SPACES = ("stem", "pixels")


def stem_statistics(model: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(y_mean [64], y_std [64], cbcr_mean [128], cbcr_std [128]) of the model's DctStem, detached.

    Raises QuantizationError when the model has no `stem` DctStem (use the "pixels" space then).
    """
    stem = getattr(model, "stem", None)
    if not isinstance(stem, DctStem):
        raise QuantizationError(
            f"{type(model).__name__} has no DctStem at .stem; synthesize in the 'pixels' space for it"
        )
    if not stem.has_stats():
        logger.warning(
            "the model's DCT stem has no statistics (mean 0, std 1): synthetic images will be faint"
        )
    return tuple(t.detach().clone() for t in (stem.y_mean, stem.y_std, stem.cbcr_mean, stem.cbcr_std))  # type: ignore[return-value]


def _per_channel(t: Tensor) -> Tensor:
    return t.reshape(1, -1, 1, 1)


class SynthImages:
    """One batch of synthetic images being optimised (see module docstring for the spaces).

    kind "rgb" | "dct"; space "stem" | "pixels" (DCT only); qt: [B, 3, 64] float (a DCT model's tables,
    passed to RGB models too, which ignore them unless QABN); params: the leaf tensors Adam optimises.
    """

    def __init__(
        self,
        kind: str,
        qt: Tensor,
        params: list[Tensor],
        space: str = "stem",
        stats: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
    ) -> None:
        if kind not in INPUT_KINDS:
            raise QuantizationError(f"input kind must be one of {INPUT_KINDS}, got {kind!r}")
        if space not in DCT_SPACES:
            raise QuantizationError(f"DCT synthesis space must be one of {DCT_SPACES}, got {space!r}")
        self.kind, self.qt, self.params = kind, qt, params
        self.space = "pixels" if kind == "rgb" else space
        if self.space == "stem" and stats is None:
            raise QuantizationError("the 'stem' space needs the DCT stem's statistics")
        self.stats = stats

    @classmethod
    def random(
        cls,
        kind: str,
        n: int,
        size: int,
        qt: Tensor,
        gen: torch.Generator,
        *,
        space: str = "stem",
        model: nn.Module | None = None,
        device: torch.device | str = "cpu",
    ) -> SynthImages:
        """N(0, 1) initial images drawn from `gen` (CPU), then moved to `device` as leaf tensors."""
        stats = None
        if kind == "dct" and space == "stem":
            if model is None:
                raise QuantizationError("the 'stem' space needs the model (for its stem statistics)")
            stats = tuple(t.to(device) for t in stem_statistics(model))
            shapes = [(n, 64, size // 8, size // 8), (n, 128, size // 16, size // 16)]
        else:
            shapes = [(n, 3, size, size)]
        params = [torch.randn(*s, generator=gen).to(device).requires_grad_(True) for s in shapes]
        return cls(kind, qt.to(device), params, space, stats)  # type: ignore[arg-type]

    def _coefficients(self, crop: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        """Unquantized (y, cbcr) of the (cropped) images in the stem space."""
        y_mean, y_std, c_mean, c_std = self.stats  # type: ignore[misc]
        y = _per_channel(y_mean) + _per_channel(y_std) * self.params[0]
        c = _per_channel(c_mean) + _per_channel(c_std) * self.params[1]
        if crop is None:
            return y, c
        boxes, flip = crop
        n, _, hb, wb = c.shape
        luma = resized_crop_flip(block_idct(y)[:, None], boxes, flip)[:, 0]
        # Normalised coordinates: half the box on the half-resolution chroma planes is the same crop.
        chroma = resized_crop_flip(block_idct(c.reshape(n, 2, 64, hb, wb)), boxes / 2, flip)
        return block_dct(luma), block_dct(chroma).reshape(n, 128, hb, wb)

    def model_args(self, crop: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, ...]:
        """The model's forward arguments, after LOR's crop (boxes [B, 4], flip [B] bool) when given:
        (y, cbcr, qt) for DCT models (float tensors holding the quantized integers), (x, qt) for RGB."""
        if self.space == "pixels":
            z = self.params[0]
            if crop is not None:
                z = resized_crop_flip(z, *crop)
            if self.kind == "rgb":
                return z, self.qt
            y, cbcr = coefficients_from_z(z, self.qt)
            return y, cbcr, self.qt
        y, cbcr = self._coefficients(crop)
        qt = self.qt.to(y.dtype)
        steps_c = qt[:, 1:3].reshape(qt.shape[0], 128)
        return ste_quantize(y, qt[:, 0]), ste_quantize(cbcr, steps_c), self.qt

    @torch.no_grad()
    def stored(self, quality: Tensor, label: Tensor) -> dict[str, Tensor]:
        """The tensors a synthetic file keeps for the finished (uncropped) batch, on the CPU.

        DCT: y [B, 64, Hb, Wb] int16, cbcr [B, 128, Hb/2, Wb/2] int16; RGB: x [B, 3, H, W] float32; both:
        qt [B, 3, 64] float32 (as the loaders give it), quality [B] int64 (IJG quality), label [B] int64.
        """
        args = self.model_args()
        out: dict[str, Tensor] = {}
        if self.kind == "dct":
            out["y"] = args[0].to(torch.int16).cpu()
            out["cbcr"] = args[1].to(torch.int16).cpu()
        else:
            out["x"] = args[0].detach().to(torch.float32).cpu().clone()
        out["qt"] = self.qt.detach().to(torch.float32).cpu().clone()
        out["quality"] = quality.detach().to(torch.int64).cpu().clone()
        out["label"] = label.detach().to(torch.int64).cpu().clone()
        return out


def draw_qualities(n: int, low: int, high: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(quality [n] int64 uniform in low..high, qt [n, 3, 64] float32 IJG tables for them)."""
    quality = torch.randint(low, high + 1, (n,), generator=gen)
    return quality, ijg_qt(quality.tolist())
