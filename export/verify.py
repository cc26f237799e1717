"""Verification of a written artifact against the PyTorch FP32 reference, in task terms.

Both models see the same inputs, built by :func:`dlcv.runtime.preprocess.preprocess_image`
from deterministic synthetic RGB images (or real images from a folder); the logits are
compared with :class:`dlcv.runtime.parity.ParityStats`, one row per input shape. The
functions are independent of the precision being checked, so an FP16/INT8 ONNX file or a
TensorRT engine is verified the same way with its own tolerances.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from dlcv.runtime.backends.base import Backend
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file, read_image
from dlcv.runtime.parity import DEFAULT_TIE_MARGIN, ParityStats
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image

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


def load_images(folder: str | os.PathLike, limit: int = 64) -> list[np.ndarray]:
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
        unit = "pixels" if self.overall.get("task") == "segmentation" else "images"
        header = (
            f"{'input shape':<18}{'max abs err':>13}{'mean abs err':>14}{'agreement':>12}"
            f"{unit:>10}{'disagree':>10}{'near-tie':>10}"
        )
        lines = [f"parity: {self.candidate} vs {self.reference}", header, "-" * len(header)]

        def row(name: str, s: dict) -> str:
            return (
                f"{name:<18}{s['max_abs_logit_error']:>13.3e}{s['mean_abs_logit_error']:>14.3e}"
                f"{s['agreement']:>12.6f}{s['count']:>10d}{s['disagreements']:>10d}{s['near_tie_disagreements']:>10d}"
            )

        lines += [row("x".join(map(str, r.shape)), r.stats) for r in self.rows]
        if len(self.rows) > 1:
            lines.append(row("all", self.overall))
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(
            f"{verdict}: max abs error {self.overall['max_abs_logit_error']:.3e} (allowed {self.tolerance:.3e}), "
            f"agreement {self.overall['agreement']:.6f} (required {self.min_agreement})"
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


def compare_backends(
    reference: Backend,
    candidate: Backend,
    shapes: Sequence[Shape],
    *,
    spec: PreprocessSpec,
    seed: int = 0,
    images: Sequence[np.ndarray] | None = None,
    tie_margin: float = DEFAULT_TIE_MARGIN,
) -> tuple[tuple[ShapeParity, ...], dict]:
    """Run both backends on the same batches; parity per shape and over all shapes."""
    total = ParityStats(tie_margin)
    rows = []
    start = 0
    for shape in shapes:
        batch = make_batch(spec, shape, seed=seed, images=images, start=start)
        start += shape[0]
        stats = ParityStats(tie_margin).update(reference.infer(batch), candidate.infer(batch))
        total.merge(stats)
        rows.append(ShapeParity(tuple(batch.shape), stats.compute()))
    return tuple(rows), total.compute()


def tolerance_for(atol: float, overall: dict) -> float:
    """``atol`` in logit units up to logits of magnitude 1, relative to the largest logit beyond."""
    ref = overall.get("max_abs_reference_logit", 0.0)
    return atol * max(1.0, ref if math.isfinite(ref) else 1.0)


def judge(rows: Sequence[ShapeParity], tolerance: float, min_agreement: float) -> tuple[str, ...]:
    """One message per shape that misses the bar (empty when all pass)."""
    failures = []
    for r in rows:
        s, name = r.stats, "x".join(map(str, r.shape))
        if s["nonfinite_logits"]:
            failures.append(f"{s['nonfinite_logits']} NaN/inf logits at {name}")
        elif not s["max_abs_logit_error"] <= tolerance:
            failures.append(f"max abs logit error {s['max_abs_logit_error']:.3e} > {tolerance:.3e} at {name}")
        if not s["agreement"] >= min_agreement:
            failures.append(
                f"agreement {s['agreement']:.6f} < {min_agreement} at {name} "
                f"({s['disagreements']} of {s['count']} labels differ, {s['near_tie_disagreements']} near ties)"
            )
    return tuple(failures)


def verify_backends(
    reference: Backend,
    candidate: Backend,
    shapes: Sequence[Shape],
    *,
    atol: float,
    min_agreement: float,
    tie_margin: float = DEFAULT_TIE_MARGIN,
    seed: int = 0,
    images: Sequence[np.ndarray] | None = None,
) -> VerificationReport:
    """Compare ``candidate`` with ``reference`` at ``shapes``; the report says whether it passed."""
    spec = reference.metadata.preprocess
    rows, overall = compare_backends(
        reference, candidate, shapes, spec=spec, seed=seed, images=images, tie_margin=tie_margin
    )
    tolerance = tolerance_for(atol, overall)
    return VerificationReport(
        reference=f"{reference.name} {reference.precision}",
        candidate=f"{candidate.name} {candidate.precision}",
        rows=rows,
        overall=overall,
        atol=atol,
        min_agreement=min_agreement,
        tolerance=tolerance,
        failures=judge(rows, tolerance, min_agreement),
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
    tie_margin: float = DEFAULT_TIE_MARGIN,
    seed: int = 0,
    images: Sequence[np.ndarray] | None = None,
    log: Log = _silent,
) -> VerificationReport:
    """Open the ONNX file with onnxruntime (CPU) and the checkpoint with PyTorch; compare at ``shapes``.

    Logs the parity table and returns the report; does not raise on a failed verdict (see
    :func:`raise_if_failed`).
    """
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dlcv.train.torch_backend import TorchBackend

    with TorchBackend(checkpoint_path) as reference, OnnxRuntimeBackend(onnx_path) as candidate:
        if candidate.metadata.with_(precision=reference.metadata.precision) != reference.metadata:
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
class EvalBatch:
    """Model inputs (N×3×H×W float32) and, where known, their labels (N×H×W maps or N classes)."""

    inputs: np.ndarray
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class EvalSet:
    """The images every precision is compared on, and where they came from."""

    batches: tuple[EvalBatch, ...]
    source: str

    @property
    def labelled(self) -> bool:
        return bool(self.batches) and all(b.labels is not None for b in self.batches)

    @property
    def count(self) -> int:
        return sum(b.inputs.shape[0] for b in self.batches)


EVAL_BATCH = 8
EVAL_SPLITS = ("val", "test", "train")


def group_by_shape(items: Sequence[tuple[np.ndarray, object]], batch_size: int = EVAL_BATCH) -> tuple[EvalBatch, ...]:
    """Stack (tensor, label) pairs into batches of equal tensor shape, in first-seen order."""
    groups: dict[tuple[int, ...], list] = {}
    for tensor, label in items:
        groups.setdefault(tensor.shape, []).append((tensor, label))
    batches = []
    for members in groups.values():
        for i in range(0, len(members), batch_size):
            chunk = members[i : i + batch_size]
            labels = None if any(lbl is None for _, lbl in chunk) else np.stack([np.asarray(lbl) for _, lbl in chunk])
            batches.append(EvalBatch(np.stack([t for t, _ in chunk]), labels))
    return tuple(batches)


def eval_set_from_dataset(root: str | os.PathLike, metadata, count: int, log: Log = _silent) -> EvalSet:
    """Up to ``count`` labelled images of a dataset (its val split, else test, else train),
    preprocessed with the deployment preprocessing; labels mapped the same way."""
    from dlcv.runtime.preprocess import preprocess_label_map
    from dlcv.train.data.formats import get_format

    root = Path(root)
    fmt = get_format(None, root)
    if fmt.task != metadata.task:
        raise DlcvError(f"{root}: a {fmt.task} dataset ({fmt.name} layout) cannot score a {metadata.task} model")
    info = fmt.info(root)
    if info.num_classes != metadata.num_classes:
        raise DlcvError(f"{root}: the dataset has {info.num_classes} classes, the model {metadata.num_classes}")
    split, samples = next(((s, fmt.samples(root, s)) for s in EVAL_SPLITS if fmt.samples(root, s)), (None, []))
    if not samples:
        raise DlcvError(f"{root}: no images in its {', '.join(EVAL_SPLITS)} splits to evaluate with")
    if len(samples) > count:
        samples = [samples[i] for i in np.unique(np.linspace(0, len(samples) - 1, count).round().astype(int))]
    items = []
    for sample in samples:
        try:
            image = read_image(sample.image)
            tensor, _ = preprocess_image(image, metadata.preprocess)
            if metadata.task == "segmentation":
                labels = fmt.read_labels(sample)
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
        raise DlcvError(f"{root}: none of the {len(samples)} evaluation images could be read")
    return EvalSet(group_by_shape(items), f"{len(items)} labelled images from the {split} split of {root} ({fmt.name} layout)")


def eval_set_from_images(images: Sequence[np.ndarray], metadata, source: str) -> EvalSet:
    """Unlabelled RGB images with the deployment preprocessing."""
    items = [(preprocess_image(rgb, metadata.preprocess)[0], None) for rgb in images]
    return EvalSet(group_by_shape(items), f"{len(items)} unlabelled images from {source}")


def eval_set_from_shapes(metadata, shapes: Sequence[Shape], *, seed: int = 0, images: Sequence[np.ndarray] | None = None) -> EvalSet:
    """The FP32 verification batches themselves (synthetic or real images at ``shapes``)."""
    batches, start = [], 0
    for shape in shapes:
        batches.append(EvalBatch(make_batch(metadata.preprocess, shape, seed=seed, images=images, start=start)))
        start += shape[0]
    kind = "real" if images else "synthetic"
    return EvalSet(tuple(batches), f"{start} {kind} images at {', '.join('x'.join(map(str, s[1:])) for s in shapes)}")


def task_metric_name(task: str) -> str:
    return "mIoU" if task == "segmentation" else "top-1"


def _new_metric(metadata):
    from dlcv.runtime.metrics import ClassificationMetrics, ConfusionMatrix

    if metadata.task == "segmentation":
        return ConfusionMatrix(metadata.num_classes, metadata.ignore_index, metadata.exclude_classes)
    return ClassificationMetrics(metadata.num_classes)


def _update_metric(metric, task: str, labels: np.ndarray, logits: np.ndarray) -> None:
    metric.update(labels, logits.argmax(1) if task == "segmentation" else logits)


def _metric_value(metric, task: str) -> float:
    result = metric.compute()
    return float(result["miou"] if task == "segmentation" else result["top1"])


@dataclass(frozen=True)
class Gate:
    """A reduced precision's passing bar: minimum label agreement and/or maximum metric drop."""

    min_agreement: float | None = None
    max_metric_drop: float | None = None

    def describe(self, metric_name: str) -> str:
        parts = []
        if self.min_agreement is not None:
            parts.append(f"agreement >= {100 * self.min_agreement:.1f}%")
        if self.max_metric_drop is not None:
            parts.append(f"{metric_name} drop <= {100 * self.max_metric_drop:.1f} pt")
        return ", ".join(parts) or "-"


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
        name = task_metric_name(self.task)
        unit = "pixel" if self.task == "segmentation" else "top-1"
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
                f"{r.label:<13}{r.artifact[:23]:<24}{100 * s['agreement']:>12.3f}%{s['max_abs_logit_error']:>13.3e}"
                f"{s['mean_abs_logit_error']:>14.3e}{metric:>9}{delta:>9}  {verdict} ({r.gate.describe(name)})"
            )
        if any(r.metric is not None for r in self.rows):
            ref = next(r.reference_metric for r in self.rows if r.reference_metric is not None)
            lines.append(f"PyTorch FP32 {name}: {100 * ref:.2f} (metric columns in points; delta vs PyTorch FP32)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"task": self.task, "eval_source": self.eval_source, "rows": [r.to_dict() for r in self.rows]}


def judge_precision(stats: dict, metric_delta: float | None, gate: Gate, metric_name: str) -> tuple[str, ...]:
    """Why a candidate misses its gate (empty when it passes). NaN/inf logits always fail."""
    failures = []
    if stats["nonfinite_logits"]:
        failures.append(f"{stats['nonfinite_logits']} NaN/inf logits")
    if gate.min_agreement is not None and not stats["agreement"] >= gate.min_agreement:
        failures.append(f"label agreement {100 * stats['agreement']:.3f}% < {100 * gate.min_agreement:.1f}%")
    if gate.max_metric_drop is not None and metric_delta is not None and not -metric_delta <= gate.max_metric_drop + 1e-12:
        failures.append(f"{metric_name} drop {-100 * metric_delta:.2f} pt > {100 * gate.max_metric_drop:.1f} pt")
    return tuple(failures)


@dataclass(frozen=True)
class Candidate:
    """A model to compare: ``open()`` returns a Backend (opened once, for the whole evaluation)."""

    label: str
    artifact: str
    open: Callable[[], Backend]
    gate: Gate


def compare_precisions(reference: Backend, candidates: Sequence[Candidate], eval_set: EvalSet,
                       tie_margin: float = DEFAULT_TIE_MARGIN) -> PrecisionReport:  # fmt: skip
    """Run the reference and every candidate on each evaluation batch; one row per candidate."""
    md = reference.metadata
    name = task_metric_name(md.task)
    labelled = eval_set.labelled
    reference_metric = _new_metric(md) if labelled else None
    stats = [ParityStats(tie_margin) for _ in candidates]
    metrics = [_new_metric(md) if labelled else None for _ in candidates]
    backends: list[Backend] = []
    try:
        for candidate in candidates:
            backends.append(candidate.open())
        for batch in eval_set.batches:
            ref = reference.infer(batch.inputs)
            if labelled:
                _update_metric(reference_metric, md.task, batch.labels, ref)
            for backend, stat, metric in zip(backends, stats, metrics):
                logits = backend.infer(batch.inputs)
                stat.update(ref, logits)
                if metric is not None:
                    _update_metric(metric, md.task, batch.labels, np.nan_to_num(logits, nan=-np.inf))
    finally:
        for backend in backends:
            backend.close()
    ref_value = _metric_value(reference_metric, md.task) if labelled else None
    rows = []
    for candidate, stat, metric in zip(candidates, stats, metrics):
        s = stat.compute()
        value = _metric_value(metric, md.task) if metric is not None else None
        delta = None if value is None or ref_value is None else value - ref_value
        rows.append(PrecisionRow(candidate.label, candidate.artifact, s, value, ref_value, candidate.gate,
                                 judge_precision(s, delta, candidate.gate, name)))  # fmt: skip
    return PrecisionReport(md.task, eval_set.source, tuple(rows))
