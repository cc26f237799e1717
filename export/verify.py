"""Verification of a written artifact against the PyTorch FP32 reference, in task terms.

This module builds the inputs and formats the result; the comparison itself is the runtime's
comparator (:func:`dlcv.runtime.comparator.compare`). Both models see the same inputs, built by
:func:`dlcv.runtime.preprocess.preprocess_image` from deterministic synthetic RGB images (or
real images from a folder). Two views:

- :func:`verify_backends`: one artifact at the verification shapes, one parity row per shape,
  each shape judged against the error and agreement bars (the FP32 file's check);
- :func:`compare_precisions`: every written precision (and an engine) on one evaluation set
  (:class:`EvalSet`, labelled when it can be), one row per artifact, each judged by its
  precision's gate.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from dlcv.runtime.backends.base import Backend
from dlcv.runtime.comparator import Batch, Candidate, Comparison, Step, compare, judge
from dlcv.runtime.datasets import open_split
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file, read_image
from dlcv.runtime.precision import Gate, Precision
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image
from dlcv.runtime.task import get_task

Shape = tuple[int, int, int]  # (batch, height, width) of the model input
Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def synthetic_image(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A deterministic RGB uint8 image with structure at several scales (not flat noise)."""
    coarse = rng.uniform(0, 255, size=(max(2, height // 8), max(2, width // 8), 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 20, size=(height, width, 3)).astype(np.float32)
    return np.clip(smooth + fine, 0, 255).astype(np.uint8)


def read_image_folder(folder: str | os.PathLike, limit: int = 64) -> list[np.ndarray]:
    """Up to ``limit`` images of ``folder`` (sorted by name), read as RGB uint8."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: image folder not found")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))[:limit]
    if not paths:
        raise DlcvError(f"{folder}: holds no image files (.png, .jpg, ...) to verify with")
    return [read_image(p) for p in paths]


def spec_for_size(spec: PreprocessSpec, height: int, width: int) -> PreprocessSpec:
    """The deployment preprocessing when it yields ``height``×``width``; otherwise the same
    colour order and normalisation with a plain resize to that size (to probe dynamic axes)."""
    if spec.resize != "none" and tuple(spec.size or ()) == (height, width):
        return spec
    return dataclasses.replace(spec, resize="resize", size=(height, width), resize_shorter=None)


def make_batch(
    spec: PreprocessSpec,
    shape: Shape,
    *,
    seed: int = 0,
    images: Sequence[np.ndarray] | None = None,
    start: int = 0,
) -> np.ndarray:
    """A float32 N×3×H×W batch: real ``images`` (cycled from ``start``) or synthetic ones."""
    n, h, w = shape
    use = spec_for_size(spec, h, w)
    rng = np.random.default_rng([seed, n, h, w])
    out = np.empty((n, 3, h, w), dtype=np.float32)
    for i in range(n):
        rgb = images[(start + i) % len(images)] if images else synthetic_image(h, w, rng)
        x, _ = preprocess_image(rgb, use)
        out[i] = x
    return out


def _error(value: float) -> str:
    """A logit error cell: ``-`` for a model that gives labels (NaN: nothing compared)."""
    return "-" if value != value else f"{value:.3e}"


@dataclass(frozen=True)
class ShapeParity:
    """Parity at one input shape (N×3×H×W)."""

    shape: tuple[int, int, int, int]
    stats: dict


@dataclass(frozen=True)
class VerificationReport:
    """The parity table of one artifact against the reference, and the verdict."""

    reference: str
    candidate: str
    rows: tuple[ShapeParity, ...]
    overall: dict
    atol: float
    min_agreement: float
    tolerance: float  # the max-error bar actually applied: atol * max(1, largest |reference logit|)
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> str:
        """The parity table, one row per shape and one for all shapes together."""
        unit = get_task(self.overall["task"]).unit if self.overall.get("task") else "images"
        header = (
            f"{'input shape':<18}{'max abs err':>13}{'mean abs err':>14}{'agreement':>12}"
            f"{unit:>10}{'disagree':>10}{'near-tie':>10}"
        )
        lines = [f"parity: {self.candidate} vs {self.reference}", header, "-" * len(header)]

        def row(name: str, s: dict) -> str:
            return (
                f"{name:<18}{_error(s['max_abs_logit_error']):>13}{_error(s['mean_abs_logit_error']):>14}"
                f"{s['agreement']:>12.6f}{s['count']:>10d}{s['disagreements']:>10d}{s['near_tie_disagreements']:>10d}"
            )

        lines += [row("x".join(map(str, r.shape)), r.stats) for r in self.rows]
        if len(self.rows) > 1:
            lines.append(row("all", self.overall))
        verdict = "PASS" if self.passed else "FAIL"
        error = self.overall["max_abs_logit_error"]
        error_text = "labels only, no logits" if error != error else f"{error:.3e} (allowed {self.tolerance:.3e})"
        lines.append(
            f"{verdict}: max abs error {error_text}, agreement {self.overall['agreement']:.6f} (required {self.min_agreement})"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "passed": self.passed,
            "atol": self.atol,
            "tolerance": self.tolerance,
            "min_agreement": self.min_agreement,
            "failures": list(self.failures),
            "overall": dict(self.overall),
            "shapes": [{"shape": list(r.shape), **r.stats} for r in self.rows],
        }


def verify_backends(
    reference: Backend,
    candidate: Backend,
    shapes: Sequence[Shape],
    *,
    atol: float,
    min_agreement: float,
    tie_margin: float | None = None,
    seed: int = 0,
    images: Sequence[np.ndarray] | None = None,
) -> VerificationReport:
    """Compare ``candidate`` with ``reference`` at ``shapes`` (one batch each); every shape must
    pass the error bar (``atol``, relative beyond logits of magnitude 1) and ``min_agreement``.
    ``tie_margin``: None = the candidate's precision record's."""
    md = reference.metadata
    batches, start = [], 0
    for shape in shapes:
        batches.append(Batch(make_batch(md.preprocess, shape, seed=seed, images=images, start=start)))
        start += shape[0]
    gate = Gate(min_agreement=min_agreement, max_abs_error=atol)
    per_shape: list[ShapeParity] = []

    def record_shape(step: Step) -> None:
        if "candidate" in step.parity:
            per_shape.append(ShapeParity(tuple(step.batch.inputs.shape), step.parity["candidate"].compute()))

    subject = Candidate("candidate", candidate, precision=candidate.precision, gate=gate, tie_margin=tie_margin)
    result = compare(reference, [subject], batches, md, observe=record_shape)["candidate"]
    if result.error is not None:
        raise result.error
    overall = result.parity
    failures = tuple(
        f for row in per_shape
        for f in judge(row.stats, gate, reference_scale=overall["max_abs_reference_logit"], where="x".join(map(str, row.shape)))
    )  # fmt: skip
    return VerificationReport(
        reference=f"{reference.name} {reference.precision}",
        candidate=f"{candidate.name} {candidate.precision}",
        rows=tuple(per_shape),
        overall=overall,
        atol=atol,
        min_agreement=min_agreement,
        tolerance=gate.error_bound(overall["max_abs_reference_logit"]),
        failures=failures,
    )


def raise_if_failed(report: VerificationReport, artifact: str, consequence: str = "") -> None:
    """A one-line DlcvError naming the artifact and every miss, when the report failed."""
    if report.passed:
        return
    tail = f"; {consequence}" if consequence else ""
    raise DlcvError(f"{artifact}: failed verification against PyTorch: {'; '.join(report.failures)}{tail}")


def verify_onnx_file(
    onnx_path: str | os.PathLike,
    checkpoint_path: str | os.PathLike,
    shapes: Sequence[Shape],
    *,
    atol: float,
    min_agreement: float,
    tie_margin: float | None = None,
    seed: int = 0,
    images: Sequence[np.ndarray] | None = None,
    log: Log = _silent,
) -> VerificationReport:
    """Open the ONNX file with onnxruntime (CPU) and the checkpoint with PyTorch; compare at ``shapes``.

    Logs the parity table and returns the report; does not raise on a failed verdict (see
    :func:`raise_if_failed`). A file with an in-graph head (``--argmax``) is compared by its
    labels against PyTorch's argmax (agreement; it has no logits to compare).
    """
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dlcv.train.torch_backend import TorchBackend

    with TorchBackend(checkpoint_path) as reference, OnnxRuntimeBackend(onnx_path) as candidate:
        same = candidate.metadata.with_(precision=reference.metadata.precision).with_outputs(reference.metadata.outputs)
        if same != reference.metadata:  # the same model, whatever its precision and head
            raise DlcvError(f"{onnx_path}: its dlcv metadata does not match the checkpoint {checkpoint_path}")
        report = verify_backends(
            reference, candidate, shapes, atol=atol, min_agreement=min_agreement,
            tie_margin=tie_margin, seed=seed, images=images,
        )  # fmt: skip
    log(report.table())
    return report


# ---------------------------------------------------------------------------------------------
# precision comparison: every written precision against PyTorch FP32 on one evaluation set


@dataclass(frozen=True)
class EvalSet:
    """The images every precision is compared on, and where they came from."""

    batches: tuple[Batch, ...]
    source: str

    @property
    def labelled(self) -> bool:
        return bool(self.batches) and all(b.labels is not None for b in self.batches)

    @property
    def count(self) -> int:
        return sum(b.inputs.shape[0] for b in self.batches)


EVAL_BATCH = 8


def group_by_shape(items: Sequence[tuple[np.ndarray, object]], batch_size: int = EVAL_BATCH) -> tuple[Batch, ...]:
    """Stack (tensor, label) pairs into batches of equal tensor shape, in first-seen order."""
    groups: dict[tuple[int, ...], list] = {}
    for tensor, label in items:
        groups.setdefault(tensor.shape, []).append((tensor, label))
    batches = []
    for members in groups.values():
        for i in range(0, len(members), batch_size):
            chunk = members[i : i + batch_size]
            labels = None if any(lbl is None for _, lbl in chunk) else np.stack([np.asarray(lbl) for _, lbl in chunk])
            batches.append(Batch(np.stack([t for t, _ in chunk]), labels))
    return tuple(batches)


def eval_set_from_dataset(root: str | os.PathLike, metadata, count: int, log: Log = _silent) -> EvalSet:
    """Up to ``count`` labelled images of a dataset's evaluation split, opened as the model's
    metadata records it (:func:`dlcv.runtime.datasets.open_split`: layout, options, class map;
    split by :data:`~dlcv.runtime.datasets.EVAL_SPLIT_ORDER`), preprocessed with the deployment
    preprocessing; labels mapped the same way."""
    from dlcv.runtime.preprocess import preprocess_label_map

    split = open_split(root, metadata, None).subset(count)
    for note in split.notes:
        log(f"note: {note}")
    items = []
    for sample in split.samples:
        try:
            image = read_image(sample.image)
            tensor, _ = preprocess_image(image, metadata.preprocess)
            if get_task(metadata.task).per_pixel:
                labels = split.read_labels(sample)
                if labels.shape != image.shape[:2]:
                    raise DlcvError(f"{sample.target}: label map size {labels.shape} differs from its image's {image.shape[:2]}")
                label = preprocess_label_map(labels, metadata.preprocess, metadata.ignore_index)
            else:
                label = int(sample.target)
        except DlcvError as exc:
            log(f"warning: skipping evaluation image {exc}")
            continue
        items.append((tensor, label))
    if not items:
        raise DlcvError(f"{split.root}: none of the {len(split)} evaluation images could be read")
    return EvalSet(group_by_shape(items), f"{len(items)} labelled images from {split.describe()}")


def eval_set_from_images(images: Sequence[np.ndarray], metadata, source: str) -> EvalSet:
    """Unlabelled RGB images with the deployment preprocessing."""
    items = [(preprocess_image(rgb, metadata.preprocess)[0], None) for rgb in images]
    return EvalSet(group_by_shape(items), f"{len(items)} unlabelled images from {source}")


def eval_set_from_shapes(metadata, shapes: Sequence[Shape], *, seed: int = 0, images: Sequence[np.ndarray] | None = None) -> EvalSet:
    """The FP32 verification batches themselves (synthetic or real images at ``shapes``)."""
    batches, start = [], 0
    for shape in shapes:
        batches.append(Batch(make_batch(metadata.preprocess, shape, seed=seed, images=images, start=start)))
        start += shape[0]
    kind = "real" if images else "synthetic"
    return EvalSet(tuple(batches), f"{start} {kind} images at {', '.join('x'.join(map(str, s[1:])) for s in shapes)}")


@dataclass(frozen=True)
class PrecisionRow:
    """One candidate (an ONNX precision or an engine) against PyTorch FP32 on the evaluation set."""

    label: str  # "fp32", "fp16", "int8", "fp16 engine"
    artifact: str  # file name
    stats: dict  # ParityStats.compute()
    metric: float | None  # mIoU / top-1 with labels
    reference_metric: float | None
    gate: Gate
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def metric_delta(self) -> float | None:
        if self.metric is None or self.reference_metric is None:
            return None
        return self.metric - self.reference_metric

    def to_dict(self) -> dict:
        return {
            "label": self.label, "artifact": self.artifact, "passed": self.passed, "failures": list(self.failures),
            "metric": self.metric, "reference_metric": self.reference_metric, "metric_delta": self.metric_delta,
            "gate": dataclasses.asdict(self.gate), **{k: v for k, v in self.stats.items() if k != "task"},
        }  # fmt: skip


@dataclass(frozen=True)
class PrecisionReport:
    """The precision table: one row per candidate, all on the same evaluation set."""

    task: str
    eval_source: str
    rows: tuple[PrecisionRow, ...]

    def table(self) -> str:
        name = get_task(self.task).headline_name
        unit = get_task(self.task).agreement_name
        header = (
            f"{'precision':<13}{'file':<24}{unit + ' agree':>13}{'max abs err':>13}{'mean abs err':>14}"
            f"{name:>9}{'delta':>9}  gate"
        )
        lines = [f"precision vs PyTorch FP32 on {self.eval_source}", header, "-" * (len(header) + 28)]
        for r in self.rows:
            s = r.stats
            metric = "-" if r.metric is None else f"{100 * r.metric:.2f}"
            delta = "-" if r.metric_delta is None else f"{100 * r.metric_delta:+.2f}"
            verdict = "PASS" if r.passed else "FAIL"
            lines.append(
                f"{r.label:<13}{r.artifact[:23]:<24}{100 * s['agreement']:>12.3f}%{_error(s['max_abs_logit_error']):>13}"
                f"{_error(s['mean_abs_logit_error']):>14}{metric:>9}{delta:>9}  {verdict} ({r.gate.describe(name)})"
            )
        if any(r.metric is not None for r in self.rows):
            ref = next(r.reference_metric for r in self.rows if r.reference_metric is not None)
            lines.append(f"PyTorch FP32 {name}: {100 * ref:.2f} (metric columns in points; delta vs PyTorch FP32)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"task": self.task, "eval_source": self.eval_source, "rows": [r.to_dict() for r in self.rows]}


@dataclass(frozen=True)
class ExportedArtifact:
    """An artifact to compare with PyTorch FP32: its row label ("fp16", "fp16 engine"), file name,
    how to open it (once, for the whole evaluation), its precision, and its gate and near-tie
    margin (None: the precision record's)."""

    label: str
    file: str
    open: Callable[[], Backend]
    precision: Precision
    gate: Gate | None = None
    tie_margin: float | None = None


def compare_precisions(reference: Backend, artifacts: Sequence[ExportedArtifact], eval_set: EvalSet) -> PrecisionReport:
    """Run the reference and every artifact on each evaluation batch; one row per artifact.
    An artifact that fails to run raises (its error, unchanged)."""
    with contextlib.ExitStack() as stack:
        candidates = [
            Candidate(a.label, stack.enter_context(a.open()), a.precision, a.gate, a.tie_margin) for a in artifacts
        ]
        comparison = compare(reference, candidates, eval_set.batches, reference.metadata)
    return precision_report(comparison, artifacts, eval_set.source)


def precision_report(comparison: Comparison, artifacts: Sequence[ExportedArtifact], source: str) -> PrecisionReport:
    """The comparator's result as the precision table (re-raising a candidate's error)."""
    rows = []
    for artifact, result in zip(artifacts, comparison.candidates):
        if result.error is not None:
            raise result.error
        rows.append(PrecisionRow(artifact.label, artifact.file, result.parity, result.metric, result.reference_metric,
                                 result.gate, result.failures))  # fmt: skip
    return PrecisionReport(comparison.task, source, tuple(rows))
