"""The figure functions write PNGs of their stated size; the confusion helpers against brute force."""
from __future__ import annotations

import numpy as np
import pytest

from dlcv.analyze import figures
from dlcv.analyze.confusion import most_confused_pairs, row_normalised
from dlcv.analyze.curves import read_log
from dlcv.analyze.report import Section, Table, render_markdown
from dlcv.analyze.runs import first_middle_last, open_run
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.task_metrics import ConfusionMatrix

from .conftest import assert_png, write_log_csv


@pytest.mark.parametrize("num_classes", [3, 25])
def test_heatmap_and_bars_are_pngs_of_the_stated_size(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    names = [f"class number {i}" for i in range(num_classes)]
    matrix = rng.random((num_classes, num_classes))
    matrix[1] = np.nan  # a class that never occurs
    heat = figures.confusion_heatmap(matrix, names, tmp_path / "heat.png", "a title " * 20)
    assert (heat.width, heat.height) == figures.heatmap_size(num_classes)
    assert_png(heat.path, heat.width, heat.height)
    np.testing.assert_array_equal(heat.values, matrix)
    values = [None] + list(rng.random(num_classes - 1))
    bars = figures.class_bars(values, names, tmp_path / "bars.png", "IoU", "IoU")
    assert (bars.width, bars.height) == figures.bars_size(num_classes)
    assert_png(bars.path, bars.width, bars.height)
    assert np.isnan(bars.values[0]) and np.allclose(bars.values[1:], values[1:])


@pytest.mark.parametrize("panels,num_classes", [(1, 4), (3, 30)])
def test_embedding_panels_size(tmp_path, panels, num_classes):
    rng = np.random.default_rng(0)
    drawn = [figures.EmbeddingPanel(f"epoch {k}", rng.normal(size=(40, 2)), rng.integers(0, num_classes, 40)) for k in range(panels)]
    fig = figures.embedding_panels(drawn, [str(c) for c in range(num_classes)], tmp_path / "e.png", "t-SNE")
    assert (fig.width, fig.height) == figures.embedding_size(panels, num_classes)
    assert_png(fig.path, fig.width, fig.height)


def test_grids_and_probabilities_size(tmp_path):
    rng = np.random.default_rng(1)
    tiles = [[rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(4)] for _ in range(3)]
    palette = rng.integers(0, 256, (5, 3))
    grid = figures.image_grid(tiles, [["a", "b", "c", "d"]] * 3, tmp_path / "g.png", "grid", ([str(i) for i in range(5)], palette))
    assert (grid.width, grid.height) == figures.grid_size(3, 4, figures.legend_rows(5))
    assert_png(grid.path, grid.width, grid.height)
    probs = rng.dirichlet(np.ones(7), size=(2,))
    fig = figures.probability_comparison([t[0] for t in tiles[:2]], ["x", "y"], probs, probs[::-1], list("abcdefg"), tmp_path / "p.png", "p")
    assert (fig.width, fig.height) == figures.probabilities_size(2)
    assert_png(fig.path, fig.width, fig.height)


def test_training_curves_from_log_csv(tmp_path):
    log = read_log(write_log_csv(tmp_path / "log.csv", [1, 2, 3, 4]))
    assert log.epochs.tolist() == [1, 2, 3, 4] and log.best_epoch() == 4
    from dlcv.analyze.curves import curves_section

    section = curves_section(log, "segmentation", tmp_path)
    (fig,) = section.figures
    assert (fig.width, fig.height) == figures.CURVES_SIZE
    assert_png(fig.path, *figures.CURVES_SIZE)
    assert "best val mIoU 0.4000 at epoch 4" in section.paragraphs[0]


def test_log_csv_problems_are_named(tmp_path):
    bad = tmp_path / "log.csv"
    bad.write_text("epoch,loss\n1,2\n")
    with pytest.raises(DlcvError, match="lacks the column"):
        read_log(bad)
    bad.write_text("epoch,train_loss,val_loss,val_metric,lr\n1,x,1,1,1\n")
    with pytest.raises(DlcvError, match="line 2"):
        read_log(bad)


def test_normalised_rows_and_most_confused_pairs_match_brute_force():
    rng = np.random.default_rng(3)
    gt, pred = rng.integers(0, 5, 400), rng.integers(0, 5, 400)
    gt[gt == 4] = 3  # class 4 never occurs in the ground truth
    cm = ConfusionMatrix(5, ignore_index=None)
    cm.update(gt, pred)
    norm = row_normalised(cm)
    for i in range(5):
        total = np.sum(gt == i)
        for j in range(5):
            want = np.sum((gt == i) & (pred == j)) / total if total else np.nan
            np.testing.assert_equal(norm[i, j], want)
    pairs = most_confused_pairs(cm, count=30)
    brute = sorted(((int(np.sum((gt == i) & (pred == j))), i, j) for i in range(5) for j in range(5) if i != j), key=lambda t: -t[0])
    brute = [t for t in brute if t[0] > 0]
    assert [p.count for p in pairs] == [t[0] for t in brute]
    assert all(p.true != p.predicted and p.count == np.sum((gt == p.true) & (pred == p.predicted)) for p in pairs)


def test_run_folder_listing(tmp_path):
    (tmp_path / "epochs").mkdir()
    for e in (10, 2, 1, 30):
        (tmp_path / "epochs" / f"epoch_{e:03d}.pt").write_bytes(b"x")
    (tmp_path / "epochs" / "notes.pt").write_bytes(b"x")
    (tmp_path / "log.csv").write_text("epoch\n")
    run = open_run(tmp_path)
    assert [s.epoch for s in run.snapshots] == [1, 2, 10, 30]
    assert [s.epoch for s in first_middle_last(run.snapshots)] == [1, 2, 30]
    assert first_middle_last([1, 2]) == [1, 2]
    with pytest.raises(DlcvError, match="none of log.csv"):
        open_run(tmp_path / "epochs")


def test_report_links_are_relative(tmp_path):
    fig = figures.FigureFile(tmp_path / "sub" / "a.png", 10, 20, "cap|tion")
    text = render_markdown("T", [Section("S", ("para",), (Table(("a", "b"), (("1", "x|y"),)),), (fig,))], tmp_path)
    assert "![cap\\|tion](sub/a.png)" in text and "(10×20 px)" in text and "| 1 | x\\|y |" in text
