"""cli/options.py: the option parsers every command shares (each error message, since it is the one
line a user sees), the left-out-options rule and the --help defaults; bench's int_list splits alike."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from helpers import load_bench

from dctq.cli.options import (
    default_help,
    field_default,
    field_default_help,
    given,
    parse_arch_kwargs,
    parse_batches,
    parse_int_list,
    parse_qualities,
    parse_quality_range,
    split_ints,
)
from dctq.common.errors import ConfigError, QuantizationError
from dctq.jpeg.recompress import QSAM_EVAL_QUALITIES


def test_split_ints_ignores_blanks_and_empty_items():
    assert split_ints("1, 8,32") == (1, 8, 32)
    assert split_ints("90,,60,") == (90, 60)
    assert split_ints("") == () and split_ints(" , ") == ()
    with pytest.raises(ValueError):
        split_ints("1,x")


def test_bench_int_list_splits_as_the_cli_and_argparse_reports_bad_items():
    int_list = load_bench("bench_common").int_list
    assert int_list("1, 8,32") == [1, 8, 32] and int_list("") == []
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--batches", type=int_list)
    assert parser.parse_args(["--batches", "1,32"]).batches == [1, 32]
    with pytest.raises(argparse.ArgumentError, match="invalid int_list value: '1,x'"):
        parser.parse_args(["--batches", "1,x"])


def test_parse_int_list():
    assert parse_int_list(None, "--milestones") is None
    assert parse_int_list("90, 60,30", "--qualities") == (90, 60, 30)
    with pytest.raises(ConfigError) as bad:
        parse_int_list("90,abc", "--qualities")
    assert str(bad.value) == "--qualities takes comma-separated integers like 90,60,30,10, got '90,abc'"
    for empty in ("", " , "):
        with pytest.raises(ConfigError) as bad:
            parse_int_list(empty, "--held-out")
        assert str(bad.value) == "--held-out is empty; give comma-separated integers like 90,60,30,10"


def test_parse_qualities():
    assert parse_qualities(None) is None and parse_qualities("stored") is None
    assert parse_qualities("qsam") == tuple(QSAM_EVAL_QUALITIES) == tuple(range(95, 5, -5))
    assert parse_qualities("10, 100") == (10, 100)
    with pytest.raises(ConfigError) as bad:
        parse_qualities("0,50,101")
    assert str(bad.value) == "--qualities must be JPEG qualities in 1..100, got [0, 101]"
    with pytest.raises(ConfigError) as bad:
        parse_qualities("high")
    assert str(bad.value) == "--qualities takes comma-separated integers like 90,60,30,10, got 'high'"
    with pytest.raises(ConfigError, match="--qualities is empty"):
        parse_qualities("")


def test_parse_quality_range():
    assert parse_quality_range(None) is None
    assert parse_quality_range("50, 95") == (50, 95)
    assert parse_quality_range("70") == (70, 70)
    for bad in ("1,2,3", "a,b", "", ","):
        # A QuantizationError (as before the move) and a ConfigError (as every option parser).
        with pytest.raises(QuantizationError) as error:
            parse_quality_range(bad)
        assert isinstance(error.value, ConfigError)
        assert str(error.value) == f"--qualities takes LOW,HIGH (e.g. 50,95) or one quality, got {bad!r}"


def test_parse_batches():
    assert parse_batches("1, 8,32") == (1, 8, 32)
    with pytest.raises(ConfigError) as bad:
        parse_batches("1,eight")
    assert str(bad.value) == "--batch takes comma-separated batch sizes like 1,8,32, got '1,eight'"
    for value in ("", "0,1", "-1"):
        with pytest.raises(ConfigError) as bad:
            parse_batches(value)
        assert str(bad.value) == f"--batch needs batch sizes >= 1, got {value!r}"


def test_parse_arch_kwargs():
    assert parse_arch_kwargs(None) is None
    assert parse_arch_kwargs('{"widths": [16, 32]}') == {"widths": [16, 32]}
    with pytest.raises(ConfigError) as bad:
        parse_arch_kwargs("{widths: 1}")
    assert str(bad.value).startswith(
        "--arch-kwargs must be a JSON object like '{\"widths\": [16, 32]}': Expecting property name"
    )
    with pytest.raises(ConfigError) as bad:
        parse_arch_kwargs("[16, 32]")
    assert str(bad.value) == "--arch-kwargs must be a JSON object, got '[16, 32]'"


def test_given_drops_only_left_out_options():
    assert given({"epochs": None, "qac": False, "seed": 0, "--calib-split": "all"}) == {
        "qac": False,
        "seed": 0,
        "--calib-split": "all",
    }


@dataclasses.dataclass
class _Options:
    name: str
    epochs: int = 30
    milestones: tuple[int, ...] = (60, 120)
    kwargs: dict = dataclasses.field(default_factory=lambda: {"a": 1})


def test_field_defaults_for_help():
    assert field_default(_Options, "epochs") == 30
    assert field_default(_Options, "kwargs") == {"a": 1}
    assert field_default_help(_Options, "milestones") == default_help((60, 120))
    # Rich markup would eat an unescaped [default: ...]; the list reads as the option's own syntax.
    assert default_help((60, 120)) == " \\[default: 60,120]"
    with pytest.raises(KeyError, match="has no default"):
        field_default(_Options, "name")
    with pytest.raises(KeyError, match="has no field 'nope'"):
        field_default(_Options, "nope")
