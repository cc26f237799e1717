"""OpenVINO backend: dlcv's own ONNX files (``x.onnx``, ``x.fp16.onnx``, ``x.int8.onnx``) on the CPU.

``--backend openvino`` runs the same file onnxruntime runs by default, with the same metadata
(read from the file by :func:`dlcv.runtime.metadata.read_onnx_metadata`), the same checks
(tensor names and types against the metadata, static axes, each declared output's shape and
dtype) and one-line errors. onnxruntime stays the default for every ``.onnx`` except INT8 files on
an AMX CPU: there OpenVINO is preferred (:attr:`~dlcv.runtime.backends.base.Backend.preferred_for`),
as the committed AMX records measured it 1.5× faster on the same INT8 file (onnxruntime's INT8
convolutions have no AMX kernel: ``benchmarks/studies/ort_int8_paths.py``); on the AVX512-VNNI
records no lead reached the margin a preference needs. OpenVINO is imported when a model is opened; a missing
OpenVINO is a :class:`MissingDependencyError` naming ``pip install 'dlcv[openvino]'``.

Execution follows OpenVINO's performance hints:

- a batch of one image runs on a model compiled with ``PERFORMANCE_HINT=LATENCY`` (one
  stream, every thread on that image); it is compiled when the file is opened, so a model
  the CPU plugin cannot compile fails at open;
- a larger batch runs on a model compiled with ``PERFORMANCE_HINT=THROUGHPUT`` (several
  streams): the batch is split into as many parts as the plugin's optimal number of infer
  requests, the parts run concurrently (``start_async`` on each request, then ``wait``), and
  their logits are joined in order. That model is compiled on the first such batch (a model
  whose batch axis is static runs whole on the LATENCY model). Plain requests rather than an
  ``AsyncInferQueue``: the queue's Python callbacks run on OpenVINO's threads, where a garbage
  collection that frees another backend's queue aborts the process ("Resource deadlock
  avoided": a thread pool joining itself); with no Python code on those threads it cannot.

``threads`` sets ``INFERENCE_NUM_THREADS`` for both. ``INFERENCE_PRECISION_HINT`` is f32 by
default: on CPUs with AVX512-BF16 or AMX the plugin otherwise runs FP32 (and FP16) graphs in
bfloat16 (8-bit mantissa), which would break FP32 parity with PyTorch; INT8 (QDQ) graphs
still run their quantised layers in INT8.

``precision="bf16"`` (``dlcv-infer --precision bf16``) runs an FP32 file with the hint bf16:
its convolutions and matrix multiplies in bfloat16 on the CPU's AVX512-BF16 or AMX-BF16 units,
with no calibration. It is refused in one line on a CPU without those instructions
(:func:`dlcv.runtime.cpu_isa.bf16_flags`), and, as the plugin falls back to f32 silently,
the compiled model's own execution precisions are checked (:func:`bf16_layers`): a model
none of whose compute layers runs in bf16 is refused rather than run as FP32 under a BF16 name.

Only the CPU is declared (``devices = ("cpu",)``): OpenVINO's GPU plugin targets Intel
GPUs, which ``--device cuda`` does not name, and it is untested here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..cpu_isa import AMX_INT8, BF16_FLAGS, bf16_flags, cpu_isa
from ..errors import DlcvError, DlcvUsageError, MissingDependencyError
from ..external_data import check_external_data
from ..metadata import ArtifactMetadata, read_onnx_metadata
from ..precision import INT8
from .base import Backend, Outputs, Preference, concat_outputs

_LATENCY, _THROUGHPUT = "LATENCY", "THROUGHPUT"
BF16 = "bf16"
# layer types of the compiled (runtime) model that do a model's arithmetic
COMPUTE_LAYERS = frozenset({"Convolution", "Deconvolution", "MatMul", "FullyConnected", "GroupConvolution"})
_LOCATION = re.compile(r"^(Exception from |Check '.*' failed at ).*:\d+:?$")


def bf16_layers(compiled: Any) -> tuple[int, int]:
    """(compute layers running in bf16, compute layers) of an OpenVINO compiled model, read from
    its runtime model (each layer's ``layerType`` and ``runtimePrecision``): what the CPU plugin
    actually executes, whatever precision was asked for."""
    kinds = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in COMPUTE_LAYERS:
            kinds.append(info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "")
    return sum(k == BF16 for k in kinds), len(kinds)


def _message(exc: BaseException) -> str:
    """The informative line of an OpenVINO exception (its first lines are source locations)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not _LOCATION.match(line) and not line.startswith("FrontEnd API failed")]
    return (useful or lines or [type(exc).__name__])[-1][:300]


