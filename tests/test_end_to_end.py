"""The spine as a user runs it: dlcv-train -> dlcv-export -> dlcv-infer, as subprocesses, on files on disk."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlcv.train.data.demo import DemoSizes, demo_root

BIN = Path(sys.executable).parent


def run(*args, cwd=None):
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_train_export_infer_on_demo_data(tmp_path):
    data = demo_root("segmentation", tmp_path / "cache", DemoSizes(seg=(16, 6, 6), cls=(1, 1, 1)))
    run("dlcv-train", "fcn8s", "--data", data, "--epochs", 1, "--batch-size", 8, "--width", 0.0625,
        "--lr", 1e-4, "--out", tmp_path / "run", "--quiet")  # fmt: skip
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "last.pt").is_file()
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss,val_loss,val_metric") and len(log) == 2

    export = run("dlcv-export", tmp_path / "run" / "best.pt", "--out", tmp_path / "art")
    onnx_path = tmp_path / "art" / "fcn8s.onnx"
    assert onnx_path.is_file() and "agreement" in export.stdout.lower()

    results = {}
    for name, engine in (("onnx", onnx_path), ("torch", tmp_path / "run" / "best.pt")):
        out = tmp_path / f"pred-{name}"
        run("dlcv-infer", "--engine", engine, data / "test", "--labels", data / "testannot", "--out", out, "--quiet")
        masks = sorted(p.name for p in out.glob("*.png") if not p.stem.endswith("_color"))
        assert masks == sorted(p.name for p in (data / "test").glob("*.png"))
        results[name] = json.loads((out / "metrics.json").read_text())["metrics"]
    # the deployed model scores like the PyTorch original on the same files
    assert results["onnx"]["miou"] == pytest.approx(results["torch"]["miou"], abs=1e-6)
    assert results["onnx"]["per_class_iou"] == pytest.approx(results["torch"]["per_class_iou"], abs=1e-6)
