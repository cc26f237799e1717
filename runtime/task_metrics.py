"""Confusion-matrix metrics (numpy only): the one implementation training, export and inference use.

mIoU follows docs/architecture.md, "Metrics": one confusion matrix accumulated over the whole set with
``np.bincount(n * gt + pred)``, IoU = tp / (tp + fp + fn) per class, mean over the classes
that occur (nanmean). Rows are ground truth, columns are predictions.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import DlcvError


class ConfusionMatrix:
    """Accumulates an n×n confusion matrix; ``compute`` gives segmentation/classification metrics.

    ``ignore_index`` pixels are skipped. ``exclude`` lists classes left out of the mean
    (their IoU is still reported), e.g. the land-cover set's "unknown".
    Ground-truth values outside ``0..n-1`` (other than ``ignore_index``) are counted in
    ``out_of_range`` and skipped, never scored as a class.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, exclude: Iterable[int] = ()):
        if num_classes < 1:
            raise DlcvError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.exclude = tuple(sorted(set(int(c) for c in exclude)))
        bad = [c for c in self.exclude if not 0 <= c < num_classes]
        if bad:
            raise DlcvError(f"excluded classes {bad} are outside 0..{num_classes - 1}")
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.out_of_range = 0

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add a batch of ground-truth and predicted labels (any equal shapes)."""
        gt = np.asarray(gt).reshape(-1).astype(np.int64, copy=False)
        pred = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
        if gt.shape != pred.shape:
            raise DlcvError(f"ground truth has {gt.size} labels but the prediction has {pred.size}")
        n = self.num_classes
        valid = (gt >= 0) & (gt < n)
        if self.ignore_index is not None:
            ignored = gt == self.ignore_index
            self.out_of_range += int(np.count_nonzero(~valid & ~ignored))
        else:
            self.out_of_range += int(np.count_nonzero(~valid))
        if np.any((pred[valid] < 0) | (pred[valid] >= n)):
            raise DlcvError(f"predicted labels outside 0..{n - 1}")
        self.matrix += np.bincount(n * gt[valid] + pred[valid], minlength=n * n).reshape(n, n)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (same classes) into this one; returns self."""
        if other.num_classes != self.num_classes:
            raise DlcvError(f"cannot merge confusion matrices of {other.num_classes} and {self.num_classes} classes")
        self.matrix += other.matrix
        self.out_of_range += other.out_of_range
        return self

    def reset(self) -> None:
        self.matrix[:] = 0
        self.out_of_range = 0

    def iou(self) -> np.ndarray:
        """IoU per class (NaN for a class absent from both ground truth and predictions)."""
        h = self.matrix.astype(np.float64)
        tp = np.diag(h)
        denom = h.sum(axis=1) + h.sum(axis=0) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / np.where(denom > 0, denom, 1), np.nan)

    def class_accuracy(self) -> np.ndarray:
        """Recall per class: tp / ground-truth count (NaN where the class never occurs)."""
        h = self.matrix.astype(np.float64)
        rows = h.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rows > 0, np.diag(h) / np.where(rows > 0, rows, 1), np.nan)

    def _scored(self, values: np.ndarray) -> np.ndarray:
        keep = np.ones(self.num_classes, dtype=bool)
        keep[list(self.exclude)] = False
        return values[keep]

    def compute(self) -> dict:
        """Pixel (or top-1) accuracy, per-class IoU and accuracy, mIoU, mean class accuracy."""
        total = int(self.matrix.sum())
        iou = self.iou()
        acc = self.class_accuracy()
        scored_iou = self._scored(iou)
        scored_acc = self._scored(acc)
        return {
            "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
            "miou": float(np.nanmean(scored_iou)) if np.any(~np.isnan(scored_iou)) else float("nan"),
            "mean_class_accuracy": float(np.nanmean(scored_acc)) if np.any(~np.isnan(scored_acc)) else float("nan"),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
            "per_class_accuracy": [None if np.isnan(v) else float(v) for v in acc],
            "count": total,
            "out_of_range_labels": self.out_of_range,
            "excluded_classes": list(self.exclude),
            "confusion_matrix": self.matrix.tolist(),  # rows: ground truth, columns: prediction
        }


class ClassificationMetrics:
    """Top-1 via a :class:`ConfusionMatrix` plus top-k counts, from logits or scores."""

    def __init__(self, num_classes: int, topk: Sequence[int] = (1, 5)):
        self.confusion = ConfusionMatrix(num_classes, ignore_index=None)
        self.topk = tuple(k for k in topk if k <= num_classes)
        self.topk_hits = {k: 0 for k in self.topk}

    def update(self, gt: np.ndarray, scores: np.ndarray) -> None:
        """Add labels (N,) and scores or logits (N, num_classes)."""
        gt = np.asarray(gt, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[0] != gt.size:
            raise DlcvError(f"scores of shape {scores.shape} do not match {gt.size} labels")
        order = np.argsort(-scores, axis=1, kind="stable")
        self.confusion.update(gt, order[:, 0])
        valid = (gt >= 0) & (gt < self.confusion.num_classes)
        for k in self.topk:
            self.topk_hits[k] += int(np.any(order[valid, :k] == gt[valid, None], axis=1).sum())

    def merge(self, other: "ClassificationMetrics") -> "ClassificationMetrics":
        self.confusion.merge(other.confusion)
        for k in self.topk:
            self.topk_hits[k] += other.topk_hits[k]
        return self

    def compute(self) -> dict:
        """top1, top5 (where num_classes ≥ 5), per-class accuracy and mean class accuracy."""
        base = self.confusion.compute()
        n = base["count"]
        out = {f"top{k}": (self.topk_hits[k] / n if n else float("nan")) for k in self.topk}
        out.update(
            per_class_accuracy=base["per_class_accuracy"],
            mean_class_accuracy=base["mean_class_accuracy"],
            count=n,
            out_of_range_labels=base["out_of_range_labels"],
            confusion_matrix=base["confusion_matrix"],
        )
        return out


def confusion_from_dict(result: dict, ignore_index: int | None = None, exclude: Iterable[int] = ()) -> ConfusionMatrix:
    """Rebuild a :class:`ConfusionMatrix` from a ``compute()`` result (e.g. read from metrics.json)."""
    matrix = np.asarray(result["confusion_matrix"], dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise DlcvError(f"confusion_matrix must be square, got shape {matrix.shape}")
    cm = ConfusionMatrix(matrix.shape[0], ignore_index, exclude)
    cm.matrix[:] = matrix
    cm.out_of_range = int(result.get("out_of_range_labels", 0))
    return cm
