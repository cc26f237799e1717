"""dlcv.export: FP32 ONNX from a checkpoint, with metadata, dynamic axes and parity against PyTorch."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest

from dlcv.export import ExportConfig, export_onnx
from dlcv.export import onnx_export
from dlcv.export.onnx_export import plan_inputs
from dlcv.export.verify import make_batch
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import write_png
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.logit_parity import ParityStats
from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.train.checkpoint import file_sha256, load_checkpoint, metadata_from_checkpoint
from dlcv.train.torch_backend import TorchBackend

ARCHS = ("fcn8s", "fcn32s", "vgg16_bn")
SEG_SIZE = (48, 48)
FP32_BAR = 1e-5  # measured: 1e-8..6e-7 for these narrow models


def _dims(value_info):
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value_info.type.tensor_type.shape.dim]


SEGMENTATION_ARCHS = tuple(a for a in ARCHS if a.startswith("fcn"))


@pytest.fixture(scope="module")
def export_of(make_checkpoint, tmp_path_factory):
    """``export_of(arch) -> (checkpoint, ExportResult)``, each exported once per module."""
    done: dict = {}

    def export(arch: str):
        if arch not in done:
            ckpt = make_checkpoint(arch)
            config = ExportConfig(
                checkpoint=ckpt, out=tmp_path_factory.mktemp(f"export-{arch}"),
                input_size=SEG_SIZE if arch in SEGMENTATION_ARCHS else None,
            )  # fmt: skip
            done[arch] = ckpt, export_onnx(config)
        return done[arch]

    return export


@pytest.fixture(params=ARCHS)
def exported(request, export_of):
    return export_of(request.param)


def test_export_passes_parity_at_two_shapes_with_batch_2(exported):
    ckpt, result = exported
    report = result.verification
    assert report.passed and result.onnx_path.is_file()
    assert result.exporter == "dynamo"
    shapes = [r.shape for r in report.rows]
    assert len(set(shapes)) >= 2 and all(s[0] >= 2 for s in shapes)
    segmentation = result.metadata.arch in SEGMENTATION_ARCHS
    assert result.metadata.task == ("segmentation" if segmentation else "classification")
    assert {s[2:] for s in shapes} == ({SEG_SIZE, (97, 131)} if segmentation else {(32, 32)})  # classification: its fixed size
    assert report.overall["agreement"] == 1.0
    assert report.overall["max_abs_logit_error"] < FP32_BAR
    assert report.overall["max_abs_reference_logit"] > 1e-3  # the random weights give non-trivial logits
    assert "agreement" in report.table() and "PASS" in report.table()
    record = json.loads(json.dumps(result.to_dict()))
    assert record["exporter"] == "dynamo" and record["opset"] == 18 and record["verification"]["passed"]


def test_embedded_metadata_equals_the_checkpoints(exported):
    ckpt, result = exported
    model = onnx.load(str(result.onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    embedded = ArtifactMetadata.from_json(props[METADATA_KEY])
    expected = metadata_from_checkpoint(load_checkpoint(ckpt), source_sha256=file_sha256(ckpt))
    assert embedded == result.metadata
    # what the export adds: the TensorRT optimisation profile it chose (dynamic graphs only)
    assert embedded.with_(tensorrt_profile=None) == expected
    profile = embedded.tensorrt_profile
    assert profile["min"][0] == 1 and profile["opt"][0] == 4  # the batch is dynamic
    if embedded.task == "segmentation":  # keeps the image size: whole photographs up to 1024x1024
        assert profile["max"] == [4, 3, 1024, 1024]
    else:  # the preprocessing fixes the size
        assert profile["min"][2:] == profile["max"][2:] == list(embedded.preprocess.size)
    assert embedded.precision == "fp32" and embedded.input_name == "input" and embedded.output_name == "logits"


def test_single_file_that_passes_the_checker(exported):
    _, result = exported
    onnx.checker.check_model(str(result.onnx_path), full_check=True)
    model = onnx.load(str(result.onnx_path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert list(result.onnx_path.parent.iterdir()) == [result.onnx_path]  # no .data file, no temporary left
    assert result.precision_paths == {"fp32": result.onnx_path} and result.precision_report is None  # FP32 only


def test_dynamic_axes(exported):
    _, result = exported
    graph = onnx.load(str(result.onnx_path)).graph
    (inp,), (out,) = graph.input, graph.output
    assert (inp.name, out.name) == ("input", "logits")
    c = result.metadata.num_classes
    if result.metadata.arch in SEGMENTATION_ARCHS:
        assert _dims(inp) == ["batch", 3, "height", "width"]
        assert _dims(out) == ["batch", c, "height", "width"]
    else:  # classification: the preprocessing fixes 32x32
        assert _dims(inp) == ["batch", 3, 32, 32]
        assert _dims(out) == ["batch", c]
    assert tuple(_dims(inp)) == result.input_shape


@pytest.mark.parametrize("arch", SEGMENTATION_ARCHS)
def test_segmentation_graph_really_is_dynamic(arch, export_of):
    """Sizes unlike the export sample (and odd) give the PyTorch answer: the crops follow the input."""
    ckpt, result = export_of(arch)
    spec = result.metadata.preprocess
    with TorchBackend(ckpt) as ref, OnnxRuntimeBackend(result.onnx_path) as ort:
        for shape in [(1, 64, 64), (3, 97, 131), (1, 33, 17)]:
            batch = make_batch(spec, shape, seed=3)
            got, want = ort.infer(batch), ref.infer(batch)
            assert got.shape == want.shape == (shape[0], 3, *shape[1:])
            stats = ParityStats().update(want, got).compute()
            assert stats["max_abs_logit_error"] < FP32_BAR and stats["agreement"] == 1.0, shape


def test_static_fixes_every_dim_and_verifies_on_real_images(make_checkpoint, tmp_path):
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 50), (64, 48), (33, 33)]):
        write_png(images / f"img{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    messages = []
    config = ExportConfig(checkpoint=make_checkpoint("vgg16_bn"), out=tmp_path / "out", static=True, batch=2, images=images)
    result = export_onnx(config, log=messages.append)
    assert any(f"3 images from {images}" in m for m in messages)
    graph = onnx.load(str(result.onnx_path)).graph
    assert _dims(graph.input[0]) == [2, 3, 32, 32]
    assert _dims(graph.output[0]) == [2, 3]
    assert [r.shape for r in result.verification.rows] == [(2, 3, 32, 32)]
    with OnnxRuntimeBackend(result.onnx_path) as ort, pytest.raises(DlcvError, match="fixed at 2"):
        ort.infer(np.zeros((3, 3, 32, 32), np.float32))


def test_tampered_verification_fails_and_writes_nothing(make_checkpoint, tmp_path, monkeypatch):
    real_run = OnnxRuntimeBackend._run

    def noisy(self, batch):
        logits = real_run(self, batch)
        return logits + np.random.default_rng(0).normal(0, 1.0, logits.shape).astype(np.float32)

    monkeypatch.setattr(OnnxRuntimeBackend, "_run", noisy)
    with pytest.raises(DlcvError, match="vgg16_bn.onnx: failed verification against PyTorch: max abs logit error") as info:
        export_onnx(ExportConfig(checkpoint=make_checkpoint("vgg16_bn"), out=tmp_path))
    assert "agreement" in str(info.value) and "was not written" in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_torchscript_fallback_when_dynamo_fails(make_checkpoint, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated torch.export failure\nsecond line")

    monkeypatch.setitem(onnx_export.EXPORTER_FUNCTIONS, "dynamo", broken)
    messages = []
    result = export_onnx(
        ExportConfig(checkpoint=make_checkpoint("fcn32s"), out=tmp_path, input_size=SEG_SIZE), log=messages.append
    )
    assert result.exporter == "torchscript"
    assert result.verification.passed and len(result.verification.rows) == 2
    assert any("simulated torch.export failure" in n and "second line" not in n for n in result.notes)
    assert any(m.startswith("warning: the dynamo exporter failed") for m in messages)
    assert result.input_shape == ("batch", 3, "height", "width")


def test_plan_inputs():
    seg = metadata_for("segmentation", PreprocessSpec())
    cls = metadata_for("classification", PreprocessSpec(resize="resize", size=(32, 40)))
    cfg = ExportConfig(checkpoint="x.pt")
    p = plan_inputs(seg, cfg)
    assert p.dynamic_batch and p.dynamic_hw and p.verify_shapes == ((2, 128, 128), (2, 97, 131))
    p = plan_inputs(cls, cfg)
    assert p.dynamic_batch and not p.dynamic_hw and p.verify_shapes == ((2, 32, 40), (3, 32, 40))
    free_cls = metadata_for("classification", PreprocessSpec())
    p = plan_inputs(free_cls, cfg)  # a third, larger size probes the adaptive pool's shrinking regime
    assert p.dynamic_hw and p.verify_shapes == ((2, 128, 128), (2, 97, 131), (1, 301, 327))
    p = plan_inputs(cls, dataclasses.replace(cfg, static=True, batch=4))
    assert not p.dynamic_batch and not p.dynamic_hw and p.sample == (4, 32, 40)
    p = plan_inputs(seg, dataclasses.replace(cfg, static=True, input_size=(64, 80)))
    assert p.dynamic_axes() == {} and p.verify_shapes == ((1, 64, 80),)
    with pytest.raises(DlcvUsageError, match="--input-size"):
        plan_inputs(seg, dataclasses.replace(cfg, static=True))
    with pytest.raises(DlcvUsageError, match="differs"):
        plan_inputs(cls, dataclasses.replace(cfg, input_size=(64, 64)))
    with pytest.raises(DlcvUsageError, match="differs"):
        plan_inputs(cls, dataclasses.replace(cfg, input_size=(64, 64), static=True))
    with pytest.raises(DlcvUsageError, match="--input-size"):
        plan_inputs(free_cls, dataclasses.replace(cfg, static=True))
    p = plan_inputs(seg, dataclasses.replace(cfg, input_size=(64, 64)))  # segmentation stays dynamic
    assert p.dynamic_hw and p.sample == (2, 64, 64)


def metadata_for(task, spec):
    return ArtifactMetadata(task=task, arch="m", num_classes=2, class_names=("a", "b"), preprocess=spec)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"min_agreement": 1.01}, "min-agreement"), ({"atol": -1.0}, "atol"), ({"opset": 3}, "opset"), ({"batch": 0}, "batch")],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(DlcvUsageError, match=match):
        ExportConfig(checkpoint="x.pt", **kwargs)


def test_bad_checkpoints_are_named(tmp_path):
    import torch

    missing = tmp_path / "missing.pt"
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(2)}, foreign)
    wrong = tmp_path / "model.onnx"
    wrong.write_bytes(b"")
    for path, match in [(missing, "not found"), (garbage, "not a readable"), (foreign, "not a dlcv checkpoint"), (wrong, "expected a dlcv checkpoint")]:
        with pytest.raises(DlcvError, match=match) as info:
            export_onnx(ExportConfig(checkpoint=path, out=tmp_path / "out"))
        assert str(path) in str(info.value)
    assert not (tmp_path / "out").exists()
