"""The TensorRT Python API as the real bindings declare it, read on a machine without TensorRT or a GPU.

The `tensorrt-cu13-bindings` wheel (a dev dependency; 1.3 MB, the package `tensorrt_bindings`) holds the
real pybind11 module `tensorrt.so`. It links against libnvinfer.so.11, libnvinfer_plugin.so.11 and
libnvonnxparser.so.11 (in the `-libs` wheel, which needs a GPU machine's driver anyway) but calls only
the nine functions in STUBS from them. Three stub libraries defining those nine (each returns
null/0), built with the C compiler into a temporary folder and put on LD_LIBRARY_PATH, let the module
import in a subprocess: every class, enum and method signature of the shipped API can then be read
(`Class.method.__doc__`'s first line, pybind11's signature), while creating a Builder or Runtime fails
as on a machine whose driver is too old (the factory returns nullptr: a TypeError).

    api = live_api(tmp)          # introspect the installed wheel (None + reason when it cannot)
    api = snapshot()             # the committed introspection (trt_11_4_api.json), used by the fake

`tests/fake_tensorrt.py` builds its fake `tensorrt` module from the snapshot and checks every call
against these signatures (`check_call`); tests/deploy/backends/tensorrt/test_fake_bindings.py checks
the snapshot against the live wheel where the wheel and a compiler are there.

    python tests/trt_api.py --update   # rewrite the snapshot from the installed wheel
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "deploy" / "backends" / "tensorrt" / "trt_11_4_api.json"

STUBS = {
    "libnvinfer.so.11": (
        "createInferBuilder_INTERNAL",
        "createInferRefitter_INTERNAL",
        "createInferRuntime_INTERNAL",
        "getBuilderPluginRegistry",
        "getPluginRegistry",
    ),
    "libnvinfer_plugin.so.11": ("initLibNvInferPlugins",),
    "libnvonnxparser.so.11": (
        "createNvOnnxParser_INTERNAL",
        "createNvOnnxParserRefitter_INTERNAL",
        "getNvOnnxParserVersion",
    ),
}
"""The undefined symbols of tensorrt_bindings/tensorrt.so 11.4 that TensorRT's libraries provide
(`nm -D --undefined-only tensorrt.so`), by the library that defines them."""

CLASSES = (
    "Builder",
    "BuilderFlag",
    "DataType",
    "Dims",
    "EngineStat",
    "ErrorCode",
    "ExecutionContextAllocationStrategy",
    "IBuilderConfig",
    "ICudaEngine",
    "IExecutionContext",
    "IHostMemory",
    "ILogger",
    "INetworkDefinition",
    "IOptimizationProfile",
    "ITimingCache",
    "Logger",
    "MemoryPoolType",
    "NetworkDefinitionCreationFlag",
    "OnnxParser",
    "ParserError",
    "Runtime",
    "TensorIOMode",
)
"""The classes and enums the snapshot keeps: those dctq's build and run paths touch, and BuilderFlag
(TensorRT 11 has no INT8/FP16 flags)."""

DUNDERS = ("__init__", "__len__", "__getitem__", "__setitem__", "__str__", "__int__", "__bool__")

_DUMP = r"""
import json, sys
import tensorrt_bindings as trt

def clean(text):
    for prefix in ("tensorrt_bindings.tensorrt.", "typing_extensions.", "typing.", "collections.abc."):
        text = text.replace(prefix, "")
    return text

def signatures(fn):
    doc = (getattr(fn, "__doc__", None) or "").strip()
    lines = doc.splitlines()
    if not lines:
        return []
    if lines[0].endswith("(*args, **kwargs)") and "Overloaded function." in doc:
        lines = [l.split(". ", 1)[1] for l in lines if l[:1].isdigit() and ". " in l]
    else:
        lines = lines[:1]
    out = []
    for line in lines:
        line = clean(line)
        head, _, rest = line.partition("(")
        params, _, ret = rest.rpartition(") -> ")
        parts = [p for p in split(params) if p and p != "/"]
        if parts and (parts[0].startswith("self") or parts[0].startswith("arg0")):
            parts = parts[1:]
        out.append("(" + ", ".join(parts) + ") -> " + ret)
    return out

def split(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip()); cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts

