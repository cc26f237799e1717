"""onnxruntime devices: --device cuda/tensorrt use those execution providers or fail clearly, never
fall back to the CPU in silence."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from dlcv.runtime.backends import open_backend
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.errors import DlcvError, MissingDependencyError


HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def model(seg_model):
    return seg_model


@pytest.mark.skipif(HAS_CUDA_EP, reason="this onnxruntime has the CUDA execution provider")
@pytest.mark.parametrize("device, provider", [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")])
def test_gpu_device_without_onnxruntime_gpu_is_a_clear_error(model, device, provider):
    with pytest.raises(MissingDependencyError) as info:
        open_backend(model, device=device)
    message = str(info.value)
    assert provider in message and "onnxruntime-gpu" in message and "--device cpu" in message
    assert "\n" not in message and info.value.exit_code == 2


def test_provider_that_fails_to_start_is_not_a_silent_cpu_run(model, monkeypatch):
    """onnxruntime lists a compiled-in provider that then cannot start (missing CUDA libraries)
    and runs the session on the CPU with only a warning: the backend refuses that."""
    if HAS_CUDA_EP:
        pytest.skip("with a working CUDA provider this would not fail")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.warns(UserWarning), pytest.raises(MissingDependencyError) as info:
        OnnxRuntimeBackend(model, device="cuda")
    assert "failed to start" in str(info.value) and str(model) in str(info.value)


def test_cpu_device_runs(model):
    with OnnxRuntimeBackend(model, device="cpu") as backend:
        assert backend.session.get_providers() == ["CPUExecutionProvider"]
        assert backend.infer(np.zeros((1, 3, 8, 8), np.float32)).shape[0] == 1


def test_unknown_device(model):
    with pytest.raises(DlcvError, match="unknown device 'npu'"):
        OnnxRuntimeBackend(model, device="npu")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA_EP, reason="needs onnxruntime-gpu")
def test_cuda_device_uses_the_cuda_provider(model):
    with OnnxRuntimeBackend(model, device="cuda") as backend:
        assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
