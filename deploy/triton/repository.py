"""A Triton Inference Server model repository from a dctq checkpoint: clients send JPEG bytes, get labels.

For a model named N (default: the checkpoint's name) `export_triton` writes, per runtime, one chain of
four Triton models:

    N_jpeg    Python backend: JPEG bytes (TYPE_STRING [1]) -> y, cbcr, qt with dctq's reader (python_models.py)
    N_model   the network: ONNX Runtime (model.onnx, Q/DQ rewritten to ONNX Runtime's integer form as
              dctq's own ort backend does at load time; KIND_CPU)
    N_labels  Python backend: logits -> label, probability, index (labels.txt beside it)
    N         the ensemble of the three: input `jpeg`, outputs `label`, `probability`, `index`, `logits`

and, where a TensorRT plan of the same model is given, the chain N_trt (N_trt_jpeg, N_trt_model with
model.plan on KIND_GPU, typed as the engine takes its inputs, N_trt_labels, the ensemble N_trt). Every
model but the ensembles has dynamic batching and `max_batch_size`; inputs are named and typed as the
coefficient contract (ARCHITECTURE.md): y [64, Hb, Wb], cbcr [128, Hb/2, Wb/2], qt [3, 64].

Each model folder is written beside the repository first and moved in whole, replacing only the
folders of the same names, so other models of an existing repository are left alone. Every config is
then read back through Triton's schema (model_config.py) and the ensembles' wiring checked
(`check.check_repository`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...common.errors import ExportError
from ...models.checkpoint import LoadedCheckpoint
from ..artifact import ArtifactMeta, TensorSpec, describe_model, read_sidecar, sidecar_path, write_sidecar
from ..export.onnx import export_onnx
from ..onnx.graph import import_onnx, load_onnx
from ..onnx.lint import LintReport, lint_qdq
from ..onnx.ort_rewrite import is_qdq_model, rewrite_for_ort
from .check import VERSION, check_repository
from .model_config import NUMPY_TO_TRITON, Ident, render_pbtxt
from .python_models import LABELS_FILE

logger = logging.getLogger(__name__)

_PYTHON_MODEL = (
    "# Written by `dctq export --format triton`. Triton's Python backend loads TritonPythonModel from here;\n"
    "# it needs dctq installed in the backend's Python environment (pip install dctq).\n"
    "from dctq.deploy.triton.python_models import {cls} as TritonPythonModel  # noqa: F401\n"
)


@dataclasses.dataclass(frozen=True)
class TritonRepository:
    """What export_triton wrote: the repository folder, the model folders it (re)wrote, the ensembles a
    client calls, the ONNX model inside (with its dctq sidecar), the TensorRT plan if any, and the
    TensorRT Q/DQ check of the exported graph."""

    root: Path
    models: tuple[str, ...]
    ensembles: tuple[str, ...]
    onnx: Path
    plan: Path | None
    max_batch: int
    lint: LintReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "models": list(self.models),
            "ensembles": list(self.ensembles),
            "onnx": str(self.onnx),
            "plan": str(self.plan) if self.plan is not None else None,
            "max_batch": self.max_batch,
        }


def model_name(text: str) -> str:
    """A Triton model name from free text (a file stem): letters, digits, '_' and '-' only."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    if not name:
        raise ExportError(f"cannot make a Triton model name of {text!r}; pass a name")
    return name


def _tensor(spec: TensorSpec, name: str | None = None) -> dict[str, Any]:
    if spec.dtype not in NUMPY_TO_TRITON:
        raise ExportError(
            f"tensor {spec.name!r} has dtype {spec.dtype}, which dctq does not serve through Triton"
        )
    dims = spec.shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise ExportError(
            f"tensor {spec.name!r} has dynamic dims {list(spec.shape)}; export it with fixed image sizes"
        )
    return {"name": name or spec.name, "data_type": Ident(NUMPY_TO_TRITON[spec.dtype]), "dims": list(dims)}


def _batching(queue_delay_us: int) -> dict[str, Any]:
    return {"max_queue_delay_microseconds": queue_delay_us}


