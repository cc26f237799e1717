"""dlcv-export --trt: the missing-TensorRT path (ONNX written, one line, exit 2), the optimisation
profile, the builder calls (strongly typed, workspace, timing cache, version compatibility, the
TensorRT < 11 fallback) against a recording TensorRT whose BuilderFlag and MemoryPoolType are the
installed lean bindings' own (the lean bindings have no NetworkDefinitionCreationFlag: it is
modelled on the TensorRT 10 and 11 headers, whose STRONGLY_TYPED bits differ), and the engine +
sidecar publication, verified by the runtime backend. A real build runs on GPU machines."""
from __future__ import annotations

import enum
import hashlib
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import dlcv.export.tensorrt_build as build_module
import dlcv.runtime.backends.tensorrt_backend as backend_module
from dlcv.export import ExportConfig, export_onnx
from dlcv.export.cli import main
from dlcv.export.config import TensorRTConfig
from dlcv.export.tensorrt_build import build_engine, build_serialized, profile_shapes
from dlcv.runtime.tensorrt.cuda_memory import Cuda
from dlcv.runtime.errors import DlcvError, DlcvUsageError, MissingDependencyError
from dlcv.runtime.metadata import ArtifactMetadata, read_sidecar
from dlcv.runtime.preprocess import PreprocessSpec
from tests.runtime.fake_tensorrt import FakeCudart, FakeFullTrt, FakeTrt, fake_plan

HAS_BUILDER = importlib.util.find_spec("tensorrt") is not None


def lean():
    return pytest.importorskip("tensorrt_lean_bindings")


