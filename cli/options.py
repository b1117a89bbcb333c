"""Option values of the commands: the parsers of comma lists and JSON, the rule that options left out
keep the library's defaults, those defaults in --help, and the --json flag the commands share.

Every parser takes the option's text (None when the option was left out, where that is allowed) and
raises ConfigError (QuantizationConfigError for the synthesis qualities) naming the flag and the form
it takes. bench/bench_common.py splits its integer lists with `split_ints` too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..common.errors import ConfigError, QuantizationConfigError
from ..jpeg.recompress import QSAM_EVAL_QUALITIES


def split_ints(text: str) -> tuple[int, ...]:
    """'1, 8,32' -> (1, 8, 32): blanks ignored, empty items skipped ('' -> ()).

    Raises ValueError (int's own) for an item that is not an integer, so argparse reports it as a bad
    value of the option when used as its `type`.
    """
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


def parse_int_list(value: str | None, flag: str) -> tuple[int, ...] | None:
    """'90,60,30,10' -> (90, 60, 30, 10); None (option left out) stays None.

    Raises ConfigError naming `flag` for a non-integer item or a list without items.
    """
    if value is None:
        return None
    try:
        items = split_ints(value)
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers like 90,60,30,10, got {value!r}") from None
    if not items:
        raise ConfigError(f"{flag} is empty; give comma-separated integers like 90,60,30,10")
    return items


def parse_qualities(value: str | None) -> tuple[int, ...] | None:
    """`dctq evaluate --qualities`: None or 'stored' -> None (files as stored); 'qsam' -> QSAM's 18
    anchors 95..10; else a list like '10,20,30' of JPEG qualities.

    Raises ConfigError naming --qualities for a bad list or a quality outside 1..100.
    """
    if value is None or value == "stored":
        return None
    if value == "qsam":
        return tuple(QSAM_EVAL_QUALITIES)
    qualities = parse_int_list(value, "--qualities")
    bad = [q for q in qualities or () if not 1 <= q <= 100]
    if bad:
        raise ConfigError(f"--qualities must be JPEG qualities in 1..100, got {bad}")
    return qualities


def parse_quality_range(value: str | None) -> tuple[int, int] | None:
    """`dctq synthesize --qualities`: 'LOW,HIGH' -> (LOW, HIGH), one quality 'Q' -> (Q, Q); None stays None.

    Raises QuantizationConfigError naming --qualities unless the text holds one or two integers
    (SynthConfig checks their range).
    """
    if value is None:
        return None
    try:
        parts = split_ints(value)
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2):
        raise QuantizationConfigError(
            f"--qualities takes LOW,HIGH (e.g. 50,95) or one quality, got {value!r}"
        )
    return (parts[0], parts[-1])


def parse_batches(value: str) -> tuple[int, ...]:
    """`dctq profile --batch`: '1,8,32' -> (1, 8, 32).

    Raises ConfigError naming --batch for a non-integer item, no item, or a batch size below 1.
    """
    try:
        batches = split_ints(value)
    except ValueError:
        raise ConfigError(f"--batch takes comma-separated batch sizes like 1,8,32, got {value!r}") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batch needs batch sizes >= 1, got {value!r}")
    return batches


def parse_arch_kwargs(value: str | None) -> dict[str, Any] | None:
    """`--arch-kwargs '{"widths": [16, 32]}'` -> {"widths": [16, 32]}; None stays None.

    Raises ConfigError naming --arch-kwargs for text that is not JSON or JSON that is not an object
    (TrainConfig checks the keys).
    """
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--arch-kwargs must be a JSON object like '{{\"widths\": [16, 32]}}': {exc}"
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"--arch-kwargs must be a JSON object, got {value!r}")
    return parsed


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given (not None), so that those left out keep the library's defaults when
    passed on as keyword arguments: `TrainConfig(arch, **given({"epochs": epochs, ...}))`."""
    return {name: value for name, value in options.items() if value is not None}


def default_help(value: Any) -> str:
    """' [default: VALUE]' for the end of an option's help text."""
    # Sequences as the comma list the option parses (`--milestones 60,120`), not a Python tuple.
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    # Escaped: typer renders help as Rich markup, where a bare [...] is a tag and vanishes.
    return escape(f" [default: {value}]")


def field_default(dataclass_type: type, name: str) -> Any:
    """The default of field `name` of a config dataclass, so --help shows the library's own defaults.

    Raises KeyError for an unknown field or one without a default (a mistake in the CLI code).
    """
    for f in dataclasses.fields(dataclass_type):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{dataclass_type.__name__}.{name} has no default")
    raise KeyError(f"{dataclass_type.__name__} has no field {name!r}")


def field_default_help(dataclass_type: type, name: str) -> str:
    """default_help of field `name`'s default in `dataclass_type`, e.g. ' [default: 30]'."""
    return default_help(field_default(dataclass_type, name))


JsonResult = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
"""`--json` of the commands that make something (train, quantize, export...): `as_json: JsonResult = False`."""
JsonReport = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]
"""`--json` of the commands that report on something (check, evaluate, profile, demo)."""

TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Load a TorchScript (.ts), torch.export (.pt2) or TensorRT (.engine) file: these hold code that "
        "runs when loaded, so pass it only for files you made or trust. .pt and .onnx never need it.",
    ),
]
"""`--trust-code` of the commands that run an artifact (evaluate, predict, profile): deploy.artifact.CODE_KINDS."""
