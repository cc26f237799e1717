"""onnxruntime backend: the CPU execution provider, or CUDA/TensorRT ones when onnxruntime-gpu is installed
(which providers, with which options: :mod:`.onnxruntime_providers`).

onnxruntime is imported when a model is opened, not with this module (the registry reads the
class's identity without it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DlcvError, MissingDependencyError, first_line
from ..external_data import check_external_data
from ..metadata import ArtifactMetadata, read_onnx_metadata
from ..onnx_proto import Malformed, graph_input_shapes
from ..tensorrt.libraries import preload_tensorrt_libraries
from ..tensorrt.profile import Profile, contains, shape_text
from .base import Backend, Outputs, concat_outputs
from .onnxruntime_providers import (
    DEVICE_PROVIDERS, RECORD_ASSIGNMENT, TENSORRT, node_placement, parse_device, placement_text, provider_list,
    tensorrt_cache_dir, tensorrt_profile, tensorrt_source,
)  # fmt: skip

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["DEVICE_PROVIDERS", "OnnxRuntimeBackend"]


def _open_session(ort, path: Path, options, providers) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for invalid models
        raise DlcvError(f"{path}: onnxruntime cannot load this model ({first_line(exc)})") from None


def _graph_input_shape(path: Path, metadata: ArtifactMetadata) -> list:
    """The input's dims as the graph declares them (ints, or names for dynamic ones), read from the
    file's protobuf (no session)."""
    try:
        shapes = graph_input_shapes(path)
    except (OSError, Malformed) as exc:
        raise DlcvError(f"{path}: cannot read the graph's inputs ({exc}); re-export the model") from None
    return list(shapes.get(metadata.input_name, ()))


def _session(path: Path, device: str, threads: int | None, metadata: ArtifactMetadata,
             trt_max_size: tuple[int, int] | None = None) -> tuple[ort.InferenceSession, Profile | None]:  # fmt: skip
    """The session on ``device``'s providers, with their options, and the TensorRT provider's
    optimisation profile when that provider is used (``trt_max_size`` widens it)."""
    ort = OnnxRuntimeBackend.import_library("onnxruntime")
    base, _ = parse_device(device)
    first = DEVICE_PROVIDERS[base][0]
    available = ort.get_available_providers()
    if first not in available:
        raise MissingDependencyError(
            f"--device {device} needs onnxruntime's {first}, but this onnxruntime offers only "
            f"{', '.join(available)}; install onnxruntime-gpu (pip install 'dlcv[gpu]') or use --device cpu"
        )
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    check_external_data(path)  # untrusted files: no tensor data read from outside the model's folder
    options.add_session_config_entry(RECORD_ASSIGNMENT, "1")  # read back by node_placement
    profile = None
    source = path
    preloaded: list[Path] = []
    if base == "tensorrt":
        source = tensorrt_source(path, metadata)
        check_external_data(source)
        preloaded = preload_tensorrt_libraries()  # pip's TensorRT is on no loader path (dlcv.runtime.tensorrt.libraries)
        profile = tensorrt_profile(metadata, _graph_input_shape(source, metadata), trt_max_size)
        providers = provider_list(device, metadata, profile, tensorrt_cache_dir(source))
    else:
        providers = provider_list(device)
    session = _open_session(ort, source, options, providers)
    # A provider that is compiled in but cannot start (CUDA or cuDNN libraries missing, no GPU)
    # makes onnxruntime fall back to the CPU with only a warning: refuse that silently slow run.
    if session.get_providers()[0] != first:
        needs = "the CUDA/cuDNN libraries that onnxruntime-gpu needs and the GPU driver"
        if first == TENSORRT:  # onnxruntime-gpu's TensorRT provider links TensorRT 10 (libnvinfer.so.10)
            found = (f"dlcv loaded {', '.join(p.name for p in preloaded)} from {preloaded[0].parent}" if preloaded else
                     "dlcv found no pip-installed TensorRT libraries (tensorrt_libs) to load")  # fmt: skip
            needs = (f"TensorRT 10 (pip install 'tensorrt-cu13>=10.13,<11', or -cu12 for onnxruntime-gpu < 1.27; {found}; "
                     f"a TensorRT installed elsewhere needs its lib folder on LD_LIBRARY_PATH), " + needs)  # fmt: skip
        raise MissingDependencyError(
            f"{path}: --device {device} asked for onnxruntime's {first}, which failed to start (session "
            f"providers: {', '.join(session.get_providers())}); check {needs} (README, GPU packages), or use --device cpu"
        )
    return session, profile


