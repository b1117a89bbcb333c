"""Build a TensorRT engine from a Q/DQ ONNX file: `model.engine` plus a JSON sidecar beside it.

The build follows TensorRT 11, where every network is strongly typed and the INT8/FP16 builder flags
and calibrators are gone: precision lives in the graph. So the ONNX file first goes through the FP16
pass (deploy/onnx/fp16.py: float parts FP16, INT8 where the Q/DQ nodes say so), then:

    trt.Builder -> create_network (STRONGLY_TYPED on TensorRT 10; the default, and the flag
    deprecated, on 11) -> OnnxParser -> builder config (workspace pool limit, one optimization
    profile, timing cache: a refused one is replaced by a fresh one) -> build_serialized_network

The builder gets the process-wide logger (env.trt_logger) and runs under the chosen CUDA device.

The profile covers a batch range and an image-size range; the block grids follow from the pixel
sizes (luma Hb = 2*ceil(H/16), chroma Hb/2; RGB inputs take the pixels). The engine and the sidecar
(TensorRT/CUDA/driver versions, GPU and compute capability, inputs and their profiles, sha256 of the
recipe JSON and of the ONNX file, sha256 of the engine) are written atomically, sidecar first.

Nothing here imports tensorrt at module import time; without it every entry point raises
BackendUnavailable saying how to install it. The input-shape logic is plain Python and runs anywhere.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ....common.errors import ExportError
from ....common.files import atomic_path, write_bytes_atomic
from ....jpeg.geometry import block_grid
from ...artifact import TensorSpec, load_artifact, sidecar_path
from ...export.onnx import export_onnx
from ...onnx.fp16 import to_fp16
from ...onnx.graph import load_onnx
from .device import CudaDevice, cuda_device
from .env import (
    create_builder,
    describe_environment,
    import_tensorrt,
    logger_verbosity,
    trt_logger,
    trt_major,
)

logger = logging.getLogger(__name__)

Size = tuple[int, int]


# ---------------------------------------------------------------------------------------------
# Inputs and optimization profiles (plain Python: tested without TensorRT)


def onnx_input_specs(model: Any) -> list[TensorSpec]:
    """An ONNX model's inputs (initializers left out) as TensorSpecs, each with a known `role`.

    Raises ExportError for an input dctq does not know how to shape (named in the message).
    """
    initializers = {i.name for i in model.graph.initializer}
    specs = [TensorSpec.from_onnx(vi) for vi in model.graph.input if vi.name not in initializers]
    for spec in specs:
        if spec.role is None:
            raise ExportError(
                f"ONNX input {spec.name!r} has dims {list(spec.dims)}; dctq builds profiles for DCT inputs "
                "[N,64,Hb,Wb], [N,128,Hb/2,Wb/2], [N,3,64] and RGB [N,3,H,W] only"
            )
    return specs


def _size(value: int | Sequence[int]) -> Size:
    if isinstance(value, int):
        return (value, value)
    h, w = (int(v) for v in value)
    return (h, w)


def size_range(image_size: int | Sequence[Any]) -> tuple[Size, Size, Size]:
    """(min, opt, max) pixel sizes from 224, (224, 320), or a triple of such (min, opt, max).

    Raises ExportError for non-positive sizes or min > opt > max orderings.
    """
    if isinstance(image_size, int) or (len(image_size) == 2 and all(isinstance(v, int) for v in image_size)):
        one = _size(image_size)  # type: ignore[arg-type]
        sizes = (one, one, one)
    elif len(image_size) == 3:
        sizes = tuple(_size(v) for v in image_size)  # type: ignore[assignment]
    else:
        raise ExportError(f"image_size must be N, (H, W) or (min, opt, max) of those, got {image_size!r}")
    if min(min(s) for s in sizes) < 1:
        raise ExportError(f"image sizes must be positive, got {sizes}")
    for axis in (0, 1):
        if not sizes[0][axis] <= sizes[1][axis] <= sizes[2][axis]:
            raise ExportError(f"image sizes must grow min <= opt <= max on each axis, got {sizes}")
    return sizes  # type: ignore[return-value]


def _shape(spec: TensorSpec, batch: int, size: Size) -> tuple[int, ...]:
    hb, wb = block_grid(size)
    wanted = {
        "luma": (batch, 64, hb, wb),
        "chroma": (batch, 128, hb // 2, wb // 2),
        "qt": (batch, 3, 64),
        "rgb": (batch, 3, size[0], size[1]),
    }[spec.role]
    for axis, (w, d) in enumerate(zip(wanted, spec.dims, strict=True)):
        if axis and d is not None and d != w:
            raise ExportError(
                f"ONNX input {spec.name!r} is fixed to {list(spec.dims)}, so the engine cannot take "
                f"{size[0]}x{size[1]} px ({list(wanted)}); build with image_size matching the export, "
                "or export with dynamic image dims"
            )
    return wanted


def profile_shapes(
    specs: Sequence[TensorSpec], batch: Sequence[int], image_size: int | Sequence[Any]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """{input name: (min, opt, max) shape} for one optimization profile.

    batch: (min, opt, max) batch sizes. image_size: as `size_range`. Raises ExportError for a bad
    batch range or an input whose batch dim the ONNX file fixes to another value.
    """
    b = tuple(int(v) for v in batch)
    if len(b) != 3 or b[0] < 1 or not b[0] <= b[1] <= b[2]:
        raise ExportError(f"batch must be (min, opt, max) with 1 <= min <= opt <= max, got {tuple(batch)}")
    sizes = size_range(image_size)
    out = {}
    for spec in specs:
        fixed = spec.dims[0] if spec.dims else None
        if fixed is not None and b != (fixed, fixed, fixed):
            raise ExportError(
                f"ONNX input {spec.name!r} has a fixed batch of {fixed}; export with a dynamic batch "
                f"(export_onnx(..., dynamic_batch=True)) or build with batch=({fixed}, {fixed}, {fixed})"
            )
        out[spec.name] = tuple(_shape(spec, n, s) for n, s in zip(b, sizes, strict=True))  # type: ignore[assignment]
    return out  # type: ignore[return-value]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recipe_sha256(recipe: Mapping[str, Any] | None) -> str | None:
    """sha256 of the recipe's canonical JSON (sorted keys, no spaces), or None without a recipe."""
    if recipe is None:
        return None
    return _sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------------------------
