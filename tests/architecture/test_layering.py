"""The import layering of docs/design.md, checked on the source: every import statement (module level,
inside functions, under TYPE_CHECKING), every `importlib.import_module` call, and every string that
names a dctq module (lazy registries) counts as an import.

    common <- jpeg <- models <- calibration.calibrators <- calibration.quant <- calibration.* (training,
    zero-shot, QSAM, the quantize workflow) ; deploy sits beside calibration.* and may use only
    calibration.quant and calibration.calibrators ; cli may use everything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ("common", "jpeg", "models", "calibration", "deploy", "cli")
NOT_LIBRARY = ("bench", "tests", "dev", "docs", "setup")

# Each layer (the longest matching prefix of a module's name) and the layers it may import.
LOWER = {
    "dctq.common": set(),
    "dctq.jpeg": {"dctq.common"},
    "dctq.models": {"dctq.common", "dctq.jpeg"},
    "dctq.calibration.calibrators": {"dctq.common", "dctq.jpeg", "dctq.models"},
    "dctq.calibration.quant": {"dctq.common", "dctq.jpeg", "dctq.models", "dctq.calibration.calibrators"},
    "dctq.calibration": {
        "dctq.common",
        "dctq.jpeg",
        "dctq.models",
        "dctq.calibration.calibrators",
        "dctq.calibration.quant",
    },
    "dctq.deploy": {
        "dctq.common",
        "dctq.jpeg",
        "dctq.models",
        "dctq.calibration.calibrators",
        "dctq.calibration.quant",
    },
    "dctq.cli": {
        "dctq.common",
        "dctq.jpeg",
        "dctq.models",
        "dctq.calibration.calibrators",
        "dctq.calibration.quant",
        "dctq.calibration",
        "dctq.deploy",
    },
}


def layer_of(module: str) -> str | None:
    """The layer a dctq module belongs to (longest prefix of LOWER), None for the root package."""
    best = None
    for layer in LOWER:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["dctq", *parts])


def library_files() -> list[Path]:
    files = [ROOT / "__init__.py"]
    for top in LIBRARY:
        files += sorted((ROOT / top).rglob("*.py"))
    return files


MODULE_STRING = re.compile(r"^dctq(\.\w+)+$")


def _absolute(package: str, level: int, module: str | None) -> str:
    base = package.split(".")
    base = base[: len(base) - level + 1]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute dctq module or package) for every import in the library file `path` under `root`."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("."):
                level = len(arg.value) - len(arg.value.lstrip("."))
                found.append((node.lineno, _absolute(package, level, arg.value.lstrip(".") or None)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "dctq"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = _absolute(package, node.level, node.module)
            else:
                target = node.module or ""
            if target.split(".")[0] != "dctq":
                continue
            # `from pkg import module` imports the module itself
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if _exists(sub, root) else target))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value)
        ):
            if _exists(node.value, root):
                found.append((node.lineno, node.value))
    return found


def _exists(module: str, root: Path) -> bool:
    rel = Path(*module.split(".")[1:])
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def violations() -> list[str]:
    out = []
    for path in library_files():
        source = module_name(path)
        layer = layer_of(source)
        for line, target in imports_of(path):
            top = target.split(".")[1] if target.count(".") else ""
            where = f"{path.relative_to(ROOT)}:{line}: {source} imports {target}"
            if top in NOT_LIBRARY:
                out.append(where + " (not part of the installed package)")
                continue
            target_layer = layer_of(target)
            if layer is None or target_layer is None or target_layer == layer:
                continue  # the root package may use anything; everything may read dctq.__version__
            if target_layer not in LOWER[layer]:
                out.append(where + f" ({layer} may import only {sorted(LOWER[layer]) or 'nothing of dctq'})")
    return out


def test_library_imports_follow_the_layering():
    found = violations()
    assert not found, "imports against the layering of docs/design.md:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("dctq.jpeg.reader", "dctq.jpeg"),
        ("dctq.calibration.quant.model", "dctq.calibration.quant"),
        ("dctq.calibration.train.loop", "dctq.calibration"),
        ("dctq.deploy.backends.ort", "dctq.deploy"),
        ("dctq", None),
    ],
)
def test_layers_are_found_by_longest_prefix(module, layer):
    assert layer_of(module) == layer


def test_the_checker_sees_function_local_relative_and_string_imports(tmp_path):
    for folder in ("deploy/sub", "calibration/train"):
        for part in (tmp_path / folder, (tmp_path / folder).parent):
            part.mkdir(parents=True, exist_ok=True)
            (part / "__init__.py").write_text("")
    (tmp_path / "calibration" / "train" / "loop.py").write_text("")
    mod = tmp_path / "deploy" / "sub" / "mod.py"
    mod.write_text(
        "import importlib\n"
        "def f():\n    from ...calibration.train import loop\n"
        "LAZY = {'x': 'dctq.calibration.train.loop'}\n"
        "importlib.import_module('...calibration.train', __package__)\n"
    )
    assert sorted(imports_of(mod, tmp_path)) == [
        (3, "dctq.calibration.train.loop"),
        (4, "dctq.calibration.train.loop"),
        (5, "dctq.calibration.train"),
    ]
