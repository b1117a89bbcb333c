"""The dctq error family: one root, one subclass per domain.

Every message names the file, layer or value at fault and says what to do about it, because the CLI
prints it as the one line a user sees.
"""

from __future__ import annotations


class DctqError(Exception):
    """Root of every error dctq raises on purpose."""


class JpegError(DctqError):
    """A JPEG file or byte string that cannot be read into the coefficient contract."""


class NotAJpegError(JpegError):
    """The input is not a JPEG at all (PNG, text, empty file, ...)."""


class CorruptJpegError(JpegError):
    """The JPEG is damaged: truncated, bad markers, bad Huffman data."""


class UnsupportedJpegError(JpegError):
    """A valid JPEG of a kind dctq does not read (CMYK/YCCK, 12-bit, arithmetic coding, ...)."""


class DataError(DctqError):
    """A data set folder or archive that is missing or malformed."""


class UnreadableFilesError(DataError):
    """A data set with files the JPEG reader refuses, found by scanning all of them (`--bad-files list`).

    Attributes:
        files: (path, the reader's one-line message) of every such file, in listing order.
    """

    def __init__(self, message: str, files: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.files = list(files or [])


class ModelError(DctqError):
    """Unknown architecture, bad arguments, or a checkpoint that does not fit."""


class QuantizationError(DctqError):
    """A quantization recipe or calibration that cannot be carried out."""


class ExportError(DctqError):
    """An artifact (ONNX, TorchScript, engine) that cannot be written or fails its checks."""


class UntrustedArtifactError(ExportError):
    """An artifact kind that holds code (TorchScript, torch.export program, TensorRT engine), asked to load
    without trust_code=True (`--trust-code`)."""


class BackendUnavailable(DctqError):
    """An optional runtime (ONNX Runtime, TensorRT, CUDA) that is not installed or usable here."""


class ConfigError(DctqError):
    """An option with a value that cannot be used, or a saved config this dctq cannot read; the message
    names the option (its CLI flag where it has one) and the fix."""


class QuantizationConfigError(ConfigError, QuantizationError):
    """A ConfigError of a quantization option (recipe, synthesis, zero-shot tuning): callers catch it
    as either, so code that expected QuantizationError from these configs keeps working."""
