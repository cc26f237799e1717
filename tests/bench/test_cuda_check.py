"""dlcv.bench.cuda_check: the pinned-buffer round trip and the unsynchronised-read guard, on the
simulated CUDA here and on a real GPU where one exists."""
from __future__ import annotations

import json

import pytest

import dlcv.bench.cuda_check as cuda_check
from dlcv.runtime.tensorrt.cuda_memory import Cuda
from tests.runtime.fake_tensorrt import FakeCudart


def test_round_trip_and_guard_on_the_simulated_cuda(monkeypatch, tmp_path):
    cudart = FakeCudart()
    monkeypatch.setattr(cuda_check, "Cuda", lambda device: Cuda(device, cudart=cudart))
    out = tmp_path / "cuda_memory.json"
    assert cuda_check.main(["--out", str(out), "--sizes-mb", "1,2", "--repeats", "2"]) == 0
    report = json.loads(out.read_text())
    assert report["passed"] and report["gpu"] == "Fake GPU" and [s["size_mb"] for s in report["sizes"]] == [1, 2]
    assert all(s["round_trip_equal"] and s["read_before_sync_refused"] for s in report["sizes"])
    assert cudart.blocks == {} and not any(cudart.queues.values())


def test_without_a_gpu_the_report_says_why_and_the_command_succeeds(monkeypatch, tmp_path):
    class NoGpu(FakeCudart):
        def cudaGetDeviceCount(self):
            return 0, 0

    monkeypatch.setattr(cuda_check, "Cuda", lambda device: Cuda(device, cudart=NoGpu()))
    out = tmp_path / "cuda_memory.json"
    assert cuda_check.main(["--out", str(out)]) == 0
    assert "no CUDA GPU is visible" in json.loads(out.read_text())["skipped"]


def _gpu() -> bool:
    try:
        Cuda(0).gpu()
        return True
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu(), reason="needs a CUDA GPU and cuda-python")
def test_pinned_buffers_and_async_copies_on_a_real_stream():
    report = cuda_check.check_cuda_memory(sizes_mb=(1, 64), repeats=2)
    assert report["passed"], report


# --------------------------------------------------------------------------- real stream, fake engine


def numpy_launch(cudart: FakeCudart, on_stream: bool = True):
    """The simulated engine's kernel on the simulated CUDA: enqueued on the stream it is given
    (or, ``on_stream=False``, on a stream of its own, as a misordered enqueue would be)."""
    import ctypes

    import numpy as np

    from dlcv.bench.stream_check import expected

    def array(ptr, shape):
        count = int(np.prod(shape))
        return np.ctypeslib.as_array((ctypes.c_float * count).from_address(ptr)).reshape(shape)

    def launch(stream, in_ptr, in_shape, out_ptr, out_shape):
        def kernel():
            array(out_ptr, out_shape)[...] = expected(array(in_ptr, in_shape))

        cudart.enqueue(stream if on_stream else 999, "kernel", kernel)

    return launch


def test_the_stream_check_passes_on_the_simulated_cuda_and_catches_misordered_work(monkeypatch):
    import dlcv.runtime.backends.tensorrt_backend as backend_module
    from dlcv.bench.stream_check import BATCHES, run_stream_check

    cudart = FakeCudart()
    monkeypatch.setattr(backend_module, "Cuda", lambda device: Cuda(device, cudart=cudart))
    report = run_stream_check(numpy_launch(cudart), "Fake GPU", "8.6")
    assert report["passed"] and report["order_ok"] and report["results_equal"], report
    assert report["chunks"] == len(BATCHES) + 1  # the batch of 6 runs as 4 + 2 (the profile's maximum is 4)
    assert max(report["buffer_allocations"].values()) < len(BATCHES)  # grown a few times, then reused
    assert cudart.blocks == {}  # everything freed on close
    broken = run_stream_check(numpy_launch(cudart, on_stream=False), "Fake GPU", "8.6")
    assert not broken["passed"] and not broken["results_equal"]  # the copy-out read the buffer before the kernel ran


def test_the_stream_check_is_skipped_with_the_reason_without_a_gpu(monkeypatch):
    import torch

    from dlcv.bench.stream_check import check_stream

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_stream() == {"skipped": "PyTorch sees no CUDA GPU"}


def _torch_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available() and _gpu()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _torch_gpu(), reason="needs a CUDA GPU, PyTorch with CUDA and cuda-python")
def test_the_tensorrt_backend_on_a_real_stream_with_a_kernel_launching_engine():
    from dlcv.bench.stream_check import check_stream

    report = check_stream()
    assert report["passed"], report
