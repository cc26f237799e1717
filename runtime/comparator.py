"""One comparator (docs/architecture.md contract 6): a reference and candidate models over the same batches.

Polygraphy's ``Comparator`` is the model: :func:`compare` runs the reference and every
candidate on each :class:`Batch` (inputs, optional labels), and returns a :class:`Comparison`:
per candidate the parity statistics against the reference (:class:`~dlcv.runtime.logit_parity.ParityStats`),
its task metric against the labels (mIoU or top-1, through :mod:`dlcv.runtime.task_metrics`, the
reference's too), and its verdict against its :class:`~dlcv.runtime.precision.Gate` (given, or
its precision record's default). Export verification, dlcv-bench and dlcv-analyze build the
inputs and format this result; what they need beyond the totals (per-shape rows, per-image
confusion counts, the most-disagreeing images) they read from the ``observe`` callback, which
sees every batch's outputs and per-batch parity, in order.

A model's output is logits (N×C or N×C×H×W float) or labels: an integer array, N×H×W /
N×1×H×W (an in-graph ArgMax) or N / N×k (an in-graph TopK, best first). Labels are compared as
labels (agreement, near ties, agreement mIoU, task metric), logits also by their error. The
reference must give logits. A candidate that raises is dropped from the remaining batches and
its result carries the exception; the reference raising ends the comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .errors import DlcvError, first_line
from .metadata import ArtifactMetadata
from .task import get_task
from .task_metrics import ClassificationMetrics, ConfusionMatrix
from .logit_parity import DEFAULT_TIE_MARGIN, ParityStats
from .precision import Gate, Precision, get_precision, percent

TOPK = (1, 5)


class Runner(Protocol):
    """What :func:`compare` runs: any backend (or adapter) with ``infer(N×3×H×W float32) -> output``."""

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Batch:
    """Model inputs (N×3×H×W float32), their ground truth where known (N×H×W label maps or N class
    indices), and optional per-image ids that observers get back (file names, dataset indices)."""

    inputs: np.ndarray
    labels: np.ndarray | Sequence | None = None
    ids: Sequence[Any] | None = None


@dataclass(frozen=True)
class Candidate:
    """One model compared with the reference.

    ``gate``: None = ``precision``'s default gate (for labelled or unlabelled batches), or no
    bar beyond finite logits without a precision. ``tie_margin``: None = ``precision``'s margin
    (FP32's without a precision).
    """

    name: str
    runner: Runner
    precision: Precision | None = None
    gate: Gate | None = None
    tie_margin: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.precision, str):
            object.__setattr__(self, "precision", get_precision(self.precision))

    def resolved_tie_margin(self) -> float:
        if self.tie_margin is not None:
            return float(self.tie_margin)
        return self.precision.tie_margin if self.precision is not None else DEFAULT_TIE_MARGIN

    def resolved_gate(self, labelled: bool) -> Gate:
        if self.gate is not None:
            return self.gate
        return self.precision.default_gate(labelled) if self.precision is not None else Gate()


@dataclass(frozen=True)
class Output:
    """What one model gave for a batch: ``values`` as returned, and the labels they mean
    (N×H×W or N; non-finite logits never win)."""

    values: np.ndarray
    labels: np.ndarray

    @property
    def is_labels(self) -> bool:
        return is_label_output(self.values)

    @property
    def logits(self) -> np.ndarray | None:
        return None if self.is_labels else self.values


def is_label_output(values: np.ndarray) -> bool:
    """Integer outputs are labels (an in-graph ArgMax/TopK); floating-point ones are logits."""
    return np.issubdtype(np.asarray(values).dtype, np.integer)


def model_output(values: np.ndarray, task: str) -> Output:
    """Wrap one model's raw output; see the module docstring for the shapes understood."""
    values = np.asarray(values)
    kind = get_task(task)
    if is_label_output(values):
        labels = values[:, 0] if values.ndim == kind.label_ndim + 1 else values
        if labels.ndim != kind.label_ndim:
            raise DlcvError(f"a {task} model's label output must be N{kind.shape_text} "
                            f"(or with a class axis of 1 / k), got shape {values.shape}")  # fmt: skip
        return Output(values, labels)
    if values.ndim != kind.label_ndim + 1:
        raise DlcvError(f"{task} logits must be N×C{kind.shape_text}, got shape {values.shape}")
    finite = np.isfinite(values)
    clean = values if finite.all() else np.where(finite, values, -np.inf)
    return Output(values, clean.argmax(axis=1))


def image_parity(reference: Output, candidate: Output) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the share of labels that differ (pixels; 0/1 for classification) and the
    largest absolute logit error (NaN-ignoring; NaN where the candidate gave labels)."""
    differ = reference.labels != candidate.labels
    n = differ.shape[0]
    share = differ.reshape(n, -1).mean(axis=1)
    if candidate.logits is None:
        return share, np.full(n, np.nan)
    error = np.abs(candidate.logits.astype(np.float64) - reference.values).reshape(n, -1)
    finite_rows = ~np.all(np.isnan(error), axis=1)
    worst = np.full(n, np.nan)
    if error.shape[1]:
        worst[finite_rows] = np.nanmax(error[finite_rows], axis=1)
    return share, worst


@dataclass(frozen=True)
class Step:
    """One batch as the observers see it: its number, the running index of its first image,
    the batch, the reference's output, and each candidate still running: its output and the
    batch's :class:`ParityStats` (already merged into the totals; read, do not update)."""

    index: int
    first_image: int
    batch: Batch
    reference: Output
    outputs: Mapping[str, Output]
    parity: Mapping[str, ParityStats]


Observer = Callable[[Step], None]


class TaskScore:
    """The task metric of one model against the labels: a ConfusionMatrix (segmentation, ignore
    index and excluded classes of the metadata) or ClassificationMetrics (top-1/top-5)."""

    def __init__(self, metadata: ArtifactMetadata):
        self.metadata = metadata
        self.metric: ConfusionMatrix | ClassificationMetrics | None = None

    def update(self, labels, output: Output) -> None:
        md = self.metadata
        labels = np.asarray(labels)
        task = get_task(md.task)
        if task.per_pixel:
            if self.metric is None:
                self.metric = task.new_metric(md.num_classes, md.ignore_index, md.exclude_classes)
            self.metric.update(labels, output.labels)
            return
        scores, ranks = _class_scores(output, md.num_classes)
        if self.metric is None:
            self.metric = task.new_metric(md.num_classes, topk=tuple(k for k in TOPK if k <= ranks))
        self.metric.update(labels, scores)

    def compute(self) -> dict | None:
        return None if self.metric is None else self.metric.compute()


def _class_scores(output: Output, num_classes: int) -> tuple[np.ndarray, int]:
    """Scores whose order gives the model's ranking, and how many ranks they hold: cleaned logits,
    or for a TopK output descending scores on its k classes (the rest below them)."""
    if output.logits is not None:
        return np.where(np.isfinite(output.logits), output.logits, -np.inf), num_classes
    ranked = output.values if output.values.ndim == 2 else output.values[:, None]
    k = ranked.shape[1]
    scores = np.zeros((ranked.shape[0], num_classes), dtype=np.float64)
    np.put_along_axis(scores, ranked.astype(np.int64), np.arange(k, 0, -1, dtype=np.float64)[None], axis=1)
    return scores, k


def judge(
    parity: Mapping[str, Any],
    gate: Gate,
    *,
    metric_delta: float | None = None,
    metric_name: str = "mIoU",
    reference_scale: float | None = None,
    where: str = "",
) -> tuple[str, ...]:
    """Why ``parity`` (a ``ParityStats.compute()`` record) misses ``gate``; empty when it passes.

    NaN/inf logits always fail. ``reference_scale``: the largest |reference logit| the error
    bound is relative to (default: the record's own). ``where`` names the part judged ("at 2x3x48x48").
    """
    at = f" at {where}" if where else ""
    failures = []
    if parity["nonfinite_logits"]:
        failures.append(f"{parity['nonfinite_logits']} NaN/inf logits{at}")
    elif gate.max_abs_error is not None and parity["num_logits"]:
        scale = parity["max_abs_reference_logit"] if reference_scale is None else reference_scale
        bound = gate.error_bound(scale)
        if not parity["max_abs_logit_error"] <= bound:
            failures.append(f"max abs logit error {parity['max_abs_logit_error']:.3e} > {bound:.3e}{at}")
    if gate.min_agreement is not None and not parity["agreement"] >= gate.min_agreement:
        failures.append(
            f"label agreement {100 * parity['agreement']:.3f}% < {percent(gate.min_agreement)}%{at} "
            f"({parity['disagreements']} of {parity['count']} labels differ, {parity['near_tie_disagreements']} near ties)"
        )
    if gate.max_metric_drop is not None and metric_delta is not None and not -metric_delta <= gate.max_metric_drop + 1e-12:
        failures.append(f"{metric_name} drop {-100 * metric_delta:.2f} pt > {100 * gate.max_metric_drop:.1f} pt{at}")
    return tuple(failures)


@dataclass(frozen=True)
class CandidateResult:
    """One candidate against the reference over every batch it ran on."""

    name: str
    parity: dict  # ParityStats.compute()
    metrics: dict | None  # its task metrics against the labels (None without labels)
    metric: float | None  # mIoU / top-1 of ``metrics``
    reference_metric: float | None
    gate: Gate
    failures: tuple[str, ...]
    error: Exception | None = None  # what it raised (then it ran on the batches before only)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def metric_delta(self) -> float | None:
        if self.metric is None or self.reference_metric is None:
            return None
        return self.metric - self.reference_metric


@dataclass(frozen=True)
class Comparison:
    """The comparator's result: the reference's metrics and one :class:`CandidateResult` per candidate."""

    task: str
    images: int
    batches: int
    labelled: bool  # every batch had labels (else no task metrics)
    reference_metrics: dict | None
    candidates: tuple[CandidateResult, ...] = field(default_factory=tuple)

    @property
    def metric_name(self) -> str:
        return get_task(self.task).headline_name

    @property
    def reference_metric(self) -> float | None:
        return get_task(self.task).headline(self.reference_metrics)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.candidates)

    def __getitem__(self, name: str) -> CandidateResult:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(name)


