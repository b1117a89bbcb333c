"""Quantization recipes: frozen, validated on construction, serialised with type name and version.

A recipe says how many bits weights and activations get, which calibrator sets the activation
ranges (weights always use per-output-channel max), and which layers to leave in float or quantize
differently, through ordered wildcard rules on module names (fnmatch, first match wins, no match =
quantize with the recipe's widths):

    QuantRecipe(rules=(LayerRule("stages.0.*", "skip"), LayerRule("fc", "skip")))
    QuantRecipe(weight_bits=4, act_bits=4, rules=(LayerRule("front.upscale.0", input=8),))  # 8-bit input
    QuantRecipe(rules=(LayerRule("stem_conv", input="float"),))   # weights quantized, input left float

A rule's optional fields override the recipe for the quantizers of the layers it matches (`weight`: the
weight quantizer; `input`: the layer's activation quantizers, i.e. a conv's or linear's input and both
inputs of a residual Add); None inherits. Further per-layer settings (issue 14's learnable ranges, say)
belong there as more optional fields: the saved form leaves out every field at its default, so a recipe
that uses none of them is written exactly as version 1 wrote it, and older dctq reads it.

`to_dict()` goes into checkpoints and engine sidecars (plain JSON types, so `torch.load(weights_only=True)`
reads it) in common.config's flat layout, {"type": "QuantRecipe", <fields>, "version": 1}, the form every
quantized checkpoint and sidecar has held since version 1; `from_dict()` is common.config's strict reader.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...common.config import Config
from ...common.errors import QuantizationConfigError, QuantizationError
from ..calibrators.registry import CALIBRATORS, calibrator_class, check_calibrator_args

ACTIONS = ("skip", "quantize")
FLOAT = "float"
"""The value of a LayerRule's `weight` / `input` that leaves that quantizer out (the tensor stays float)."""
_SCALARS = (bool, int, float, str)


def _is_bits(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 8


def _check_width(pattern: str, field: str, value: object) -> None:
    if value is None or value == FLOAT or _is_bits(value):
        return
    raise QuantizationConfigError(
        f"LayerRule {pattern!r}: {field} must be a bit width 2..8 or {FLOAT!r} (leave it float), got {value!r}"
    )


@dataclass(frozen=True)
class LayerRule:
    """For modules whose dotted name matches `pattern`: `action` "skip" keeps the layer float, "quantize"
    quantizes it, with the recipe's widths unless `weight` / `input` override them (2..8 bits, or "float"
    to leave that quantizer out: `input="float"` quantizes the weights only)."""

    pattern: str
    action: str = "quantize"
    weight: int | str | None = None
    input: int | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise QuantizationConfigError(
                f"LayerRule pattern must be a non-empty string, got {self.pattern!r}"
            )
        if self.action not in ACTIONS:
            raise QuantizationConfigError(
                f"LayerRule {self.pattern!r}: action must be one of {', '.join(ACTIONS)}, got {self.action!r}"
            )
        _check_width(self.pattern, "weight", self.weight)
        _check_width(self.pattern, "input", self.input)
        if self.action == "skip" and self.overrides:
            raise QuantizationConfigError(
                f"LayerRule {self.pattern!r} skips the layer and also sets {', '.join(self.overrides)}; "
                "a skipped layer has no quantizers: drop one of the two"
            )

    @property
    def overrides(self) -> dict[str, int | str]:
        """The quantizer overrides this rule sets: {"weight": 8, "input": "float"} (those not None)."""
        return {k: v for k, v in (("weight", self.weight), ("input", self.input)) if v is not None}

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)

    def to_dict(self) -> dict[str, Any]:
        """The saved form: pattern and action, plus only the overrides that are set."""
        return {"pattern": self.pattern, "action": self.action, **self.overrides}