@pytest.mark.skipif(HAS_BUILDER, reason="TensorRT is installed here")
def test_trt_without_tensorrt_writes_the_onnx_then_exits_2(make_checkpoint, tmp_path):
    result = CliRunner().invoke(main, [str(make_checkpoint("vgg16_bn")), "--out", str(tmp_path), "--trt"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    fp16 = tmp_path / "vgg16_bn.fp16.onnx"
    for needle in ("TensorRT is not available", f"The ONNX is written: {fp16}", "pip install 'dlcv[tensorrt]'", "trtexec --onnx="):
        assert needle in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vgg16_bn.fp16.onnx", "vgg16_bn.onnx"]
    assert "precision vs PyTorch FP32" in result.stdout and "vgg16_bn.fp16.onnx" in result.stdout
    assert f"wrote {fp16}" in result.stdout


def test_load_builder_refuses_a_lean_only_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", SimpleNamespace(__version__="11.4.0", Runtime=object))
    with pytest.raises(MissingDependencyError, match="has no builder") as info:
        build_module.load_builder(tmp_path / "m.onnx")
    assert info.value.exit_code == 2 and str(tmp_path / "m.onnx") in str(info.value)


def _result(task: str, preprocess: PreprocessSpec, input_shape: tuple):
    md = ArtifactMetadata(task=task, arch="m", num_classes=2, class_names=("a", "b"), preprocess=preprocess)
    return SimpleNamespace(metadata=md, input_shape=input_shape)


def test_profile_shapes_default_from_the_input_size_and_follow_the_graph():
    seg = _result("segmentation", PreprocessSpec(), ("batch", 3, "height", "width"))
    config = ExportConfig(checkpoint="x.pt", input_size=(64, 96))
    # a segmentation model that keeps the image size sees whole photographs: up to 1024x1024 (at batch 4)
    assert profile_shapes(seg, config, TensorRTConfig()) == ((1, 3, 32, 48), (4, 3, 64, 96), (4, 3, 1024, 1024))
    assert profile_shapes(seg, ExportConfig(checkpoint="x.pt"), TensorRTConfig())[2] == (4, 3, 1024, 1024)
    resized = _result("segmentation", PreprocessSpec(resize="resize", size=(64, 96)), ("batch", 3, "height", "width"))
    assert profile_shapes(resized, ExportConfig(checkpoint="x.pt"), TensorRTConfig()) == ((1, 3, 32, 48), (4, 3, 64, 96), (16, 3, 128, 192))
    cls = _result("classification", PreprocessSpec(resize="resize", size=(32, 32)), ("batch", 3, 32, 32))
    assert profile_shapes(cls, ExportConfig(checkpoint="x.pt"), TensorRTConfig()) == ((1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))
    static = _result("classification", PreprocessSpec(resize="resize", size=(32, 32)), (2, 3, 32, 32))
    assert profile_shapes(static, ExportConfig(checkpoint="x.pt"), TensorRTConfig()) == ((2, 3, 32, 32),) * 3
    given = TensorRTConfig(max_shape=(8, 3, 512, 512))
    assert profile_shapes(seg, config, given)[2] == (8, 3, 512, 512)
    with pytest.raises(DlcvUsageError, match="axis 2 is fixed at 32"):
        profile_shapes(cls, ExportConfig(checkpoint="x.pt"), TensorRTConfig(max_shape=(8, 3, 64, 64)))
    small = profile_shapes(seg, config, TensorRTConfig(max_shape=(2, 3, 64, 96)))  # the defaults make room
    assert small == ((1, 3, 32, 48), (2, 3, 64, 96), (2, 3, 64, 96))
    with pytest.raises(DlcvUsageError, match="min <= opt <= max"):
        profile_shapes(seg, config, TensorRTConfig(min_shape=(4, 3, 64, 96), max_shape=(2, 3, 64, 96)))


# --------------------------------------------------------------------------- a recording TensorRT builder


class NetworkFlag10(enum.IntEnum):  # NvInfer.h of TensorRT 10.16
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


class NetworkFlag11(enum.IntEnum):  # NvInfer.h of TensorRT 11.1: STRONGLY_TYPED deprecated (always on), bit 0
    STRONGLY_TYPED = 0
    PREFER_JIT_PYTHON_PLUGINS = 1
    PREFER_AOT_PYTHON_PLUGINS = 2


NetworkFlag = NetworkFlag11


class Recorder:
    """A TensorRT builder API that records every call; ``outcomes`` says what each build returns
    (a plan, None, or (None, the error it logs)); ``cache`` how a non-empty timing cache is taken:
    ``ok``, ``none`` (create_timing_cache returns None), ``raise`` or ``refuse`` (set_timing_cache
    returns False)."""

    def __init__(self, builder_flag, outcomes, version="11.4.0.106", network_flag=NetworkFlag11, cache="ok"):
        self.calls: list[tuple] = []
        self.outcomes = list(outcomes)
        rec = self
        self.__version__ = version
        self.BuilderFlag = builder_flag
        self.MemoryPoolType = lean().MemoryPoolType
        self.NetworkDefinitionCreationFlag = network_flag
        self.ILogger = FakeTrt.ILogger

        class Cache:
            def __init__(self, data):
                self.data = data

            def serialize(self):
                return self.data + b"+timings"

        class Config:
            def __init__(self):
                self.cache = None

            def set_memory_pool_limit(self, pool, size):
                rec.calls.append(("pool", pool, size))

            def set_flag(self, flag):
                rec.calls.append(("flag", flag))

            def clear_flag(self, flag):
                rec.calls.append(("clear", flag))

            def add_optimization_profile(self, profile):
                rec.calls.append(("profile", tuple(profile.shapes)))

            def create_timing_cache(self, data):
                rec.calls.append(("cache-in", bytes(data)))
                if data and cache == "none":
                    return None
                if data and cache == "raise":
                    raise RuntimeError("timing cache of TensorRT 10.8 cannot be read by TensorRT 11.4")
                return Cache(bytes(data))

            def set_timing_cache(self, new, ignore_mismatch):
                if new is None:
                    raise TypeError("set_timing_cache(): incompatible function arguments")
                if new.data and cache == "refuse":
                    return False
                self.cache = new
                return True

            def get_timing_cache(self):
                return self.cache

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                self.shapes = (name, lo, opt, hi)

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.logger = logger

            def parse_from_file(self, path):
                rec.calls.append(("parse", Path(path).name))
                return True

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                rec.calls.append(("network", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                outcome = rec.outcomes.pop(0)
                if outcome is None:
                    outcome = (None, "no implementation obeys the types")
                if isinstance(outcome, tuple):
                    self.logger.log(FakeTrt.ILogger.Severity.ERROR, outcome[1])
                    return None
                return outcome

        self.Builder, self.OnnxParser = Builder, Parser


SHAPES = ((1, 3, 16, 16), (4, 3, 32, 32), (16, 3, 64, 64))


@pytest.mark.parametrize("network_flag", [NetworkFlag10, NetworkFlag11], ids=["trt10", "trt11"])
def test_strongly_typed_build_with_workspace_profile_cache_and_version_compatibility(tmp_path, network_flag):
    real = lean()
    trt = Recorder(real.BuilderFlag, [b"PLAN1", b"PLAN2"], network_flag=network_flag)
    cache = tmp_path / "timing.cache"
    messages: list[str] = []
    config = TensorRTConfig(precision="fp16", workspace_mb=512, version_compatible=True)
    plan, typed = build_serialized(trt, tmp_path / "m.fp16.onnx", "input", SHAPES, config, cache, messages.append)
    assert (plan, typed) == (b"PLAN1", True)
    assert ("network", 1 << int(network_flag.STRONGLY_TYPED)) in trt.calls  # a bit position, not the value
    assert ("pool", real.MemoryPoolType.WORKSPACE, 512 << 20) in trt.calls
    assert ("profile", ("input", *SHAPES)) in trt.calls
    flags = [c[1] for c in trt.calls if c[0] == "flag"]
    assert flags == [real.BuilderFlag.VERSION_COMPATIBLE, real.BuilderFlag.EXCLUDE_LEAN_RUNTIME]
    assert [int(f) for f in flags] == [12, 13]  # kVERSION_COMPATIBLE, kEXCLUDE_LEAN_RUNTIME in NvInfer.h
    assert cache.read_bytes() == b"+timings" and ("cache-in", b"") in trt.calls
    trt.calls.clear()
    build_serialized(trt, tmp_path / "m.fp16.onnx", "input", SHAPES, TensorRTConfig(), cache, messages.append)
    assert ("cache-in", b"+timings") in trt.calls and cache.read_bytes() == b"+timings+timings"
    assert any(m.startswith("reusing the timing cache") for m in messages)
    assert not [c for c in trt.calls if c[0] == "flag"]  # no precision flag: the ONNX types decide


def test_fp32_engines_clear_tf32_unless_asked(tmp_path):
    real = lean()
    assert int(real.BuilderFlag.TF32) == 6  # kTF32 in NvInfer.h, "Enabled by default"
    for tf32, cleared in ((False, [("clear", real.BuilderFlag.TF32)]), (True, [])):
        trt = Recorder(real.BuilderFlag, [b"PLAN"])
        build_serialized(trt, tmp_path / "m.onnx", "input", SHAPES, TensorRTConfig(precision="fp32", tf32=tf32), tmp_path / "c")
        assert [c for c in trt.calls if c[0] == "clear"] == cleared
    result = CliRunner().invoke(main, ["x.pt", "--tf32"])
    assert result.exit_code == 2 and "--tf32 only apply with --trt" in result.stderr


@pytest.mark.parametrize("behaviour", ["none", "raise", "refuse"])
def test_an_unusable_timing_cache_is_replaced_with_one_warning(tmp_path, behaviour):
    """A cache from another TensorRT version or GPU: create_timing_cache returns None or raises, or
    set_timing_cache refuses it. The build starts a new cache, warns once (also across the
    TensorRT < 11 fallback's second attempt), and writes the new cache."""
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"TRT-10.8-timings")
    old_flags = SimpleNamespace(FP16="FP16-flag", INT8="INT8-flag", VERSION_COMPATIBLE="vc", EXCLUDE_LEAN_RUNTIME="x", TF32="tf32")
    trt = Recorder(old_flags, [None, b"PLAN"], version="10.3.0.26", network_flag=NetworkFlag10, cache=behaviour)
    messages: list[str] = []
    plan, _ = build_serialized(trt, tmp_path / "m.fp16.onnx", "input", SHAPES, TensorRTConfig(), cache, messages.append)
    assert plan == b"PLAN"
    warnings = [m for m in messages if "timing cache" in m]
    assert warnings == [f"warning: {cache} was made by another TensorRT version or GPU; starting a new timing cache"]
    assert cache.read_bytes() == b"+timings"  # the new cache replaced the unusable one
    assert [c[1] for c in trt.calls if c[0] == "cache-in"].count(b"TRT-10.8-timings") == 1


def test_builder_precision_flag_only_as_a_fallback_before_tensorrt_11(tmp_path):
    old_flags = SimpleNamespace(FP16="FP16-flag", INT8="INT8-flag", VERSION_COMPATIBLE="vc", EXCLUDE_LEAN_RUNTIME="x", TF32="tf32")
    trt = Recorder(old_flags, [None, b"PLAN"], version="10.3.0.26", network_flag=NetworkFlag10)
    messages: list[str] = []
    plan, typed = build_serialized(trt, tmp_path / "m.fp16.onnx", "input", SHAPES, TensorRTConfig(), tmp_path / "c", messages.append)
    assert (plan, typed) == (b"PLAN", False)
    typed = 1 << int(NetworkFlag10.STRONGLY_TYPED)
    assert [c for c in trt.calls if c[0] in ("network", "flag")] == [("network", typed), ("network", 0), ("flag", "FP16-flag")]
    assert any("retrying with BuilderFlag.FP16" in m and "no implementation obeys the types" in m for m in messages)
    trt11 = Recorder(lean().BuilderFlag, [None])  # TensorRT 11: no FP16 flag, no fallback
    with pytest.raises(DlcvError, match="could not build an engine \\(no implementation obeys the types\\)"):
        build_serialized(trt11, tmp_path / "m.fp16.onnx", "input", SHAPES, TensorRTConfig(), tmp_path / "c")


def test_each_build_attempt_reports_its_own_error(tmp_path):
    old_flags = SimpleNamespace(FP16="FP16-flag", INT8="INT8-flag", VERSION_COMPATIBLE="vc", EXCLUDE_LEAN_RUNTIME="x", TF32="tf32")
    outcomes = [(None, "strongly typed: no FP16 tactic for Conv_3"), (None, "weakly typed: out of workspace memory")]
    trt = Recorder(old_flags, outcomes, version="10.3.0.26", network_flag=NetworkFlag10)
    messages: list[str] = []
    with pytest.raises(DlcvError) as info:
        build_serialized(trt, tmp_path / "m.fp16.onnx", "input", SHAPES, TensorRTConfig(), tmp_path / "c", messages.append)
    assert "out of workspace memory" in str(info.value) and "Conv_3" not in str(info.value)
    assert any("Conv_3" in m for m in messages)


@pytest.fixture(scope="module")
def exported_vgg(make_checkpoint, tmp_path_factory):
    config = ExportConfig(checkpoint=make_checkpoint("vgg16_bn"), out=tmp_path_factory.mktemp("trt"),
                          tensorrt=TensorRTConfig(precision="fp32", max_shape=(2, 3, 32, 32)))  # fmt: skip
    return config, export_onnx(config)


def test_engine_and_sidecar_are_published_after_verification(exported_vgg, monkeypatch):
    """The whole build_engine flow with a simulated GPU: the plan the recording builder returns
    is one the simulated runtime can run (its logits are not the model's, so verification
    warns, and --strict refuses to publish)."""
    config, result = exported_vgg
    profile = {"min": (1, 3, 32, 32), "opt": (2, 3, 32, 32), "max": (2, 3, 32, 32)}
    cudart = FakeCudart()
    monkeypatch.setattr(build_module, "load_builder", lambda path: Recorder(lean().BuilderFlag, [fake_plan(profile, 3, classify=True)] * 2))
    monkeypatch.setattr("dlcv.runtime.tensorrt.cuda_memory.load_cudart", lambda: cudart)
    monkeypatch.setattr(backend_module, "load_tensorrt", lambda: FakeFullTrt)
    monkeypatch.setattr(FakeTrt, "__version__", "11.4.0.106")
    monkeypatch.setattr(FakeTrt, "cudart", cudart)
    messages: list[str] = []
    engine = build_engine(result, config, messages.append)
    plan = config.out / "vgg16_bn.plan"
    assert engine.plan_path == plan and plan.read_bytes() == fake_plan(profile, 3, classify=True)
    md = read_sidecar(plan)
    assert md.precision == "fp32" and md.with_(engine={}) == result.metadata
    b = md.engine
    assert (b["gpu_name"], b["compute_capability"], b["tensorrt_version"]) == ("Fake GPU", "8.6", "11.4.0.106")
    assert b["profile"] == {"min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [2, 3, 32, 32]}
    assert b["plan_sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest() and b["onnx"] == "vgg16_bn.onnx"
    assert b["strongly_typed"] and json.loads((config.out / "vgg16_bn.plan.json").read_text())["engine"] == b
    assert b["tf32"] is False
    assert engine.report.rows[0].label == "fp32 engine" and not engine.report.rows[0].passed
    assert any(m.startswith("warning: vgg16_bn.plan misses its gate") for m in messages)
    assert not [p for p in config.out.iterdir() if p.name.startswith(".")]  # no temporary left
    assert "wrote" in engine.summary() and "profile 1x3x32x32 .. 2x3x32x32" in engine.summary()
    plan.unlink()
    (config.out / "vgg16_bn.plan.json").unlink()
    import dataclasses

    with pytest.raises(DlcvError, match="vgg16_bn.plan misses its gate.*--strict: not written"):
        build_engine(result, dataclasses.replace(config, strict=True))
    assert not plan.exists() and not (config.out / "vgg16_bn.plan.json").exists()


def test_the_engine_is_built_and_verified_on_the_gpu_device_names(exported_vgg, monkeypatch):
    import dataclasses

    config, result = exported_vgg
    config = dataclasses.replace(config, out=config.out / "cuda1",
                                 tensorrt=dataclasses.replace(config.tensorrt, device="cuda:1"))  # fmt: skip
    config.out.mkdir()
    profile = {"min": (1, 3, 32, 32), "opt": (2, 3, 32, 32), "max": (2, 3, 32, 32)}
    cudart = FakeCudart(gpus=2)
    monkeypatch.setattr(build_module, "load_builder", lambda path: Recorder(lean().BuilderFlag, [fake_plan(profile, 3, classify=True)]))
    monkeypatch.setattr("dlcv.runtime.tensorrt.cuda_memory.load_cudart", lambda: cudart)
    monkeypatch.setattr(backend_module, "load_tensorrt", lambda: FakeFullTrt)
    monkeypatch.setattr(FakeTrt, "__version__", "11.4.0.106")
    monkeypatch.setattr(FakeTrt, "cudart", cudart)
    build_engine(result, config)
    assert cudart.current.device == 1 and cudart.enqueued_on and set(cudart.enqueued_on) == {1}
    with pytest.raises(DlcvUsageError, match="--device must be cuda or cuda:N"):
        TensorRTConfig(device="cpu")
    refused = CliRunner().invoke(main, ["x.pt", "--device", "cuda:1"])
    assert refused.exit_code == 2 and "--device only apply with --trt" in refused.stderr


def test_a_default_segmentation_export_runs_512_images_and_refuses_larger_than_its_profile(make_checkpoint, tmp_path, monkeypatch):
    """dlcv-export --trt of an FCN (it keeps the image size) with no profile options: the ONNX records
    the profile, the engine is built with it, and dlcv-infer on the simulated runtime takes a 512x512
    image and refuses a 1100x1100 one naming the engine's profile and the flag that widens it."""
    from dlcv.runtime.imageio import write_png

    import numpy as np

    from dlcv.runtime.cli import main as infer_main
    from dlcv.runtime.metadata import read_onnx_metadata

    config = ExportConfig(checkpoint=make_checkpoint("fcn8s"), out=tmp_path / "out", input_size=(48, 48),
                          tensorrt=TensorRTConfig(precision="fp32"))  # fmt: skip
    result = export_onnx(config)
    shapes = profile_shapes(result, config, config.tensorrt)
    assert shapes[2] == (4, 3, 1024, 1024)
    assert read_onnx_metadata(result.onnx_path).tensorrt_profile == {k: list(v) for k, v in zip(("min", "opt", "max"), shapes)}
    profile = dict(zip(("min", "opt", "max"), shapes))
    cudart = FakeCudart()
    trt = Recorder(lean().BuilderFlag, [fake_plan(profile, result.metadata.num_classes)])
    monkeypatch.setattr(build_module, "load_builder", lambda path: trt)
    monkeypatch.setattr("dlcv.runtime.tensorrt.cuda_memory.load_cudart", lambda: cudart)
    monkeypatch.setattr(backend_module, "load_tensorrt", lambda: FakeFullTrt)
    monkeypatch.setattr(FakeTrt, "__version__", "11.4.0.106")
    monkeypatch.setattr(FakeTrt, "cudart", cudart)
    engine = build_engine(result, config)
    assert ("profile", ("input", *shapes)) in trt.calls
    images = tmp_path / "images"
    write_png(images / "land.png", np.full((512, 512, 3), 90, np.uint8))
    ran = CliRunner().invoke(infer_main, [str(images), "--engine", str(engine.plan_path), "--device", "cuda", "-q",
                                          "--out", str(tmp_path / "pred")])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert json.loads((tmp_path / "pred" / "metrics.json").read_text())["counts"]["processed"] == 1
    write_png(images / "facade.png", np.full((1100, 1100, 3), 90, np.uint8))
    refused = CliRunner().invoke(infer_main, [str(images), "--engine", str(engine.plan_path), "--device", "cuda", "-q",
                                              "--out", str(tmp_path / "pred2")])  # fmt: skip
    assert refused.exit_code == 0 and "1 processed" in refused.output and "1 failed" in refused.output  # the 512 one ran
    reason = (tmp_path / "pred2" / "errors.csv").read_text()
    assert "facade.png" in reason and "optimisation profile (min 1x3x24x24, opt 4x3x48x48, max 4x3x1024x1024)" in reason
    assert "--trt --precision fp32 --max-shape 4x3x1100x1100" in reason


# --------------------------------------------------------------------------- real TensorRT on a GPU


def build_real_engine(tmp_path: Path):
    """Export a narrow FCN8s with --trt (FP16) and return the plan and (batch, PyTorch logits)."""
    from tests.conftest import write_test_checkpoint

    from dlcv.export.verify import make_batch
    from dlcv.train.torch_backend import TorchBackend

    ckpt = write_test_checkpoint(tmp_path / "fcn8s.pt", "fcn8s")
    config = ExportConfig(checkpoint=ckpt, out=tmp_path / "out", input_size=(64, 64),
                          tensorrt=TensorRTConfig(precision="fp16", max_shape=(4, 3, 128, 128)))  # fmt: skip
    result = export_onnx(config)
    engine = build_engine(result, config)
    batch = make_batch(result.metadata.preprocess, (6, 64, 64), seed=1)
    with TorchBackend(ckpt) as torch_backend:
        return engine.plan_path, (batch, torch_backend.infer(batch))


def _gpu_builder() -> bool:
    if not HAS_BUILDER:
        return False
    try:
        Cuda(0).gpu()
        return True
    except DlcvError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_builder(), reason="needs TensorRT (with its builder) and a CUDA GPU")
def test_real_fp16_engine_matches_pytorch_in_task_terms(tmp_path):
    plan, (batch, want) = build_real_engine(tmp_path)
    md = read_sidecar(plan)
    assert md.precision == "fp16" and md.engine["strongly_typed"]
    from dlcv.runtime.backends.tensorrt_backend import TensorRTBackend
    from dlcv.runtime.logit_parity import ParityStats

    with TensorRTBackend(plan) as engine:
        got = engine.infer(batch)  # 6 images: split into batches of at most 4
        assert engine.buffers["input"].allocations == 1
    stats = ParityStats().update(want, got).compute()
    assert stats["agreement"] >= 0.995 and stats["nonfinite_logits"] == 0
    assert (plan.parent / "tensorrt.timing.cache").stat().st_size > 0
