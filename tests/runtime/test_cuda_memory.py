"""dlcv.runtime.tensorrt.cuda_memory against the real cuda-python bindings: on a machine without a usable GPU
every wrapper still reaches the real function (cuda-bindings checks the argument count and types
before it returns an error code), and that code becomes a one-line DlcvError; a driver older than
the bindings is answered with the driver's CUDA version and the package to change."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from dlcv.runtime.tensorrt.cuda_memory import Cuda, DeviceBuffer, PinnedBuffer
from dlcv.runtime.errors import DlcvError

cudart = pytest.importorskip("cuda.bindings.runtime")  # cuda-python >= 12.6 (the test extra's TensorRT brings it)


def _gpu_usable() -> bool:
    err, count = cudart.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


def _freed(cls, cuda: Cuda, ptr: int):
    """A buffer object holding ``ptr`` (as if allocated), to reach its free() call."""
    buffer = cls.__new__(cls)
    buffer.cuda, buffer.nbytes, buffer.ptr = cuda, 64, ptr
    return buffer.free


@pytest.mark.skipif(_gpu_usable(), reason="a usable GPU answers these calls; the gpu-marked tests run them there")
def test_every_wrapper_passes_arguments_the_real_bindings_accept_and_their_error_becomes_one_line():
    cuda = Cuda(0)  # the real cuda.bindings.runtime
    stream = cudart.cudaStream_t(0)  # what cudaStreamCreateWithFlags returns (it fails here)
    calls = {
        "gpu": cuda.gpu,
        "create_stream": cuda.create_stream,
        "synchronize": lambda: cuda.synchronize(stream),
        "destroy_stream": lambda: cuda.destroy_stream(stream),
        "copy_to_device": lambda: cuda.copy_to_device(0x10000, 0x20000, 64, stream),
        "copy_to_host": lambda: cuda.copy_to_host(0x20000, 0x10000, 64, stream),
        "DeviceBuffer": lambda: DeviceBuffer(cuda, 64),
        "PinnedBuffer": lambda: PinnedBuffer(cuda, 64),
        "DeviceBuffer.free": _freed(DeviceBuffer, cuda, 0x10000),
        "PinnedBuffer.free": _freed(PinnedBuffer, cuda, 0x20000),
    }
    for name, call in calls.items():
        with pytest.raises(DlcvError) as info:  # a TypeError here: the wrapper passes arguments cuda-bindings rejects
            call()
        message = str(info.value)
        assert "\n" not in message and "cudaError" in message, (name, message)
        if "cudaErrorInsufficientDriver" in message:
            assert "NVIDIA driver" in message and "cuda-python" in message, (name, message)


class DriverTooOld(SimpleNamespace):
    """Answers like cuda-bindings 13 on a machine whose driver supports CUDA 12.4 only."""

    def cudaGetDeviceCount(self):
        return 35, None

    def cudaGetErrorName(self, err):
        return 0, b"cudaErrorInsufficientDriver"

    def cudaGetErrorString(self, err):
        return 0, b"CUDA driver version is insufficient for CUDA runtime version"

    def cudaDriverGetVersion(self):
        return 0, 12040

    def cudaRuntimeGetVersion(self):
        return 0, 13050


def test_insufficient_driver_names_the_driver_and_the_package_to_change(monkeypatch):
    monkeypatch.setattr("dlcv.runtime.tensorrt.cuda_memory.bindings_version", lambda: "13.5.0")
    with pytest.raises(DlcvError) as info:
        Cuda(0, cudart=DriverTooOld()).gpu()
    message = str(info.value)
    for needle in ("cudaErrorInsufficientDriver", "the NVIDIA driver supports CUDA 12.4", "cuda-python 13.5.0 (CUDA 13.5)",
                   "pip install 'cuda-python>=12,<13'", "r580 or later"):  # fmt: skip
        assert needle in message, message
    assert "\n" not in message


def test_no_driver_at_all_is_said_so(monkeypatch):
    no_driver = DriverTooOld(cudaDriverGetVersion=lambda: (0, 0))
    with pytest.raises(DlcvError, match="no NVIDIA driver is loaded on this machine"):
        Cuda(0, cudart=no_driver).gpu()
