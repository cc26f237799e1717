"""onnxruntime backend: the CPU execution provider, or CUDA/TensorRT ones when onnxruntime-gpu is installed.

onnxruntime is imported when a model is opened, not with this module (the registry reads the
class's identity without it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DlcvError, MissingDependencyError, first_line
from ..external_data import check_external_data
from ..metadata import read_onnx_metadata
from .base import Backend

if TYPE_CHECKING:
    import onnxruntime as ort

DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _session(path: Path, device: str, threads: int | None) -> ort.InferenceSession:
    ort = OnnxRuntimeBackend.import_library("onnxruntime")
    if device not in DEVICE_PROVIDERS:
        raise DlcvError(f"unknown device {device!r} for onnxruntime; choose one of {', '.join(DEVICE_PROVIDERS)}")
    providers = DEVICE_PROVIDERS[device]
    available = ort.get_available_providers()
    if providers[0] not in available:
        raise MissingDependencyError(
            f"--device {device} needs onnxruntime's {providers[0]}, but this onnxruntime offers only "
            f"{', '.join(available)}; install onnxruntime-gpu (pip install 'dlcv[gpu]') or use --device cpu"
        )
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    check_external_data(path)  # untrusted files: no tensor data read from outside the model's folder
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for invalid models
        raise DlcvError(f"{path}: onnxruntime cannot load this model ({first_line(exc)})") from None
    # A provider that is compiled in but cannot start (CUDA or cuDNN libraries missing, no GPU)
    # makes onnxruntime fall back to the CPU with only a warning: refuse that silently slow run.
    if session.get_providers()[0] != providers[0]:
        raise MissingDependencyError(
            f"{path}: --device {device} asked for onnxruntime's {providers[0]}, which failed to start (session "
            f"providers: {', '.join(session.get_providers())}); check the CUDA/cuDNN libraries that onnxruntime-gpu "
            "needs and the GPU driver, or use --device cpu"
        )
    return session


class OnnxRuntimeBackend(Backend):
    """An ONNX file run by onnxruntime."""

    name = "onnxruntime"
    suffixes = (".onnx",)
    devices = tuple(DEVICE_PROVIDERS)
    priority = 10

    @classmethod
    def library_version(cls) -> str | None:
        try:
            return cls.import_library("onnxruntime").__version__
        except MissingDependencyError:
            return None

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise DlcvError(f"{path}: ONNX file not found")
        self.session = _session(path, device, threads)
        super().__init__(path, read_onnx_metadata(path))
        self.device = device
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        md = self.metadata
        if md.input_name not in inputs or md.output_name not in outputs:
            raise DlcvError(
                f"{path}: metadata names input {md.input_name!r} and output {md.output_name!r}, but the graph has "
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

    def _run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run([self.metadata.output_name], {self.metadata.input_name: batch})
        return logits.astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None