@dataclass(frozen=True)
class LayerQuant:
    """How one layer is quantized once the rules are applied: bits of its weight and of its activation
    quantizers, None where that tensor stays float (`QuantRecipe.layer_quant`)."""

    weight_bits: int | None
    input_bits: int | None

    @property
    def quantized(self) -> bool:
        return self.weight_bits is not None or self.input_bits is not None


DEFAULT_RULES: tuple[LayerRule, ...] = (LayerRule("qabn_mixer.*", "skip"),)
"""QSAM's quant-table mixer (an MLP on the 128 table entries whose output is divided by its own sum)
stays float: tiny, and a quantized sum near zero would be unstable. Nothing else is skipped: the
DCT stem (dequantize + normalize) holds no Conv/Linear, so it stays float anyway and the first conv
after it is quantized, its input Q/DQ after the normalization as the coefficient contract asks;
RGB stems are convs and are quantized like every other layer."""


SR_RULES: tuple[LayerRule, ...] = (
    LayerRule("head", "skip"),
    LayerRule("head.*", "skip"),
    LayerRule("body_end", "skip"),
    LayerRule("body_end.*", "skip"),
    LayerRule("tail.*", "skip"),
)
"""The SR literature's convention (PAMS, DAQ, DDTB, ODM on EDSR / SRResNet): the first conv (head), the
conv after the residual blocks (body_end) and the upsampler with the last conv (tail) stay in full
precision; only the residual blocks' convs are quantized."""
TASK_RULES: dict[str, tuple[LayerRule, ...]] = {"sr": SR_RULES}
"""Rules a task's models get before the recipe's own (models.registry ModelInfo.task)."""


def with_task_rules(recipe: QuantRecipe, task: str) -> QuantRecipe:
    """`recipe` with the rules of `task` (TASK_RULES) in front, unless it already holds them."""
    extra = tuple(r for r in TASK_RULES.get(task, ()) if r not in recipe.rules)
    return dataclasses.replace(recipe, rules=extra + recipe.rules) if extra else recipe


# Which inputs of residual Adds get Q/DQ (see QuantRecipe.add_inputs).
ADD_INPUTS = ("residual", "both")


