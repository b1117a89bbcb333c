"""Layer outputs of a model, keyed so that two forms of the same network line up: PyTorch modules by forward
hooks, ONNX graphs by marking the value each module produces as an extra graph output (Polygraphy's
`--onnx-outputs mark all`, restricted to module outputs).

Keys are module names of the float model ("stages.0.1.conv2", "stages.0.1.add", "fc"). A BatchNorm
folded into its conv (quantized models fold in PyTorch, the ONNX exporter folds float models) makes the
conv's output the BN's output, so a BN's output is keyed by the name of its conv (pairs found on the
architecture, calibration.quant.fold.find_conv_bn_pairs) and an unfolded conv's own pre-BN output is
left out. Layers: convolutions, linear layers, residual Adds, ReLUs, pooling.

An ONNX graph knows its modules through the dynamo exporter's `pkg.torch.onnx.name_scopes` metadata:
the last node inside a module's scope (not inside one of its quantizers) produces the module's output.
Marked graphs run in ONNX Runtime as exported (without the ORT integer rewrite, which is the same
function up to rounding); marking outputs can keep ORT from fusing across them, as in Polygraphy.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...calibration.quant.fold import find_conv_bn_pairs
from ...calibration.quant.quantizer import TensorQuantizer
from ...common.errors import BackendUnavailable, DctqError, ExportError
from ...jpeg.batch import model_arrays, model_inputs
from ...models.registry import create_model
from ...models.resnet import ResidualAdd
from ..onnx.graph import load_onnx

LAYER_TYPES = (
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.Linear,
    ResidualAdd,
    nn.ReLU,
    nn.BatchNorm2d,
    nn.AdaptiveAvgPool2d,
)
SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def bn_aliases(model: nn.Module) -> tuple[dict[str, str], set[str]]:
    """({bn name: its conv's name}, {conv names with a BN after them}) for `model` (any form)."""
    try:
        pairs = find_conv_bn_pairs(model)
    except Exception:  # a model that neither traces nor has Sequential pairs: no aliases
        pairs = []
    return {bn: conv for conv, bn in pairs}, {conv for conv, _ in pairs}


def layer_names(model: nn.Module, *, paired_convs: bool = False) -> dict[str, str]:
    """{module name: the key its output is compared under} for the layers of `model` (see module docstring).

    paired_convs: also map a conv followed by a BN to its own name (an ONNX graph of the model may hold the
    conv folded, under the conv's scope, or the BN, under the BN's).
    """
    aliases, convs_with_bn = bn_aliases(model)
    out = {}
    for name, module in model.named_modules():
        if not name or isinstance(module, TensorQuantizer) or not isinstance(module, LAYER_TYPES):
            continue
        if name in convs_with_bn and not paired_convs:
            continue  # its BN's output stands for it
        out[name] = aliases.get(name, name)
    return out


class TorchTap:
    """Forward hooks recording every layer's output of a PyTorch model: `run(batch)` -> {key: tensor}."""

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        self.names = layer_names(model)

    def run(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, {layer key: output}) of one batch."""
        seen: dict[str, torch.Tensor] = {}
        modules = dict(self.model.named_modules())

        def hook(key: str):
            def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
                if isinstance(output, torch.Tensor):
                    seen[key] = output.detach().float().cpu()  # a module run twice keeps its last output

            return record

        with contextlib.ExitStack() as stack:
            for name, key in self.names.items():
                handle = modules[name].register_forward_hook(hook(key))
                stack.callback(handle.remove)
            with torch.inference_mode():
                logits = self.model(*model_inputs(batch, self.device, dtype=torch.float32))
        return logits.float().cpu(), seen


def _scopes(node: Any) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return [str(v) for v in value] if isinstance(value, list | tuple) else None
    return None


def onnx_module_outputs(model: Any, keys: Mapping[str, str] | None) -> dict[str, str]:
    """{layer key: ONNX value name} of the modules an exported graph holds (see module docstring).

    keys: {module name: key} of the architecture (layer_names); None keeps every module scope as its own key.
    """
    last: dict[str, str] = {}
    for node in model.graph.node:
        scopes = _scopes(node)
        if not scopes or len(scopes) < 2 or not node.output:
            continue
        module = scopes[-2]  # the last entry names the op itself
        if module.endswith("_quantizer"):
            continue  # a quantizer's Q/DQ inside the layer, not the layer's output
        last[module] = node.output[0]
    if keys is None:
        return {m: v for m, v in last.items() if m}
    # in graph order, so a BN after its (unfolded) conv overwrites the conv's pre-BN value
    return {keys[m]: v for m, v in last.items() if m in keys}


class OnnxTap:
    """An ONNX graph with every layer's output marked, in ONNX Runtime: `run(batch)` -> (logits, {key: out})."""

    def __init__(
        self, path: Path, arch: str | None, arch_kwargs: Mapping[str, Any], input_names: tuple[str, ...]
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable(
                "comparing ONNX layers needs ONNX Runtime: pip install 'dctq[onnx]'"
            ) from None
        model = load_onnx(path)
        if not any(_scopes(n) for n in model.graph.node):
            raise ExportError(
                f"{path} carries no module scopes (pkg.torch.onnx.name_scopes), so its layers cannot be named; "
                "export it with `dctq export` (the dynamo exporter) for --layers"
            )
        keys = layer_names(create_model(arch, **dict(arch_kwargs)), paired_convs=True) if arch else None
        self.outputs = onnx_module_outputs(model, keys)
        graph_outputs = {o.name for o in model.graph.output}
        from onnx import TensorProto, helper

        for value in self.outputs.values():
            if value not in graph_outputs:
                model.graph.output.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's exception types have no common public base
            raise ExportError(
                f"ONNX Runtime cannot load {path} with its layers marked: {str(exc)[:300]}"
            ) from None
        self.logits_name = model.graph.output[0].name
        self.input_names = input_names
        self.path = path

    def run(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feeds = model_arrays(batch, self.input_names, source=str(self.path))
        names = [self.logits_name, *self.outputs.values()]
        try:
            values = self.session.run(names, feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DctqError(
                f"ONNX Runtime failed on {self.path.name} with its layers marked: {str(exc)[:300]}"
            ) from None
        found = dict(zip(names, values, strict=True))
        layers = {
            key: torch.from_numpy(np.asarray(found[v], dtype=np.float32)) for key, v in self.outputs.items()
        }
        return torch.from_numpy(np.asarray(values[0], dtype=np.float32)), layers


def iter_common(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Iterator[str]:
    """The keys both sides recorded, in A's order, whose shapes agree."""
    for key, value in a.items():
        if key in b and b[key].shape == value.shape:
            yield key
