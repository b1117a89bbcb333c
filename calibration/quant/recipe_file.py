"""Recipes as TOML files: `dctq quantize --recipe recipe.toml` reads one, `--save-recipe` writes one.

The file holds QuantRecipe's fields by name, optionally on top of a preset, and the rules as an array of
tables, in order (first match wins):

    preset = "w4a4"                   # optional: start from this preset; the fields below override it
    calibrator = "mse"
    [calibrator_args]
    num_bins = 2048
    [[rules]]
    pattern = "front.upscale.0"       # the first conv after the DCT stem ...
    input = 8                         # ... reads 8-bit input, its weights stay at the recipe's 4 bits
    [[rules]]
    pattern = "fc"
    action = "skip"

Unknown keys, wrong types and bad values are refused with the file named (QuantRecipe's own checks), so
a typo never silently quantizes a layer. The written form is what `load_recipe` reads back to an equal
recipe (fields at their default are written too, so the file says everything it means).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...common.errors import QuantizationConfigError, QuantizationError
from ...common.files import write_text_atomic
from .recipe import PRESETS, QuantRecipe, get_recipe

PRESET_KEY = "preset"


def recipe_from_mapping(data: dict[str, Any], source: str = "recipe") -> QuantRecipe:
    """A recipe from the parsed file: `preset` (optional) plus QuantRecipe fields; rules as tables.

    Raises QuantizationError naming `source` for an unknown preset, key or value.
    """
    data = dict(data)
    preset = data.pop(PRESET_KEY, None)
    try:
        base = get_recipe(preset).fields_dict() if preset is not None else {}
        fields = {**base, **data}
        return QuantRecipe.from_dict({"type": "QuantRecipe", **fields, "version": QuantRecipe.VERSION})
    except (QuantizationConfigError, QuantizationError) as exc:
        raise QuantizationError(f"{source}: {exc}") from None


def _toml() -> Any:
    # The standard library's reader from Python 3.11; tomli (the same code) on 3.10.
    try:
        import tomllib
    except ModuleNotFoundError:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise QuantizationError(
                "reading a TOML recipe needs Python >= 3.11 or the tomli package: pip install tomli"
            ) from None
    return tomllib


def load_recipe(path: Path | str) -> QuantRecipe:
    """Read a recipe file (TOML, see the module docstring). Raises QuantizationError naming the file."""
    path = Path(path)
    tomllib = _toml()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuantizationError(f"--recipe {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise QuantizationError(f"--recipe {path} is not valid TOML: {exc}") from None
    return recipe_from_mapping(data, f"--recipe {path}")


def _value(v: Any) -> str:
    # TOML strings, numbers and booleans are written as JSON writes them (true/false, "..."), which is
    # valid TOML for every value a recipe holds.
    return json.dumps(v)


def recipe_toml(recipe: QuantRecipe) -> str:
    """The TOML text of `recipe` (every field; rules in order, with only the overrides they set)."""
    fields = recipe.fields_dict()
    lines = ["# dctq quantization recipe (dctq quantize --recipe THIS_FILE)"]
    tables = {k: fields.pop(k) for k in ("calibrator_args", "rules")}
    lines += [f"{key} = {_value(value)}" for key, value in fields.items()]
    if tables["calibrator_args"]:
        lines += ["", "[calibrator_args]"]
        lines += [f"{key} = {_value(value)}" for key, value in tables["calibrator_args"].items()]
    for rule in tables["rules"]:
        lines += ["", "[[rules]]"] + [f"{key} = {_value(value)}" for key, value in rule.items()]
    return "\n".join(lines) + "\n"


def save_recipe(path: Path | str, recipe: QuantRecipe) -> Path:
    """Write `recipe` as TOML atomically; returns the path."""
    path = Path(path)
    write_text_atomic(path, recipe_toml(recipe))
    return path


def recipe_option(value: str) -> QuantRecipe:
    """`dctq quantize --recipe VALUE`: a preset's name, or the path of a recipe file (TOML).

    Raises QuantizationError listing the presets for a name that is neither.
    """
    if value in PRESETS:
        return PRESETS[value]
    path = Path(value)
    if path.suffix.lower() == ".toml" or path.is_file():
        return load_recipe(path)
    raise QuantizationError(
        f"unknown recipe {value!r}: --recipe takes a preset ({', '.join(PRESETS)}) or a recipe file (recipe.toml)"
    )
