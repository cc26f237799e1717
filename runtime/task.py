"""The tasks a model can have (docs/architecture.md contract 8): one record each, used everywhere.

A :class:`Task` says what a model of that task answers and how dlcv judges and writes it: the
shape of its labels (one per pixel or one per image), its headline metric (key in metric
records and display name), its per-class metric, the unit agreement counts, the metric object
that scores it, the in-graph head ``dlcv-export --argmax`` gives it, and the shape of its
logits. Code that behaves differently per task reads these attributes; the task's name is
what checkpoints and metadata store (``"segmentation"``/``"classification"``), and
:func:`get_task` turns it into the record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import DlcvError, unknown_choice
from .task_metrics import ClassificationMetrics, ConfusionMatrix


@dataclass(frozen=True)
class Task:
    """One task. ``per_pixel``: the model labels every pixel (an H×W map, written as
    ``<stem>.png``) rather than the whole image (one class, a row of ``predictions.csv``)."""

    name: str
    per_pixel: bool
    headline_key: str  # the metric record's key of the headline metric ("miou")
    headline_name: str  # its display name ("mIoU")
    secondary_key: str  # the second metric reports show beside it
    secondary_name: str
    per_class_key: str  # per-class metric: metrics["per_class_" + key]
    per_class_name: str
    unit: str  # what agreement and confusion counts count ("pixels")
    agreement_name: str  # one counted thing, as parity tables name it ("pixel")
    agreement_key: str  # the benchmark record's key of the label agreement ("pixel_agreement")
    head_kind: str  # the in-graph head ``dlcv-export --argmax`` gives it (an OutputSpec kind)

    @property
    def label_ndim(self) -> int:
        """Dimensions of a batch of labels: N×H×W or N."""
        return 3 if self.per_pixel else 1

    @property
    def shape_text(self) -> str:
        """``"×H×W"`` or ``""``: a label batch's shape after ``N``, for messages."""
        return "×H×W" if self.per_pixel else ""

    def logits_shape(self, batch: int, num_classes: int, height: int, width: int) -> tuple[int, ...]:
        """The logits a model of this task returns for an N×3×H×W input."""
        return (batch, num_classes, height, width) if self.per_pixel else (batch, num_classes)

    def headline(self, metrics: Mapping[str, Any] | None) -> float | None:
        """The headline metric of a metric record (None without one)."""
        return None if metrics is None else float(metrics[self.headline_key])

    def new_metric(
        self, num_classes: int, ignore_index: int | None = 255, exclude: Iterable[int] = (), topk=(1, 5)
    ) -> ConfusionMatrix | ClassificationMetrics:
        """An empty metric accumulator of this task: a confusion matrix (ignore index and
        excluded classes honoured) or top-k accuracy."""
        if self.per_pixel:
            return ConfusionMatrix(num_classes, ignore_index=ignore_index, exclude=exclude)
        return ClassificationMetrics(num_classes, topk=topk)


SEGMENTATION = Task(
    "segmentation", per_pixel=True, headline_key="miou", headline_name="mIoU",
    secondary_key="pixel_accuracy", secondary_name="pixel accuracy", per_class_key="iou", per_class_name="IoU",
    unit="pixels", agreement_name="pixel", agreement_key="pixel_agreement",
    head_kind="labels",
)  # fmt: skip
CLASSIFICATION = Task(
    "classification", per_pixel=False, headline_key="top1", headline_name="top-1",
    secondary_key="mean_class_accuracy", secondary_name="mean class accuracy", per_class_key="accuracy",
    per_class_name="accuracy", unit="images", agreement_name="top-1", agreement_key="top1_agreement",
    head_kind="topk",
)  # fmt: skip

TASKS: dict[str, Task] = {t.name: t for t in (SEGMENTATION, CLASSIFICATION)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The record of ``name``; an unknown name is answered with the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise DlcvError(unknown_choice("task", str(name), TASKS)) from None
