"""dlcv.export: checkpoint -> ONNX (FP32), verified against PyTorch right after writing."""
from .config import ExportConfig
from .onnx_export import ExportResult, export_onnx
from .verify import VerificationReport

__all__ = ["ExportConfig", "ExportResult", "VerificationReport", "export_onnx"]
