"""A Triton model repository from a deployed model: ``dlcv-export CKPT --triton REPO``.

For a model named ``<name>`` (the architecture by default) it writes::

    REPO/<name>/config.pbtxt                 the model: platform onnxruntime_onnx (1/model.onnx),
                                             tensorrt_plan (1/model.plan), or the Python backend
                                             running dlcv's onnxruntime backend (1/model.onnx +
                                             1/model.py)
    REPO/<name>_preprocess/config.pbtxt      Python backend: encoded image -> model input + geometry
    REPO/<name>_postprocess/config.pbtxt     Python backend: logits (or an --argmax head's labels / TopK)
                                             -> mask / top-5 with class names
    REPO/<name>_ensemble/config.pbtxt        IMAGE (file bytes) -> MASK, or TOP_CLASSES/TOP_SCORES/TOP_NAMES

Input/output names, data types and dims come from the ONNX graph; ``max_batch_size`` is the
one asked for when the graph's batch axis is dynamic (0, with the batch in the dims, when it is
fixed at 1), capped by a TensorRT engine's profile; the model and the pre/post models batch
dynamically; ``instance_group`` puts ``instances`` of the model on the CPU or GPU (pre/post run
on the CPU). Every config carries the dlcv metadata as its ``dlcv`` parameter, which is where
the Python models and ``dlcv-infer --engine triton://...`` read it. The Python models' files
are one import line each: the server runs :mod:`dlcv.runtime.triton.python_models`, so dlcv
must be installed in the server's Python environment (``pip install dlcv``, no extras).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from dlcv.runtime.errors import DlcvError, DlcvUsageError, MissingDependencyError
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata, read_sidecar
from dlcv.runtime.postprocess import label_dtype
from dlcv.runtime.task import get_task
from dlcv.runtime.triton import (
    ENSEMBLE_SUFFIX, GEOMETRY, IMAGE, MASK, METADATA_PARAMETER, POSTPROCESS_SUFFIX, PREPROCESS_SUFFIX, TOP_CLASSES,
    TOP_NAMES, TOP_SCORES, TOPK,
)  # fmt: skip
from dlcv.runtime.triton.python_models import ONNX_FILE

from .config_proto import parse_model_config
from .pbtxt import Enum, to_pbtxt

MODEL_BACKENDS = ("onnxruntime", "tensorrt", "python")
KINDS = ("cpu", "gpu")
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 2000
PLAN_FILE = "model.plan"
_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16", onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.INT64: "TYPE_INT64",
}  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TritonConfig:
    """What ``--triton REPO`` writes. ``kind`` None: GPU for ``tensorrt``, CPU otherwise;
    ``name`` None: the model's architecture."""

    repository: Path
    max_batch: int = DEFAULT_MAX_BATCH
    instances: int = 1
    kind: str | None = None
    model_backend: str = "onnxruntime"
    name: str | None = None
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", Path(self.repository))
        problems = []
        if self.max_batch < 1:
            problems.append(f"--triton-max-batch must be at least 1, got {self.max_batch}")
        if self.instances < 1:
            problems.append(f"--triton-instances must be at least 1, got {self.instances}")
        if self.kind is not None and self.kind not in KINDS:
            problems.append(f"--triton-kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.model_backend not in MODEL_BACKENDS:
            problems.append(f"--triton-model-backend must be one of {', '.join(MODEL_BACKENDS)}, not {self.model_backend!r}")
        if self.model_backend == "tensorrt" and self.kind == "cpu":
            problems.append("a TensorRT engine runs on the GPU: --triton-model-backend tensorrt needs --triton-kind gpu")
        if self.name is not None and not _NAME.match(self.name):
            problems.append(f"Triton model name {self.name!r}: use letters, digits, '_', '-', '.'")
        if self.max_queue_delay_us < 0:
            problems.append(f"the dynamic batcher's queue delay must not be negative, got {self.max_queue_delay_us}")
        if problems:
            raise DlcvUsageError("; ".join(problems))

    @property
    def instance_kind(self) -> str:
        return self.kind or ("gpu" if self.model_backend == "tensorrt" else "cpu")


@dataclass(frozen=True)
class TritonRepository:
    """What :func:`write_repository` wrote."""

    repository: Path
    name: str
    models: dict[str, Path] = field(default_factory=dict)  # model name -> its folder
    platform: str = ""
    max_batch_size: int = 0

    @property
    def ensemble(self) -> str:
        return self.name + ENSEMBLE_SUFFIX

    def summary(self) -> str:
        batching = f"max batch {self.max_batch_size}, dynamic batching" if self.max_batch_size else "fixed batch 1"
        return (
            f"wrote Triton repository {self.repository}: {', '.join(self.models)} ({self.platform}, {batching}); "
            f"send encoded images to {self.ensemble}, or run dlcv-infer --engine triton://HOST:8000/{self.name}"
        )


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class _Tensor:
    name: str
    data_type: str
    dims: tuple[int, ...]  # -1 for dynamic axes; the batch axis included


def _tensor(value: onnx.ValueInfoProto) -> _Tensor:
    t = value.type.tensor_type
    if t.elem_type not in _ONNX_TYPES:
        raise DlcvError(
            f"graph tensor {value.name!r} has ONNX type {onnx.TensorProto.DataType.Name(t.elem_type)}; Triton configs are "
            "written for float inputs and float logits, uint8/int32 labels or int64 TopK indices"
        )
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim)
    return _Tensor(value.name, _ONNX_TYPES[t.elem_type], dims)