def describe(cls, name):
    entry = {"methods": {}, "properties": {}, "constructible": False}
    if hasattr(cls, "__members__"):
        entry["enum"] = {k: int(v) for k, v in cls.__members__.items()}
    for attr, value in vars(cls).items():
        if attr.startswith("_") and attr not in DUNDERS:
            continue
        if isinstance(value, property):
            getter = signatures(value.fget) if value.fget else []
            kind = getter[0].rpartition(" -> ")[2] if getter else "?"
            entry["properties"][attr] = {"type": kind, "settable": value.fset is not None}
        elif isinstance(value, type):
            entry.setdefault("nested", []).append(attr)
        elif type(value).__name__ == "builtin_function_or_method" or type(value).__name__ == "instancemethod":
            sigs = signatures(value)
            if attr == "__init__":
                entry["constructible"] = True
                if "enum" in entry:
                    continue
            if sigs:
                entry["methods"][attr] = sigs
        elif "enum" not in entry and type(value).__module__.startswith("tensorrt") and hasattr(type(value), "__members__"):
            entry.setdefault("exported", {})[attr] = type(value).__qualname__
    return entry

DUNDERS = set(json.loads(sys.argv[1]))
api = {"version": trt.__version__, "classes": {}}
for name in json.loads(sys.argv[2]):
    cls = getattr(trt, name)
    entry = describe(cls, name)
    api["classes"][name] = entry
    for nested in entry.get("nested", []):
        api["classes"][name + "." + nested] = describe(getattr(cls, nested), nested)
json.dump(api, sys.stdout, indent=1, sort_keys=True)
"""


def bindings_location() -> Path | None:
    """The installed tensorrt_bindings package folder, without importing it (None when absent)."""
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def build_stubs(folder: Path) -> Path:
    """Compile the three stub libraries of STUBS into `folder`; returns it. Raises RuntimeError when
    the compiler fails."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc)")
    folder.mkdir(parents=True, exist_ok=True)
    for library, symbols in STUBS.items():
        source = folder / f"{library}.c"
        source.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in symbols))
        done = subprocess.run(
            [compiler, "-shared", "-fPIC", "-o", str(folder / library), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"{compiler} failed on {source.name}: {done.stderr[-500:]}")
    return folder


def bindings_env(stubs: Path) -> dict[str, str]:
    """The environment for a subprocess importing tensorrt_bindings over the stub libraries."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(stubs), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def live_api(workdir: Path) -> tuple[dict[str, Any] | None, str]:
    """(the API read from the installed wheel, "") or (None, why it could not be read)."""
    if bindings_location() is None:
        return None, "tensorrt-cu13-bindings is not installed (a dev dependency: pip install -e '.[dev]')"
    try:
        stubs = build_stubs(workdir / "trt_stubs")
    except RuntimeError as exc:
        return None, f"cannot build the stub libraries: {exc}"
    done = subprocess.run(
        [sys.executable, "-c", _DUMP, json.dumps(DUNDERS), json.dumps(CLASSES)],
        capture_output=True,
        text=True,
        env=bindings_env(stubs),
        check=False,
        timeout=120,
    )
    if done.returncode:
        return None, f"importing tensorrt_bindings over the stubs failed: {done.stderr[-800:]}"
    return json.loads(done.stdout), ""


def snapshot() -> dict[str, Any]:
    """The committed introspection of TensorRT 11.4's bindings."""
    return json.loads(SNAPSHOT.read_text())


# ---------------------------------------------------------------------------------------------
# Signatures: "(name: str, shape: Dims, flags: SupportsInt = 0) -> bool"


def split_top(text: str) -> list[str]:
    """`text` split at commas outside brackets (list[...], <Enum.X: 0>, (...))."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([<"
        depth -= ch in ")]>"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_signature(signature: str) -> tuple[list[tuple[str, str, str | None]], str]:
    """([(name, annotation, default or None)], return annotation) of one signature string."""
    params, _, returns = signature[1:].rpartition(") -> ")
    out = []
    for part in split_top(params):
        name, _, rest = part.partition(": ")
        annotation, _, default = rest.partition(" = ")
        out.append((name.strip(), annotation.strip(), default.strip() or None))
    return out, returns.strip()


def main() -> int:
    if "--update" not in sys.argv:
        print(__doc__)
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        api, why = live_api(Path(tmp))
    if api is None:
        print(why, file=sys.stderr)
        return 1
    SNAPSHOT.write_text(json.dumps(api, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} (TensorRT {api['version']}, {len(api['classes'])} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
