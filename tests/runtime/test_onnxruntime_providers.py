"""onnxruntime's GPU providers get the options a dlcv model needs: the CUDA device for cuda:N, and
for TensorRT the precision flag of the model's metadata, an engine and timing cache, and
dlcv-export's optimisation profile. Checked on the options handed to onnxruntime (no GPU here)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dlcv.export.config import ExportConfig, TensorRTConfig
from dlcv.export.tensorrt_build import profile_shapes
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.backends.onnxruntime_providers import (
    TENSORRT_PRECISION_OPTIONS, parse_device, provider_list, tensorrt_cache_dir, tensorrt_profile,
)  # fmt: skip
from dlcv.runtime.errors import DlcvError, MissingDependencyError
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.precision import PRECISION_NAMES
from dlcv.runtime.preprocess import PreprocessSpec



def with_precision(source: Path, folder: Path, precision: str) -> Path:
    """A copy of an ONNX model whose dlcv metadata records ``precision``."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            data["precision"] = precision
            prop.value = json.dumps(data)
    path = folder / f"model.{precision}.onnx"
    onnx.save(model, str(path))
    return path


class RecordingOrt:
    """onnxruntime with the TensorRT provider listed: sessions asking for it are recorded and then
    opened on the CPU, as onnxruntime-gpu does when the provider cannot start."""

    def __init__(self, monkeypatch):
        self.calls: list[list] = []
        real = ort.InferenceSession
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])

        def session(path, sess_options=None, providers=None):
            self.calls.append(list(providers))
            return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        monkeypatch.setattr(ort, "InferenceSession", session)


@pytest.mark.parametrize("precision", PRECISION_NAMES)
def test_the_tensorrt_provider_gets_the_precision_cache_profile_and_device(seg_model, tmp_path, monkeypatch, precision):
    model = with_precision(seg_model, tmp_path, precision)
    recording = RecordingOrt(monkeypatch)
    with pytest.raises(MissingDependencyError, match="failed to start.*TensorRT 10"):
        OnnxRuntimeBackend(model, device="tensorrt:1")
    probe, session = recording.calls
    assert probe == ["CPUExecutionProvider"]  # the metadata and input shape are read first
    (trt_name, trt), (cuda_name, cuda), (cpu_name, cpu) = session
    assert (trt_name, cuda_name, cpu_name) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    assert trt.get("trt_int8_enable") == ("True" if precision == "int8" else None)
    assert trt.get("trt_fp16_enable") == ("True" if precision == "fp16" else None)
    cache = str(tmp_path / f"model.{precision}.onnx.trt-cache")
    assert trt["trt_engine_cache_enable"] == trt["trt_timing_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == trt["trt_timing_cache_path"] == cache
    assert trt["device_id"] == cuda["device_id"] == "1" and cpu == {}
    # the colour model keeps the image size (height and width dynamic): dlcv-export's default profile at 128x128
    assert (trt["trt_profile_min_shapes"], trt["trt_profile_opt_shapes"], trt["trt_profile_max_shapes"]) == (
        "input:1x3x64x64", "input:4x3x128x128", "input:16x3x256x256")


def test_cuda_n_sets_the_cuda_providers_device(seg_model, monkeypatch):
    recording = RecordingOrt(monkeypatch)
    with pytest.raises(MissingDependencyError):
        OnnxRuntimeBackend(seg_model, device="cuda:2")
    assert recording.calls == [[("CUDAExecutionProvider", {"device_id": "2"}), ("CPUExecutionProvider", {})]]


def test_every_precision_has_tensorrt_options():
    assert set(TENSORRT_PRECISION_OPTIONS) == set(PRECISION_NAMES)


def test_the_profile_is_the_one_dlcv_export_builds_engines_with():
    for task, spec, shape in [
        ("segmentation", PreprocessSpec(), ("batch", 3, "height", "width")),
        ("classification", PreprocessSpec(resize="resize", size=(32, 32)), ("batch", 3, 32, 32)),
        ("segmentation", PreprocessSpec(resize="resize", size=(64, 96)), ("batch", 3, "h", "w")),
    ]:
        md = ArtifactMetadata(task=task, arch="m", num_classes=2, class_names=("a", "b"), preprocess=spec)
        exported = SimpleNamespace(metadata=md, input_shape=shape)
        assert tensorrt_profile(md, shape) == profile_shapes(exported, ExportConfig(checkpoint="x.pt"), TensorRTConfig())
    fixed = ArtifactMetadata(task="classification", arch="m", num_classes=2, class_names=("a", "b"), preprocess=PreprocessSpec())
    assert tensorrt_profile(fixed, (2, 3, 32, 32)) is None  # a static graph needs no profile


def test_inputs_outside_the_tensorrt_profile_are_refused_and_large_batches_split(seg_model):
    with OnnxRuntimeBackend(seg_model, device="cpu") as backend:
        backend.trt_profile = ((1, 3, 64, 64), (4, 3, 128, 128), (16, 3, 256, 256))  # as on --device tensorrt
        with pytest.raises(DlcvError, match=r"input 3x32x32 is outside the optimisation profile .* \(3x64x64 \.\. 3x256x256"):
            backend.infer(np.zeros((1, 3, 32, 32), np.float32))
        calls = []
        run = backend.session.run
        backend.session = SimpleNamespace(run=lambda names, feeds: calls.append(feeds["input"].shape[0]) or run(names, feeds))
        assert backend.infer(np.zeros((20, 3, 64, 64), np.float32)).shape[0] == 20
        assert calls == [16, 4]


def test_devices_parse_and_the_cache_moves_out_of_read_only_folders(tmp_path, monkeypatch):
    assert parse_device("cuda:3") == ("cuda", 3) and parse_device("tensorrt") == ("tensorrt", 0) and parse_device("cpu") == ("cpu", 0)
    for bad in ("cpu:1", "npu", "cuda:x"):
        with pytest.raises(DlcvError, match="unknown device"):
            parse_device(bad)
    assert provider_list("cpu") == [("CPUExecutionProvider", {})]
    folder = tmp_path / "ro"
    folder.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != folder)
    cache = tensorrt_cache_dir(folder / "m.onnx")
    assert cache.parent == tmp_path / "cache" / "dlcv" / "trt-cache" and cache.name.startswith("m.onnx-")
    assert tensorrt_cache_dir(tmp_path / "m.onnx") == tmp_path / "m.onnx.trt-cache"
