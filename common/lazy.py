"""Package-level re-exports resolved on first use (PEP 562), so that `import dctq`, `import dctq.jpeg` or
`import dctq.calibration` stays cheap and side-effect free, and importing one light module of a package
(say `dctq.calibration.quant.checkpoint`, which every quantized checkpoint load needs) does not import its
heavy siblings (training, synthesis, data code).

    __getattr__, __dir__ = lazy_exports(__name__, {"train": "dctq.calibration.train.loop", ...})

Module names are absolute, so the layering test (tests/architecture/test_layering.py) sees them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`: attribute `name` is `exports[name]`'s attribute of that name,
    imported on first access and then cached in the package's namespace. Other names raise AttributeError,
    as a plain module would."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