@dataclass(frozen=True)
class QuantRecipe(Config):
    """How to quantize a model (see module docstring).

    weight_bits / act_bits: 2..8; only 8/8 exports to ONNX Q/DQ, lower widths are simulated.
    calibrator: "max" | "percentile" | "entropy" | "mse" for activations.
    calibrator_args: that calibrator's options as (key, value) pairs (a dict is accepted and sorted),
        e.g. (("percentile", 99.99),).
    rules: ordered LayerRules; the first whose pattern matches a module name decides.
    fold_bn: fold BatchNorm2d into the preceding conv before inserting quantizers.
    act_narrow_range: activations on [-127, 127] instead of the full int8 [-128, 127] (weights are
        always narrow, as TensorRT requires). Off by default: the full range is what ONNX QuantizeLinear
        computes, so PyTorch and the exported graph agree exactly.
    act_unsigned: below 8 bits, give an activation quantizer the unsigned grid [0, 2^b - 1] when
        calibration saw no negative input (post-ReLU layers), as low-bit papers (IntraQ) do.
    act_asymmetric: below 8 bits, activation quantizers get an asymmetric range [amin, amax] on the grid
        [0, 2^b - 1] with a zero point (QAT of networks whose features are not centred on 0, e.g. SR
        bodies); calibration sets both bounds. Exports as uint8 Q/DQ with a zero point (ONNX Runtime;
        TensorRT refuses zero points).
    offsets: (layer name, "shift" | "scale" | "both") pairs: per-channel distribution offsets around those
        layers' input quantizers (quant/offsets.py; chosen by ODM's QAT, values in the state dict).
    add_inputs: "residual" quantizes only the shortcut input of residual Adds (TensorRT fuses the
        Add into the producing conv, whose output stays in its accumulator); "both" quantizes the conv
        side too, which ONNX Runtime needs to run those convs as integer QLinearConv (~1.4-2x faster
        on x86; see docs/benchmarks.md). Same function up to one more rounding per block.
    """

    weight_bits: int = 8
    act_bits: int = 8
    calibrator: str = "entropy"
    calibrator_args: tuple[tuple[str, Any], ...] = ()
    rules: tuple[LayerRule, ...] = DEFAULT_RULES
    fold_bn: bool = True
    act_narrow_range: bool = False
    act_unsigned: bool = False
    add_inputs: str = "residual"
    act_asymmetric: bool = False
    offsets: tuple[tuple[str, str], ...] = ()

    # common.config: bump VERSION when a field changes meaning (READS keeps the old ones readable).
    VERSION = 1
    READS = (1,)
    FLAT = True
    SPARSE = ("act_asymmetric", "offsets")  # QAT's additions: recipes without them hash as before
    UPGRADE = "upgrade dctq or re-quantize the model"
    error = QuantizationConfigError

    def __post_init__(self) -> None:
        for field in ("weight_bits", "act_bits"):
            if not _is_bits(getattr(self, field)):
                raise QuantizationConfigError(
                    f"QuantRecipe.{field} must be an integer in 2..8, got {getattr(self, field)!r}"
                )
        if self.calibrator not in CALIBRATORS:
            raise QuantizationConfigError(
                f"QuantRecipe.calibrator {self.calibrator!r} is unknown; choose one of {', '.join(CALIBRATORS)}"
            )
        args = self.calibrator_args
        if isinstance(args, Mapping):
            args = tuple(args.items())
        try:
            pairs = tuple(sorted((str(k), v) for k, v in args))
        except (TypeError, ValueError):
            raise QuantizationConfigError(
                f"QuantRecipe.calibrator_args must be (key, value) pairs or a dict, got {self.calibrator_args!r}"
            ) from None
        for key, value in pairs:
            if not isinstance(value, _SCALARS):
                raise QuantizationConfigError(
                    f"calibrator option {key!r} must be a number, string or bool, got {value!r}"
                )
        check_calibrator_args(self.calibrator, dict(pairs))
        object.__setattr__(self, "calibrator_args", pairs)
        rules = tuple(self.rules)
        if not all(isinstance(r, LayerRule) for r in rules):
            raise QuantizationConfigError(
                f"QuantRecipe.rules must hold LayerRule objects, got {self.rules!r}"
            )
        object.__setattr__(self, "rules", rules)
        for field in ("fold_bn", "act_narrow_range", "act_unsigned", "act_asymmetric"):
            if not isinstance(getattr(self, field), bool):
                raise QuantizationConfigError(
                    f"QuantRecipe.{field} must be true or false, got {getattr(self, field)!r}"
                )
        try:
            offsets = tuple((str(name), str(kind)) for name, kind in self.offsets)
        except (TypeError, ValueError):
            raise QuantizationConfigError(
                f"QuantRecipe.offsets must be (layer, kind) pairs, got {self.offsets!r}"
            ) from None
        bad = [kind for _, kind in offsets if kind not in ("shift", "scale", "both")]
        if bad:
            raise QuantizationConfigError(
                f"QuantRecipe.offsets kinds must be shift, scale or both, got {bad[0]!r}"
            )
        object.__setattr__(self, "offsets", offsets)
        if self.add_inputs not in ADD_INPUTS:
            raise QuantizationConfigError(
                f"QuantRecipe.add_inputs must be one of {', '.join(ADD_INPUTS)}, got {self.add_inputs!r}"
            )
        if self.act_unsigned and self.act_bits == 8:
            raise QuantizationConfigError(
                "QuantRecipe.act_unsigned needs act_bits < 8: INT8 activations stay signed for TensorRT"
            )
        if self.act_asymmetric and self.act_bits == 8:
            raise QuantizationConfigError(
                "QuantRecipe.act_asymmetric needs act_bits < 8: INT8 activations stay symmetric for TensorRT"
            )

    @property
    def exportable(self) -> bool:
        """Whether the quantized model can be exported as ONNX Q/DQ: every quantizer INT8 (the recipe's
        widths and every width a rule sets; quantizers a rule leaves float do not count)."""
        widths = [self.weight_bits, self.act_bits]
        widths += [v for r in self.rules for v in r.overrides.values() if v != FLOAT]
        return all(w == 8 for w in widths)

    def rule_for(self, name: str) -> LayerRule | None:
        """The first rule whose pattern matches module `name`, or None."""
        for rule in self.rules:
            if rule.matches(name):
                return rule
        return None

    def action_for(self, name: str) -> str:
        """ "skip" or "quantize" for module `name`: the first matching rule, else "quantize"."""
        rule = self.rule_for(name)
        return rule.action if rule is not None else "quantize"

    def layer_quant(self, name: str) -> LayerQuant | None:
        """How module `name` is quantized (its first matching rule applied to the recipe's widths), or
        None when it stays float (a "skip" rule, or a rule leaving both its weight and input float)."""
        rule = self.rule_for(name)
        if rule is not None and rule.action == "skip":
            return None
        weight = self.weight_bits if rule is None or rule.weight is None else rule.weight
        act = self.act_bits if rule is None or rule.input is None else rule.input
        found = LayerQuant(None if weight == FLOAT else weight, None if act == FLOAT else act)  # type: ignore[arg-type]
        return found if found.quantized else None

    def with_rules(self, rules: Sequence[LayerRule], *, first: bool = True) -> QuantRecipe:
        """This recipe with `rules` in front of its own (first=True: they win over them) or after them."""
        rules = tuple(rules)
        return dataclasses.replace(self, rules=rules + self.rules if first else self.rules + rules)

    def calibrator_kwargs(self) -> dict[str, Any]:
        return dict(self.calibrator_args)

    def fields_dict(self) -> dict[str, Any]:
        # calibrator_args as an object of options, as version 1 has always written it; rules without
        # the overrides they do not set, so recipes without overrides are written as version 1 wrote them.
        return {
            **super().fields_dict(),
            "calibrator_args": dict(self.calibrator_args),
            "rules": [r.to_dict() for r in self.rules],
        }


