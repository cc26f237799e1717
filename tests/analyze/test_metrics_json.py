"""A deployed run's metrics.json (written by dlcv-infer) is drawn without PyTorch, from its own numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcv.analyze import AnalyzeConfig, run_analysis
from dlcv.analyze.confusion import row_normalised
from dlcv.analyze.metrics_file import read_metrics_json, write_metrics_json
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.infer import InferConfig, run_inference
from dlcv.runtime.task_metrics import ClassificationMetrics, ConfusionMatrix
from tests.runtime.onnx_fixtures import SEG_COLOURS, SEG_NAMES, blocks_image, colour_model, save_image, save_mask

from .conftest import assert_report_shows_every_png

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def infer_metrics(tmp_path_factory) -> Path:
    """dlcv-infer's metrics.json for a colour-template model on 6 images whose masks are partly wrong."""
    root = tmp_path_factory.mktemp("infer")
    model = colour_model(root / "seg.onnx")
    rng = np.random.default_rng(5)
    for i in range(6):
        grid = rng.integers(0, len(SEG_COLOURS), size=(4, 4))
        save_image(root / "images" / f"im{i}.png", blocks_image(grid, (3, 3)))
        labels = np.kron(grid, np.ones((3, 3), dtype=grid.dtype))
        wrong = rng.random(labels.shape) < 0.25
        labels[wrong] = rng.integers(0, len(SEG_COLOURS), size=int(wrong.sum()))
        labels[0, 0] = 255  # ignored
        save_mask(root / "masks" / f"im{i}.png", labels)
    run_inference(InferConfig(engine=model, images=root / "images", labels=root / "masks", out=root / "out", progress=False))
    return root / "out" / "metrics.json"


def test_heatmap_and_bars_show_the_numbers_of_metrics_json(infer_metrics, tmp_path):
    result = run_analysis(AnalyzeConfig(target=infer_metrics, out=tmp_path, progress=False))
    record = json.loads(infer_metrics.read_text(encoding="utf-8"))["metrics"]
    heatmap, bars = result.sections[0].figures
    matrix = np.asarray(record["confusion_matrix"], dtype=np.float64)
    np.testing.assert_allclose(heatmap.values, matrix / matrix.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(bars.values, [np.nan if v is None else v for v in record["per_class_iou"]])
    assert list(read_metrics_json(infer_metrics).class_names) == list(SEG_NAMES)
    assert result.metrics_json is None
    assert_report_shows_every_png(tmp_path)


def test_metrics_json_path_runs_without_torch(infer_metrics, tmp_path):
    script = (
        "import sys\n"
        "from dlcv.analyze.cli import main\n"
        "main(sys.argv[1:], standalone_mode=False)\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'dlcv.train', 'sklearn') if m in sys.modules)\n"
        "print('loaded:', heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, str(infer_metrics), "--out", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout, done.stdout
    pngs = assert_report_shows_every_png(tmp_path)
    assert {p.name for p in pngs} == {"confusion_matrix.png", "per_class_iou.png"}


def test_written_metrics_json_reads_back_as_the_same_confusion(tmp_path):
    rng = np.random.default_rng(0)
    metrics = ClassificationMetrics(4)
    metrics.update(rng.integers(0, 4, 50), rng.normal(size=(50, 4)))
    computed = metrics.compute()
    path = write_metrics_json(tmp_path / "metrics.json", "classification", computed, ["a", "b", "c", "d"], checkpoint="x.pt")
    record = read_metrics_json(path)
    assert record.task == "classification" and record.class_names == ("a", "b", "c", "d")
    np.testing.assert_array_equal(record.confusion.matrix, metrics.confusion.matrix)
    np.testing.assert_array_equal(row_normalised(record.confusion), row_normalised(metrics.confusion))
    empty = ConfusionMatrix(3).compute()  # NaN metrics are written as null (strict JSON)
    text = write_metrics_json(tmp_path / "empty.json", "segmentation", empty, ["a", "b", "c"]).read_text()
    assert "NaN" not in text and json.loads(text)["metrics"]["miou"] is None


def test_metrics_json_problems_say_what_to_do(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"task": "segmentation", "metrics": None}))
    with pytest.raises(DlcvError, match="--labels"):
        read_metrics_json(path)
    path.write_text(json.dumps({"metrics": {"miou": 0.5}}))
    with pytest.raises(DlcvError, match="confusion_matrix"):
        read_metrics_json(path)
    path.write_text("{not json")
    with pytest.raises(DlcvError, match="not a readable JSON"):
        read_metrics_json(path)
    with pytest.raises(DlcvError, match="need a checkpoint"):
        run_analysis(AnalyzeConfig(target=_valid(tmp_path), data="demo", out=tmp_path / "o"))


def _valid(folder: Path) -> Path:
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([0, 0]))
    return write_metrics_json(folder / "ok.json", "segmentation", cm.compute(), ["x", "y"])
