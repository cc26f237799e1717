"""CUDA through cuda-python: the GPU's identity, a stream, device buffers and pinned host buffers.

Used by the TensorRT backend (which has no framework to allocate memory for it). Every call
goes through :meth:`Cuda.call`, which turns a CUDA error code into a one-line
:class:`~dlcv.runtime.errors.DlcvError` naming the call and the error; a driver too old for the
installed cuda-python (``cudaErrorInsufficientDriver``) is answered with the driver's CUDA
version and the package to change. Buffers only grow, geometrically: a :class:`BufferPair` keeps
one pinned host buffer and one device buffer per tensor and reuses them for every batch that fits.

Asynchronous copies are guarded: a pinned host buffer that an enqueued ``cudaMemcpyAsync``
reads or writes cannot be viewed (read or filled) until its stream is synchronised, so a
result can never be read before the copy that produces it has finished.

Imports cuda-python's runtime API as ``cuda.bindings.runtime`` (cuda-python ≥ 12.6) or
``cuda.cudart`` (older releases); never torch.
"""
from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DlcvError, MissingDependencyError

CUDART_MODULES = ("cuda.bindings.runtime", "cuda.cudart")
INSTALL_HINT = "pip install 'dlcv[tensorrt]' (or: pip install cuda-python)"

# Every cudart function this module calls; a test checks that they exist in the installed bindings.
CUDART_FUNCTIONS = (
    "cudaGetDeviceCount", "cudaSetDevice", "cudaGetDeviceProperties", "cudaGetErrorName", "cudaGetErrorString",
    "cudaDriverGetVersion", "cudaRuntimeGetVersion", "cudaStreamCreateWithFlags", "cudaStreamSynchronize",
    "cudaStreamDestroy", "cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaMemcpyAsync",
)  # fmt: skip
INSUFFICIENT_DRIVER = "cudaErrorInsufficientDriver"
GROWTH = 1.5  # a buffer that must grow takes at least this multiple of its old size
# The oldest Linux driver branch of each CUDA major (NVIDIA's CUDA and TensorRT install notes:
# CUDA 13.x needs r580 or later, CUDA 12.x r525 or later).
MIN_DRIVER_BRANCH = {12: "r525", 13: "r580"}


def load_cudart() -> Any:
    """cuda-python's runtime module, or MissingDependencyError saying what to install."""
    errors = []
    for name in CUDART_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise MissingDependencyError(f"cuda-python is not installed ({'; '.join(errors)}); {INSTALL_HINT}")


def bindings_version() -> str:
    """The installed cuda-python bindings' version ("13.5.0"), or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


def cuda_version_text(value: int) -> str:
    """CUDA's integer versions (12040) as text ("12.4")."""
    return f"{value // 1000}.{value % 1000 // 10}"


@dataclass(frozen=True)
class GpuInfo:
    """What an engine is bound to on the device side."""

    index: int
    name: str
    compute_capability: str  # "major.minor", e.g. "9.0"
    total_memory_bytes: int