PRESETS: dict[str, QuantRecipe] = {
    "int8": QuantRecipe(),
    "int8-max": QuantRecipe(calibrator="max"),
    "int8-percentile": QuantRecipe(calibrator="percentile", calibrator_args=(("percentile", 99.99),)),
    "int8-mse": QuantRecipe(calibrator="mse"),
    "w4a4": QuantRecipe(weight_bits=4, act_bits=4, calibrator="mse", act_unsigned=True),
    "w3a3": QuantRecipe(weight_bits=3, act_bits=3, calibrator="mse", act_unsigned=True),
}
"""Named recipes: "int8" (entropy, TensorRT's default) is the deployable one; w4a4/w3a3 follow the
low-bit research settings (IntraQ's tables)."""


def get_recipe(name: str) -> QuantRecipe:
    """The preset `name`. Raises QuantizationError listing the presets."""
    try:
        return PRESETS[name]
    except KeyError:
        raise QuantizationError(f"unknown recipe {name!r}; presets: {', '.join(PRESETS)}") from None


# ------------------------------------------------------------- `dctq quantize --recipe/--bits/--calibrator`


def parse_bits(bits: str) -> tuple[int, int]:
    """'w8a8' -> (8, 8), 'w4a4' -> (4, 4); widths 2..8. Raises QuantizationError naming --bits."""
    text = bits.strip().lower()
    try:
        if not text.startswith("w") or "a" not in text:
            raise ValueError
        w, a = text[1:].split("a", 1)
        weight_bits, act_bits = int(w), int(a)
    except ValueError:
        raise QuantizationError(f"--bits takes wNaM like w8a8, w5a5, w4a4 or w3a3, got {bits!r}") from None
    if not (2 <= weight_bits <= 8 and 2 <= act_bits <= 8):
        raise QuantizationError(f"--bits {bits}: weight and activation widths must be in 2..8")
    return weight_bits, act_bits