def _chain_configs(
    prefix: str, backend: str, meta: ArtifactMeta, max_batch: int, queue_delay_us: int
) -> dict[str, dict[str, Any]]:
    """{model name: config dict} of one chain (jpeg -> model -> labels, and the ensemble)."""
    if len(meta.outputs) != 1:
        raise ExportError(
            f"dctq serves single-output classifiers through Triton; this model has {len(meta.outputs)} outputs"
        )
    logits = meta.outputs[0]
    classes = logits.shape[-1]
    kind = Ident("KIND_GPU" if backend == "tensorrt" else "KIND_CPU")
    jpeg = {"name": "jpeg", "data_type": Ident("TYPE_STRING"), "dims": [1]}
    scalars = [
        {"name": "label", "data_type": Ident("TYPE_STRING"), "dims": [1]},
        {"name": "probability", "data_type": Ident("TYPE_FP32"), "dims": [1]},
        {"name": "index", "data_type": Ident("TYPE_INT64"), "dims": [1]},
    ]
    names = {"jpeg": f"{prefix}_jpeg", "model": f"{prefix}_model", "labels": f"{prefix}_labels"}
    inputs = [_tensor(s) for s in meta.inputs]
    out_logits = {**_tensor(logits, "logits"), "label_filename": LABELS_FILE}
    params = {"input_kind": meta.input_kind, "input_size": str(meta.input_size)}
    common = {"max_batch_size": max_batch}
    return {
        names["jpeg"]: {
            "name": names["jpeg"],
            "backend": "python",
            **common,
            "input": [jpeg],
            "output": inputs,
            "instance_group": [{"kind": Ident("KIND_CPU")}],
            "dynamic_batching": _batching(queue_delay_us),
            "parameters": [{"key": k, "value": {"string_value": v}} for k, v in params.items()],
        },
        names["model"]: {
            "name": names["model"],
            "backend": backend,
            **common,
            "input": inputs,
            "output": [{**out_logits, "name": logits.name}],
            "instance_group": [{"kind": kind}],
            "dynamic_batching": _batching(queue_delay_us),
        },
        names["labels"]: {
            "name": names["labels"],
            "backend": "python",
            **common,
            "input": [_tensor(logits, "logits")],
            "output": scalars,
            "instance_group": [{"kind": Ident("KIND_CPU")}],
            "dynamic_batching": _batching(queue_delay_us),
        },
        prefix: {
            "name": prefix,
            "platform": "ensemble",
            **common,
            "input": [jpeg],
            "output": [*scalars, {**_tensor(logits, "logits"), "dims": [classes]}],
            "ensemble_scheduling": {
                "step": [
                    {
                        "model_name": names["jpeg"],
                        "model_version": -1,
                        "input_map": [{"key": "jpeg", "value": "jpeg"}],
                        "output_map": [{"key": s.name, "value": s.name} for s in meta.inputs],
                    },
                    {
                        "model_name": names["model"],
                        "model_version": -1,
                        "input_map": [{"key": s.name, "value": s.name} for s in meta.inputs],
                        "output_map": [{"key": logits.name, "value": "logits"}],
                    },
                    {
                        "model_name": names["labels"],
                        "model_version": -1,
                        "input_map": [{"key": "logits", "value": "logits"}],
                        "output_map": [{"key": n, "value": n} for n in ("label", "probability", "index")],
                    },
                ]
            },
        },
    }


def _write_model(staging: Path, config: dict[str, Any], files: dict[str, bytes | Path], labels: str) -> None:
    """One model folder under `staging`: config.pbtxt, labels.txt where it is read, the version folder."""
    folder = staging / config["name"]
    (folder / VERSION).mkdir(parents=True)
    (folder / "config.pbtxt").write_text(render_pbtxt(config), encoding="utf-8")
    if config.get("backend") in ("onnxruntime", "tensorrt") or config["name"].endswith("_labels"):
        (folder / LABELS_FILE).write_text(labels, encoding="utf-8")
    for name, data in files.items():
        target = folder / VERSION / name
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        else:
            target.write_bytes(data)


def _engine_meta(engine: Path, meta: ArtifactMeta) -> tuple[ArtifactMeta, int]:
    """(the engine's sidecar meta, the largest batch of its optimization profile); checks it is the
    same model as the checkpoint."""
    data = read_sidecar(engine)
    if data is None:
        raise ExportError(
            f"{engine} has no sidecar {sidecar_path(engine).name}; build it with `dctq export --format tensorrt`"
        )
    plan = ArtifactMeta.from_dict(data, sidecar_path(engine))
    if (plan.arch, plan.class_names, plan.input_size) != (meta.arch, meta.class_names, meta.input_size):
        raise ExportError(
            f"{engine} was built from another model ({plan.arch}, {len(plan.class_names)} classes, "
            f"{plan.input_size} px) than the checkpoint ({meta.arch}, {len(meta.class_names)} classes, "
            f"{meta.input_size} px); rebuild it with `dctq export CKPT --format tensorrt`"
        )
    batch = (data.get("build") or {}).get("batch") or [1, 1, 1]
    return plan, int(batch[-1])


