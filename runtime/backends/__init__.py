"""Backends: open a deployed model by its file and run ``infer(batch) -> logits``."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import DlcvError
from .base import Backend

# Suffix -> "module:Class". Modules are imported only when a file of that kind is opened, so
# onnxruntime users never load TensorRT, and nothing here imports torch unless a .pt is given.
_OPENERS = {
    ".onnx": "dlcv.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    ".plan": "dlcv.runtime.backends.tensorrt_backend:TensorRTBackend",
    ".engine": "dlcv.runtime.backends.tensorrt_backend:TensorRTBackend",
    ".pt": "dlcv.train.torch_backend:TorchBackend",
}
# The files dlcv-export writes (a .pt is the PyTorch source, not a deployed model).
DEPLOYED_SUFFIXES = tuple(suffix for suffix in _OPENERS if suffix != ".pt")


def register_backend(suffix: str, target: str) -> None:
    """Map a file suffix to a ``"module:Class"`` backend (used by optional backends)."""
    _OPENERS[suffix.lower()] = target


def open_backend(path: str | Path, device: str = "cpu", **options) -> Backend:
    """Open a model file with the backend its suffix names (.onnx, .plan/.engine, .pt)."""
    path = Path(path)
    target = _OPENERS.get(path.suffix.lower())
    if target is None:
        raise DlcvError(f"{path}: unknown model file type {path.suffix!r}; expected one of {', '.join(sorted(_OPENERS))}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DlcvError(f"{path}: the backend for {path.suffix} files cannot be loaded ({exc}); install its extra (see README)") from None
    return getattr(module, cls_name)(path, device=device, **options)


__all__ = ["DEPLOYED_SUFFIXES", "Backend", "open_backend", "register_backend"]