# Build


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """How to build an engine.

    batch: (min, opt, max) batch sizes of the optimization profile.
    image_size: pixels, as `size_range` (N, (H, W), or (min, opt, max) of those); None takes the
        spatial dims the ONNX file fixes (an error when they are dynamic).
    workspace_mib: limit of TensorRT's workspace memory pool.
    fp16: run the FP16 pass (deploy.onnx.fp16.to_fp16) first; off only for graphs already typed.
    fp16_inputs: declare the coefficient/pixel inputs FP16 (exact for every baseline coefficient);
        the quant tables stay FP32 at the interface, 768 bytes an image, as the reader gives them.
    timing_cache: file to load tactic timings from and save them to (speeds rebuilds).
    optimization_level: TensorRT's builder optimization level 0..5 (None = its default, 3).
    verbose: forward TensorRT's VERBOSE messages to logging.
    """

    batch: tuple[int, int, int] = (1, 32, 256)
    image_size: Any = None
    workspace_mib: int = 4096
    fp16: bool = True
    fp16_inputs: bool = True
    timing_cache: Path | None = None
    optimization_level: int | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.workspace_mib < 1:
            raise ExportError(f"workspace_mib must be >= 1, got {self.workspace_mib}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ExportError(f"optimization_level must be in 0..5, got {self.optimization_level}")


SR_SIZE_RANGE = (1 / 4, 1, 4)
"""SR engines (dynamic height and width): the profile's (min, opt, max) LR sides as multiples of the
model's stated input size (64: 16, 64, 256 px) unless BuildConfig.image_size says otherwise."""


def _image_size_from(specs: Sequence[TensorSpec], meta: Any = None) -> Any:
    if getattr(meta, "task", None) == "sr" and any(None in s.dims[2:] for s in specs):
        side = int(meta.input_size)
        return tuple(max(1, round(side * f)) for f in SR_SIZE_RANGE)
    for spec in specs:
        if spec.role in ("luma", "rgb") and None not in spec.dims[2:]:
            h, w = spec.dims[2], spec.dims[3]
            return (8 * h, 8 * w) if spec.role == "luma" else (h, w)  # type: ignore[operator,return-value]
    raise ExportError("the ONNX file has dynamic image dims: give image_size (e.g. 224 or (224, 224, 512))")


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Everything decided before TensorRT runs (plain Python; see plan_build)."""

    onnx_path: Path
    onnx_sha256: str
    onnx_bytes: bytes
    specs: tuple[TensorSpec, ...]
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    image_size: tuple[Size, Size, Size]
    fp16_report: dict[str, Any] | None
    meta: Any  # artifact.ArtifactMeta of the engine (inputs typed as the engine takes them)


def plan_build(
    onnx_path: Path | str, config: BuildConfig, recipe: Mapping[str, Any] | None = None
) -> BuildPlan:
    """Read the ONNX file and its sidecar, run the FP16 pass, and derive the optimization profile.

    recipe: overrides the recipe of the ONNX sidecar. Raises ExportError for an unreadable file, a
    graph the FP16 pass refuses, inputs of unknown roles, or a size the ONNX file cannot take.
    """
    onnx_path = Path(onnx_path)
    meta = load_artifact(onnx_path).meta
    raw = onnx_path.read_bytes()
    model = load_onnx(onnx_path, data=raw)
    report = None
    if config.fp16:
        names = [s.name for s in onnx_input_specs(model) if s.role != "qt"] if config.fp16_inputs else []
        model, rep = to_fp16(model, fp16_inputs=names)
        report = rep.to_dict()
    data = model.SerializeToString() if config.fp16 else raw
    specs = tuple(onnx_input_specs(model))
    image_size = config.image_size if config.image_size is not None else _image_size_from(specs, meta)
    dtypes = {s.name: s.dtype for s in specs}
    meta = dataclasses.replace(
        meta,
        inputs=tuple(dataclasses.replace(t, dtype=dtypes.get(t.name, t.dtype)) for t in meta.inputs),
        recipe=dict(recipe) if recipe is not None else meta.recipe,
    )
    return BuildPlan(
        onnx_path=onnx_path,
        onnx_sha256=_sha256(raw),
        onnx_bytes=data,
        specs=specs,
        shapes=profile_shapes(specs, config.batch, image_size),
        image_size=size_range(image_size),
        fp16_report=report,
        meta=meta,
    )


def engine_sidecar(
    plan: BuildPlan, config: BuildConfig, environment: Mapping[str, Any], engine: bytes, seconds: float
) -> dict[str, Any]:
    """The engine's sidecar: the artifact sidecar (kind "engine", artifact.py) plus a "build"
    section with the environment, the profile, the FP16 pass report and the sha256s."""
    build = {
        **environment,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [
            {
                "name": s.name,
                "role": s.role,
                "dtype": s.dtype,
                "onnx_dims": list(s.dims),
                "profile": {
                    k: list(v) for k, v in zip(("min", "opt", "max"), plan.shapes[s.name], strict=True)
                },
            }
            for s in plan.specs
        ],
        "batch": list(config.batch),
        "image_size": [list(s) for s in plan.image_size],
        "workspace_mib": config.workspace_mib,
        "optimization_level": config.optimization_level,
        "fp16_pass": plan.fp16_report,
        "recipe_sha256": recipe_sha256(plan.meta.recipe),
        "onnx": plan.onnx_path.name,
        "onnx_sha256": plan.onnx_sha256,
        "engine_sha256": _sha256(engine),
        "build_seconds": round(seconds, 2),
    }
    return {**plan.meta.to_dict("engine"), "build": build}


def network_flags(trt: Any) -> int:
    """create_network's flags: 0 on TensorRT 11 (every network is strongly typed and the flag is
    deprecated), STRONGLY_TYPED on TensorRT 10 (its default is weakly typed)."""
    if trt_major(trt) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def attach_timing_cache(build_config: Any, cache_file: Path | None) -> Any:
    """Create the timing cache from `cache_file` (a fresh one when the file is absent), attach it to
    `build_config` and return it (None: no cache attached).

    TensorRT refuses a cache written on another GPU or TensorRT version (set_timing_cache returns
    False; ignore_mismatch=False because a foreign cache can pick bad tactics): the build then goes on
    with a fresh cache, with a warning, and the file is replaced after the build.
    """
    data = cache_file.read_bytes() if cache_file is not None and cache_file.is_file() else b""
    for blob in (data, b"") if data else (b"",):
        try:
            cache = build_config.create_timing_cache(blob)
        except (TypeError, RuntimeError):  # a corrupt blob
            cache = None
        if cache is not None and build_config.set_timing_cache(cache, False):
            return cache
        if blob:
            logger.warning(
                "timing cache %s does not fit this GPU or TensorRT version (TensorRT refused it); "
                "building with a fresh one, which replaces the file after the build",
                cache_file,
            )
    logger.warning("TensorRT refused a fresh timing cache; building without one")
    return None


def _parse(trt: Any, network: Any, plan: BuildPlan) -> Any:
    parser = trt.OnnxParser(network, trt_logger(trt))
    if not parser.parse(plan.onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(
            f"{plan.onnx_path}: TensorRT's ONNX parser refused the graph: {errors[:1500] or 'no error recorded'}"
        )
    return parser  # kept alive with the network: the parser owns the weights the network refers to


def build_engine(
    onnx_path: Path | str,
    engine_path: Path | str,
    config: BuildConfig | None = None,
    *,
    recipe: Mapping[str, Any] | None = None,
    device: int | CudaDevice | None = None,
) -> dict[str, Any]:
    """Build `engine_path` (+ `<engine>.json` sidecar) from the ONNX file; returns the sidecar dict.

    recipe: the quantization recipe (QuantRecipe.to_dict()) to record; default: the ONNX sidecar's.
    device: the CUDA device to build for (index; default the current one).
    Raises BackendUnavailable without TensorRT or CUDA or where TensorRT cannot start (driver too
    old: the message names the versions), ExportError for an unreadable ONNX file, a parse or build
    failure (with TensorRT's messages), or bad shapes.
    """
    config = config or BuildConfig()
    trt = import_tensorrt()
    cuda = cuda_device(device)
    engine_path = Path(engine_path)
    plan = plan_build(onnx_path, config, recipe)

    with cuda.guard(), logger_verbosity(trt, config.verbose):
        builder = create_builder(trt)
        network = builder.create_network(network_flags(trt))
        parser = _parse(trt, network, plan)
        build_config = builder.create_builder_config()
        build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
        if config.optimization_level is not None:
            build_config.builder_optimization_level = config.optimization_level
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in plan.shapes.items():
            profile.set_shape(name, lo, opt, hi)
        if build_config.add_optimization_profile(profile) < 0:
            raise ExportError(f"TensorRT refused the optimization profile {plan.shapes} (see the log)")
        cache_file = Path(config.timing_cache) if config.timing_cache is not None else None
        cache = attach_timing_cache(build_config, cache_file)

        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, build_config)
        seconds = time.perf_counter() - start
        del parser
        if serialized is None:
            raise ExportError(
                f"TensorRT could not build an engine from {plan.onnx_path} (its messages are in the log above); "
                "check the profile shapes and the workspace limit"
            )
        engine = bytes(memoryview(serialized))
        if cache_file is not None and cache is not None:
            write_bytes_atomic(cache_file, bytes(memoryview(cache.serialize())))
    sidecar = engine_sidecar(plan, config, describe_environment(trt, cuda), engine, seconds)
    sidecar["artifact"] = {"name": engine_path.name, "size": len(engine), "sha256": _sha256(engine)}
    # Both files appear together: the sidecar is renamed into place first, then the engine.
    with atomic_path(engine_path) as tmp_engine, atomic_path(sidecar_path(engine_path)) as tmp_sidecar:
        tmp_engine.write_bytes(engine)
        tmp_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    logger.info("built %s (%.1f MiB) in %.1f s", engine_path, len(engine) / 2**20, seconds)
    return sidecar


def export_engine(
    model: Any,
    engine_path: Path | str,
    config: BuildConfig | None = None,
    *,
    onnx_path: Path | str | None = None,
    opset: int = 18,
    device: int | CudaDevice | None = None,
) -> dict[str, Any]:
    """Export a (quantized) dctq model or LoadedCheckpoint to ONNX, then build the engine from it.

    onnx_path: where the intermediate Q/DQ ONNX (and its sidecar) goes; default beside the engine,
    `model.engine` -> `model.onnx`. Checks for TensorRT and CUDA before the (slow) export. Returns
    the engine's sidecar; raises as export_onnx and build_engine.
    """
    import_tensorrt()
    cuda = cuda_device(device)
    engine_path = Path(engine_path)
    onnx_path = Path(onnx_path) if onnx_path is not None else engine_path.with_suffix(".onnx")
    export_onnx(model, onnx_path, opset=opset, dynamic_batch=True)
    return build_engine(onnx_path, engine_path, config, device=cuda)
