"""JPEG folders as PyTorch datasets of DCT coefficients, and their loaders.

Layout: `root/<class>/<file>.jpg` as torchvision's ImageFolder (listed by samples.py: classes =
sorted sub-folder names, files found recursively, non-JPEG extensions and hidden entries ignored).
`FolderDataset` holds what the coefficient path (`JpegFolder`, here) and the pixel path for
baselines (`rgb.RgbJpegFolder`) share: sample listing, the quality policy (QSAM re-compression) and
the per-worker random Generator.

Randomness: each dataset owns one numpy Generator per process. In a DataLoader worker it is seeded
from the worker's torch seed (`base_seed + worker_id`, drawn from the loader's generator each epoch),
so a loader made by `make_loader(seed=s)` yields the same batches on every run, for any number of
workers; in the main process it is seeded from `reseed(seed)` or else `torch.initial_seed()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from ..common.errors import DataError, JpegError
from ..common.files import read_regular_file
from .coefficients import JpegCoefficients
from .geometry import block_grid, center_crop_or_pad
from .limits import MAX_FILE_BYTES, check_pixel_limit
from .pixel_augment import PixelCropFlip
from .quality import estimate_ijg_quality
from .reader import read_jpeg
from .recompress import QualityPolicy, recompress
from .samples import Sample, list_classes, list_samples, scan_samples
from .transforms import CoefTransform, default_train_transforms, grid_for_input_size

# ------------------------------------------------------------------------------------ file access


def read_file_bytes(path: Path) -> bytes:
    """The bytes of a sample file, for the decoders that take bytes (re-compression, pixel augmentation):
    a regular file of at most limits.MAX_FILE_BYTES (common.files.read_regular_file), whose header declares
    no more pixels than the limit (limits.check_pixel_limit), so Pillow never decodes a pixel bomb.

    Raises DataError naming it when it vanished, cannot be read, is a FIFO / device / too large; the
    reader's JpegError when its header is above the pixel limit or cannot be walked.
    """
    try:
        data = read_regular_file(path, max_bytes=MAX_FILE_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read sample file {path}: {exc.strerror or exc}") from exc
    check_pixel_limit(data, str(path))
    return data


def error_with_path(exc: JpegError, path: Path) -> JpegError:
    """The same error class, with the file name in the message when it is not there yet."""
    return exc if str(path) in str(exc) else type(exc)(f"{path}: {exc}")


# ---------------------------------------------------------------------------- shared dataset base


class FolderDataset(Dataset):
    """What the coefficient and pixel datasets share: samples, quality policy, per-worker Generator.

    Args:
        root: folder in the ImageFolder layout; class names come from its sub-folders.
        qualities: re-compression policy (QSAM); None keeps every file as it is.
        train: training mode (random qualities, augmentation) or evaluation mode.
        samples: use these (path, label) pairs instead of listing `root` (e.g. from split_samples).
        seed: seed of the main-process Generator (workers ignore it, see the module docstring).

    Raises:
        DataError: bad layout, or a sample label outside the class list.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        qualities: QualityPolicy | None = None,
        train: bool,
        samples: Sequence[Sample] | None = None,
        seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        if samples is None:
            listed, self.class_names = list_samples(self.root)
        else:
            self.class_names = list_classes(self.root)
            listed = [Sample(Path(p), int(c)) for p, c in samples]
            bad = [s for s in listed if not 0 <= s.label < len(self.class_names)]
            if bad:
                raise DataError(
                    f"sample {bad[0].path} has label {bad[0].label}, but {self.root} has "
                    f"{len(self.class_names)} classes; samples must come from the same folder"
                )
        self.samples: list[Sample] = listed
        self.qualities = qualities if qualities is not None else QualityPolicy()
        self.train = train
        self._seed = seed
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [s.label for s in self.samples]

    def reseed(self, seed: int | None) -> None:
        """Seed the main-process Generator (used when the loader has no workers)."""
        self._seed = seed
        self._rng = None

    def rng(self) -> np.random.Generator:
        """This process's Generator: per DataLoader worker from its torch seed, else from `seed`."""
        info = get_worker_info()
        key = ("worker", info.seed) if info is not None else ("main", self._seed)
        if self._rng is None or self._rng_key != key:
            if info is not None:
                seed = info.seed
            else:
                seed = self._seed if self._seed is not None else torch.initial_seed()
            self._rng = np.random.default_rng(seed)
            self._rng_key = key
        return self._rng

    def load(self, index: int) -> tuple[Path, bytes | None, int | None]:
        """(path, bytes, quality) of sample `index` after the quality policy.

        bytes is None when the file is kept as it is (read it from the path); quality is the
        re-compression quality used, or None.

        Raises:
            JpegError (subclass): the file cannot be re-compressed; the message names it.
        """
        path = self.samples[index].path
        quality = self.qualities.pick(self.train, self.rng())
        if quality is None:
            return path, None, None
        try:
            return path, recompress(read_file_bytes(path), quality), quality
        except JpegError as exc:
            raise error_with_path(exc, path) from exc

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root}, samples={len(self)}, classes={len(self.class_names)}, "
            f"train={self.train}, qualities={self.qualities})"
        )


