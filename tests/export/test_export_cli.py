"""dlcv-export: thin CLI over export_onnx; user mistakes give one line and exit 1, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.export.cli import main, parse_size
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.errors import DlcvUsageError


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code, *needles):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    for needle in needles:
        assert str(needle) in errors[0]


def test_export_writes_the_file_and_prints_the_table(make_checkpoint, tmp_path):
    result = run([make_checkpoint("vgg16_bn"), "--out", tmp_path])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for step in ("loading checkpoint", "exporting vgg16_bn", "checking the graph (onnx.checker)", "verifying against PyTorch"):
        assert step in out
    assert "max abs err" in out and "mean abs err" in out and "agreement" in out
    assert "2x3x32x32" in out and "3x3x32x32" in out and "PASS" in out
    assert f"wrote {tmp_path / 'vgg16_bn.onnx'}" in out and "dynamo exporter" in out
    assert (tmp_path / "vgg16_bn.onnx").is_file()


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.pt"
    assert_one_line_error(run([missing]), 1, missing, "not found")


def test_not_a_checkpoint(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    assert_one_line_error(run([garbage, "--out", tmp_path]), 1, garbage)
    wrong = tmp_path / "model.onnx"
    wrong.write_bytes(b"")
    assert_one_line_error(run([wrong, "--out", tmp_path]), 1, wrong, "expected a dlcv checkpoint")
    assert not (tmp_path / "model.onnx.onnx").exists()


def test_tampered_verification_exits_1(make_checkpoint, tmp_path, monkeypatch):
    real_run = OnnxRuntimeBackend._run
    monkeypatch.setattr(OnnxRuntimeBackend, "_run", lambda self, b: real_run(self, b) + np.float32(0.5))
    result = run([make_checkpoint("vgg16_bn"), "--out", tmp_path])
    assert_one_line_error(result, 1, "vgg16_bn.onnx", "failed verification", "max abs logit error")
    assert "FAIL" in result.stdout  # the table is shown before the error
    assert not (tmp_path / "vgg16_bn.onnx").exists()


def test_usage_errors_exit_2(make_checkpoint, tmp_path):
    ckpt = make_checkpoint("fcn32s")
    assert_one_line_error(run([ckpt, "--min-agreement", "1.01"]), 2, "--min-agreement")
    assert_one_line_error(run([ckpt, "--input-size", "6y4"]), 2, "--input-size")
    assert_one_line_error(run([ckpt, "--static", "--out", tmp_path]), 2, "--input-size")


def test_parse_size():
    assert parse_size("224x160") == (224, 160)
    assert parse_size("64") == (64, 64)
    assert parse_size(None) is None
    with pytest.raises(DlcvUsageError):
        parse_size("big")


def test_help_lists_the_options():
    out = run(["--help"]).output
    for option in ("--out", "--opset", "--static", "--atol", "--min-agreement", "--debug", "--fp16", "--int8", "--calib",
                   "--calib-count", "--val", "--strict", "--trt", "--precision", "--min-shape", "--opt-shape",
                   "--max-shape", "--workspace", "--timing-cache", "--version-compatible"):  # fmt: skip
        assert option in out


def test_precision_and_engine_usage_errors_exit_2(make_checkpoint, tmp_path):
    ckpt = make_checkpoint("fcn32s")
    assert_one_line_error(run([ckpt, "--int8", "--out", tmp_path]), 2, "--int8 needs --calib DIR")
    assert_one_line_error(run([ckpt, "--trt", "--precision", "int8", "--out", tmp_path]), 2, "--trt --precision int8 needs --calib")
    assert_one_line_error(run([ckpt, "--max-shape", "1x3x64x64"]), 2, "--max-shape only apply with --trt")
    assert_one_line_error(run([ckpt, "--trt", "--opt-shape", "1x3x64"]), 2, "--opt-shape must look like BxCxHxW")
    assert_one_line_error(run([ckpt, "--trt", "--workspace", "0"]), 2, "--workspace")
    assert_one_line_error(run([ckpt, "--fp16", "--fp16-min-agreement", "2"]), 2, "--fp16-min-agreement")
    assert_one_line_error(run([ckpt, "--static", "--input-size", "32x32", "--int8", "--calib", tmp_path]), 2, "--static")
    assert list(tmp_path.iterdir()) == []


def test_parse_shape():
    from dlcv.export.cli import parse_shape

    assert parse_shape("4x3x256x256", "--opt-shape") == (4, 3, 256, 256)
    assert parse_shape(None, "--opt-shape") is None
    for bad in ("4x3x256", "0x3x8x8", "axbxcxd"):
        with pytest.raises(DlcvUsageError, match="--opt-shape"):
            parse_shape(bad, "--opt-shape")


def test_console_entry_point_one_line_error(tmp_path):
    missing = tmp_path / "absent.pt"
    proc = subprocess.run([sys.executable, "-m", "dlcv.export.cli", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {missing}: checkpoint not found"
