"""Backends: open a deployed model by its file (or URL) and run ``infer(batch) -> logits``.

The registry (:mod:`.registry`) is built from the backend classes' own identity, registered
as ``dlcv.backends`` entry points; modules are imported only when the registry is first read
and never import their engine library at module level, so onnxruntime users never load
TensorRT, and nothing here imports torch unless a checkpoint is opened.
"""
from __future__ import annotations

from .base import Backend, Preference
from .registry import (
    Choice, all_devices, backend_names, backends, backends_for, check_device, choose_backend, parse_device, deployed_suffixes,
    get_backend, open_backend, opens, resolve_backend,
)  # fmt: skip

__all__ = [
    "Backend", "Choice", "Preference", "all_devices", "backend_names", "backends", "backends_for", "choose_backend", "parse_device",
    "deployed_suffixes", "get_backend", "check_device", "open_backend", "opens", "resolve_backend",
]  # fmt: skip
