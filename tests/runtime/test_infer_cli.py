"""dlcv-infer as a user runs it: options, exit codes, messages, and no torch anywhere."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.runtime.cli import main
from dlcv.runtime.imageio import read_label_map

try:
    from .onnx_fixtures import blocks_image, save_image
except ImportError:
    from onnx_fixtures import blocks_image, save_image  # type: ignore[no-redef]


def _images(folder: Path, bad: bool = True) -> Path:
    g = np.array([[0, 1, 2], [3, 4, 1]])
    save_image(folder / "één.png", blocks_image(g, (2, 2)))
    save_image(folder / "two.png", blocks_image(g.T, (3, 1)))
    if bad:
        (folder / "zero.png").write_bytes(b"")
        (folder / "text.png").write_text("not an image", encoding="utf-8")
    return folder


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_some_failures_exit_0_and_are_reported(seg_model, tmp_path):
    images = _images(tmp_path / "my images")
    result = _invoke("--engine", seg_model, images, "--out", tmp_path / "out", "--batch-size", "2", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "2 processed" in result.stdout and "2 failed" in result.stdout
    assert "warning: skipped zero.png" in result.stderr
    np.testing.assert_array_equal(
        read_label_map(tmp_path / "out" / "één.png"), np.kron([[0, 1, 2], [3, 4, 1]], np.ones((2, 2), int))
    )
    with open(tmp_path / "out" / "errors.csv", newline="", encoding="utf-8") as f:
        assert sorted(r["file"] for r in csv.DictReader(f)) == ["text.png", "zero.png"]
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert record["counts"]["failed"] == 2 and record["timing"]["throughput_img_s"] > 0


def test_strict_exits_1_when_any_image_failed(seg_model, tmp_path):
    images = _images(tmp_path / "images")
    result = _invoke("--engine", seg_model, images, "--out", tmp_path / "out", "--strict", "--quiet")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 2 image(s) failed and --strict")
    assert "warning" not in result.stderr and "Traceback" not in result.output
    assert (tmp_path / "out" / "two.png").is_file()  # the good images are still written


def test_exit_1_when_no_image_succeeded(seg_model, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "zero.png").write_bytes(b"")
    result = _invoke("--engine", seg_model, tmp_path / "images", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 1 and "no image was processed successfully" in result.stderr


def test_refuses_to_overwrite_without_the_flag(seg_model, tmp_path):
    images = _images(tmp_path / "images", bad=False)
    assert _invoke("--engine", seg_model, images, "--out", tmp_path / "out", "-q").exit_code == 0
    result = _invoke("--engine", seg_model, images, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: ") and "already exists" in line and "--overwrite" in line and "\n" not in line
    assert _invoke("--engine", seg_model, images, "--out", tmp_path / "out", "-q", "--overwrite").exit_code == 0


def test_classification_with_labels_prints_and_writes_metrics(cls_model, tmp_path):
    colours = {"1_0.png": (200, 40, 60), "2_1.png": (50, 210, 90), "2_2.png": (70, 80, 220)}
    for name, colour in colours.items():
        save_image(tmp_path / "val" / name, np.full((5, 6, 3), colour, np.uint8))
    result = _invoke("--engine", cls_model, tmp_path / "val", "--labels", tmp_path / "val", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "top1 0.6667" in result.stdout
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert record["metrics"]["top1"] == pytest.approx(2 / 3) and record["metrics"]["top5"] == 1.0
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image_name"], r["label"]) for r in rows] == [("1_0.png", "1"), ("2_1.png", "2"), ("2_2.png", "3")]


def test_usage_and_model_errors_are_one_line(seg_model, tmp_path):
    images = _images(tmp_path / "images", bad=False)
    result = _invoke("--engine", seg_model, images, "--batch-size", "0")
    assert result.exit_code == 2
    result = _invoke("--engine", tmp_path / "nope.onnx", images, "--out", tmp_path / "out")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "not found" in result.stderr
    result = _invoke("--engine", seg_model, images, "--out", images)
    assert result.exit_code == 2 and "images folder" in result.stderr
    result = _invoke("--engine", seg_model, images, "--labels", images / "één.png", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "folder of index-PNG masks" in result.stderr


_NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, runpy, sys

    attempts = []

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                attempts.append(name)
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    sys.argv = ["dlcv-infer", *sys.argv[1:]]
    try:
        runpy.run_module("dlcv.runtime.cli", run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code
    assert "torch" not in sys.modules, "torch was imported"
    assert not attempts, f"torch imports were attempted: {attempts}"
    print("NO_TORCH_OK", code)
    sys.exit(code)
    """
)


def test_the_cli_never_imports_torch(seg_model, tmp_path):
    images = _images(tmp_path / "images")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, "--engine", str(seg_model), str(images), "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "NO_TORCH_OK 0" in proc.stdout and (out / "two.png").is_file()


def test_console_script_runs_as_a_user_would(seg_model, tmp_path):
    script = Path(sys.executable).with_name("dlcv-infer")
    assert script.is_file(), f"{script}: the dlcv-infer console script is missing; reinstall dlcv (pip install -e .)"
    images = _images(tmp_path / "images")
    proc = subprocess.run([str(script), "--engine", str(seg_model), str(images), "--out", str(tmp_path / "o"),
                           "--strict"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "--strict" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "o" / "één_color.png").is_file()


def test_backend_option_chooses_the_runtime_apart_from_the_suffix(seg_model, tmp_path):
    images = _images(tmp_path / "images", bad=False)
    result = _invoke("--engine", seg_model, images, "--backend", "onnxruntime", "--out", tmp_path / "o", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))["backend"] == "onnxruntime"

    unknown = _invoke("--engine", seg_model, images, "--backend", "onnxrt", "--out", tmp_path / "u")
    assert unknown.exit_code == 2 and unknown.stderr.count("\n") == 1
    assert "did you mean 'onnxruntime'" in unknown.stderr and "tensorrt" in unknown.stderr
    wrong = _invoke("--engine", seg_model, images, "--backend", "tensorrt", "--out", tmp_path / "w")
    assert wrong.exit_code == 2 and wrong.stderr.count("\n") == 1
    assert "tensorrt backend does not open .onnx models" in wrong.stderr
    assert not (tmp_path / "u").exists() and not (tmp_path / "w").exists()
