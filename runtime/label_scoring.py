"""The scorers of ``dlcv-infer --labels``: predictions against ground truth, by the label rules.

The ground truth itself is read where the dataset layouts live
(:mod:`dlcv.runtime.datasets.ground_truth` for classification; segmentation masks are index
PNGs named like the images).

Rules (:data:`LABEL_RULES`, also written into metrics.json): an image without a label is
predicted but not scored; a label map whose size differs from its image is not scored and is
listed; an unreadable label file is not scored and is listed; label values outside
``0..num_classes-1`` (other than ``ignore_index``) are skipped and counted by
:class:`~dlcv.runtime.task_metrics.ConfusionMatrix` (``out_of_range``). Every rule is counted
exactly; the lists of affected images keep the first :data:`REPORT_EXAMPLES` of each kind, so
a run over a huge folder keeps its memory flat. Metrics come only from
:mod:`dlcv.runtime.task_metrics`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .datasets.ground_truth import ClassificationLabels
from .listing import ImageFile
from .metadata import ArtifactMetadata
from .task_metrics import ClassificationMetrics, ConfusionMatrix

TOPK = 5
REPORT_EXAMPLES = 1000  # images named per label problem in metrics.json (counts are exact)

LABEL_RULES = {
    "missing": "no label for the image: it is predicted and its outputs are written, but it is not scored",
    "size_mismatch": "label map size differs from the image size: the image is not scored (labels are never resized)",
    "unreadable": "label file cannot be read or decoded: the image is not scored",
    "invalid": "classification label is neither a class index nor a class name: the image is not scored",
    "out_of_range": (
        "label values outside 0..num_classes-1 (other than ignore_index) are skipped and counted "
        "(ConfusionMatrix.out_of_range); a classification image with such a label is not scored"
    ),
}


class _Examples:
    """An exact count and the first :data:`REPORT_EXAMPLES` entries of one kind of label problem."""

    def __init__(self) -> None:
        self.count = 0
        self.items: list[Any] = []

    def add(self, entry: Any, weight: int = 1) -> None:
        self.count += weight
        if len(self.items) < REPORT_EXAMPLES:
            self.items.append(entry)

    def merge(self, other: "_Examples") -> None:
        """Add another tally of the same kind (counts exact; examples up to the limit)."""
        self.count += other.count
        self.items.extend(other.items[: max(0, REPORT_EXAMPLES - len(self.items))])

    def report(self, **extra: Any) -> dict[str, Any]:
        key = (lambda e: e) if all(isinstance(e, str) for e in self.items) else (lambda e: e["image"])
        out = {"count": self.count, **extra, "images": sorted(self.items, key=key)}
        if self.count > len(self.items) and all(isinstance(e, str) for e in self.items):
            out["images_listed"] = len(self.items)
        return out


class SegmentationScorer:
    """Accumulates one :class:`ConfusionMatrix` over the scored images, applying :data:`LABEL_RULES`."""

    def __init__(self, metadata: ArtifactMetadata):
        self.metadata = metadata
        self.confusion = ConfusionMatrix(
            metadata.num_classes, ignore_index=metadata.ignore_index, exclude=metadata.exclude_classes
        )
        self.scored = 0
        self.missing = _Examples()
        self.size_mismatch = _Examples()
        self.unreadable = _Examples()
        self.out_of_range = _Examples()

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray | None, gt_error: str | None, gt_missing: bool) -> None:
        """Score one image's predicted label map against its ground truth (or record why not)."""
        if gt_missing:
            self.missing.add(name)
            return
        if gt_error is not None:
            self.unreadable.add({"image": name, "reason": gt_error})
            return
        assert gt is not None
        if gt.shape != pred.shape:
            self.size_mismatch.add({"image": name, "image_hw": list(pred.shape), "label_hw": list(gt.shape)})
            return
        before = self.confusion.out_of_range
        self.confusion.update(gt, pred)
        self.scored += 1
        if self.confusion.out_of_range > before:
            self.out_of_range.add({"image": name, "pixels": self.confusion.out_of_range - before})

    def merge(self, other: "SegmentationScorer") -> "SegmentationScorer":
        """Add another scorer's counts (e.g. one Ray actor's images); returns self."""
        self.confusion.merge(other.confusion)
        self.scored += other.scored
        for kind in ("missing", "size_mismatch", "unreadable", "out_of_range"):
            getattr(self, kind).merge(getattr(other, kind))
        return self

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        metrics = self.confusion.compute()
        metrics.update(
            class_names=list(self.metadata.class_names),
            ignore_index=self.metadata.ignore_index,
            images_scored=self.scored,
        )
        out_of_range = self.out_of_range.report(unit="pixels")
        out_of_range["count"] = self.confusion.out_of_range
        report = {
            "rules": {k: LABEL_RULES[k] for k in ("missing", "size_mismatch", "unreadable", "out_of_range")},
            "images_scored": self.scored,
            "missing": self.missing.report(),
            "size_mismatch": self.size_mismatch.report(),
            "unreadable": self.unreadable.report(),
            "out_of_range": out_of_range,
        }
        return metrics, report


def ranking_scores(ranked: Sequence[int], num_classes: int) -> np.ndarray:
    """Scores (1×num_classes) whose descending order starts with ``ranked`` (best first).

    Lets a resumed run score an image from the top-k classes an earlier run wrote to
    predictions.csv: top-1 and top-k of these scores equal those of the original logits.
    """
    scores = np.zeros((1, num_classes), dtype=np.float64)
    for position, index in enumerate(ranked):
        scores[0, index] = len(ranked) - position
    return scores


class ClassificationScorer:
    """Top-1/top-5/per-class accuracy via :class:`ClassificationMetrics`, applying :data:`LABEL_RULES`."""

    def __init__(self, metadata: ArtifactMetadata, labels: ClassificationLabels):
        self.metadata = metadata
        self.labels = labels
        self.metrics = ClassificationMetrics(metadata.num_classes, topk=(1, TOPK))
        self.missing = _Examples()
        self.invalid = _Examples()
        self.out_of_range = _Examples()

    def add(self, item: ImageFile, scores: np.ndarray) -> None:
        """Score one image from its logits (or any scores with the same order), or record why not."""
        status, index, raw = self.labels.take(item)
        if status == "missing":
            self.missing.add(item.name)
            return
        if status == "invalid":
            self.invalid.add({"image": item.name, "label": raw})
            return
        assert index is not None
        if not 0 <= index < self.metadata.num_classes:
            self.out_of_range.add({"image": item.name, "label": index})
        self.metrics.update(np.array([index]), np.asarray(scores).reshape(1, -1))  # out-of-range: counted, not scored

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        metrics = self.metrics.compute()
        metrics["class_names"] = list(self.metadata.class_names)
        unused = self.labels.unused()
        out_of_range = self.out_of_range.report(unit="images")
        out_of_range["count"] = self.metrics.confusion.out_of_range
        report = {
            "rules": {k: LABEL_RULES[k] for k in ("missing", "invalid", "out_of_range")},
            "source": str(self.labels.source),
            "images_scored": metrics["count"],
            "missing": self.missing.report(),
            "invalid": self.invalid.report(),
            "out_of_range": out_of_range,
            "labels_without_image": {"count": len(unused), "examples": unused[:20]},
        }
        return metrics, report
