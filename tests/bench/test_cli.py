"""dlcv-bench run as a user runs it (click's CliRunner) on narrow checkpoints and small datasets on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.bench.cli import main
from dlcv.bench.records import E2E_KEYS, LATENCY_KEYS, MACHINE_KEYS, record_keys
from dlcv.bench.report import DELTA_PNG, E2E_PNG, LATENCY_PNG, REPORT_MD, RESULTS_JSON
from dlcv.runtime.imageio import write_png
from tests.runtime.onnx_fixtures import colour_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = [
    "--iters",
    "2",
    "--warmup",
    "1",
    "--rounds",
    "2",
    "--bootstrap",
    "50",
    "--e2e-images",
    "2",
    "--ceiling-size",
    "256",
    "--torch-variants",  # torch.compile (a default on the CPU) compiles for tens of seconds: tests/bench/test_peers.py
    "channels_last,autocast,cuda_graphs",
]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rng_image(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def camvid(tmp_path) -> Path:
    """A CamVid-layout dataset of 3 classes (as the test checkpoints), 40×48 images with masks."""
    root = tmp_path / "camvid"
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("test", 4)):
        for i in range(count):
            write_png(root / split / f"{i:03d}.png", rng_image(rng, 40, 48))
            mask = rng.integers(0, 3, size=(40, 48)).astype(np.uint8)
            mask[:3] = 255  # ignored pixels
            write_png(root / f"{split}annot" / f"{i:03d}.png", mask)
    (root / "classes.json").write_text(json.dumps({"class_names": ["a", "b", "c"], "ignore_index": 255}))
    return root


@pytest.fixture
def digits(tmp_path) -> Path:
    """A dlcv-cls layout dataset of 3 classes (``<label>_<index>.png``)."""
    root = tmp_path / "cls"
    rng = np.random.default_rng(1)
    for split, count in (("train", 3), ("test", 6)):
        for i in range(count):
            write_png(root / split / f"{i % 3}_{i:03d}.png", rng_image(rng, 36, 36))
    return root


def load_records(folder: Path) -> list[dict]:
    return json.loads((folder / RESULTS_JSON).read_text())


def by_label(records, label):
    return [r for r in records if r["label"] == label]


def test_cli_run_writes_report_json_and_plots(make_checkpoint, camvid, tmp_path):
    ckpt = make_checkpoint("fcn8s")
    out = tmp_path / "results"
    result = run([ckpt, "--data", camvid, "--precisions", "fp32", "--batch-sizes", "1,2", "--images", "4",
                  "--out", out, "--name", "seg", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = out / "seg"
    for name in (REPORT_MD, RESULTS_JSON, LATENCY_PNG, DELTA_PNG, E2E_PNG):
        assert (folder / name).is_file(), name
    for name in (LATENCY_PNG, DELTA_PNG, E2E_PNG):
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE

    records = load_records(folder)
    keys = record_keys("segmentation")
    assert all(tuple(r) == keys for r in records)
    assert {"pixel_agreement", "miou_delta", "latency_p50_ms", "throughput_img_s", "error"} <= set(keys)
    labels = {r["label"] for r in records}
    assert {"torch eager fp32", "torch channels_last fp32", "onnxruntime fp32"} <= labels
    assert len(records) == 2 * len(labels)  # one per backend × batch size

    for label in ("torch eager fp32", "torch channels_last fp32", "onnxruntime fp32"):
        for r in by_label(records, label):
            assert r["error"] is None and r["skipped"] is None, r["error"]
            assert all(
                r[k] is not None for k in ("latency_p50_ms", "latency_p99_ms", "throughput_img_s", "peak_rss_mb")
            )
            assert r["latency_p50_ms_per_image"] == pytest.approx(r["latency_p50_ms"] / r["batch_size"])
            assert r["timed_calls"] == 2 and r["warmup_calls"] == 1
            assert r["model_gflop_per_image"] > 0 and r["achieved_gflop_s"] > 0 and r["ceiling_pct"] > 0
            assert r["parity_truth"] == "labels" and r["parity_images"] == 4
            assert all(
                r[k] is not None
                for k in MACHINE_KEYS
                if k in ("cpu_model", "cpu_cores", "torch_version", "ceiling_fp32_gflop_s")
            )

    eager = by_label(records, "torch eager fp32")[0]
    assert eager["ceiling_matmul_size"] == 256 and eager["ceiling_library"] in ("torch", "numpy")
    assert eager["max_abs_logit_error"] == 0.0 and eager["pixel_agreement"] == 1.0
    assert eager["miou_delta"] == 0.0 and eager["speedup_vs_torch_eager"] == 1.0
    ort = by_label(records, "onnxruntime fp32")[0]
    assert ort["max_abs_logit_error"] < 1e-4 and ort["pixel_agreement"] >= 0.999
    assert ort["miou_delta_ci_low"] <= ort["miou_delta"] <= ort["miou_delta_ci_high"]
    assert len(ort["per_class_iou_delta"]) == 3

    # the end-to-end split: on the runtime rows and eager PyTorch, at the largest batch size only
    split = [r for r in records if r["e2e_total_ms_per_image"] is not None]
    assert {r["label"] for r in split} == {"torch eager fp32", "onnxruntime fp32", "openvino fp32"}  # every installed peer
    assert all(r["batch_size"] == 2 and r["e2e_images"] == 2 for r in split)
    assert all(all(r[k] is not None for k in E2E_KEYS) for r in split)

    skipped = [r for r in records if r["skipped"]]
    assert {r["variant"] for r in skipped} == {"autocast", "cuda_graphs"}
    assert all("CUDA" in r["skipped"] and r["latency_p50_ms"] is None for r in skipped)

    report = (folder / REPORT_MD).read_text()
    for heading in (
        "## Headline",
        "## Latency",
        "## Parity against PyTorch eager FP32",
        "## End-to-end split",
        "## Machine and versions",
    ):
        assert heading in report
    assert "interleaved rounds" in report and "skipped" in report
    assert "| onnxruntime | fp32 |" in result.stdout  # the headline table is printed


def test_a_failing_backend_gives_error_records_and_the_run_goes_on(make_checkpoint, digits, tmp_path):
    ckpt = make_checkpoint("vgg16_bn")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"\x00" * 32)  # no sidecar: refused before TensorRT is touched
    other = colour_model(tmp_path / "other.onnx", "segmentation")  # another model entirely
    out = tmp_path / "results"
    result = run([ckpt, garbage, engine, other, "--data", digits, "--batch-sizes", "1,2", "--images", "6",
                  "--out", out, "--name", "cls", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "carry an error" in result.stderr
    records = load_records(out / "cls")
    assert all(tuple(r) == record_keys("classification") for r in records)
    errors = {r["artifact"]: r["error"] for r in records if r["artifact"]}
    assert errors[str(garbage)].startswith("open: ") and "garbage.onnx" in errors[str(garbage)]
    assert errors[str(engine)].startswith("open: ") and "model.plan.json" in errors[str(engine)]
    assert "not this checkpoint's model" in errors[str(other)]
    for r in records:
        if r["artifact"]:
            assert r["latency_p50_ms"] is None and r["top1_agreement"] is None
    eager = by_label(records, "torch eager fp32")
    assert len(eager) == 2 and all(r["error"] is None and r["latency_p50_ms"] > 0 for r in eager)
    assert eager[0]["top1_agreement"] == 1.0 and eager[0]["top1_delta"] == 0.0 and eager[0]["parity_truth"] == "labels"
    assert eager[0]["top1_reference"] is not None and len(eager[0]["per_class_accuracy_delta"]) == 3
    assert eager[1]["e2e_total_ms_per_image"] > 0 and eager[1]["e2e_images"] == 2  # classification pipeline split
    report = (out / "cls" / REPORT_MD).read_text()
    assert "## Skipped and failed" in report and "garbage.onnx" in report


def test_a_named_backend_without_a_model_is_an_error_record(make_checkpoint, tmp_path):
    ckpt = make_checkpoint("vgg16_bn")
    result = run([ckpt, "--backends", "torch,tensorrt", "--batch-sizes", "1", "--images", "2", "--out", tmp_path,
                  "--name", "trt", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = load_records(tmp_path / "trt")
    trt = [r for r in records if r["backend"] == "tensorrt"]
    assert len(trt) == 1 and "no tensorrt model" in trt[0]["error"] and ".plan" in trt[0]["error"]
    assert not any(r["backend"] == "onnxruntime" for r in records)  # not asked for: nothing exported
    eager = by_label(records, "torch eager fp32")[0]
    assert eager["parity_truth"] == "reference" and eager["top1_delta"] == 0.0  # synthetic images, no labels
    assert eager["input_height"] == 32 and eager["input_width"] == 32  # the checkpoint's preprocessing size
    assert all(eager[k] is not None for k in LATENCY_KEYS if k not in ("speedup_vs_best_torch", "compile_s"))
    assert eager["compile_s"] is None  # only torch.compile compiles per shape


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--batch-sizes", "1,x"], "--batch-sizes"),
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--backends", "torch,tvm"], "--backends"),
        (["--precisions", "fp16"], "--precisions"),
        (["--shape", "12by3"], "--shape"),
        (["--name", "../escape"], "--name"),
        (["--ceiling-size", "2"], "--ceiling-size"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(make_checkpoint, tmp_path, args, needle):
    result = run([make_checkpoint("vgg16_bn"), *args, "--out", tmp_path])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_missing_checkpoint_exits_1(tmp_path):
    missing = tmp_path / "nope.pt"
    result = run([missing, "--out", tmp_path])
    assert result.exit_code == 1 and "not found" in result.stderr and "Traceback" not in result.output


def test_an_artifact_given_as_the_checkpoint_says_the_argument_order(tmp_path):
    """A user may type `dlcv-bench fcn8s.onnx` first; the reference checkpoint must come first."""
    model = colour_model(tmp_path / "fcn8s.onnx")
    result = run([model, "--out", tmp_path])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "dlcv-bench takes the PyTorch checkpoint first" in result.stderr and "fcn8s.onnx" in result.stderr


def test_row_backends_follow_the_suffix_or_the_named_backends():
    from dlcv.bench.candidates import row_backends, row_device
    from dlcv.runtime.backends import get_backend

    onnx, plan = Path("m.onnx"), Path("m.plan")
    # by default every installed backend that opens the file and runs on the device: both peers on the CPU
    assert [c.name for c in row_backends(onnx, None)] == ["onnxruntime", "openvino"]
    assert [c.name for c in row_backends(onnx, None, "cuda")] == ["onnxruntime"]  # OpenVINO runs on the CPU only
    assert [c.name for c in row_backends(onnx, ("openvino",))] == ["openvino"]
    assert [c.name for c in row_backends(onnx, ("openvino", "onnxruntime"))] == ["onnxruntime", "openvino"]
    assert row_backends(onnx, ("torch", "tensorrt")) == [] and [c.name for c in row_backends(plan, None)] == ["tensorrt"]
    assert row_device(get_backend("tensorrt"), "cpu") == "cuda" and row_device(get_backend("tensorrt"), "cuda:1") == "cuda:1"
    assert row_device(get_backend("openvino"), "cpu") == "cpu"


def test_one_onnx_file_on_two_backends(make_checkpoint, digits, tmp_path):
    from dlcv.runtime.backends import get_backend

    ckpt = make_checkpoint("vgg16_bn")
    result = run([ckpt, "--backends", "onnxruntime,openvino", "--precisions", "fp32", "--data", digits,
                  "--batch-sizes", "1,2", "--images", "6", "--out", tmp_path, "--name", "two", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = load_records(tmp_path / "two")
    assert {r["label"] for r in records} == {"torch eager fp32", "onnxruntime fp32", "openvino fp32"}
    ort, ov = by_label(records, "onnxruntime fp32"), by_label(records, "openvino fp32")
    assert ort[0]["artifact"] == ov[0]["artifact"] and ov[0]["artifact"].endswith("vgg16_bn.onnx")
    for r in ov:
        assert r["error"] is None and r["backend"] == "openvino" and r["latency_p50_ms"] > 0
        assert r["backend_version"] == get_backend("openvino").library_version()
        assert r["top1_agreement"] == 1.0 and r["max_abs_logit_error"] < 1e-4
    assert ort[0]["backend_version"] == get_backend("onnxruntime").library_version()
    assert any(r["e2e_total_ms_per_image"] for r in ov)
