"""Reading a Triton model repository back as Triton would load it: every config.pbtxt parsed strictly
through Triton's schema (model_config.py), each version folder holding the file its backend loads, and
every ensemble's steps wired to tensors of the right data type and dims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...common.errors import ExportError
from .model_config import config_dict, parse_config

VERSION = "1"
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": "model.py"}
"""Triton backend -> the file it loads from the version folder (Triton's default names)."""


def read_configs(root: Path | str, names: list[str] | None = None) -> dict[str, Any]:
    """{model name: parsed inference.ModelConfig} of the models in `root` (all folders with a
    config.pbtxt, or `names`). Raises ExportError for a config Triton's schema refuses."""
    root = Path(root)
    folders = (
        [root / n for n in names]
        if names is not None
        else sorted(p.parent for p in root.glob("*/config.pbtxt"))
    )
    out = {}
    for folder in folders:
        path = folder / "config.pbtxt"
        if not path.is_file():
            raise ExportError(f"{folder} has no config.pbtxt")
        out[folder.name] = parse_config(path.read_text(encoding="utf-8"), str(path))
    return out


def _signature(tensor: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
    return tensor.get("data_type", "TYPE_INVALID"), tuple(int(d) for d in tensor.get("dims", []))


def check_repository(root: Path | str, names: list[str] | None = None) -> dict[str, Any]:
    """Check a model repository as Triton would load it: every config parses (strict, Triton's schema),
    its name is its folder's, its version folder holds the file its backend loads, and every ensemble
    step names a model of the repository whose inputs and outputs exist with the data types and dims
    of the ensemble tensors mapped to them. Returns {name: config as a dict}; raises ExportError
    listing every problem."""
    root = Path(root)
    configs = {n: config_dict(m) for n, m in read_configs(root, names).items()}
    problems = []
    for name, cfg in configs.items():
        if cfg.get("name", name) != name:
            problems.append(f"{name}: config name {cfg.get('name')!r} is not its folder's")
        wanted = MODEL_FILES.get(cfg.get("backend", ""))
        if wanted and not (root / name / VERSION / wanted).is_file():
            problems.append(f"{name}: {VERSION}/{wanted} is missing")
        if cfg.get("platform") == "ensemble":
            problems += _check_ensemble(root, name, cfg, configs)
    if problems:
        raise ExportError(f"Triton model repository {root}: " + "; ".join(problems))
    return configs


def _check_ensemble(root: Path, name: str, cfg: dict[str, Any], configs: dict[str, Any]) -> list[str]:
    tensors = {t["name"]: _signature(t) for t in cfg.get("input", [])}
    problems = []
    for step in cfg.get("ensemble_scheduling", {}).get("step", []):
        model = step.get("model_name", "")
        sub = configs.get(model)
        if sub is None and (root / model / "config.pbtxt").is_file():
            sub = config_dict(read_configs(root, [model])[model])
        if sub is None:
            problems.append(f"{name}: step model {model!r} is not in the repository")
            continue
        if int(sub.get("max_batch_size", 0)) < int(cfg.get("max_batch_size", 0)):
            problems.append(f"{name}: max_batch_size above {model}'s")
        inputs = {t["name"]: _signature(t) for t in sub.get("input", [])}
        outputs = {t["name"]: _signature(t) for t in sub.get("output", [])}
        for key, value in step.get("input_map", {}).items():
            if key not in inputs:
                problems.append(f"{name}: {model} has no input {key!r}")
            elif tensors.get(value) != inputs[key]:
                problems.append(
                    f"{name}: tensor {value!r} {tensors.get(value)} does not fit {model}.{key} {inputs[key]}"
                )
        missing = set(inputs) - set(step.get("input_map", {}))
        if missing:
            problems.append(f"{name}: {model}'s inputs {sorted(missing)} are not mapped")
        for key, value in step.get("output_map", {}).items():
            if key not in outputs:
                problems.append(f"{name}: {model} has no output {key!r}")
            else:
                tensors[value] = outputs[key]
    for out in cfg.get("output", []):
        if tensors.get(out["name"]) != _signature(out):
            problems.append(
                f"{name}: output {out['name']!r} {_signature(out)} is produced as {tensors.get(out['name'])}"
            )
    return problems