def read_graph(onnx_path: Path) -> tuple[ArtifactMetadata, _Tensor, tuple[_Tensor, ...]]:
    """The dlcv metadata, the model input and its outputs (logits, or a head's labels / TopK
    indices and scores, in the metadata's order) of an ONNX file (weights are not read)."""
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise DlcvError(f"{onnx_path}: cannot read the ONNX file ({exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise DlcvError(f"{onnx_path}: carries no dlcv metadata; export it with dlcv-export")
    metadata = ArtifactMetadata.from_json(props[METADATA_KEY], source=str(onnx_path))
    inputs = {i.name: i for i in proto.graph.input}
    outputs = {o.name: o for o in proto.graph.output}
    if metadata.input_name not in inputs or not set(metadata.output_names) <= set(outputs):
        raise DlcvError(
            f"{onnx_path}: the graph lacks the input {metadata.input_name!r} or the outputs {list(metadata.output_names)} "
            "its metadata names"
        )
    return metadata, _tensor(inputs[metadata.input_name]), tuple(_tensor(outputs[n]) for n in metadata.output_names)


# --------------------------------------------------------------------------- configs


def _io(tensor: _Tensor | tuple[str, str, tuple[int, ...]], batched: bool) -> dict:
    name, data_type, dims = (tensor.name, tensor.data_type, tensor.dims[1:]) if isinstance(tensor, _Tensor) else tensor
    return {"name": name, "data_type": Enum(data_type), "dims": list(dims) if batched else [1, *dims]}


def _parameters(metadata: ArtifactMetadata, **extra: str) -> list[dict]:
    values = {METADATA_PARAMETER: json.dumps(metadata.to_dict(), sort_keys=True), **extra}
    return [{"key": k, "value": {"string_value": v}} for k, v in values.items()]


def _common(name: str, max_batch: int, config: TritonConfig, kind: str, metadata: ArtifactMetadata, batching: bool) -> dict:
    return {
        "name": name,
        "max_batch_size": max_batch,
        "instance_group": [{"count": config.instances, "kind": Enum(f"KIND_{kind.upper()}")}],
        "dynamic_batching": {"max_queue_delay_microseconds": config.max_queue_delay_us} if batching and max_batch else None,
        "parameters": _parameters(metadata),
    }


def _output_tensors(metadata: ArtifactMetadata) -> list[tuple[str, str, tuple[int, ...]]]:
    if get_task(metadata.task).per_pixel:
        return [(MASK, "TYPE_UINT8" if label_dtype(metadata.num_classes).itemsize == 1 else "TYPE_UINT16", (-1, -1))]
    k = min(TOPK, metadata.num_classes)
    return [(TOP_CLASSES, "TYPE_INT32", (k,)), (TOP_SCORES, "TYPE_FP32", (k,)), (TOP_NAMES, "TYPE_STRING", (k,))]


def model_configs(name: str, metadata: ArtifactMetadata, x: _Tensor, ys: tuple[_Tensor, ...], config: TritonConfig,
                  max_batch: int) -> dict[str, dict]:  # fmt: skip
    """The four configs (model, pre, post, ensemble) as dicts for :func:`to_pbtxt`. The model's
    outputs (``ys``: logits, or an in-graph head's tensors) are the postprocessing model's inputs."""
    batched = max_batch > 0
    seg = get_task(metadata.task).per_pixel
    geometry = (GEOMETRY, "TYPE_INT32", (8,))
    image = (IMAGE, "TYPE_UINT8", (-1,))
    platform = {"onnxruntime": {"platform": "onnxruntime_onnx"}, "tensorrt": {"platform": "tensorrt_plan"},
                "python": {"backend": "python"}}[config.model_backend]  # fmt: skip
    model = {"name": name, **platform}
    model.update(_common(name, max_batch, config, config.instance_kind, metadata, batching=True))
    model.update(input=[_io(x, batched)], output=[_io(y, batched) for y in ys])
    model = {k: model[k] for k in ("name", *platform, "max_batch_size", "input", "output", "instance_group",
                                   "dynamic_batching", "parameters")}  # fmt: skip

    pre_name, post_name, ens_name = name + PREPROCESS_SUFFIX, name + POSTPROCESS_SUFFIX, name + ENSEMBLE_SUFFIX
    pre = {"name": pre_name, "backend": "python", "max_batch_size": max_batch, "input": [_io(image, batched)],
           "output": [_io(x, batched), _io(geometry, batched)]}  # fmt: skip
    pre.update({k: v for k, v in _common(pre_name, max_batch, config, "cpu", metadata, True).items() if k != "name"})
    post_inputs = [_io(y, batched) for y in ys] + ([_io(geometry, batched)] if seg else [])
    post = {"name": post_name, "backend": "python", "max_batch_size": max_batch, "input": post_inputs,
            "output": [_io(t, batched) for t in _output_tensors(metadata)]}  # fmt: skip
    post.update({k: v for k, v in _common(post_name, max_batch, config, "cpu", metadata, True).items() if k != "name"})

    def step(model_name: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict:
        return {"model_name": model_name, "model_version": -1,
                "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
                "output_map": [{"key": k, "value": v} for k, v in outputs.items()]}  # fmt: skip

    final = [t[0] for t in _output_tensors(metadata)]
    ensemble = {
        "name": ens_name,
        "platform": "ensemble",
        "max_batch_size": max_batch,
        "input": [_io(image, batched)],
        "output": [_io(t, batched) for t in _output_tensors(metadata)],
        "ensemble_scheduling": {"step": [
            step(pre_name, {IMAGE: IMAGE}, {x.name: "preprocessed", **({GEOMETRY: "geometry"} if seg else {})}),
            step(name, {x.name: "preprocessed"}, {y.name: y.name for y in ys}),
            step(post_name, {**{y.name: y.name for y in ys}, **({GEOMETRY: "geometry"} if seg else {})},
                 {t: t for t in final}),
        ]},
        "parameters": _parameters(metadata),
    }  # fmt: skip
    return {name: model, pre_name: pre, post_name: post, ens_name: ensemble}


def _max_batch(x: _Tensor, metadata: ArtifactMetadata, config: TritonConfig, source: Path) -> int:
    batch = x.dims[0] if x.dims else -1
    if batch == 1:
        return 0  # a fixed batch of one: Triton's max_batch_size 0, the batch written in the dims
    if batch > 1:
        raise DlcvError(
            f"{source}: the graph's batch axis is fixed at {batch}; Triton sends requests of one image, so export "
            "with a dynamic batch (without --static) or with --static --batch 1"
        )
    limit = config.max_batch
    profile_max = (metadata.engine.get("profile") or {}).get("max") if config.model_backend == "tensorrt" else None
    if profile_max:
        limit = min(limit, int(profile_max[0]))
    return limit


# --------------------------------------------------------------------------- writing


_PYTHON_MODEL = '''"""dlcv's {role} for Triton's Python backend: the code is dlcv's (pip install dlcv in the server's
Python environment), so serving preprocesses and postprocesses exactly as dlcv-infer does."""
from dlcv.runtime.triton.python_models import {cls} as TritonPythonModel  # noqa: F401
'''


def write_repository(config: TritonConfig, onnx_path: str | os.PathLike, engine_path: str | os.PathLike | None = None,
                     log=None) -> TritonRepository:  # fmt: skip
    """Write the four models of ``onnx_path`` (or, for ``tensorrt``, of the engine built from it)
    into ``config.repository``; models of the same names are replaced, others are left alone."""
    onnx_path = Path(onnx_path)
    metadata, x, ys = read_graph(onnx_path)
    if config.model_backend == "tensorrt":
        if engine_path is None:
            raise DlcvUsageError("--triton-model-backend tensorrt serves the engine --trt builds; add --trt")
        engine_path = Path(engine_path)
        metadata = read_sidecar(engine_path)
    name = config.name or metadata.arch
    if not _NAME.match(name):
        raise DlcvUsageError(f"Triton model name {name!r}: use letters, digits, '_', '-', '.' (give one with name=)")
    max_batch = _max_batch(x, metadata, config, onnx_path)
    configs = model_configs(name, metadata, x, ys, config, max_batch)

    repo = config.repository
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        for model_name, model_config in configs.items():
            version = staging / model_name / "1"
            version.mkdir(parents=True)
            (staging / model_name / "config.pbtxt").write_text(to_pbtxt(model_config), encoding="utf-8")
        files = staging / name / "1"
        if config.model_backend == "tensorrt":
            shutil.copy2(engine_path, files / PLAN_FILE)
        else:
            shutil.copy2(onnx_path, files / ONNX_FILE)
        python_models = {name + PREPROCESS_SUFFIX: ("PreprocessModel", "preprocessing"),
                         name + POSTPROCESS_SUFFIX: ("PostprocessModel", "postprocessing")}  # fmt: skip
        if config.model_backend == "python":
            python_models[name] = ("OnnxModel", "model step (onnxruntime)")
        for model_name, (cls, role) in python_models.items():
            (staging / model_name / "1" / "model.py").write_text(_PYTHON_MODEL.format(role=role, cls=cls), encoding="utf-8")
        _check_configs(staging)
        written = {}
        for model_name in configs:
            target = repo / model_name
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / model_name, target)
            written[model_name] = target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    platform = configs[name].get("platform") or f"{configs[name]['backend']} backend"
    result = TritonRepository(repo, name, written, platform, max_batch)
    if log is not None:
        log(result.summary())
    return result


def _check_configs(folder: Path) -> None:
    """Parse every config with Triton's schema where tritonclient is installed (a failure is a writer bug)."""
    for path in sorted(folder.glob("*/config.pbtxt")):
        try:
            parse_model_config(path.read_text(encoding="utf-8"), source=str(path))
        except MissingDependencyError:
            return  # nothing to check with
