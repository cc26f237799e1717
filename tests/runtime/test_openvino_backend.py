"""The OpenVINO backend: dlcv's own .onnx / .fp16.onnx / .int8.onnx files run by OpenVINO with the
same metadata, checks, one-line errors and parity as onnxruntime, and its performance hints.

Tolerances (stated once): FP32 on OpenVINO against onnxruntime FP32: every label equal (masks
identical, top-1 identical) and logits within 1e-4 of the largest reference logit (measured:
~5e-7). FP16 and INT8 files are held to dlcv's own gates against the PyTorch FP32 reference
(FP16: 99.5 % label agreement; INT8 without labels: 98 %).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dlcv.runtime.backends import backends, backends_for, open_backend, resolve_backend
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.backends.openvino_backend import OpenVINOBackend
from dlcv.runtime.cli import main as infer_main
from dlcv.runtime.errors import DlcvError, DlcvUsageError, MissingDependencyError
from dlcv.runtime.imageio import read_image, read_label_map
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.logit_parity import ParityStats
from dlcv.runtime.precision import FP16, FP32, INT8
from dlcv.runtime.preprocess import preprocess_image

try:
    from .onnx_fixtures import CLS_COLOURS, blocks_image, colour_model, expected_logits, save_image, write_rectangles
except ImportError:
    from onnx_fixtures import CLS_COLOURS, blocks_image, colour_model, expected_logits, save_image, write_rectangles  # type: ignore[no-redef]

FP32_LOGIT_TOLERANCE = 1e-4  # of the largest reference logit


# --------------------------------------------------------------------------- registry


def test_registered_with_its_identity_and_onnx_still_defaults_to_onnxruntime(seg_model):
    assert backends()["openvino"] is OpenVINOBackend
    assert OpenVINOBackend.suffixes == (".onnx",) and OpenVINOBackend.devices == ("cpu",)
    assert OpenVINOBackend.extra == "openvino" and not OpenVINOBackend.needs_gpu
    assert OpenVINOBackend.library_version().startswith(tuple("0123456789"))
    assert [c.name for c in backends_for(seg_model)] == ["onnxruntime", "openvino"]
    assert resolve_backend(seg_model) is OnnxRuntimeBackend
    with open_backend(seg_model) as default, open_backend(seg_model, backend="openvino") as chosen:
        assert isinstance(default, OnnxRuntimeBackend) and isinstance(chosen, OpenVINOBackend)
        assert chosen.name == "openvino" and chosen.metadata == default.metadata


# --------------------------------------------------------------------------- exact answers and hints


def test_classifier_logits_are_the_known_ones_at_batch_1_and_split_batches(cls_model):
    rng = np.random.default_rng(0)
    images = [np.repeat(np.repeat(CLS_COLOURS[rng.integers(0, len(CLS_COLOURS), (2, 2))], 4, 0), 4, 1) for _ in range(5)]
    batch = np.stack([img.transpose(2, 0, 1).astype(np.float32) / 255.0 for img in images])
    expected = np.stack([expected_logits(img) for img in images])
    with open_backend(cls_model, backend="openvino") as backend:
        single = np.concatenate([backend.infer(batch[i : i + 1]) for i in range(len(batch))])
        whole = backend.infer(batch)
    np.testing.assert_allclose(single, expected, atol=1e-5)
    np.testing.assert_allclose(whole, expected, atol=1e-5)


def test_latency_hint_for_one_image_throughput_requests_for_larger_batches(seg_model, monkeypatch):
    compiled = []
    real = OpenVINOBackend._compile

    def spy(self, hint):
        model = real(self, hint)
        compiled.append((hint, model))
        return model

    monkeypatch.setattr(OpenVINOBackend, "_compile", spy)
    x = np.random.default_rng(1).random((7, 3, 6, 10), dtype=np.float32)
    with open_backend(seg_model, backend="openvino", threads=1) as backend:
        assert [h for h, _ in compiled] == ["LATENCY"]  # compiled at open: a bad model fails there
        one = backend.infer(x[:1])
        assert [h for h, _ in compiled] == ["LATENCY"]
        split = backend.infer(x)
        assert [h for h, _ in compiled] == ["LATENCY", "THROUGHPUT"]
        backend.infer(x[:3])
        assert len(compiled) == 2  # each compiled once
    np.testing.assert_allclose(split[:1], one, atol=1e-6)
    with open_backend(seg_model) as reference:
        np.testing.assert_allclose(split, reference.infer(x), atol=1e-5)
    for hint, model in compiled:
        assert str(model.get_property("PERFORMANCE_HINT")) == hint
        assert model.get_property("INFERENCE_NUM_THREADS") == 1  # threads honoured
        assert str(model.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"  # never bf16


# --------------------------------------------------------------------------- one-line errors


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_corrupt_file(tmp_path, seg_model):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file at all")
    with pytest.raises(DlcvError) as info:
        OpenVINOBackend(garbage)
    assert "not a valid ONNX file" in _one_line(info) and str(garbage) in str(info.value)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(seg_model.read_bytes()[:-40])
    with pytest.raises(DlcvError) as info:
        OpenVINOBackend(truncated)
    assert "truncated.onnx" in _one_line(info)
    with pytest.raises(DlcvError, match="ONNX file not found"):
        OpenVINOBackend(tmp_path / "absent.onnx")


def test_missing_metadata(tmp_path):
    bare = colour_model(tmp_path / "bare.onnx", metadata=False)
    with pytest.raises(DlcvError) as info:
        OpenVINOBackend(bare)
    assert "carries no dlcv metadata" in _one_line(info) and "dlcv-export" in str(info.value)


def test_tensor_names_that_the_graph_lacks(tmp_path, seg_model):
    model = onnx.load(str(seg_model))
    props = {p.key: p.value for p in model.metadata_props}
    md = ArtifactMetadata.from_json(props[METADATA_KEY]).with_(input_name="image")
    onnx.helper.set_model_props(model, {METADATA_KEY: md.to_json()})
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    with pytest.raises(DlcvError) as info:
        OpenVINOBackend(renamed)
    assert "metadata names input 'image'" in _one_line(info) and "['input']" in str(info.value)


def test_static_shapes_and_a_metadata_class_count_the_graph_does_not_compute(tmp_path):
    static = colour_model(tmp_path / "static.onnx", input_hw=(8, 8))
    with OpenVINOBackend(static) as backend:
        assert backend.infer(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 5, 8, 8)
        with pytest.raises(DlcvError) as info:
            backend.infer(np.zeros((1, 3, 8, 16), np.float32))
        assert "input axis 3 is fixed at 8" in _one_line(info) and "--static" in str(info.value)
    lying = colour_model(tmp_path / "lying.onnx", metadata_class_names=("a", "b", "c"))
    with OpenVINOBackend(lying) as backend, pytest.raises(DlcvError, match=r"expected \(1, 3, 4, 4\) from the metadata"):
        backend.infer(np.zeros((1, 3, 4, 4), np.float32))


def test_wrong_suffix_device_and_missing_library(tmp_path, seg_model, monkeypatch):
    with pytest.raises(DlcvUsageError) as info:
        open_backend(tmp_path / "m.plan", backend="openvino")
    assert "openvino backend does not open .plan models; it opens .onnx" in _one_line(info)
    with pytest.raises(DlcvUsageError) as info:
        open_backend(seg_model, device="cuda", backend="openvino")
    assert "not a device of the openvino backend; it runs on cpu" in _one_line(info)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError) as info:
        open_backend(seg_model, backend="openvino")
    assert "pip install 'dlcv[openvino]'" in _one_line(info) and info.value.exit_code == 2
    assert OpenVINOBackend.library_version() is None


# --------------------------------------------------------------------------- dlcv's exported files



def _export(*args) -> None:
    from dlcv.export.cli import main as export_main

    result = CliRunner().invoke(export_main, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def seg_files(make_checkpoint, tmp_path_factory):
    """A narrow FCN8s (random weights, 3 classes) exported by dlcv-export as FP32, FP16 and INT8."""
    data = write_rectangles(tmp_path_factory.mktemp("data") / "set", sizes=[(48, 64)] * 6, val_count=6)
    ckpt = make_checkpoint("fcn8s")
    out = tmp_path_factory.mktemp("seg-files")
    _export(ckpt, "--out", out, "--input-size", "48x64", "--fp16", "--int8", "--calib", data / "train",
            "--calib-count", "6", "--val", data, "--eval-count", "6")  # fmt: skip
    return ckpt, data, {p: out / p.file_name("fcn8s") for p in (FP32, FP16, INT8)}


@pytest.fixture(scope="module")
def seg_batch(seg_files):
    """The val images preprocessed by the runtime (one shape: one batch)."""
    _, data, files = seg_files
    md = OnnxRuntimeBackend(files[FP32]).metadata
    return np.stack([preprocess_image(read_image(p), md.preprocess)[0] for p in sorted((data / "val").glob("*.png"))])


def _parity(reference: np.ndarray, candidate: np.ndarray, tie_margin: float) -> dict:
    return ParityStats(tie_margin).update(reference, candidate).compute()


def test_fp32_masks_are_onnxruntimes_at_every_batch_size(seg_files, seg_batch):
    _, _, files = seg_files
    with open_backend(files[FP32]) as ort, open_backend(files[FP32], backend="openvino") as ov:
        assert ov.precision == "fp32"
        reference = ort.infer(seg_batch)
        for candidate in (ov.infer(seg_batch), np.concatenate([ov.infer(x[None]) for x in seg_batch])):
            stats = _parity(reference, candidate, FP32.tie_margin)
            assert stats["agreement"] == 1.0 and stats["disagreements"] == 0, stats
            assert stats["max_abs_logit_error"] <= FP32_LOGIT_TOLERANCE * max(1.0, stats["max_abs_reference_logit"])
            assert np.array_equal(reference.argmax(1), candidate.argmax(1))


def test_fp16_and_int8_files_run_and_pass_their_gates(seg_files, seg_batch):
    ckpt, _, files = seg_files
    with open_backend(ckpt) as torch_reference:  # the PyTorch FP32 reference dlcv's gates are defined against
        reference = torch_reference.infer(seg_batch)
    for precision in (FP16, INT8):
        with open_backend(files[precision], backend="openvino") as ov:
            assert ov.precision == precision.name  # from the file's metadata
            stats = _parity(reference, ov.infer(seg_batch), precision.tie_margin)
        gate = precision.default_gate(labelled=False)
        assert stats["agreement"] >= gate.min_agreement, (precision.name, stats)
        assert stats["nonfinite_logits"] == 0


def test_classifier_top1_is_onnxruntimes(make_checkpoint, tmp_path):
    ckpt = make_checkpoint("cnn_small", num_classes=10, width=0.25)
    _export(ckpt, "--out", tmp_path)
    path = tmp_path / FP32.file_name("cnn_small")
    x = np.random.default_rng(2).normal(size=(16, 3, 32, 32)).astype(np.float32)
    with open_backend(path) as ort, open_backend(path, backend="openvino") as ov:
        reference = ort.infer(x)
        for candidate in (ov.infer(x), np.concatenate([ov.infer(x[i : i + 1]) for i in range(len(x))])):
            stats = _parity(reference, candidate, FP32.tie_margin)
            assert stats["agreement"] == 1.0, stats
            assert stats["max_abs_logit_error"] <= FP32_LOGIT_TOLERANCE * max(1.0, stats["max_abs_reference_logit"])


def test_dlcv_infer_on_openvino_writes_what_onnxruntime_writes(seg_files, tmp_path):
    _, data, files = seg_files
    outputs = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / backend
        args = ["--engine", files[FP32], data / "val", "--labels", data / "valannot", "--out", out, "--batch-size", "4",
                "-q", *(["--backend", backend] if backend == "openvino" else [])]  # fmt: skip
        result = CliRunner().invoke(infer_main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        assert record["backend"] == backend and record["counts"]["processed"] == 6
        outputs[backend] = (record, {p.name: p for p in out.glob("*.png")})
    (ort_record, ort_files), (ov_record, ov_files) = outputs["onnxruntime"], outputs["openvino"]
    assert sorted(ort_files) == sorted(ov_files) and len(ort_files) == 12  # mask + colour image per image
    for name, path in ort_files.items():
        if name.endswith("_color.png"):
            assert np.array_equal(read_image(path), read_image(ov_files[name])), name
        else:
            assert np.array_equal(read_label_map(path), read_label_map(ov_files[name])), name
    assert ov_record["metrics"]["miou"] == ort_record["metrics"]["miou"]


def test_dlcv_infer_backend_errors_are_one_line(seg_model, tmp_path):
    images = tmp_path / "images"
    save_image(images / "a.png", blocks_image(np.array([[0, 1], [2, 3]]), (2, 2)))
    result = CliRunner().invoke(infer_main, ["--engine", str(seg_model), str(images), "--backend", "openvino",
                                             "--device", "cuda", "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "not a device of the openvino backend" in result.stderr and not (tmp_path / "o").exists()
