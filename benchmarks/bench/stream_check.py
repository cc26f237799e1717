"""dlcv's TensorRT backend on a real CUDA stream with a simulated engine ("real stream, fake engine").

A bare GPU machine has no TensorRT, but everything around the engine is dlcv's own code: the
pinned and device buffers, the copies, the stream, the synchronisation, the device selection.
Here the real :class:`~dlcv.runtime.backends.tensorrt_backend.TensorRTBackend` opens a
simulated plan whose ``execute_async_v3`` launches a real kernel on the stream dlcv passes it
(PyTorch on ``torch.cuda.ExternalStream``): first a ``torch.cuda._sleep`` of tens of
milliseconds, then the engine's arithmetic, reading the device input buffer and writing the
device output buffer. If dlcv enqueued a copy on another stream, read a pinned buffer before
synchronising, or reused a buffer still in flight, the results would be stale or garbage; so
the check compares every result with numpy, over batches of changing sizes (the buffers grow
and are reused), from the opening thread and from another one, and records the order of
dlcv's calls (copy-in, execute, copy-out, synchronise).

``launch`` is the only GPU-specific part (:func:`torch_launch`); the tests run the same check
on the CPU with the simulated CUDA of ``tests/runtime/fake_tensorrt.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

import dlcv.runtime.backends.tensorrt_backend as backend_module
from dlcv.runtime.backends.tensorrt_backend import EngineBinding, TensorRTBackend
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata, write_sidecar
from dlcv.runtime.preprocess import PreprocessSpec

SIMULATED_VERSION = "0.0.0"  # the simulated TensorRT's version, recorded in the simulated plan
PROFILE = {"min": [1, 3, 16, 16], "opt": [2, 3, 64, 64], "max": [4, 3, 128, 128]}
BATCHES = ((2, 3, 64, 64), (1, 3, 96, 80), (4, 3, 128, 128), (3, 3, 32, 48), (6, 3, 64, 64))  # the last one is split
# launch(stream handle, input pointer, input shape, output pointer, output shape): enqueue the engine's work
Launch = Callable[[int, int, tuple, int, tuple], None]


def expected(x: np.ndarray) -> np.ndarray:
    """What the simulated engine computes: two class maps from the channel sum."""
    s = x.sum(axis=1)
    return np.stack([s, 1.0 - 0.5 * s], axis=1).astype(np.float32)


class _Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name):
        n, _, h, w = self.shapes["input"]
        return (n, 2, h, w)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)

    def execute_async_v3(self, stream):
        self.engine.log.append("execute")
        self.engine.launch(int(stream), self.addresses["input"], self.shapes["input"], self.addresses["logits"],
                           self.get_tensor_shape("logits"))  # fmt: skip
        return True


def simulated_tensorrt(launch: Launch, log: list[str]) -> SimpleNamespace:
    """A TensorRT module with just what the backend's runtime path calls; its engines run ``launch``."""

    class Logger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    io = SimpleNamespace(INPUT="input", OUTPUT="output")

    class Engine:
        num_io_tensors = 2
        device_memory_size_v2 = 0

        def __init__(self):
            self.launch, self.log = launch, log

        def get_tensor_name(self, i):
            return ("input", "logits")[i]

        def get_tensor_mode(self, name):
            return io.INPUT if name == "input" else io.OUTPUT

        def get_tensor_dtype(self, name):
            return SimpleNamespace(name="FLOAT")

        def get_tensor_profile_shape(self, name, index):
            return [PROFILE[k] for k in ("min", "opt", "max")]

        def create_execution_context(self):
            return _Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return Engine()

    return SimpleNamespace(__version__=SIMULATED_VERSION, __name__="simulated_tensorrt", Builder=object, ILogger=Logger,
                           TensorIOMode=io, Runtime=Runtime)  # fmt: skip


def write_simulated_plan(folder: Path, gpu_name: str, compute_capability: str) -> Path:
    """A plan file and sidecar the backend accepts on this GPU (bound to it, like a real build)."""
    plan = b"simulated engine: two class maps from the channel sum"
    path = folder / "simulated.plan"
    path.write_bytes(plan)
    binding = EngineBinding(
        gpu_name=gpu_name, compute_capability=compute_capability, tensorrt_version=SIMULATED_VERSION, precision="fp32",
        profile=PROFILE, plan_size_bytes=len(plan), plan_sha256=hashlib.sha256(plan).hexdigest(),
    )  # fmt: skip
    md = ArtifactMetadata(task="segmentation", arch="simulated", num_classes=2, class_names=("a", "b"),
                          preprocess=PreprocessSpec(), engine=binding.to_dict())  # fmt: skip
    write_sidecar(path, md)
    return path


