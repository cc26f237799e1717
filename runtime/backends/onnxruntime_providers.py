"""Which onnxruntime execution providers a ``--device`` asks for, and with which options.

``cpu``, ``cuda[:N]`` and ``tensorrt[:N]`` (onnxruntime-gpu). The CUDA provider gets the GPU's
``device_id``. The TensorRT provider gets, besides ``device_id``, what a dlcv model needs
(option names as onnxruntime-gpu's TensorRT provider reads them):

- no precision flag (``trt_fp16_enable`` / ``trt_int8_enable``) for any precision: dlcv's FP16
  and INT8 files carry their types in the graph (Casts, Q/DQ nodes), and onnxruntime builds a
  *strongly typed* TensorRT network only when neither flag is set (onnxruntime PR 24298;
  TensorRT's explicit-quantization guide: precision flags "should not be specified" with
  strong typing), which is also what ``dlcv-export --trt`` builds;
- for an INT8 file, its signed form: the file is written for the CPU runtimes (uint8,
  asymmetric Q/DQ), TensorRT takes only signed symmetric INT8, so dlcv-export writes
  ``<arch>.int8.tensorrt.onnx`` beside it (:func:`tensorrt_source`) and the provider is given that;
- an engine and timing cache (``trt_engine_cache_enable`` / ``trt_timing_cache_enable`` and
  their paths), so a session does not rebuild the engine the previous one built: in
  ``<model>.trt-cache/`` beside the model, or under the user's cache folder when that folder is
  not writable;
- for a graph input with dynamic dimensions, the optimisation profile ``dlcv-export`` recorded
  in the metadata (else the rule of :mod:`dlcv.runtime.tensorrt.profile`), widened by
  ``dlcv-infer --trt-max-size``, as ``trt_profile_min/opt/max_shapes`` (``input:1x3x64x64``);
  inputs outside it are refused by the backend with one line.

What the provider really ran is read back from the session (:func:`node_placement`): a graph
TensorRT cannot take is partitioned, and the rest runs on CUDA or the CPU while
``get_providers()[0]`` still says TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..errors import DlcvError
from ..metadata import ArtifactMetadata
from ..onnx_proto import Malformed, metadata_props
from ..tensorrt.profile import Profile, default_profile, graph_dims, profile_from_dict, shape_text, widened

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
DEVICE_PROVIDERS = {
    "cpu": [CPU],
    "cuda": [CUDA, CPU],
    "tensorrt": [TENSORRT, CUDA, CPU],
}
CACHE_SUFFIX = ".trt-cache"
INT8_SCHEME_KEY = "dlcv.int8"  # metadata_props key of an INT8 file's quantization record (dlcv.export.int8)
TENSORRT_INT8_SUFFIX = ".tensorrt.onnx"  # <arch>.int8.onnx -> <arch>.int8.tensorrt.onnx (signed Q/DQ)
SIGNED_ACTIVATIONS = "int8, symmetric, per tensor"
# Asks onnxruntime (>= 1.23) to record which provider each node was assigned to.
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"

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


def tensorrt_profile(metadata: ArtifactMetadata, input_shape: Sequence, max_size: Sequence[int] | None = None) -> Profile | None:
    """The optimisation profile of the input (None when the graph fixes every dimension): the
    one dlcv-export recorded, else its default rule; ``max_size`` (H, W) raises its maximum."""
    dims = graph_dims(input_shape)
    if None not in dims:
        return None
    if metadata.tensorrt_profile is not None:
        profile = profile_from_dict(dict(metadata.tensorrt_profile))
    else:
        profile = default_profile(dims, metadata.task, metadata.preprocess)
    return widened(profile, max_size) if max_size is not None else profile


def int8_activations(path: Path) -> str | None:
    """How an INT8 file's activations are encoded (its :data:`INT8_SCHEME_KEY` record), None without a record."""
    try:
        record = metadata_props(path).get(INT8_SCHEME_KEY)
    except (OSError, Malformed):
        return None
    try:
        return None if record is None else str(json.loads(record).get("activations", ""))
    except (ValueError, AttributeError):
        return None


def tensorrt_int8_path(path: Path) -> Path:
    """Where dlcv-export writes the signed (TensorRT) form of the INT8 file ``path``."""
    path = Path(path)
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
    return path.with_name(stem + TENSORRT_INT8_SUFFIX)


def tensorrt_source(path: Path, metadata: ArtifactMetadata) -> Path:
    """The file to give onnxruntime's TensorRT provider: ``path`` itself, or for an INT8 file in
    the CPU form (uint8 asymmetric Q/DQ, which TensorRT rejects, so the provider would leave
    those nodes to CUDA/CPU) its signed form beside it; a one-line error when that is missing."""
    path = Path(path)
    if metadata.precision != "int8":
        return path
    activations = int8_activations(path)
    if activations is None or not activations.startswith("uint8"):
        return path  # signed already, or not a dlcv-quantized file: TensorRT takes it as it is
    signed = tensorrt_int8_path(path)
    if signed.is_file() and (int8_activations(signed) or "").startswith("int8"):
        return signed
    raise DlcvError(
        f"{path}: its Q/DQ nodes are uint8 with zero points (the form onnxruntime's CPU kernels want), which "
        f"TensorRT does not take, and its signed form {signed.name} is not beside it; re-export with this dlcv "
        f"(dlcv-export CHECKPOINT --int8 --calib DIR writes both), or build an engine (dlcv-export --trt --precision int8)"
    )


def node_placement(session: Any) -> dict[str, int] | None:
    """How many graph nodes each provider was assigned (after partitioning), or None when this
    onnxruntime cannot say (< 1.23, or the session was opened without :data:`RECORD_ASSIGNMENT`)."""
    read = getattr(session, "get_provider_graph_assignment_info", None)
    if read is None:
        return None
    try:
        subgraphs = read()
    except Exception:  # onnxruntime raises its own types when recording was not enabled
        return None
    counts: Counter[str] = Counter()
    for subgraph in subgraphs:
        counts[str(subgraph.ep_name)] += len(subgraph.get_nodes())
    return dict(counts) if counts else None


def placement_text(placement: dict[str, int] | None) -> str:
    """``TensorrtExecutionProvider 38/40 nodes (95%), CPUExecutionProvider 2/40 (5%)``."""
    if not placement:
        return "node placement not reported by this onnxruntime"
    total = sum(placement.values())
    parts = sorted(placement.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {count}/{total} nodes ({100 * count / total:.0f}%)" for name, count in parts)


def tensorrt_options(metadata: ArtifactMetadata, profile: Profile | None, device_id: int, cache_dir: Path) -> dict[str, str]:
    """The TensorRT provider's options for a dlcv model (see the module docstring); the same for every precision."""
    options = {
        "device_id": str(device_id),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache_dir),
    }  # no trt_fp16_enable / trt_int8_enable: they would turn strong typing off (module docstring)
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
