"""Which onnxruntime execution providers a ``--device`` asks for, and with which options.

``cpu``, ``cuda[:N]`` and ``tensorrt[:N]`` (onnxruntime-gpu). The CUDA provider gets the GPU's
``device_id``. The TensorRT provider gets, besides ``device_id``, what a dlcv model needs
(option names as onnxruntime-gpu's TensorRT provider reads them):

- the precision the model's metadata records: ``trt_int8_enable`` for INT8 QDQ graphs (TensorRT
  builds their Q/DQ layers only in INT8 mode), ``trt_fp16_enable`` for FP16 graphs; FP32 gets
  neither, so TensorRT keeps FP32 where the graph says FP32;
- an engine and timing cache (``trt_engine_cache_enable`` / ``trt_timing_cache_enable`` and
  their paths), so a session does not rebuild the engine the previous one built: in
  ``<model>.trt-cache/`` beside the model, or under the user's cache folder when that folder is
  not writable;
- for a graph input with dynamic dimensions, the optimisation profile ``dlcv-export --trt``
  builds engines with (:mod:`dlcv.runtime.tensorrt.profile`) as ``trt_profile_min/opt/max_shapes``
  (``input:1x3x64x64``); inputs outside it are refused by the backend with one line.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import DlcvError
from ..metadata import ArtifactMetadata
from ..precision import FP16, FP32, INT8
from ..tensorrt.profile import Profile, graph_dims, natural_size, optimisation_profile, shape_text

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
DEVICE_PROVIDERS = {
    "cpu": [CPU],
    "cuda": [CUDA, CPU],
    "tensorrt": [TENSORRT, CUDA, CPU],
}
# TensorRT provider options per precision (the graph decides the types; these let TensorRT use them).
TENSORRT_PRECISION_OPTIONS = {
    FP32.name: {},
    FP16.name: {"trt_fp16_enable": "True"},
    INT8.name: {"trt_int8_enable": "True"},
}
CACHE_SUFFIX = ".trt-cache"

ProviderList = list[tuple[str, dict[str, str]]]


def parse_device(device: str) -> tuple[str, int]:
    """``cuda:1`` -> ("cuda", 1); ``cpu`` -> ("cpu", 0); an unknown device is a one-line error."""
    m = re.fullmatch(r"([a-z]+)(?::(\d+))?", str(device).strip().lower())
    if not m or m.group(1) not in DEVICE_PROVIDERS or (m.group(1) == "cpu" and m.group(2)):
        choices = ", ".join(f"{d}[:N]" if d != "cpu" else d for d in DEVICE_PROVIDERS)
        raise DlcvError(f"unknown device {device!r} for onnxruntime; choose one of {choices}")
    return m.group(1), int(m.group(2) or 0)


def tensorrt_cache_dir(model: Path) -> Path:
    """``<model>.trt-cache/`` beside the model, or ``~/.cache/dlcv/trt-cache/<hash>`` when its folder is read-only."""
    model = Path(model)
    if os.access(model.parent, os.W_OK):
        return model.with_name(model.name + CACHE_SUFFIX)
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlcv" / "trt-cache"
    key = hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:16]
    return root / f"{model.name}-{key}"


def tensorrt_profile(metadata: ArtifactMetadata, input_shape: Sequence) -> Profile | None:
    """The optimisation profile of the input (None when the graph fixes every dimension)."""
    dims = graph_dims(input_shape)
    if None not in dims:
        return None
    return optimisation_profile(dims, natural_size(metadata.preprocess))


def tensorrt_options(metadata: ArtifactMetadata, profile: Profile | None, device_id: int, cache_dir: Path) -> dict[str, str]:
    """The TensorRT provider's options for a dlcv model (see the module docstring)."""
    options = {
        "device_id": str(device_id),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
        **TENSORRT_PRECISION_OPTIONS[metadata.precision],
    }
    if profile is not None:
        for key, shape in zip(("min", "opt", "max"), profile):
            options[f"trt_profile_{key}_shapes"] = f"{metadata.input_name}:{shape_text(shape)}"
    return options


def provider_list(device: str, metadata: ArtifactMetadata | None = None, profile: Profile | None = None,
                  cache_dir: Path | None = None) -> ProviderList:  # fmt: skip
    """(provider, options) pairs for ``device`` in onnxruntime's order of preference.
    ``tensorrt`` needs the model's ``metadata`` (precision, input name) and ``cache_dir``."""
    base, index = parse_device(device)
    providers: ProviderList = []
    for name in DEVICE_PROVIDERS[base]:
        if name == TENSORRT:
            if metadata is None or cache_dir is None:
                raise ValueError("the TensorRT provider's options need the model's metadata and a cache folder")
            providers.append((name, tensorrt_options(metadata, profile, index, cache_dir)))
        elif name == CUDA:
            providers.append((name, {"device_id": str(index)}))
        else:
            providers.append((name, {}))
    return providers
