"""BF16, a run precision: ``dlcv-infer --precision bf16`` runs an FP32 .onnx file on OpenVINO with
BF16 arithmetic, on CPUs with AVX512-BF16 or AMX-BF16. It is refused in one line on a CPU without
them (simulated: a /proc/cpuinfo without the flags), on a file that is not FP32, on a backend with
no BF16 kernels, and when OpenVINO compiles the model without BF16 layers (its silent fall back to
f32, simulated by compiling with the f32 hint, which is what the plugin does on such a CPU).

Tolerance (stated once): BF16 keeps 8 mantissa bits, so logits may move by about 2^-8 of their
magnitude per rounding; against onnxruntime FP32 they stay within 2e-2 of the largest logit and the
labels of template-coloured images (margins far above that) are identical.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.runtime import cpu_isa
from dlcv.runtime.backends import choose_backend, open_backend
from dlcv.runtime.backends.openvino_backend import OpenVINOBackend, bf16_layers
from dlcv.runtime.cli import main
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import read_label_map
from dlcv.runtime.precision import BF16, get_precision

from ..conftest import CPU_FLAGS, simulate_cpu
from .onnx_fixtures import SEG_COLOURS, blocks_image, colour_model, expected_labels, save_image
from .test_backend_preference import with_precision

BF16_LOGIT_TOLERANCE = 2e-2  # of the largest reference logit
needs_bf16_cpu = pytest.mark.skipif(not cpu_isa.bf16_flags(), reason="this CPU has no avx512_bf16/amx_bf16: BF16 cannot run")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    return {p: with_precision(colour_model(root / f"m.{p}.onnx"), p) for p in ("fp32", "int8")}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16-images")
    rng = np.random.default_rng(0)
    labels = {}
    for i in range(3):
        grid = rng.integers(0, len(SEG_COLOURS), size=(3, 4))
        image = blocks_image(grid, (4, 4))
        save_image(root / f"im{i}.png", image)
        labels[f"im{i}.png"] = expected_labels(image)
    return root, labels


def _run(images_dir, engine, out, *extra):
    return CliRunner().invoke(main, [str(images_dir), "--engine", str(engine), "--out", str(out), "-q", *extra])


def test_bf16_is_a_run_precision_of_fp32_files_with_its_own_gate():
    assert get_precision("bf16") is BF16 and BF16.runs == "fp32"
    assert BF16.gate.min_agreement == 0.999 and BF16.gate.max_metric_drop == 0.001
    assert OpenVINOBackend.run_precisions == ("bf16",)


@needs_bf16_cpu
def test_dlcv_infer_runs_the_fp32_file_in_bf16_on_openvino(models, images, tmp_path):
    images_dir, truth = images
    ran = _run(images_dir, models["fp32"], tmp_path / "bf16", "--precision", "bf16")
    assert ran.exit_code == 0, ran.output
    assert "backend: openvino (it runs .onnx models in bf16; --precision bf16)" in ran.stdout
    record = json.loads((tmp_path / "bf16" / "metrics.json").read_text())
    assert record["backend"] == "openvino" and record["precision"] == "bf16"
    for name, labels in truth.items():
        assert np.array_equal(read_label_map(tmp_path / "bf16" / name), labels), name


@needs_bf16_cpu
def test_the_compiled_model_runs_its_layers_in_bf16_within_tolerance(models):
    x = np.random.default_rng(1).random((3, 3, 10, 12), dtype=np.float32)
    with open_backend(models["fp32"], precision="bf16") as bf16, open_backend(models["fp32"]) as fp32:
        assert isinstance(bf16, OpenVINOBackend) and bf16.precision == "bf16"
        assert str(bf16._latency.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
        in_bf16, total = bf16_layers(bf16._latency.get_compiled_model())
        assert total >= 1 and in_bf16 == total
        got, want = bf16.infer(x), fp32.infer(x)
        split = bf16.infer(x)  # the THROUGHPUT model, compiled and checked on the first larger batch
    assert not np.array_equal(got, want)  # BF16 rounding happened: this is not an FP32 run
    assert np.abs(got - want).max() <= BF16_LOGIT_TOLERANCE * np.abs(want).max()
    np.testing.assert_array_equal(split, got)


def test_a_cpu_without_bf16_instructions_is_refused_in_one_line(models, images, tmp_path, monkeypatch):
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["vnni"])
    ran = _run(images[0], models["fp32"], tmp_path / "o", "--precision", "bf16")
    assert ran.exit_code != 0
    lines = [ln for ln in ran.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--precision bf16 needs a CPU with avx512_bf16 or amx_bf16 instructions" in lines[0]
    assert "avx512_vnni" in lines[0] and not (tmp_path / "o" / "metrics.json").exists()


def test_openvinos_silent_fall_back_to_f32_is_refused(models, monkeypatch, tmp_path):
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["amx"])  # the flags say BF16; the plugin compiles f32 anyway
    real = OpenVINOBackend._compile

    def falls_back(self, hint):
        self._config = {**self._config, "INFERENCE_PRECISION_HINT": "f32"}
        return real(self, hint)

    monkeypatch.setattr(OpenVINOBackend, "_compile", falls_back)
    with pytest.raises(DlcvError, match=r"compiled none of its 1 convolution/matmul layers in bf16"):
        open_backend(models["fp32"], precision="bf16")


def test_bf16_is_refused_for_other_files_and_backends(models, images, tmp_path):
    with pytest.raises(DlcvUsageError, match=r"runs FP32 files; m.int8.onnx is int8"):
        open_backend(models["int8"], precision="bf16")
    with pytest.raises(DlcvUsageError, match=r"the onnxruntime backend does not run .onnx models in bf16; backends that do: openvino"):
        choose_backend(models["fp32"], "onnxruntime", precision="bf16")
    ran = _run(images[0], models["fp32"], tmp_path / "o", "--precision", "fp16")
    assert ran.exit_code != 0 and "'fp16' is not 'bf16'" in ran.output