@contextlib.contextmanager
def _tensorrt_module(module):
    saved = backend_module.load_tensorrt
    backend_module.load_tensorrt = lambda: module
    try:
        yield
    finally:
        backend_module.load_tensorrt = saved


def _record_calls(backend: TensorRTBackend, log: list[str]) -> None:
    """Log the backend's copies and synchronisations (the calls go on to CUDA unchanged)."""
    cuda = backend.cuda
    for name, event in (("copy_to_device", "copy-in"), ("copy_to_host", "copy-out"), ("synchronize", "synchronize")):
        real = getattr(cuda, name)
        setattr(cuda, name, lambda *a, _real=real, _event=event: (log.append(_event), _real(*a))[1])


def chunk_orders(log: list[str]) -> list[list[str]]:
    """The log split after each synchronisation: one list per chunk."""
    chunks, current = [], []
    for event in log:
        current.append(event)
        if event == "synchronize":
            chunks.append(current)
            current = []
    return chunks + ([current] if current else [])


def run_stream_check(launch: Launch, gpu_name: str, compute_capability: str, device: int = 0, seed: int = 0) -> dict:
    """Run :data:`BATCHES` through the real backend and the simulated engine (the first half on the
    opening thread, the rest on another); results, call order and buffer reuse in one dict."""
    log: list[str] = []
    rng = np.random.default_rng(seed)
    report: dict = {"batches": [list(b) for b in BATCHES]}
    with tempfile.TemporaryDirectory(prefix="dlcv-stream-check-") as tmp, _tensorrt_module(simulated_tensorrt(launch, log)):
        backend = TensorRTBackend(write_simulated_plan(Path(tmp), gpu_name, compute_capability), device=f"cuda:{device}")
        try:
            _record_calls(backend, log)
            inputs = [rng.standard_normal(shape, dtype=np.float32) for shape in BATCHES]
            outputs: list = [None] * len(inputs)
            half = len(inputs) // 2

            def work(indices):
                for i in indices:
                    outputs[i] = backend.infer(inputs[i])

            work(range(half))
            worker = threading.Thread(target=work, args=(range(half, len(inputs)),))
            worker.start()
            worker.join()
            errors = [float(np.abs(o - expected(x)).max()) if o is not None else float("inf") for x, o in zip(inputs, outputs)]
            report["max_abs_error"] = max(errors)
            report["results_equal"] = all(e <= 1e-3 for e in errors)
            report["buffer_allocations"] = {name: pair.allocations for name, pair in backend.buffers.items()}
            events = list(log)  # before close(), which synchronises once more
        finally:
            backend.close()
    chunks = chunk_orders(events)
    report["chunks"] = len(chunks)
    report["order_ok"] = bool(chunks) and all(c == ["copy-in", "execute", "copy-out", "synchronize"] for c in chunks)
    if not report["order_ok"]:
        report["order"] = chunks
    report["passed"] = report["results_equal"] and report["order_ok"]
    return report


def torch_launch(device: int, sleep_cycles: int = 50_000_000) -> Launch:
    """The engine's work as PyTorch kernels on the stream dlcv passes (``torch.cuda.ExternalStream``):
    a sleep first, so a copy-out that does not wait for the engine reads stale data."""
    import torch

    class DeviceArray:  # dlcv's device buffer seen by PyTorch (__cuda_array_interface__ v3, no copy)
        def __init__(self, ptr: int, shape: tuple):
            self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": "<f4", "data": (int(ptr), False),
                                             "version": 3, "strides": None, "stream": None}  # fmt: skip

    def launch(stream: int, in_ptr: int, in_shape: tuple, out_ptr: int, out_shape: tuple) -> None:
        cuda_device = torch.device("cuda", device)
        with torch.cuda.stream(torch.cuda.ExternalStream(stream, device=cuda_device)):
            torch.cuda._sleep(sleep_cycles)
            x = torch.as_tensor(DeviceArray(in_ptr, in_shape), device=cuda_device)
            y = torch.as_tensor(DeviceArray(out_ptr, out_shape), device=cuda_device)
            s = x.sum(dim=1)
            y[:, 0] = s
            y[:, 1] = 1.0 - 0.5 * s

    return launch


def check_stream(device: int = 0) -> dict:
    """:func:`run_stream_check` on this machine's GPU with PyTorch kernels; ``skipped`` with the reason without one."""
    try:
        import torch
    except ImportError as exc:
        return {"skipped": f"PyTorch is not installed ({exc})"}
    if not torch.cuda.is_available():
        return {"skipped": "PyTorch sees no CUDA GPU"}
    try:
        gpu = backend_module.Cuda(device).gpu()
    except DlcvError as exc:
        return {"skipped": str(exc)}
    return run_stream_check(torch_launch(device), gpu.name, gpu.compute_capability, device)