def _install(staging: Path, root: Path, names: list[str]) -> None:
    """Move each staged model folder into `root`, replacing a folder of the same name."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = root / name
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root.parent))
            os.replace(target, old / name)
            os.replace(staging / name, target)
            shutil.rmtree(old)
        else:
            os.replace(staging / name, target)


def export_triton(
    loaded: LoadedCheckpoint,
    out: Path | str,
    *,
    name: str,
    max_batch: int = 64,
    engine: Path | str | None = None,
    queue_delay_us: int = 100,
    opset: int = 18,
    dynamo: bool | None = None,
) -> TritonRepository:
    """Write the Triton model repository of a (quantized) dctq checkpoint into `out` (see the module doc).

    Args:
        name: the ensemble clients call (a Triton model name, see model_name); the other models' names
            start with it.
        max_batch: max_batch_size of every model (capped by a TensorRT plan's profile).
        engine: a TensorRT plan of the same checkpoint with its sidecar (`dctq export --format tensorrt`),
            served as the N_trt chain.
        queue_delay_us: dynamic batching's max_queue_delay_microseconds.
        opset, dynamo: as export_onnx.

    Raises ExportError (bad arguments, a plan of another model, a config Triton's schema refuses),
    BackendUnavailable (onnx or protobuf missing), and what export_onnx raises.
    """
    if max_batch < 1 or queue_delay_us < 0:
        raise ExportError(
            f"--max-batch must be >= 1 and the queue delay >= 0, got {max_batch}, {queue_delay_us}"
        )
    import_onnx("Triton export", "onnx")  # before the export, which checks the same
    name = model_name(name)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ExportError(f"--out {root} is a file; a Triton model repository is a folder")
    plan = None
    if engine is not None:  # checked before the (slow) ONNX export
        engine = Path(engine)
        plan = _engine_meta(engine, describe_model(loaded))
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.staging.", dir=root.parent))
    try:
        exported = export_onnx(
            loaded, staging / "export.onnx", opset=opset, dynamic_batch=True, dynamo=dynamo
        )
        lint = lint_qdq(exported)
        meta = ArtifactMeta.from_dict(read_sidecar(exported) or {}, sidecar_path(exported))
        graph = load_onnx(exported)
        rewrite = None
        if is_qdq_model(graph):
            graph, stats = rewrite_for_ort(graph)
            rewrite = dataclasses.asdict(stats)
        labels = "".join(f"{c}\n" for c in meta.class_names) or "".join(
            f"{i}\n" for i in range(int(meta.outputs[0].shape[-1]))
        )
        chains: list[tuple[str, str, ArtifactMeta, int, dict[str, bytes | Path]]] = [
            (name, "onnxruntime", meta, max_batch, {"model.onnx": graph.SerializeToString()})
        ]
        if engine is not None and plan is not None:
            plan_meta, plan_batch = plan
            chains.append(
                (f"{name}_trt", "tensorrt", plan_meta, min(max_batch, plan_batch), {"model.plan": engine})
            )
        written: list[str] = []
        for prefix, backend, chain_meta, batch, files in chains:
            for config in _chain_configs(prefix, backend, chain_meta, batch, queue_delay_us).values():
                model_files: dict[str, bytes | Path] = {}
                if config.get("backend") == backend:
                    model_files = files
                elif config.get("backend") == "python":
                    cls = "JpegDecoder" if config["name"].endswith("_jpeg") else "LabelDecoder"
                    model_files = {"model.py": _PYTHON_MODEL.format(cls=cls).encode()}
                _write_model(staging, config, model_files, labels)
                written.append(config["name"])
        onnx_path = staging / f"{name}_model" / VERSION / "model.onnx"
        extra = {**meta.extra, "triton": {"repository_model": f"{name}_model", "ort_rewrite": rewrite}}
        write_sidecar(onnx_path, dataclasses.replace(meta, extra=extra), "onnx")
        if engine is not None:
            shutil.copyfile(
                sidecar_path(engine), sidecar_path(staging / f"{name}_trt_model" / VERSION / "model.plan")
            )
        check_repository(staging, written)
        _install(staging, root, written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote Triton model repository %s: %s", root, ", ".join(written))
    ensembles = tuple(prefix for prefix, *_ in chains)
    plan_path = root / f"{name}_trt_model" / VERSION / "model.plan" if engine is not None else None
    return TritonRepository(
        root,
        tuple(written),
        ensembles,
        root / f"{name}_model" / VERSION / "model.onnx",
        plan_path,
        max_batch,
        lint,
    )