# ------------------------------------------------------------------------ coefficient dataset


def preprocess_dct(
    coefs: JpegCoefficients,
    size: int | tuple[int, int] | None,
    *,
    transform: CoefTransform | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """One file's coefficients as a DCT model's inputs, the same for every consumer (JpegFolder,
    deploy/predict.py, the GPU input path of deploy/profiling/gpu_input.py).

    Grayscale files get all-zero chroma, exactly what a JPEG encoder writes for a colourless image
    (Cb = Cr = 128); `transform` (training augmentation, drawing from `rng`) runs next; then the planes
    are centre-cropped or zero-padded on MCU boundaries to the block grid of `size` pixels
    (geometry.block_grid: square for an int, (H, W) for a pair; None keeps the file's own grid).

    Returns:
        {"y": [64, Hb, Wb] int16, "cbcr": [128, Hb/2, Wb/2] int16, "qt": [3, 64] float32}: numpy arrays
        (or what `transform` returns for y and cbcr).

    Raises:
        BlockGridError: planes that do not fit the 4:2:0 grid (see geometry.center_crop_or_pad).
    """
    y, cbcr = coefs.y, coefs.cbcr
    if cbcr is None:
        cbcr = np.zeros((128, y.shape[1] // 2, y.shape[2] // 2), dtype=np.int16)
    if transform is not None:
        y, cbcr = transform(y, cbcr, rng)
    if size is not None:
        y, cbcr = center_crop_or_pad(y, cbcr, *block_grid((size, size) if isinstance(size, int) else size))
    return {"y": y, "cbcr": cbcr, "qt": coefs.qt.astype(np.float32)}


@dataclass(frozen=True)
class DctSample:
    """One sample of a JpegFolder.

    Attributes:
        y: [64, Hb, Wb] int16 luma coefficients; cbcr: [128, Hb/2, Wb/2] int16 chroma.
        qt: [3, 64] float32 quant tables (Y, Cb, Cr), natural order.
        label: class index; quality: re-compression quality, else the file's estimated IJG quality,
            else -1 (custom tables).
    """

    y: torch.Tensor = field(metadata={"what": "block grid (y)"})
    cbcr: torch.Tensor = field(metadata={"what": "block grid (cbcr)"})
    qt: torch.Tensor
    label: int
    quality: int


class JpegFolder(FolderDataset):
    """An ImageFolder of JPEG files read as DCT coefficients (see FolderDataset for shared args).

    Args:
        input_size: square model input in pixels (multiple of 16); every sample is centre-cropped
            or zero-padded to its block grid after augmentation. None keeps each file's own grid
            (batches then need equal-size files).
        transforms: coefficient transform `t(y, cbcr, rng)` applied before the crop to input_size;
            "default" = random flip + one-MCU pad/random crop when training, nothing otherwise;
            None = nothing.
        allow_gray: grayscale files get all-zero chroma, exactly what a JPEG encoder writes for a
            colourless image (Cb = Cr = 128), and rows 1-2 of qt repeat the luma table. False raises
            DataError on them instead.
        pixel_augment: when training, move the decoded pixels and re-encode (with the file's tables,
            or at the policy's quality) before reading coefficients: jpeg.pixel_augment.PixelCropFlip.

    `__getitem__` returns a DctSample; it raises the reader's JpegError naming the file on a bad
    file (use `scan()` to list them beforehand).
    """

    def __init__(
        self,
        root: Path | str,
        *,
        input_size: int | None = None,
        qualities: QualityPolicy | None = None,
        train: bool,
        transforms: CoefTransform | Literal["default"] | None = "default",
        samples: Sequence[Sample] | None = None,
        allow_gray: bool = True,
        seed: int | None = None,
        pixel_augment: PixelCropFlip | None = None,
    ) -> None:
        super().__init__(root, qualities=qualities, train=train, samples=samples, seed=seed)
        self.pixel_augment = pixel_augment
        if isinstance(transforms, str):
            if transforms != "default":
                raise DataError(f'transforms must be a callable, None or "default", got {transforms!r}')
            transforms = default_train_transforms() if train else None
        self.transforms: CoefTransform | None = transforms
        if input_size is not None:
            grid_for_input_size(input_size)  # a whole number of MCUs, or DctqError naming input_size
        self.input_size = input_size
        self.allow_gray = allow_gray

    def __getitem__(self, index: int) -> DctSample:
        if self.train and self.pixel_augment is not None:
            path = self.samples[index].path
            # One decode and one encode: the policy's quality (if any) is applied by the same save.
            quality = self.qualities.pick(self.train, self.rng())
            try:
                data: bytes | None = self.pixel_augment(read_file_bytes(path), self.rng(), quality)
            except JpegError as exc:
                raise error_with_path(exc, path) from exc
        else:
            path, data, quality = self.load(index)
        # Without augmentation only the centre crop's blocks are kept while reading (jpeg.reader's fit_grid).
        fit = grid_for_input_size(self.input_size) if self.transforms is None and self.input_size else None
        try:
            coefs = read_jpeg(path if data is None else data, fit_grid=fit)
        except JpegError as exc:
            raise error_with_path(exc, path) from exc
        if coefs.is_gray and not self.allow_gray:
            raise DataError(f"{path} is a grayscale JPEG; convert it to colour or set allow_gray=True")
        if quality is None:
            quality, _ = estimate_ijg_quality(coefs.qt[0], None if coefs.is_gray else coefs.qt[1])
        inputs = preprocess_dct(coefs, self.input_size, transform=self.transforms, rng=self.rng())
        return DctSample(
            y=_int16_tensor(inputs["y"]),
            cbcr=_int16_tensor(inputs["cbcr"]),
            qt=torch.from_numpy(inputs["qt"]),
            label=self.samples[index].label,
            quality=-1 if quality is None else int(quality),
        )

    def scan(self) -> list[tuple[Path, str]]:
        """(path, error) of every file that the coefficient reader rejects."""
        return scan_samples(self.samples)


def _int16_tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(torch.int16).contiguous()
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int16))


# --------------------------------------------------------------------------- batching, loaders


def stack_equal(tensors: Sequence[torch.Tensor], what: str) -> torch.Tensor:
    """torch.stack, with a DataError telling the user to set input_size when shapes differ."""
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise DataError(
            f"cannot batch samples whose {what} shapes differ ({sorted(shapes)}); set input_size on "
            "the dataset so every sample is cropped/padded to the model's input"
        )
    return torch.stack(list(tensors))


def collate_samples(batch: Sequence[Any]) -> dict[str, torch.Tensor]:
    """Stack a batch of dctq samples (DctSample, rgb.RgbSample) field by field into the loaders' dict:
    tensor fields [N, ...] (DctSample: y [N, 64, Hb, Wb] int16, cbcr [N, 128, Hb/2, Wb/2] int16;
    RgbSample: x [N, 3, H, W] float32; both qt [N, 3, 64] float32), int fields (label, quality) [N] int64.

    Raises:
        DataError: the samples' block grids or image sizes differ (set input_size); the message names
            the field's `what` metadata.
    """
    out: dict[str, torch.Tensor] = {}
    for f in fields(batch[0]):
        values = [getattr(s, f.name) for s in batch]
        if isinstance(values[0], torch.Tensor):
            out[f.name] = stack_equal(values, f.metadata.get("what", f.name))
        else:
            out[f.name] = torch.tensor(values, dtype=torch.int64)
    return out


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    *,
    drop_last: bool = False,
    pin_memory: bool = False,
    collate_fn: Callable[[Sequence[Any]], Any] = collate_samples,
) -> DataLoader:
    """A DataLoader over a dctq dataset whose batches are the same on every run with the same seed
    (in order unless `shuffle`).

    Shuffling and the workers' seeds come from a torch Generator seeded with `seed` (+ rank when
    distributed, so ranks augment differently); without workers, a dataset with a `reseed(seed)`
    method (FolderDataset and its wrappers) is reseeded with it, which mutates that dataset.
    Distributed: a DistributedSampler (seeded, sharded by rank) replaces
    shuffling; call `loader.sampler.set_epoch(epoch)` each epoch to reshuffle.

    Raises:
        DataError: bad batch size / worker count, or distributed=True without an initialised
            torch.distributed process group.
    """
    if batch_size < 1 or num_workers < 0:
        raise DataError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    rank, sampler = 0, None
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise DataError(
                "make_loader(distributed=True) needs an initialised process group: run under torchrun "
                "and call torch.distributed.init_process_group first"
            )
        rank = torch.distributed.get_rank()
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if num_workers == 0 and callable(getattr(dataset, "reseed", None)):  # FolderDataset and wrappers
        dataset.reseed(seed + rank)
    generator = torch.Generator().manual_seed(seed + rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=generator,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
