"""What a confusion matrix shows: the normalised heatmap, per-class bars, the most-confused pairs.

Everything is read from one :class:`~dlcv.runtime.task_metrics.ConfusionMatrix` (rows: ground truth,
columns: prediction), the object metrics.json is written from, so the figures' numbers are the
file's. numpy + matplotlib only (no torch): a deployed run's metrics.json is drawn with this.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dlcv.runtime.task import get_task
from dlcv.runtime.task_metrics import ConfusionMatrix

from .figures import FigureFile, class_bars, confusion_heatmap
from .report import Section, Table

TOP_PAIRS = 10


@dataclass(frozen=True)
class ConfusedPair:
    """Ground-truth class ``true`` predicted as ``predicted``: ``count`` samples (pixels for
    segmentation), ``share`` of the ground-truth class."""

    true: int
    predicted: int
    count: int
    share: float


def row_normalised(confusion: ConfusionMatrix) -> np.ndarray:
    """Each ground-truth row divided by its total (NaN rows for classes that never occur)."""
    m = confusion.matrix.astype(np.float64)
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rows > 0, m / np.where(rows > 0, rows, 1), np.nan)


def most_confused_pairs(confusion: ConfusionMatrix, count: int = TOP_PAIRS) -> list[ConfusedPair]:
    """The off-diagonal cells with the most samples, largest first (ties: by share, then by index)."""
    m = confusion.matrix
    shares = row_normalised(confusion)
    cells = [
        ConfusedPair(i, j, int(m[i, j]), float(shares[i, j]))
        for i, j in zip(*np.nonzero(m))
        if i != j
    ]
    cells.sort(key=lambda p: (-p.count, -p.share, p.true, p.predicted))
    return cells[:count]


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.4f}"


def headline_lines(task: str, metrics: Mapping, unit: str) -> list[str]:
    """The headline numbers of a ``compute()`` result, as Markdown list lines."""
    if get_task(task).per_pixel:
        keys = (("miou", "mIoU"), ("pixel_accuracy", "pixel accuracy"), ("mean_class_accuracy", "mean class accuracy"))
    else:
        keys = (("top1", "top-1"), ("top5", "top-5"), ("mean_class_accuracy", "mean class accuracy"))
    lines = [f"- {label}: {_fmt(metrics.get(key))}" for key, label in keys if key in metrics]
    lines.append(f"- {unit} scored: {metrics.get('count', 'n/a')}")
    excluded = metrics.get("excluded_classes") or []
    if excluded:
        lines.append(f"- classes left out of the means: {', '.join(map(str, excluded))}")
    return lines


def confusion_section(
    confusion: ConfusionMatrix,
    class_names: Sequence[str],
    task: str,
    out: Path,
    *,
    title: str,
    prefix: str = "",
    metrics: Mapping | None = None,
) -> Section:
    """The confusion heatmap, per-class IoU (segmentation) or accuracy (classification) bars, the
    most-confused pairs and the headline numbers, all from ``confusion``."""
    unit = get_task(task).unit
    computed = confusion.compute()
    heatmap = confusion_heatmap(
        row_normalised(confusion), class_names, out / f"{prefix}confusion_matrix.png",
        f"{title}: confusion matrix, rows normalised ({computed['count']} {unit})",
    )  # fmt: skip
    if get_task(task).per_pixel:
        bars = class_bars(computed["per_class_iou"], class_names, out / f"{prefix}per_class_iou.png",
                          f"{title}: IoU per class", "IoU")  # fmt: skip
    else:
        bars = class_bars(computed["per_class_accuracy"], class_names, out / f"{prefix}per_class_accuracy.png",
                          f"{title}: accuracy per class (recall)", "accuracy")  # fmt: skip
    pairs = most_confused_pairs(confusion)
    table = Table(
        ("ground truth", "predicted as", unit, "share of the class"),
        tuple((class_names[p.true], class_names[p.predicted], str(p.count), f"{100 * p.share:.1f} %") for p in pairs),
    )
    paragraphs = ["\n".join(headline_lines(task, metrics if metrics is not None else computed, unit))]
    paragraphs.append("Most-confused class pairs:" if pairs else "No confusions: every scored sample is on the diagonal.")
    figures: tuple[FigureFile, ...] = (heatmap, bars)
    return Section(title, tuple(paragraphs), (table,) if pairs else (), figures)
