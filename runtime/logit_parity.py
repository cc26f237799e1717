"""Parity in task terms (docs/architecture.md contract 6): a deployed model's logits against the reference's.

numpy only. :class:`ParityStats` accumulates, over any number of batches, how far a
candidate backend's logits are from the reference (PyTorch FP32) logits on the same inputs:

- ``max_abs_logit_error`` / ``mean_abs_logit_error``: over every logit compared;
- ``agreement``: the share of labels that match: per pixel for segmentation (N×C×H×W
  logits, labels = argmax over C), per image (top-1) for classification (N×C);
- ``agreement_miou``: the mean over classes of IoU(reference labels, candidate labels), so a
  rare class that flips shows even when the pixel agreement is 0.9999;
- ``near_tie_disagreements``: disagreements where the reference's top-2 logit margin is below
  ``tie_margin``: label flips that rounding noise alone can cause, as opposed to real changes.

The default ``tie_margin`` (:data:`DEFAULT_TIE_MARGIN`, FP32's record: 1e-3 logit units) sits
about a thousand times above the FP32-vs-FP32 noise measured between PyTorch and onnxruntime
on the VGG/FCN models (max error ~1e-6 of the largest logit), so an FP32 disagreement outside
a near-tie is a real defect. Other precisions use their record's margin
(:attr:`dlcv.runtime.precision.Precision.tie_margin`), of the order of their own error.

A candidate that outputs labels (an in-graph ArgMax) is added with :meth:`ParityStats.update_labels`:
the label statistics as above, no logit errors.

Non-finite candidate logits (NaN, ±inf) count in ``nonfinite_logits`` and make
``max_abs_logit_error`` infinite, so a tolerance check cannot pass on NaN.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DlcvError
from .task_metrics import ConfusionMatrix
from .precision import FP32

DEFAULT_TIE_MARGIN = FP32.tie_margin


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Largest minus second-largest value along axis 1 (``inf`` when there is one class)."""
    c = logits.shape[1]
    if c < 2:
        return np.full(logits.shape[:1] + logits.shape[2:], np.inf, dtype=np.float64)
    part = np.partition(logits, (c - 2, c - 1), axis=1)
    return part[:, c - 1].astype(np.float64) - part[:, c - 2].astype(np.float64)


