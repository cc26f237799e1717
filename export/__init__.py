"""dlcv.export: checkpoint -> ONNX (FP32, FP16, INT8) and TensorRT, verified against PyTorch right after writing.

The orchestration (:mod:`.onnx_export`, which imports torch) is loaded on first use, so the
graph writers (:mod:`.fp16`, :mod:`.int8`, :mod:`.graph`) import without it.
"""
from __future__ import annotations

from typing import Any

from .config import ExportConfig

__all__ = ["ExportConfig", "ExportResult", "VerificationReport", "export_onnx"]
_LAZY = {"ExportResult": ".onnx_export", "export_onnx": ".onnx_export", "VerificationReport": ".verify"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