def compare(
    reference: Runner,
    candidates: Sequence[Candidate],
    batches: Iterable[Batch],
    metadata: ArtifactMetadata,
    *,
    observe: Observer | Sequence[Observer] = (),
) -> Comparison:
    """Run ``reference`` and every candidate on each batch; parity, task metrics and verdicts.

    ``metadata`` says what the outputs mean (task, classes, ignore index, excluded classes).
    ``observe`` (one callable or several) is called once per batch, in order, after every model
    ran on it (see :class:`Step`).
    """
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise DlcvError(f"candidate names must be unique, got {names}")
    observers = (observe,) if callable(observe) else tuple(observe)
    task = metadata.task
    totals = [ParityStats(c.resolved_tie_margin()) for c in candidates]
    reference_score = TaskScore(metadata)
    scores = [TaskScore(metadata) for _ in candidates]
    errors: list[Exception | None] = [None] * len(candidates)
    labelled, images, count = True, 0, 0
    for index, batch in enumerate(batches):
        labelled = labelled and batch.labels is not None
        ref = model_output(reference.infer(batch.inputs), task)
        if ref.logits is None:
            raise DlcvError("the reference model gives labels; the comparison needs its logits")
        if not np.all(np.isfinite(ref.values)):
            raise DlcvError("the reference logits contain NaN or infinity; the reference model itself is broken")
        if labelled:
            reference_score.update(batch.labels, ref)
        outputs: dict[str, Output] = {}
        parity: dict[str, ParityStats] = {}
        for i, candidate in enumerate(candidates):
            if errors[i] is not None:
                continue
            try:
                out = model_output(candidate.runner.infer(batch.inputs), task)
                stats = ParityStats(totals[i].tie_margin)
                if out.logits is None:
                    stats.update_labels(ref.values, out.labels)
                else:
                    stats.update(ref.values, out.logits)
                if labelled:
                    scores[i].update(batch.labels, out)
            except Exception as exc:  # a candidate's failure, not the comparison's
                errors[i] = exc
                continue
            totals[i].merge(stats)
            outputs[candidate.name], parity[candidate.name] = out, stats
        step = Step(index, images, batch, ref, outputs, parity)
        for observer in observers:
            observer(step)
        images += int(ref.values.shape[0])
        count = index + 1
    reference_metrics = reference_score.compute() if labelled and count else None
    reference_metric = get_task(task).headline(reference_metrics)
    results = []
    for candidate, total, score, error in zip(candidates, totals, scores, errors):
        stats = total.compute()
        metrics = score.compute() if reference_metrics is not None and error is None else None
        metric = get_task(task).headline(metrics)
        gate = candidate.resolved_gate(labelled and count > 0)
        delta = None if metric is None or reference_metric is None else metric - reference_metric
        if error is not None:
            failures: tuple[str, ...] = (f"{type(error).__name__}: {first_line(error)}",)
        else:
            failures = judge(stats, gate, metric_delta=delta, metric_name=get_task(task).headline_name)
        results.append(CandidateResult(candidate.name, stats, metrics, metric, reference_metric, gate, failures, error))
    return Comparison(task, images, count, labelled and count > 0, reference_metrics, tuple(results))