class ParityStats:
    """Mergeable accumulator of reference-vs-candidate logit parity; see the module docstring."""

    def __init__(self, tie_margin: float = DEFAULT_TIE_MARGIN):
        if not tie_margin >= 0:
            raise DlcvError(f"tie_margin must be a non-negative number, got {tie_margin}")
        self.tie_margin = float(tie_margin)
        self.task: str | None = None
        self.num_classes: int | None = None
        self.max_abs_error = 0.0
        self.sum_abs_error = 0.0
        self.num_logits = 0
        self.nonfinite = 0
        self.max_abs_reference = 0.0
        self.count = 0
        self.agreed = 0
        self.near_tie_disagreements = 0
        self.confusion: ConfusionMatrix | None = None

    def _bind(self, task: str, num_classes: int) -> None:
        if self.task is None:
            self.task, self.num_classes = task, num_classes
            self.confusion = ConfusionMatrix(num_classes, ignore_index=None)
        elif (self.task, self.num_classes) != (task, num_classes):
            raise DlcvError(
                f"parity statistics mix {self.task} logits of {self.num_classes} classes "
                f"with {task} logits of {num_classes} classes"
            )

    def _check_reference(self, ref: np.ndarray) -> None:
        if ref.ndim not in (2, 4) or ref.shape[1] < 1:
            raise DlcvError(f"logits must be N×C (classification) or N×C×H×W (segmentation), got shape {ref.shape}")
        if not np.all(np.isfinite(ref)):
            raise DlcvError("the reference logits contain NaN or infinity; the reference model itself is broken")
        self._bind("segmentation" if ref.ndim == 4 else "classification", int(ref.shape[1]))
        if ref.size:
            self.max_abs_reference = max(self.max_abs_reference, float(np.abs(ref.astype(np.float64)).max()))

    def update(self, ref: np.ndarray, test: np.ndarray) -> "ParityStats":
        """Add one batch: reference and candidate logits of equal shape (N×C or N×C×H×W)."""
        ref = np.asarray(ref)
        test = np.asarray(test)
        if ref.shape != test.shape:
            raise DlcvError(f"reference logits have shape {ref.shape} but the candidate's have {test.shape}")
        self._check_reference(ref)
        ref64 = ref.astype(np.float64, copy=False)
        test64 = test.astype(np.float64, copy=False)
        finite = np.isfinite(test64)
        n_bad = int(finite.size - np.count_nonzero(finite))
        err = np.abs(np.where(finite, test64, 0.0) - ref64)
        self.nonfinite += n_bad
        if err.size:
            self.max_abs_error = max(self.max_abs_error, float(err.max()))
        if n_bad:
            self.max_abs_error = math.inf
        self.sum_abs_error += float(err[finite].sum())
        self.num_logits += int(np.count_nonzero(finite))
        # NaN is the largest value for argmax; map non-finite candidates to -inf so a NaN
        # logit never wins, and a pixel whose every logit is NaN counts as a disagreement.
        test_labels = np.where(finite, test64, -np.inf).argmax(axis=1)
        self._count_labels(ref, test_labels, ~finite.any(axis=1))  # an all-NaN position counts as class 0
        return self

    def update_labels(self, ref: np.ndarray, test_labels: np.ndarray) -> "ParityStats":
        """Add one batch of a candidate that outputs labels (an in-graph ArgMax/top-1): reference
        logits N×C(×H×W) and candidate labels N(×H×W). Only the label statistics grow; the logit
        errors stay unmeasured (NaN) unless other batches compared logits."""
        ref = np.asarray(ref)
        test_labels = np.asarray(test_labels)
        if test_labels.shape != ref.shape[:1] + ref.shape[2:]:
            raise DlcvError(f"reference logits have shape {ref.shape}, so labels of shape "
                            f"{ref.shape[:1] + ref.shape[2:]} were expected, not {test_labels.shape}")  # fmt: skip
        self._check_reference(ref)
        if np.any((test_labels < 0) | (test_labels >= ref.shape[1])):
            raise DlcvError(f"the candidate's labels fall outside 0..{ref.shape[1] - 1}")
        self._count_labels(ref, test_labels, np.zeros(test_labels.shape, dtype=bool))
        return self

    def _count_labels(self, ref: np.ndarray, test_labels: np.ndarray, invalid: np.ndarray) -> None:
        ref_labels = ref.argmax(axis=1)
        agree = (ref_labels == test_labels) & ~invalid
        self.count += int(agree.size)
        self.agreed += int(np.count_nonzero(agree))
        tie = top2_margin(ref) < self.tie_margin
        self.near_tie_disagreements += int(np.count_nonzero(~agree & tie))
        assert self.confusion is not None
        self.confusion.update(ref_labels, test_labels)

    def merge(self, other: "ParityStats") -> "ParityStats":
        """Add another accumulator's counts into this one (same task, classes and margin); returns self."""
        if other.tie_margin != self.tie_margin:
            raise DlcvError(f"cannot merge parity statistics with tie margins {self.tie_margin} and {other.tie_margin}")
        if other.task is None:
            return self
        self._bind(other.task, other.num_classes)  # type: ignore[arg-type]
        self.max_abs_error = max(self.max_abs_error, other.max_abs_error)
        self.sum_abs_error += other.sum_abs_error
        self.num_logits += other.num_logits
        self.nonfinite += other.nonfinite
        self.max_abs_reference = max(self.max_abs_reference, other.max_abs_reference)
        self.count += other.count
        self.agreed += other.agreed
        self.near_tie_disagreements += other.near_tie_disagreements
        assert self.confusion is not None and other.confusion is not None
        self.confusion.merge(other.confusion)
        return self

    def compute(self) -> dict:
        """Flat record of the parity numbers (NaN where nothing was compared)."""
        nan = float("nan")
        compared = self.num_logits + self.nonfinite  # logits compared (none for label-only candidates)
        disagreements = self.count - self.agreed
        miou = nan
        if self.confusion is not None and self.count:
            iou = self.confusion.iou()
            miou = float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else nan
        return {
            "task": self.task,
            "count": self.count,
            "agreement": self.agreed / self.count if self.count else nan,
            "disagreements": disagreements,
            "near_tie_disagreements": self.near_tie_disagreements,
            "near_tie_share": self.near_tie_disagreements / disagreements if disagreements else nan,
            "tie_margin": self.tie_margin,
            "agreement_miou": miou,
            "max_abs_logit_error": self.max_abs_error if compared else nan,
            "mean_abs_logit_error": self.sum_abs_error / self.num_logits if self.num_logits else (math.inf if self.nonfinite else nan),
            "max_abs_reference_logit": self.max_abs_reference if self.count else nan,
            "num_logits": self.num_logits + self.nonfinite,
            "nonfinite_logits": self.nonfinite,
        }
