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