class OpenVINOBackend(Backend):
    """An ONNX file run by OpenVINO's CPU plugin."""

    name = "openvino"
    suffixes = (".onnx",)
    devices = ("cpu",)
    extra = "openvino"
    run_precisions = (BF16,)
    priority = 30  # after onnxruntime: an .onnx file runs on onnxruntime unless --backend openvino
    options = ("threads", "precision")
    # INT8 on AMX only: on AVX512-VNNI dlcv's U8S8 INT8 files run as fast or faster on onnxruntime
    # (benchmarks/results/*-cpu), and OpenVINO's FP32/FP16 leads are below MIN_PREFERENCE_SPEEDUP
    # on both classes.
    preferred_for = (
        Preference(
            INT8.name, "cpu", over="onnxruntime", record="benchmarks/results/fcn8s-256-cpu-amx/results.json",
            summary="it ran dlcv's INT8 files 1.39-2.24× faster than onnxruntime in the 3 AMX records "
                    "(onnxruntime's INT8 convolutions have no AMX kernel)",
            cpu_class=AMX_INT8,
        ),
    )  # fmt: skip

    @classmethod
    def read_metadata(cls, path: Path) -> ArtifactMetadata:
        return read_onnx_metadata(path)

    @classmethod
    def library_version(cls) -> str | None:
        try:
            return cls.import_library("openvino").get_version()
        except MissingDependencyError:
            return None

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, precision: str | None = None):
        path = Path(path)
        if not path.is_file():
            raise DlcvError(f"{path}: ONNX file not found")
        if device.split(":", 1)[0].lower() != "cpu":
            raise DlcvError(f"unknown device {device!r} for openvino; it runs on the cpu")
        if threads is not None and threads < 1:
            raise DlcvError(f"threads must be positive, got {threads}")
        if precision not in (None, BF16):
            raise DlcvUsageError(f"--precision {precision}: the openvino backend runs a file in its own precision or in {BF16}")
        ov = self.import_library("openvino")
        check_external_data(path)  # untrusted files: no tensor data read from outside the model's folder
        super().__init__(path, read_onnx_metadata(path))
        self.device = "cpu"
        self._ov = ov
        self._core = ov.Core()
        self._model = self._read(self.import_library("openvino.frontend"))
        self.input_shape = self._check_graph()
        self.run_precision = precision
        if precision == BF16:
            if self.metadata.precision != "fp32":
                raise DlcvUsageError(f"--precision {BF16} runs FP32 files; {path.name} is {self.metadata.precision}: "
                                     f"run the FP32 file ({self.metadata.arch}.onnx) instead")  # fmt: skip
            _check_bf16_cpu()
        self._config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision or "f32"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        latency = self._compile(_LATENCY)
        if precision == BF16:
            self._check_bf16(latency)
        self._latency = latency.create_infer_request()
        self._requests: list[Any] | None = None  # the THROUGHPUT model's requests, made on the first larger batch

    @property
    def precision(self) -> str:
        """The precision it runs in: ``bf16`` when asked for, else the file's."""
        return self.run_precision or self.metadata.precision

    def _check_bf16(self, compiled: Any) -> None:
        """Refuse a model the plugin compiled without bf16 layers (its silent fall back to f32)."""
        in_bf16, total = bf16_layers(compiled)
        if total and in_bf16 == 0:
            raise DlcvError(f"{self.path.name}: OpenVINO compiled none of its {total} convolution/matmul layers in {BF16} "
                            f"(it fell back to f32 on this CPU: {cpu_isa()['cpu_isa']}); run without --precision {BF16}")  # fmt: skip

    def _read(self, frontends) -> Any:
        """The ONNX file through OpenVINO's ONNX frontend (never another framework's reader)."""
        try:
            frontend = frontends.FrontEndManager().load_by_framework("onnx")
            return frontend.convert(frontend.load(str(self.path)))
        except Exception as exc:  # OpenVINO raises its own exception types for unreadable models
            raise DlcvError(f"{self.path}: OpenVINO cannot read this model ({_message(exc)}); re-export it") from None

    def _check_graph(self) -> tuple[int | None, ...]:
        """The metadata's tensor names exist and the input is float32; the input's static dims."""
        md, model = self.metadata, self._model
        inputs = {name: port for port in model.inputs for name in port.get_names()}
        outputs = {name for port in model.outputs for name in port.get_names()}
        if md.input_name not in inputs or not set(md.output_names) <= outputs:
            raise DlcvError(
                f"{self.path}: metadata names input {md.input_name!r} and outputs {list(md.output_names)}, but the graph has "
                f"inputs {sorted(inputs)} and outputs {sorted(outputs)}; re-export the model"
            )
        port = inputs[md.input_name]
        if port.get_element_type() != self._ov.Type.f32:
            raise DlcvError(f"{self.path}: input {md.input_name!r} is {port.get_element_type()}, expected float32")
        return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())

    def _compile(self, hint: str) -> Any:
        try:
            return self._core.compile_model(self._model, "CPU", {**self._config, "PERFORMANCE_HINT": hint})
        except Exception as exc:
            raise DlcvError(f"{self.path}: OpenVINO cannot compile this model for the CPU ({_message(exc)})") from None

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        for axis, (want, got) in enumerate(zip(self.input_shape, batch.shape)):
            if want is not None and want != got:
                raise DlcvError(
                    f"{self.path.name}: input axis {axis} is fixed at {want} in this (static) model, got {got}; "
                    "export without --static for dynamic shapes"
                )

    def _run(self, batch: np.ndarray) -> Outputs:
        if len(batch) == 1 or self.input_shape[0] is not None:
            return self._infer(self._latency, batch)
        return self._infer_split(batch)

    def _infer(self, request: Any, batch: np.ndarray) -> Outputs:
        request.infer({self.metadata.input_name: batch})
        return self._output(request)

    def _infer_split(self, batch: np.ndarray) -> Outputs:
        """The batch in parts, one per infer request of the THROUGHPUT model, run concurrently."""
        if self._requests is None:
            compiled = self._compile(_THROUGHPUT)
            if self.run_precision == BF16:
                self._check_bf16(compiled)
            count = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._requests = [compiled.create_infer_request() for _ in range(count)]
        parts = np.array_split(batch, min(len(batch), len(self._requests)))
        started = []
        try:
            for request, part in zip(self._requests, parts):
                request.start_async({self.metadata.input_name: np.ascontiguousarray(part)})
                started.append(request)
        finally:
            for request in started:
                request.wait()
        return concat_outputs([self._output(request) for request in started])

    def _output(self, request: Any) -> Outputs:
        # the output tensors are the request's own memory, overwritten by its next inference
        return {name: np.array(request.get_tensor(name).data, copy=True) for name in self.metadata.output_names}

    def close(self) -> None:
        self._requests = self._latency = self._model = None


def _check_bf16_cpu() -> None:
    """A one-line refusal on a CPU without BF16 instructions (OpenVINO would run f32 silently)."""
    if not bf16_flags():
        raise DlcvUsageError(f"--precision {BF16} needs a CPU with {' or '.join(BF16_FLAGS)} instructions; this CPU has "
                             f"{cpu_isa()['cpu_isa']}: run the FP32 file without --precision, or the INT8 file")  # fmt: skip
