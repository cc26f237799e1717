"""Task-level parity of a backend against PyTorch FP32, with bootstrap confidence intervals.

The comparison itself is the runtime's comparator (:func:`dlcv.runtime.comparator.compare`):
logit-level numbers (max/mean absolute error, label agreement, near-tie disagreements, with
each precision record's near-tie margin) come from its result; task metrics from
:class:`dlcv.runtime.task_metrics.ConfusionMatrix`. What this module adds:

- **Per-image confusion counts** against the truth (:class:`ImageCellsObserver`, fed by the
  comparator's per-batch steps): the dataset's labels when there are any, otherwise the
  reference's own labels (then the reference scores 1.0 and a delta is the candidate's loss
  of agreement). Stored sparsely (only non-zero cells).
- **Paired bootstrap over images**: resample the images with replacement ``resamples``
  times; in each resample sum the per-image counts of the reference and of the candidate,
  score both (mIoU and per-class IoU for segmentation, top-1 and per-class accuracy for
  classification) and take the difference. The 95 % interval is the 2.5th and 97.5th
  percentile of those differences. Seeded, so a run reproduces its intervals exactly.
- **The flat record fields** of one row (:func:`parity_record`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from dlcv.runtime.comparator import CandidateResult, Step
from dlcv.runtime.task import get_task
from dlcv.runtime.task_metrics import ConfusionMatrix, confusion_from_dict

CONFIDENCE = 0.95


@dataclass(frozen=True)
class ImageCells:
    """Per-image confusion counts, sparse: cell ``n*truth + pred`` of image ``image`` holds ``counts``."""

    num_classes: int
    num_images: int
    cells: np.ndarray
    counts: np.ndarray
    image: np.ndarray

    def matrix(self, image_weights: np.ndarray | None = None) -> np.ndarray:
        """The n×n confusion matrix over all images, each counted ``image_weights[i]`` times."""
        n = self.num_classes
        weights = self.counts if image_weights is None else self.counts * image_weights[self.image]
        return np.bincount(self.cells, weights=weights, minlength=n * n).reshape(n, n).astype(np.int64)


class CellCollector:
    """Builds :class:`ImageCells` one image at a time (counting by :class:`ConfusionMatrix`)."""

    def __init__(self, num_classes: int, ignore_index: int | None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._cells: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._images = 0

    def add(self, truth, pred) -> None:
        """One image: its truth (label map or class index) and its predicted labels."""
        cm = ConfusionMatrix(self.num_classes, ignore_index=self.ignore_index)
        cm.update(np.asarray(truth), np.asarray(pred))
        flat = cm.matrix.reshape(-1)
        nonzero = np.flatnonzero(flat)
        self._cells.append(nonzero)
        self._counts.append(flat[nonzero])
        self._images += 1

    def finish(self) -> ImageCells:
        sizes = [len(c) for c in self._cells]
        empty = np.zeros(0, dtype=np.int64)
        return ImageCells(
            num_classes=self.num_classes,
            num_images=self._images,
            cells=np.concatenate(self._cells) if self._cells else empty,
            counts=np.concatenate(self._counts) if self._counts else empty,
            image=np.repeat(np.arange(self._images), sizes) if self._cells else empty,
        )


def task_scores(matrix: np.ndarray, task: str, exclude=()) -> tuple[float, np.ndarray]:
    """(headline, per class) of a confusion matrix: (mIoU, IoU) for segmentation (the metrics
    module's rule, excluded classes left out of the mean), (top-1, per-class accuracy) otherwise."""
    cm = confusion_from_dict({"confusion_matrix": matrix}, ignore_index=None, exclude=exclude)
    if get_task(task).per_pixel:
        return cm.compute()["miou"], cm.iou()
    total = matrix.sum()
    return (float(np.trace(matrix) / total) if total else float("nan")), cm.class_accuracy()


@dataclass(frozen=True)
class DeltaEstimate:
    """Candidate minus reference on the task metric, with a paired bootstrap interval."""

    metric: str  # "miou" | "top1"
    per_class_metric: str  # "iou" | "accuracy"
    reference: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    per_class_delta: np.ndarray
    per_class_ci_low: np.ndarray
    per_class_ci_high: np.ndarray
    resamples: int
    seed: int


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100.0 * (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN classes stay NaN
        low, high = np.nanpercentile(samples, [tail, 100.0 - tail], axis=0)
    return low, high


def bootstrap_delta(
    reference: ImageCells,
    candidate: ImageCells,
    task: str,
    *,
    exclude=(),
    resamples: int = 1000,
    seed: int = 0,
    level: float = CONFIDENCE,
) -> DeltaEstimate:
    """Point estimate and paired-bootstrap interval of candidate − reference (module docstring)."""
    if (reference.num_images, reference.num_classes) != (candidate.num_images, candidate.num_classes):
        raise ValueError("reference and candidate must be counted over the same images and classes")
    ref_score, ref_class = task_scores(reference.matrix(), task, exclude)
    cand_score, cand_class = task_scores(candidate.matrix(), task, exclude)
    n = reference.num_images
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    class_deltas = np.empty((resamples, reference.num_classes))
    for b in range(resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n)
        r, r_class = task_scores(reference.matrix(weights), task, exclude)
        c, c_class = task_scores(candidate.matrix(weights), task, exclude)
        deltas[b] = c - r
        class_deltas[b] = c_class - r_class
    low, high = _percentiles(deltas[:, None], level)
    class_low, class_high = _percentiles(class_deltas, level)
    return DeltaEstimate(
        metric=get_task(task).headline_key,
        per_class_metric=get_task(task).per_class_key,
        reference=ref_score,
        candidate=cand_score,
        delta=cand_score - ref_score,
        ci_low=float(low[0]),
        ci_high=float(high[0]),
        per_class_delta=cand_class - ref_class,
        per_class_ci_low=class_low,
        per_class_ci_high=class_high,
        resamples=resamples,
        seed=seed,
    )


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class ImageCellsObserver:
    """A comparator observer: per-image confusion counts of the reference and of each candidate
    against the truth (the batch's labels, or the reference's own labels where it has none)."""

    def __init__(self, num_classes: int, ignore_index: int | None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reference = CellCollector(num_classes, ignore_index)
        self.candidates: dict[str, CellCollector] = {}

    def __call__(self, step: Step) -> None:
        truth = step.reference.labels if step.batch.labels is None else step.batch.labels
        for t, p in zip(truth, step.reference.labels):
            self.reference.add(t, p)
        for name, output in step.outputs.items():
            collector = self.candidates.setdefault(name, CellCollector(self.num_classes, self.ignore_index))
            for t, p in zip(truth, output.labels):
                collector.add(t, p)


def parity_record(
    result: CandidateResult, reference: ImageCells, candidate: ImageCells, task: str, *,
    truth_source: str, exclude=(), resamples: int = 1000, seed: int = 0,
) -> dict:  # fmt: skip
    """Flat record fields of one row (see :data:`dlcv.bench.records.PARITY_KEYS`): the
    comparator's parity numbers and the bootstrapped task-metric delta."""
    s = result.parity
    delta = bootstrap_delta(reference, candidate, task, exclude=exclude, resamples=resamples, seed=seed)
    m, pc = delta.metric, delta.per_class_metric
    return {
        "parity_images": reference.num_images,
        "parity_truth": truth_source,
        "tie_margin": s["tie_margin"],
        "max_abs_logit_error": _number(s["max_abs_logit_error"]),
        "mean_abs_logit_error": _number(s["mean_abs_logit_error"]),
        "max_abs_reference_logit": _number(s["max_abs_reference_logit"]),
        "nonfinite_logits": s["nonfinite_logits"],
        get_task(task).agreement_key: _number(s["agreement"]),
        "agreement_miou": _number(s["agreement_miou"]),
        "disagreements": s["disagreements"],
        "near_tie_disagreements": s["near_tie_disagreements"],
        "near_tie_share": _number(s["near_tie_share"]),
        f"{m}_reference": _number(delta.reference),
        f"{m}_candidate": _number(delta.candidate),
        f"{m}_delta": _number(delta.delta),
        f"{m}_delta_ci_low": _number(delta.ci_low),
        f"{m}_delta_ci_high": _number(delta.ci_high),
        f"per_class_{pc}_delta": _listed(delta.per_class_delta),
        f"per_class_{pc}_delta_ci_low": _listed(delta.per_class_ci_low),
        f"per_class_{pc}_delta_ci_high": _listed(delta.per_class_ci_high),
        "bootstrap_resamples": resamples,
    }