class OnnxRuntimeBackend(Backend):
    """An ONNX file run by onnxruntime."""

    name = "onnxruntime"
    suffixes = (".onnx",)
    devices = tuple(DEVICE_PROVIDERS)
    extra = "cpu"
    priority = 10
    options = ("threads", "trt_max_size")

    @classmethod
    def install_hint(cls) -> str:
        return "pip install 'dlcv[cpu]' (onnxruntime), or 'dlcv[gpu]' (onnxruntime-gpu, CUDA 13) / 'dlcv[gpu-cu12]'"

    @classmethod
    def read_metadata(cls, path: Path) -> ArtifactMetadata:
        return read_onnx_metadata(path)

    @classmethod
    def library_version(cls) -> str | None:
        try:
            return cls.import_library("onnxruntime").__version__
        except MissingDependencyError:
            return None

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 trt_max_size: tuple[int, int] | None = None):  # fmt: skip
        path = Path(path)
        if not path.is_file():
            raise DlcvError(f"{path}: ONNX file not found")
        metadata = read_onnx_metadata(path)
        self.session, self.trt_profile = _session(path, device, threads, metadata, trt_max_size)
        super().__init__(path, metadata)
        self.device = device
        # nodes per provider after partitioning: a TensorRT session may run part of the graph elsewhere
        self.placement = node_placement(self.session)
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        md = self.metadata
        if md.input_name not in inputs or not set(md.output_names) <= outputs:
            raise DlcvError(
                f"{path}: metadata names input {md.input_name!r} and outputs {list(md.output_names)}, but the graph has "
                f"inputs {sorted(inputs)} and outputs {sorted(outputs)}; re-export the model"
            )
        if inputs[md.input_name].type != "tensor(float)":
            raise DlcvError(f"{path}: input {md.input_name!r} is {inputs[md.input_name].type}, expected tensor(float)")
        self.input_shape = inputs[md.input_name].shape  # ints for static dims, names for dynamic ones

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        for axis, (want, got) in enumerate(zip(self.input_shape, batch.shape)):
            if isinstance(want, int) and want != got:
                raise DlcvError(
                    f"{self.path.name}: input axis {axis} is fixed at {want} in this (static) model, got {got}; "
                    "export without --static for dynamic shapes"
                )
        profile = self.trt_profile
        if profile is not None and not contains(profile, (min(batch.shape[0], profile[2][0]), *batch.shape[1:])):
            lo, _, hi = profile
            _, _, h, w = batch.shape
            fix = (f"widen it with dlcv-infer --trt-max-size {max(h, hi[2])}x{max(w, hi[3])}" if h > hi[2] or w > hi[3]
                   else "re-export with --trt --min-shape covering it")  # fmt: skip
            raise DlcvError(
                f"{self.path.name}: input {shape_text(batch.shape[1:])} is outside the optimisation profile given to "
                f"onnxruntime's {TENSORRT} ({shape_text(lo[1:])} .. {shape_text(hi[1:])}, as dlcv-export recorded it); "
                f"{fix}, or use --device cuda"
            )

    def describe_placement(self) -> str | None:
        """Where the graph's nodes run, for a session on a GPU provider (None on the CPU)."""
        if self.device == "cpu" or str(self.device).startswith("cpu"):
            return None
        return placement_text(self.placement)

    def _run(self, batch: np.ndarray) -> np.ndarray | Outputs:
        step = self.trt_profile[2][0] if self.trt_profile is not None else batch.shape[0]
        outputs = concat_outputs([self._run_chunk(batch[i : i + step]) for i in range(0, batch.shape[0], step)])
        return outputs if len(outputs) > 1 else outputs[self.metadata.output_name]  # one output: the array itself

    def _run_chunk(self, batch: np.ndarray) -> Outputs:
        names = list(self.metadata.output_names)
        return dict(zip(names, self.session.run(names, {self.metadata.input_name: batch})))

    def close(self) -> None:
        self.session = None