def parse_override(text: str) -> LayerRule:
    """`--override 'PATTERN:input=8,weight=4'` -> LayerRule(PATTERN, input=8, weight=4); a value is a
    bit width 2..8 or "float". Raises QuantizationError naming --override and the form it takes."""
    form = "PATTERN:input=BITS|float[,weight=BITS|float], e.g. 'front.upscale.0:input=8'"
    pattern, sep, settings = str(text).rpartition(":")
    if not sep or not pattern or not settings:
        raise QuantizationError(f"--override takes {form}, got {text!r}")
    values: dict[str, int | str] = {}
    for item in settings.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or key not in ("input", "weight") or key in values:
            raise QuantizationError(
                f"--override {text!r}: each setting is input=... or weight=..., once; {form}"
            )
        values[key] = FLOAT if value == FLOAT else int(value) if value.isdigit() else value
    try:
        return LayerRule(pattern, **values)  # type: ignore[arg-type]
    except QuantizationConfigError as exc:
        raise QuantizationError(f"--override {text!r}: {exc}") from None


def skip_rules(patterns: Sequence[str]) -> tuple[LayerRule, ...]:
    """`--skip PATTERN` (repeatable) as "skip" rules, in order."""
    return tuple(LayerRule(p, "skip") for p in patterns)


def build_recipe(
    preset: str | QuantRecipe | None = None,
    bits: str | None = None,
    calibrator: str | None = None,
    add_inputs: str | None = None,
    *,
    rules: Sequence[LayerRule] = (),
    asymmetric: bool | None = None,
) -> QuantRecipe:
    """The recipe of `dctq quantize --recipe PRESET|FILE --bits wNaM --calibrator NAME --skip/--override`
    (each optional).

    `preset`: a preset's name or a recipe (read from a `--recipe recipe.toml`: recipe_file.load_recipe).
    Without one, `bits` picks the preset of that name when there is one (w4a4, w3a3), else
    "int8" for w8a8 and the low-bit settings (MSE calibration, unsigned post-ReLU grids) below 8 bits.
    `bits` then overrides the base's widths (unsigned activation grids exactly when act_bits < 8),
    and `calibrator` its calibrator (keeping the base's calibrator options only for the same one);
    `add_inputs` ("residual" or "both") which inputs of residual Adds are quantized; `rules` go in
    front of the base's own rules (first match wins, so they take precedence); `asymmetric` True
    gives activations asymmetric ranges (below 8 bits).
    Raises QuantizationError for an unknown preset, calibrator or bit width.
    """
    widths = parse_bits(bits) if bits is not None else None
    if isinstance(preset, QuantRecipe):
        base = preset
    elif preset is not None:
        base = get_recipe(preset)
    elif widths is None or widths == (8, 8):
        base = PRESETS["int8"]
    else:
        base = PRESETS.get(bits.strip().lower()) or QuantRecipe(calibrator="mse")  # type: ignore[union-attr]
    changes: dict[str, Any] = {}
    if widths is not None:
        changes.update(weight_bits=widths[0], act_bits=widths[1], act_unsigned=widths[1] < 8)
    if calibrator is not None and calibrator != base.calibrator:
        calibrator_class(calibrator)  # an unknown name fails with close matches
        changes.update(calibrator=calibrator, calibrator_args=())
    if add_inputs is not None:
        changes.update(add_inputs=add_inputs)
    if rules:
        changes.update(rules=tuple(rules) + base.rules)
    if asymmetric is not None:
        changes.update(act_asymmetric=asymmetric)
    return dataclasses.replace(base, **changes) if changes else base
