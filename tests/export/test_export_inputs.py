"""dlcv-export's dataset inputs: ``demo`` is taken wherever a dataset is (``--calib``, ``--val``), as
dlcv-train and dlcv-analyze take it, and a missing input folder is refused before the FP32 export
and its verification run."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dlcv.export.cli import main


def test_calib_and_val_accept_demo(make_checkpoint, tmp_path):
    checkpoint = make_checkpoint("fcn8s", num_classes=11)  # the demo segmentation set's classes
    result = CliRunner().invoke(main, [str(checkpoint), "--out", str(tmp_path), "--int8", "--calib", "demo", "--val", "demo",
                                       "--calib-count", "4", "--eval-count", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fcn8s.int8.onnx").is_file()
    assert "int8" in result.output and "demo" in result.output


@pytest.mark.parametrize("option", ["--calib", "--val"])
def test_a_missing_input_folder_is_refused_before_the_export(make_checkpoint, tmp_path, option):
    checkpoint = make_checkpoint("fcn8s", num_classes=11)
    extra = ["--int8"] + (["--calib", "demo"] if option != "--calib" else [])
    result = CliRunner().invoke(main, [str(checkpoint), "--out", str(tmp_path / "out"), *extra, option,
                                       str(tmp_path / "nowhere")])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"{option} {tmp_path / 'nowhere'}: not found" in result.output
    assert "exporting" not in result.output and "verifying" not in result.output
    assert not (tmp_path / "out" / "fcn8s.onnx").exists()


def test_a_calibration_folder_without_images_is_refused_before_the_export(make_checkpoint, tmp_path):
    checkpoint = make_checkpoint("fcn8s", num_classes=11)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    result = CliRunner().invoke(main, [str(checkpoint), "--out", str(tmp_path / "out"), "--int8", "--calib",
                                       str(tmp_path / "empty")])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "holds no images to calibrate INT8" in result.output and "exporting" not in result.output