class Cuda:
    """A thin, checked wrapper over cuda-python's runtime API for one device."""

    def __init__(self, device: int = 0, cudart: Any = None):
        self.cudart = cudart if cudart is not None else load_cudart()
        self.device = device
        # host pointer -> stream of an enqueued copy that reads or writes it (until synchronised)
        self._in_flight: dict[int, int] = {}

    def call(self, function: str, *args) -> Any:
        """Call ``cudart.<function>(*args)``; return its value(s) or raise a one-line DlcvError."""
        result = getattr(self.cudart, function)(*args)
        err, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            raise DlcvError(f"CUDA call {function} failed: {self.error_text(err)}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def error_text(self, err: Any) -> str:
        """``cudaErrorName (description)`` for an error code, with what to do about a driver
        that is missing or older than the cuda-python bindings."""
        decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else str(b)  # noqa: E731
        name = decode(self.cudart.cudaGetErrorName(err)[1])
        text = f"{name} ({decode(self.cudart.cudaGetErrorString(err)[1])})"
        return f"{text}: {self.driver_hint()}" if name == INSUFFICIENT_DRIVER else text

    def driver_hint(self) -> str:
        """Why cuda-python cannot use the driver, naming the driver's CUDA version and the package to change."""
        err, driver = self.cudart.cudaDriverGetVersion()
        driver = int(driver) if int(err) == 0 and driver else 0
        err, runtime = self.cudart.cudaRuntimeGetVersion()
        runtime = int(runtime) if int(err) == 0 and runtime else 0
        package = f"cuda-python {bindings_version()}" + (f" (CUDA {cuda_version_text(runtime)})" if runtime else "")
        if not driver:
            return f"no NVIDIA driver is loaded on this machine ({package} found none): install the NVIDIA driver or use a GPU machine"
        have, need = driver // 1000, runtime // 1000
        branch = MIN_DRIVER_BRANCH.get(need)
        return (
            f"the NVIDIA driver supports CUDA {cuda_version_text(driver)}, older than the CUDA {need} of {package}: "
            f"install the cuda-python of the driver's CUDA major (pip install 'cuda-python>={have},<{have + 1}', or "
            f"the dlcv extra for CUDA {have}) or update the driver"
            + (f" to {branch} or later" if branch else "")
        )

    def gpu(self) -> GpuInfo:
        """Select the device and describe it; a one-line error when no usable GPU exists."""
        err, count = self.cudart.cudaGetDeviceCount()
        if int(err) != 0:
            raise DlcvError(f"no usable CUDA GPU ({self.error_text(err)})")
        if not count:
            raise DlcvError("no CUDA GPU is visible (cudaGetDeviceCount returned 0)")
        if not 0 <= self.device < count:
            raise DlcvError(f"CUDA device {self.device} does not exist; this machine has {count} GPU(s) (0..{count - 1})")
        self.call("cudaSetDevice", self.device)
        prop = self.call("cudaGetDeviceProperties", self.device)
        name = prop.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return GpuInfo(self.device, name.strip(), f"{prop.major}.{prop.minor}", int(prop.totalGlobalMem))

    def select(self) -> None:
        """Make this device current on the calling thread (``cudaSetDevice`` is per host thread)."""
        self.call("cudaSetDevice", self.device)

    # -- streams and copies ------------------------------------------------------------------

    def create_stream(self) -> Any:
        return self.call("cudaStreamCreateWithFlags", self.cudart.cudaStreamNonBlocking)

    def synchronize(self, stream: Any) -> None:
        """Wait for everything enqueued on ``stream``; its copies' host buffers become usable again."""
        self.call("cudaStreamSynchronize", stream)
        key = int(stream)
        self._in_flight = {ptr: s for ptr, s in self._in_flight.items() if s != key}

    def destroy_stream(self, stream: Any) -> None:
        self.call("cudaStreamDestroy", stream)

    def copy_to_device(self, device_ptr: int, host_ptr: int, nbytes: int, stream: Any) -> None:
        """Enqueue a pinned-host -> device copy on ``stream``; the host buffer is busy until it is synchronised."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.call("cudaMemcpyAsync", device_ptr, host_ptr, nbytes, kind, stream)
        self._in_flight[int(host_ptr)] = int(stream)

    def copy_to_host(self, host_ptr: int, device_ptr: int, nbytes: int, stream: Any) -> None:
        """Enqueue a device -> pinned-host copy on ``stream``; the host buffer is unreadable until it is synchronised."""
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.call("cudaMemcpyAsync", host_ptr, device_ptr, nbytes, kind, stream)
        self._in_flight[int(host_ptr)] = int(stream)

    def forget(self, host_ptr: int) -> None:
        """Drop the in-flight mark of a host buffer that is being freed (its address may be reused)."""
        self._in_flight.pop(int(host_ptr), None)

    def check_idle(self, host_ptr: int) -> None:
        """Refuse to touch a pinned buffer that an unsynchronised asynchronous copy still uses."""
        stream = self._in_flight.get(int(host_ptr))
        if stream is not None:
            raise DlcvError(
                f"internal error: pinned buffer 0x{int(host_ptr):x} is used by an asynchronous copy on stream "
                f"0x{stream:x} that was not synchronised; synchronise the stream before reading or refilling it"
            )


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc); ``ptr`` is the address TensorRT binds."""

    def __init__(self, cuda: Cuda, nbytes: int):
        self.cuda = cuda
        self.nbytes = int(nbytes)
        self.ptr = int(cuda.call("cudaMalloc", self.nbytes))

    def free(self) -> None:
        if self.ptr:
            self.cuda.call("cudaFree", self.ptr)
            self.ptr = 0


class PinnedBuffer:
    """``nbytes`` of page-locked host memory (cudaMallocHost), viewed as numpy arrays."""

    def __init__(self, cuda: Cuda, nbytes: int):
        self.cuda = cuda
        self.nbytes = int(nbytes)
        self.ptr = int(cuda.call("cudaMallocHost", self.nbytes))

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A numpy array over the first bytes of the buffer (no copy)."""
        self.cuda.check_idle(self.ptr)
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) * dtype.itemsize
        if count > self.nbytes:
            raise DlcvError(f"internal error: a {shape} {dtype} view needs {count} bytes, the pinned buffer has {self.nbytes}")
        raw = (ctypes.c_byte * count).from_address(self.ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.cuda.forget(self.ptr)
            self.cuda.call("cudaFreeHost", self.ptr)
            self.ptr = 0


class BufferPair:
    """A pinned host buffer and a device buffer for one tensor, grown on demand and reused."""

    def __init__(self, cuda: Cuda):
        self.cuda = cuda
        self.host: PinnedBuffer | None = None
        self.device: DeviceBuffer | None = None
        self.allocations = 0  # how many times memory was (re)allocated; tests read it

    @property
    def capacity(self) -> int:
        return self.device.nbytes if self.device is not None else 0

    def reserve(self, nbytes: int) -> None:
        """Make room for ``nbytes``; keeps the current buffers when they are large enough, and grows
        by at least :data:`GROWTH` so that mixed image sizes do not reallocate on every call."""
        if nbytes <= self.capacity:
            return
        size = max(int(nbytes), int(self.capacity * GROWTH))
        self.free()
        self.host = PinnedBuffer(self.cuda, size)
        self.device = DeviceBuffer(self.cuda, size)
        self.allocations += 1

    def free(self) -> None:
        for buffer in (self.host, self.device):
            if buffer is not None:
                buffer.free()
        self.host = self.device = None
