"""The INT8 writer: FP32 ONNX -> the graph of ``<arch>.int8.onnx``, as ``dlcv-export --int8`` asks.

One calibration (:func:`dlcv.export.int8.quantize_all`) serves both the optional per-layer sweep
(:mod:`dlcv.export.int8_sensitivity`, ``--int8-sensitivity``) and the file itself, so this
module sits above both: quantization and the sweep never import each other.
"""
from __future__ import annotations

import os
from typing import Callable

import onnx

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata

from .config import ExportConfig
from .int8 import ACTIVATIONS, WEIGHTS, calibration_paths, calibration_tensors, int8_scheme, quantize_all
from .int8_sensitivity import write_sensitivity

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def write_int8(fp32_path: str | os.PathLike, metadata: ArtifactMetadata, config: ExportConfig, log: Log = _silent) -> onnx.ModelProto:
    """The INT8 writer: the FP32 file quantized, calibrated on ``config.calib`` (up to
    ``calib_count`` images, ``calib_method``), ``config.int8_fp32_layers`` kept FP32; with
    ``config.int8_sensitivity`` the per-layer sweep runs on the same calibration first."""
    if config.calib is None:
        raise DlcvError("INT8 needs calibration images (--calib DIR)")
    paths, where = calibration_paths(config.calib, config.calib_count, metadata.dataset)
    tensors = calibration_tensors(paths, metadata, log)
    sizes = sorted({"x".join(map(str, t.shape[1:])) for t in tensors})
    log(f"calibrating INT8 ({config.calib_method}) on {len(tensors)} images from {where} "
        f"(size{'s' if len(sizes) > 1 else ''} {', '.join(sizes[:4])}{', ...' if len(sizes) > 4 else ''})")  # fmt: skip
    quantized = quantize_all(fp32_path, metadata, tensors, method=config.calib_method)
    if config.int8_sensitivity:
        write_sensitivity(quantized, metadata, config, log)
    proto = quantized.finish(metadata, config.int8_fp32_layers)
    scheme = int8_scheme(proto) or {}
    padded = f"; input channels padded to 4: {', '.join(scheme['padded_input_channels'])}" if scheme["padded_input_channels"] else ""
    log(f"  int8: activations {ACTIVATIONS}, weights {WEIGHTS}; FP32 layers: {', '.join(scheme['fp32_layers']) or 'none'}{padded}")
    return proto
