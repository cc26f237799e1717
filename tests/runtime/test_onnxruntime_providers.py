"""onnxruntime's GPU providers get the options a dlcv model needs: the CUDA device for cuda:N, and
for TensorRT no precision flag (strong typing), an engine and timing cache, the signed form of an
INT8 file, and dlcv-export's optimisation profile; what the session really ran is reported. Checked
on the options and files handed to onnxruntime (no GPU here)."""
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
    INT8_SCHEME_KEY, node_placement, parse_device, provider_list, tensorrt_cache_dir, tensorrt_int8_path, tensorrt_profile,
)  # fmt: skip
from dlcv.runtime.errors import DlcvError, MissingDependencyError
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.precision import PRECISION_NAMES
from dlcv.runtime.preprocess import PreprocessSpec



def with_precision(source: Path, folder: Path, precision: str, activations: str | None = None, name: str | None = None,
                   **changes) -> Path:  # fmt: skip
    """A copy of an ONNX model whose dlcv metadata records ``precision`` (and ``changes``), with an
    INT8 quantization record saying ``activations`` when given."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            data.update(precision=precision, **changes)
            prop.value = json.dumps(data)
    if activations is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = INT8_SCHEME_KEY, json.dumps({"activations": activations})
    path = folder / (name or f"model.{precision}.onnx")
    onnx.save(model, str(path))
    return path


class RecordingOrt:
    """onnxruntime with the TensorRT provider listed: sessions asking for it are recorded and then
    opened on the CPU, as onnxruntime-gpu does when the provider cannot start."""

    def __init__(self, monkeypatch):
        self.calls: list[list] = []
        self.paths: list[str] = []
        real = ort.InferenceSession
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])

        def session(path, sess_options=None, providers=None):
            self.calls.append(list(providers))
            self.paths.append(str(path))
            return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        monkeypatch.setattr(ort, "InferenceSession", session)


@pytest.mark.parametrize("precision", PRECISION_NAMES)
def test_the_tensorrt_provider_gets_no_precision_flag_and_the_cache_profile_and_device(seg_model, tmp_path, monkeypatch, precision):
    model = with_precision(seg_model, tmp_path, precision)
    recording = RecordingOrt(monkeypatch)
    with pytest.raises(MissingDependencyError, match="failed to start.*TensorRT 10"):
        OnnxRuntimeBackend(model, device="tensorrt:1")
    [session] = recording.calls  # the input shape is read from the file, not by a throwaway CPU session
    (trt_name, trt), (cuda_name, cuda), (cpu_name, cpu) = session
    assert (trt_name, cuda_name, cpu_name) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    # the FP16/INT8 graphs carry their types: a precision flag would make onnxruntime build weakly typed
    assert "trt_int8_enable" not in trt and "trt_fp16_enable" not in trt
    cache = str(tmp_path / f"model.{precision}.onnx.trt-cache")
    assert trt["trt_engine_cache_enable"] == trt["trt_timing_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == trt["trt_timing_cache_path"] == cache
    assert trt["device_id"] == cuda["device_id"] == "1" and cpu == {}
    # the colour model is a segmentation model that keeps the image size: the default covers 1024x1024
    assert (trt["trt_profile_min_shapes"], trt["trt_profile_opt_shapes"], trt["trt_profile_max_shapes"]) == (
        "input:1x3x64x64", "input:4x3x128x128", "input:4x3x1024x1024")


def test_the_recorded_profile_is_used_and_trt_max_size_widens_it(seg_model, tmp_path, monkeypatch):
    recorded = {"min": [1, 3, 32, 32], "opt": [2, 3, 64, 64], "max": [8, 3, 300, 400]}
    model = with_precision(seg_model, tmp_path, "fp32", tensorrt_profile=recorded)
    recording = RecordingOrt(monkeypatch)
    for widen in (None, (512, 384)):
        with pytest.raises(MissingDependencyError):
            OnnxRuntimeBackend(model, device="tensorrt", trt_max_size=widen)
    (_, plain), (_, wide) = (call[0] for call in recording.calls)
    assert (plain["trt_profile_min_shapes"], plain["trt_profile_max_shapes"]) == ("input:1x3x32x32", "input:8x3x300x400")
    assert wide["trt_profile_max_shapes"] == "input:8x3x512x400"


def test_an_int8_file_in_the_cpu_form_gives_tensorrt_its_signed_form_or_is_refused(seg_model, tmp_path, monkeypatch):
    cpu_form = with_precision(seg_model, tmp_path, "int8", "uint8, asymmetric, per tensor", name="m.int8.onnx")
    recording = RecordingOrt(monkeypatch)
    with pytest.raises(DlcvError, match=r"m\.int8\.onnx: its Q/DQ nodes are uint8.*m\.int8\.tensorrt\.onnx is not beside it.*--int8 --calib"):
        OnnxRuntimeBackend(cpu_form, device="tensorrt")
    assert recording.paths == []  # refused before a session is opened
    signed = with_precision(seg_model, tmp_path, "int8", "int8, symmetric, per tensor", name="m.int8.tensorrt.onnx")
    assert tensorrt_int8_path(cpu_form) == signed
    with pytest.raises(MissingDependencyError):
        OnnxRuntimeBackend(cpu_form, device="tensorrt")
    assert recording.paths == [str(signed)]
    with OnnxRuntimeBackend(cpu_form, device="cpu") as backend:  # the CPU runs the file as it is
        assert backend.session is not None


def test_the_session_reports_how_many_nodes_each_provider_runs(seg_model):
    graph = onnx.load(str(seg_model)).graph
    with OnnxRuntimeBackend(seg_model, device="cpu") as backend:
        placement = backend.placement
    # onnxruntime fuses some nodes while partitioning; every node it kept is on the CPU
    assert set(placement) == {"CPUExecutionProvider"} and 0 < placement["CPUExecutionProvider"] <= len(graph.node)
    fake = SimpleNamespace(get_provider_graph_assignment_info=lambda: [
        SimpleNamespace(ep_name="TensorrtExecutionProvider", get_nodes=lambda: [1, 2, 3]),
        SimpleNamespace(ep_name="CUDAExecutionProvider", get_nodes=lambda: [4]),
        SimpleNamespace(ep_name="TensorrtExecutionProvider", get_nodes=lambda: [5, 6, 7, 8]),
    ])  # fmt: skip
    assert node_placement(fake) == {"TensorrtExecutionProvider": 7, "CUDAExecutionProvider": 1}
    assert node_placement(SimpleNamespace()) is None  # an onnxruntime without the API


def test_cuda_n_sets_the_cuda_providers_device(seg_model, monkeypatch):
    recording = RecordingOrt(monkeypatch)
    with pytest.raises(MissingDependencyError):
        OnnxRuntimeBackend(seg_model, device="cuda:2")
    assert recording.calls == [[("CUDAExecutionProvider", {"device_id": "2"}), ("CPUExecutionProvider", {})]]


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
        with pytest.raises(DlcvError, match=r"3x300x200 is outside .* --trt-max-size 300x256"):
            backend.infer(np.zeros((1, 3, 300, 200), np.float32))
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


def test_pip_installed_tensorrt_is_loaded_before_the_tensorrt_session(seg_model, tmp_path, monkeypatch):
    """onnxruntime's provider dlopens libnvinfer.so.N, which pip puts in site-packages/tensorrt_libs/
    (on no loader path): dlcv loads the libraries from there before the session is created."""
    import sys

    import dlcv.runtime.backends.onnxruntime_backend as ort_backend
    from dlcv.runtime.tensorrt.libraries import preload_tensorrt_libraries, tensorrt_library_folder

    package = tmp_path / "site" / "tensorrt_libs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    real_library = Path("/lib/x86_64-linux-gnu/libz.so.1")  # any real shared library stands in for libnvinfer
    if not real_library.is_file():
        pytest.skip("no libz.so.1 to stand in for libnvinfer")
    (package / "libnvinfer.so.10").write_bytes(real_library.read_bytes())
    (package / "libnvinfer_builder_resource.so.10.13.0").write_bytes(b"not loaded: TensorRT loads it itself")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    assert tensorrt_library_folder() == package
    assert preload_tensorrt_libraries() == [package / "libnvinfer.so.10"]
    assert str(package / "libnvinfer.so.10") in Path("/proc/self/maps").read_text()  # mapped into this process
    recording = RecordingOrt(monkeypatch)
    order = []
    monkeypatch.setattr(ort_backend, "preload_tensorrt_libraries", lambda: order.append(len(recording.calls)) or [])
    with pytest.raises(MissingDependencyError):
        OnnxRuntimeBackend(seg_model, device="tensorrt")
    assert order == [0] and len(recording.calls) == 1  # loaded before the (only) session was created


class PartitionedSession:
    """A real CPU session that answers as onnxruntime-gpu does after partitioning a graph between
    TensorRT and CUDA: TensorRT listed first, 3 of 4 nodes on it."""

    def __init__(self, session):
        self.session = session

    def __getattr__(self, name):
        return getattr(self.session, name)

    def get_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_provider_graph_assignment_info(self):
        node = SimpleNamespace(ep_name="TensorrtExecutionProvider", get_nodes=lambda: [1, 2, 3])
        return [node, SimpleNamespace(ep_name="CUDAExecutionProvider", get_nodes=lambda: [4])]


def test_a_tensorrt_run_reports_the_share_of_nodes_each_provider_ran(seg_model, tmp_path, monkeypatch):
    from dlcv.runtime.imageio import write_png
    from dlcv.runtime.infer import InferConfig, run_inference

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", lambda path, sess_options=None, providers=None: PartitionedSession(
        real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])))  # fmt: skip
    images = tmp_path / "images"
    write_png(images / "a.png", np.full((64, 64, 3), 200, np.uint8))
    summary = run_inference(InferConfig(engine=seg_model, images=images, out=tmp_path / "out", device="tensorrt", progress=False))
    share = "TensorrtExecutionProvider 3/4 nodes (75%), CUDAExecutionProvider 1/4 nodes (25%)"
    assert share in summary.backend
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert record["provider_nodes"] == {"TensorrtExecutionProvider": 3, "CUDAExecutionProvider": 1}
    assert share in record["backend_choice"]
