"""backends: runtimes by name (Polygraphy's backend/ shape); the module names match `--backend`.

registry.py: the Backend / Runner protocols and load_runner(artifact, backend, device) -> Runner, whose
predict(batch) maps a batch of coefficients (or pixels) to logits. Built in: ort.py (ONNX Runtime, CPU,
with the integer rewrite), pytorch.py ("torch": checkpoints, TorchScript, torch.export programs and
in-memory models; CPU or CUDA), tensorrt/ (engine build and run; optional). A runtime's module is imported
on first use, so a missing optional runtime raises BackendUnavailable with its install command.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "Backend",
            "DEFAULT_FOR_KIND",
            "Runner",
            "default_backend",
            "get_backend",
            "list_backends",
            "load_runner",
            "register_backend",
        ),
        "dctq.deploy.backends.registry",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
