"""Batch inference over an image folder with a deployed model: the library behind ``dlcv-infer``.

``run_inference(InferConfig(engine=..., images=...))`` opens the model with
:func:`~dlcv.runtime.backends.open_backend` and takes everything else (task, classes, palette,
preprocessing, ignore index, excluded classes) from the artifact's metadata.

Pipeline: the folder listing is streamed (:mod:`.listing`); worker threads read and preprocess
images (and segmentation label maps) with OpenCV through a bounded window of futures; the main
thread groups tensors by shape into batches (a shape never mixes with another; partial groups
are flushed when too many tensors wait, and at the end), runs the backend and writes outputs.
Memory stays flat: at most ``workers * 2 + batch_size`` images are being loaded and at most
``2 * batch_size`` preprocessed tensors wait for a batch.

Outputs in the output folder (default: ``<images>_pred`` beside the images folder):

- segmentation: ``<stem>.png`` (class-index mask at the original image size) and
  ``<stem>_color.png`` (the mask drawn with the metadata's palette, or the PASCAL VOC colour map);
  with ``recursive`` the folders mirror the input's;
- classification: ``predictions.csv`` with ``image_name,label`` first (the course's format),
  then ``class_name,top5_labels,top5_scores`` (indices and softmax probabilities, ``;``-joined),
  rows sorted by image name;
- always: ``errors.csv`` (``file,reason``; header only when nothing failed) and ``metrics.json``
  (counts, timing split, and with labels the metrics and the label report).

Per-file robustness: an image that cannot be read (empty, truncated, not an image), whose
outputs would collide with another image's, or whose outputs cannot be written is listed in
``errors.csv`` and the run goes on. :attr:`InferSummary.exit_code` is 0 when at least one image
succeeded, 1 when none did or (``strict``) when any failed. Existing outputs are refused unless
``overwrite`` (checked for every planned output before any work is done).

Label rules (:data:`LABEL_RULES`, also written into metrics.json): an image without a label is
predicted but not scored; a label map whose size differs from its image is not scored and is
listed; an unreadable label file is not scored and is listed; label values outside
``0..num_classes-1`` (other than ``ignore_index``) are skipped and counted by
:class:`~dlcv.runtime.metrics.ConfusionMatrix` (``out_of_range``). Metrics come only from
:mod:`dlcv.runtime.metrics`.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from .atomic import write_text_atomic
from .backends import Backend, open_backend
from .errors import DlcvError, DlcvUsageError, first_line
from .imageio import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_image, read_label_map, write_png
from .listing import ImageFile, ListingStats, has_subfolders, iter_image_files
from .metadata import ArtifactMetadata
from .metrics import ClassificationMetrics, ConfusionMatrix
from .postprocess import colorize, palette_array, segmentation_labels, topk
from .preprocess import Geometry, PreprocessSpec, preprocess_image, restore_label_map
from .version import dlcv_version

logger = logging.getLogger("dlcv.runtime.infer")

PREDICTIONS_CSV = "predictions.csv"
METRICS_JSON = "metrics.json"
ERRORS_CSV = "errors.csv"
COLOR_SUFFIX = "_color"
TOPK = 5
DEVICES = ("cpu", "cuda")
PREDICTION_COLUMNS = ("image_name", "label", "class_name", "top5_labels", "top5_scores")

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


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class InferConfig:
    """One ``dlcv-infer`` run. Paths may be given as strings; they are stored as :class:`Path`.

    ``out``: output folder (None: ``<images>_pred`` beside the images folder).
    ``labels``: segmentation: a folder of index-PNG masks named like the images
    (``<stem>.png``, same sub-folders); classification: a CSV ``image_name,label`` or a folder
    of ``<label>_<index>.<ext>`` files. ``progress``: None shows the bar only on a terminal.
    """

    engine: Path
    images: Path
    out: Path | None = None
    labels: Path | None = None
    batch_size: int = 4
    device: str = "cpu"
    workers: int = 2
    recursive: bool = False
    overwrite: bool = False
    strict: bool = False
    progress: bool | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("engine", "images", "out", "labels"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        problems = []
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 1:
            problems.append(f"--workers must be at least 1, got {self.workers}")
        if self.device not in DEVICES:
            problems.append(f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.max_pixels is not None and self.max_pixels < 1:
            problems.append(f"--max-pixels must be positive, got {self.max_pixels}")
        if problems:
            raise DlcvUsageError("; ".join(problems))

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return self.out
        images = Path(os.path.abspath(self.images))
        return images.parent / f"{images.name}_pred"


@dataclass
class InferSummary:
    """What a run did. ``metrics``/``label_report`` are None without labels."""

    task: str
    out_dir: Path
    found: int
    processed: int
    failed: int
    skipped: int
    errors: list[tuple[str, str]]
    timing: dict[str, float]
    outputs: dict[str, Path]
    metrics: dict[str, Any] | None = None
    label_report: dict[str, Any] | None = None
    strict: bool = False

    @property
    def exit_code(self) -> int:
        """0 when some image succeeded (and, with ``strict``, none failed); else 1."""
        if self.processed == 0 or (self.strict and self.failed):
            return 1
        return 0

    @property
    def failure_message(self) -> str | None:
        """Why :attr:`exit_code` is 1 (None when it is 0)."""
        where = self.outputs.get("errors_csv")
        if self.processed == 0:
            return f"no image was processed successfully ({self.failed} failed; reasons in {where})"
        if self.strict and self.failed:
            return f"{self.failed} image(s) failed and --strict was given (reasons in {where})"
        return None

    def lines(self) -> list[str]:
        """The human-readable summary the CLI prints."""
        out = [
            f"{self.processed} processed, {self.skipped} skipped (not images), {self.failed} failed "
            f"of {self.found} image files -> {self.out_dir}"
        ]
        t = self.timing
        if self.processed:
            out.append(
                f"time: decode+preprocess {t['decode_preprocess_s']:.3f} s (summed over threads), "
                f"inference {t['inference_s']:.3f} s, postprocess+write {t['postprocess_write_s']:.3f} s; "
                f"wall {t['wall_s']:.3f} s, {t['throughput_img_s']:.2f} images/s, "
                f"latency {t['latency_mean_ms']:.2f} ms/image (p50 {t['latency_p50_ms']:.2f}, "
                f"p95 {t['latency_p95_ms']:.2f})"
            )
        if self.metrics is not None:
            out.extend(_metric_lines(self.task, self.metrics, self.label_report or {}))
        if self.failed:
            out.append(f"failed files and reasons: {self.outputs.get('errors_csv')}")
        return out


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _metric_lines(task: str, metrics: dict[str, Any], report: dict[str, Any]) -> list[str]:
    names = metrics.get("class_names", [])
    if task == "segmentation":
        lines = [
            f"metrics over {report.get('images_scored', 0)} scored images: pixel accuracy "
            f"{_fmt(metrics['pixel_accuracy'])}, mIoU {_fmt(metrics['miou'])}, "
            f"mean class accuracy {_fmt(metrics['mean_class_accuracy'])}"
        ]
        excluded = set(metrics.get("excluded_classes", []))
        for i, (name, iou) in enumerate(zip(names, metrics["per_class_iou"])):
            note = " (excluded from mIoU)" if i in excluded else ""
            lines.append(f"  {i:>3} {name}: IoU {_fmt(iou)}{note}")
    else:
        tops = ", ".join(f"{k} {_fmt(metrics[k])}" for k in ("top1", "top5") if k in metrics)
        lines = [
            f"metrics over {metrics.get('count', 0)} scored images: {tops}, "
            f"mean class accuracy {_fmt(metrics['mean_class_accuracy'])}"
        ]
        for i, (name, acc) in enumerate(zip(names, metrics["per_class_accuracy"])):
            lines.append(f"  {i:>3} {name}: accuracy {_fmt(acc)}")
    problems = [
        f"{report[key]['count']} {key.replace('_', ' ')}"
        for key in ("missing", "size_mismatch", "unreadable", "invalid", "out_of_range", "labels_without_image")
        if key in report and report[key]["count"]
    ]
    if problems:
        lines.append("label problems: " + ", ".join(problems) + " (rules and lists in metrics.json)")
    return lines


# --------------------------------------------------------------------------- outputs


def segmentation_output_paths(out_dir: Path, item: ImageFile) -> tuple[Path, Path]:
    """``<out>/<rel folder>/<stem>.png`` and ``<stem>_color.png`` for an image."""
    folder = out_dir.joinpath(*item.rel.parent.parts)
    return folder / f"{item.rel.stem}.png", folder / f"{item.rel.stem}{COLOR_SUFFIX}.png"


def _run_level_outputs(task: str) -> tuple[str, ...]:
    if task == "classification":
        return (PREDICTIONS_CSV, METRICS_JSON, ERRORS_CSV)
    return (METRICS_JSON, ERRORS_CSV)


def _exists_error(path: Path) -> DlcvError:
    return DlcvError(f"{path} already exists; pass --overwrite to replace existing outputs, or choose another --out")


def _csv_text(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, tuples -> lists, Paths -> str (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- labels


_INT_RE = re.compile(r"[+-]?\d+")


def parse_label(token: str, class_names: tuple[str, ...]) -> int | None:
    """A label token -> class index: an integer as is (range checked later), or a class name; else None."""
    token = token.strip()
    if _INT_RE.fullmatch(token):
        return int(token)
    try:
        return class_names.index(token)
    except ValueError:
        return None


def _normalise_name(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class ClassificationLabels:
    """Ground truth for classification, keyed by the image's path relative to its folder.

    From a CSV with columns ``image_name,label`` (label: class index or class name), or a
    folder of ``<label>_<index>.<ext>`` files (the label is the part of the name before the
    last ``_``).
    """

    def __init__(self, labels: dict[str, str], source: Path, class_names: tuple[str, ...]):
        self.labels = labels
        self.source = source
        self.class_names = class_names
        self.used: set[str] = set()

    @classmethod
    def load(cls, path: Path, class_names: tuple[str, ...], recursive: bool) -> "ClassificationLabels":
        if path.is_dir():
            return cls.from_folder(path, class_names, recursive)
        return cls.from_csv(path, class_names)

    @classmethod
    def from_csv(cls, path: Path, class_names: tuple[str, ...]) -> "ClassificationLabels":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DlcvError(f"{path}: cannot read the labels CSV ({exc})") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if "image_name" not in fields or "label" not in fields:
            raise DlcvError(f"{path}: a labels CSV needs the columns image_name,label; found {','.join(fields) or 'none'}")
        reader.fieldnames = fields
        labels: dict[str, str] = {}
        for row in reader:
            name = _normalise_name(row.get("image_name") or "")
            if not name:
                continue
            if name in labels:
                raise DlcvError(f"{path}: image_name {name!r} appears twice (line {reader.line_num}); keep one label per image")
            labels[name] = (row.get("label") or "").strip()
        return cls(labels, path, class_names)

    @classmethod
    def from_folder(cls, path: Path, class_names: tuple[str, ...], recursive: bool) -> "ClassificationLabels":
        labels: dict[str, str] = {}
        for item in iter_image_files(path, recursive=recursive):
            stem = item.rel.stem
            labels[item.name] = stem.rsplit("_", 1)[0] if "_" in stem else stem
        return cls(labels, path, class_names)

    def lookup(self, item: ImageFile) -> tuple[str, int | None, str]:
        """("ok", index, raw) | ("missing", None, "") | ("invalid", None, raw)."""
        raw = self.labels.get(item.name)
        if raw is None:
            return "missing", None, ""
        self.used.add(item.name)
        index = parse_label(raw, self.class_names)
        return ("invalid", None, raw) if index is None else ("ok", index, raw)

    def unused(self) -> list[str]:
        return sorted(set(self.labels) - self.used)


def _report_entry(items: list) -> dict[str, Any]:
    return {"count": len(items), "images": sorted(items, key=lambda e: e if isinstance(e, str) else e["image"])}


class SegmentationScorer:
    """Accumulates one :class:`ConfusionMatrix` over the scored images, applying :data:`LABEL_RULES`."""

    def __init__(self, metadata: ArtifactMetadata):
        self.metadata = metadata
        self.confusion = ConfusionMatrix(
            metadata.num_classes, ignore_index=metadata.ignore_index, exclude=metadata.exclude_classes
        )
        self.scored = 0
        self.missing: list[str] = []
        self.size_mismatch: list[dict] = []
        self.unreadable: list[dict] = []
        self.out_of_range: list[dict] = []

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray | None, gt_error: str | None, gt_missing: bool) -> None:
        if gt_missing:
            self.missing.append(name)
            return
        if gt_error is not None:
            self.unreadable.append({"image": name, "reason": gt_error})
            return
        assert gt is not None
        if gt.shape != pred.shape:
            self.size_mismatch.append({"image": name, "image_hw": list(pred.shape), "label_hw": list(gt.shape)})
            return
        before = self.confusion.out_of_range
        self.confusion.update(gt, pred)
        self.scored += 1
        if self.confusion.out_of_range > before:
            self.out_of_range.append({"image": name, "pixels": self.confusion.out_of_range - before})

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        metrics = self.confusion.compute()
        metrics.update(
            class_names=list(self.metadata.class_names),
            ignore_index=self.metadata.ignore_index,
            images_scored=self.scored,
        )
        report = {
            "rules": {k: LABEL_RULES[k] for k in ("missing", "size_mismatch", "unreadable", "out_of_range")},
            "images_scored": self.scored,
            "missing": _report_entry(self.missing),
            "size_mismatch": _report_entry(self.size_mismatch),
            "unreadable": _report_entry(self.unreadable),
            "out_of_range": {
                "count": self.confusion.out_of_range,
                "unit": "pixels",
                "images": sorted(self.out_of_range, key=lambda e: e["image"]),
            },
        }
        return metrics, report


class ClassificationScorer:
    """Top-1/top-5/per-class accuracy via :class:`ClassificationMetrics`, applying :data:`LABEL_RULES`."""

    def __init__(self, metadata: ArtifactMetadata, labels: ClassificationLabels):
        self.metadata = metadata
        self.labels = labels
        self.metrics = ClassificationMetrics(metadata.num_classes, topk=(1, TOPK))
        self.missing: list[str] = []
        self.invalid: list[dict] = []
        self.out_of_range: list[dict] = []

    def add(self, item: ImageFile, logits: np.ndarray) -> None:
        status, index, raw = self.labels.lookup(item)
        if status == "missing":
            self.missing.append(item.name)
            return
        if status == "invalid":
            self.invalid.append({"image": item.name, "label": raw})
            return
        assert index is not None
        if not 0 <= index < self.metadata.num_classes:
            self.out_of_range.append({"image": item.name, "label": index})
        self.metrics.update(np.array([index]), logits[None, :])  # out-of-range: counted, not scored

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        metrics = self.metrics.compute()
        metrics["class_names"] = list(self.metadata.class_names)
        unused = self.labels.unused()
        report = {
            "rules": {k: LABEL_RULES[k] for k in ("missing", "invalid", "out_of_range")},
            "source": str(self.labels.source),
            "images_scored": metrics["count"],
            "missing": _report_entry(self.missing),
            "invalid": _report_entry(self.invalid),
            "out_of_range": {
                "count": self.metrics.confusion.out_of_range,
                "unit": "images",
                "images": sorted(self.out_of_range, key=lambda e: e["image"]),
            },
            "labels_without_image": {"count": len(unused), "examples": unused[:20]},
        }
        return metrics, report


# --------------------------------------------------------------------------- loading and batching


@dataclass
class _Loaded:
    """One image after the worker thread: its tensor and geometry, or why it failed."""

    item: ImageFile
    tensor: np.ndarray | None = None
    geometry: Geometry | None = None
    error: str | None = None
    gt: np.ndarray | None = None
    gt_error: str | None = None
    gt_missing: bool = False
    load_s: float = 0.0


def _load(item: ImageFile, spec: PreprocessSpec, max_pixels: int | None, mask_dir: Path | None) -> _Loaded:
    """Worker-thread job: decode + preprocess the image (and read its label map for segmentation)."""
    start = time.perf_counter()
    try:
        image = read_image(item.path, max_pixels=max_pixels)
        tensor, geometry = preprocess_image(image, spec)
        del image
    except DlcvError as exc:
        return _Loaded(item, error=str(exc), load_s=time.perf_counter() - start)
    except Exception as exc:  # a per-file failure must never stop the run
        return _Loaded(item, error=f"{item.path}: {type(exc).__name__}: {first_line(exc)}", load_s=time.perf_counter() - start)
    loaded = _Loaded(item, tensor=tensor, geometry=geometry)
    if mask_dir is not None:
        mask_path = mask_dir.joinpath(*item.rel.parent.parts, f"{item.rel.stem}.png")
        if not mask_path.exists():
            loaded.gt_missing = True
        else:
            try:
                loaded.gt = read_label_map(mask_path)
            except DlcvError as exc:
                loaded.gt_error = str(exc)
            except Exception as exc:
                loaded.gt_error = f"{mask_path}: {type(exc).__name__}: {first_line(exc)}"
    loaded.load_s = time.perf_counter() - start
    return loaded


class ShapeBatcher:
    """Groups items by tensor shape into batches of ``batch_size``; shapes never mix.

    When more than ``max_pending`` items wait across groups, the oldest group is released
    as a partial batch, so memory stays bounded however many distinct shapes there are.
    """

    def __init__(self, batch_size: int, max_pending: int | None = None):
        self.batch_size = batch_size
        self.max_pending = max(batch_size, max_pending if max_pending is not None else 2 * batch_size)
        self.groups: dict[tuple[int, ...], list] = {}
        self.pending = 0

    def add(self, shape: tuple[int, ...], item: Any) -> list[list]:
        """Add an item; return the batches that are now ready (possibly none)."""
        group = self.groups.setdefault(shape, [])
        group.append(item)
        self.pending += 1
        ready = []
        if len(group) >= self.batch_size:
            ready.append(self._pop(shape))
        while self.pending > self.max_pending:
            ready.append(self._pop(next(iter(self.groups))))
        return ready

    def flush(self) -> list[list]:
        """The remaining partial groups, oldest first."""
        return [self._pop(shape) for shape in list(self.groups)]

    def _pop(self, shape: tuple[int, ...]) -> list:
        group = self.groups.pop(shape)
        self.pending -= len(group)
        return group


# --------------------------------------------------------------------------- the run


class _Run:
    """The state of one run: counters, timers, scorer, outputs; the main thread drives it."""

    def __init__(self, config: InferConfig, backend: Backend, out_dir: Path, mask_dir: Path | None,
                 cls_labels: ClassificationLabels | None, bar: tqdm, warn: Callable[[str], None]):
        self.config = config
        self.backend = backend
        self.metadata = backend.metadata
        self.task = self.metadata.task
        self.out_dir = out_dir
        self.mask_dir = mask_dir
        self.bar = bar
        self.warn = warn
        self.palette = palette_array(self.metadata.palette, self.metadata.num_classes)
        self.batcher = ShapeBatcher(config.batch_size)
        self.claimed: dict[Path, str] = {}
        self.rows: list[tuple[str, ...]] = []
        self.errors: list[tuple[str, str]] = []
        self.processed = 0
        self.latencies: list[float] = []
        self.t = {"decode_preprocess_s": 0.0, "inference_s": 0.0, "postprocess_write_s": 0.0, "load_wait_s": 0.0}
        self.scorer: SegmentationScorer | ClassificationScorer | None = None
        if self.task == "segmentation" and mask_dir is not None:
            self.scorer = SegmentationScorer(self.metadata)
        elif self.task == "classification" and cls_labels is not None:
            self.scorer = ClassificationScorer(self.metadata, cls_labels)

    def fail(self, name: str, reason: str) -> None:
        self.errors.append((name, reason))
        self.warn(f"warning: skipped {name}: {reason}")
        self.bar.update(1)

    def claim(self, item: ImageFile) -> bool:
        """Reserve an image's output files; False (and a failure) when another image has them."""
        if self.task != "segmentation":
            return True
        paths = segmentation_output_paths(self.out_dir, item)
        for p in paths:
            if p in self.claimed:
                self.fail(item.name, f"its output {p.name} would overwrite that of {self.claimed[p]}; rename one of them")
                return False
        for p in paths:
            self.claimed[p] = item.name
        return True

    def consume(self, loaded: _Loaded) -> None:
        self.t["decode_preprocess_s"] += loaded.load_s
        if loaded.error is not None:
            self.fail(loaded.item.name, loaded.error)
            return
        assert loaded.tensor is not None
        for batch in self.batcher.add(loaded.tensor.shape, loaded):
            self.run_batch(batch)

    def flush(self) -> None:
        for batch in self.batcher.flush():
            self.run_batch(batch)

    def run_batch(self, batch: list[_Loaded]) -> None:
        start = time.perf_counter()
        try:
            logits = self.backend.infer(np.stack([b.tensor for b in batch]))
        except Exception as exc:  # a backend failure fails this batch's images, not the run
            message = first_line(exc) if isinstance(exc, DlcvError) else f"{type(exc).__name__}: {first_line(exc)}"
            for b in batch:
                self.fail(b.item.name, f"inference failed ({message})")
            return
        infer_s = time.perf_counter() - start
        self.t["inference_s"] += infer_s
        share = infer_s / len(batch)
        if self.task == "segmentation":
            self._segmentation(batch, logits, share)
        else:
            self._classification(batch, logits, share)

    def _segmentation(self, batch: list[_Loaded], logits: np.ndarray, share: float) -> None:
        start = time.perf_counter()
        labels = segmentation_labels(logits)
        argmax_share = (time.perf_counter() - start) / len(batch)
        self.t["postprocess_write_s"] += argmax_share * len(batch)
        for b, pred in zip(batch, labels):
            t0 = time.perf_counter()
            b.tensor = None
            try:
                mask = restore_label_map(pred, b.geometry)
                mask_path, color_path = segmentation_output_paths(self.out_dir, b.item)
                write_png(mask_path, mask)
                write_png(color_path, colorize(mask, self.palette))
            except (DlcvError, OSError) as exc:
                self.fail(b.item.name, f"cannot write its outputs ({exc})")
                continue
            if isinstance(self.scorer, SegmentationScorer):
                self.scorer.add(b.item.name, mask, b.gt, b.gt_error, b.gt_missing)
            b.gt = None
            post_s = time.perf_counter() - t0
            self.t["postprocess_write_s"] += post_s
            self._done(b, share + argmax_share + post_s)

    def _classification(self, batch: list[_Loaded], logits: np.ndarray, share: float) -> None:
        start = time.perf_counter()
        order, probs = topk(logits, TOPK)
        names = self.metadata.class_names
        for i, b in enumerate(batch):
            b.tensor = None
            self.rows.append((
                b.item.name,
                str(int(order[i, 0])),
                names[int(order[i, 0])],
                ";".join(str(int(j)) for j in order[i]),
                ";".join(f"{p:.6f}" for p in probs[i]),
            ))
            if isinstance(self.scorer, ClassificationScorer):
                self.scorer.add(b.item, logits[i])
        post_share = (time.perf_counter() - start) / len(batch)
        self.t["postprocess_write_s"] += post_share * len(batch)
        for b in batch:
            self._done(b, share + post_share)

    def _done(self, b: _Loaded, service_s: float) -> None:
        self.processed += 1
        self.latencies.append(b.load_s + service_s)
        self.bar.update(1)

    def timing(self, wall_s: float, model_load_s: float) -> dict[str, float]:
        """The timing split (units in the key names).

        ``decode_preprocess_s`` is summed over the worker threads (it includes reading label
        maps), ``inference_s`` and ``postprocess_write_s`` are main-thread time, ``load_wait_s``
        is how long the main thread waited for workers, ``wall_s`` runs from the first image
        to the last output. Per-image latency (mean/p50/p95) is a service time: the image's own
        decode+preprocess, its share of its batch's inference, and its postprocess+write.
        """
        lat = np.asarray(self.latencies, dtype=np.float64) * 1000.0
        n = max(self.processed, 1)
        stats = {
            "model_load_s": model_load_s,
            **self.t,
            "wall_s": wall_s,
            "throughput_img_s": self.processed / wall_s if wall_s > 0 else float("nan"),
            "decode_preprocess_ms_per_image": 1000.0 * self.t["decode_preprocess_s"] / n,
            "inference_ms_per_image": 1000.0 * self.t["inference_s"] / n,
            "postprocess_write_ms_per_image": 1000.0 * self.t["postprocess_write_s"] / n,
            "latency_mean_ms": float(lat.mean()) if lat.size else float("nan"),
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
            "batch_size": self.config.batch_size,
            "workers": self.config.workers,
        }
        return {k: (float(v) if isinstance(v, float) else v) for k, v in stats.items()}


def _check_paths(config: InferConfig, out_dir: Path) -> None:
    """Input/output folder sanity before the model is opened."""
    images = config.images
    if not images.exists():
        raise DlcvError(f"{images}: images folder not found")
    if not images.is_dir():
        raise DlcvError(f"{images}: is a file; give the folder that holds the images")
    if config.labels is not None and not config.labels.exists():
        raise DlcvError(f"{config.labels}: labels not found (--labels)")
    real_out = os.path.realpath(out_dir)
    if real_out == os.path.realpath(images):
        raise DlcvUsageError(f"--out {out_dir} is the images folder; outputs would mix with (and may replace) the inputs")
    if config.labels is not None and real_out == os.path.realpath(config.labels):
        raise DlcvUsageError(f"--out {out_dir} is the labels folder; masks written there would replace the labels")
    if out_dir.exists() and not out_dir.is_dir():
        raise DlcvError(f"--out {out_dir} is a file; give a folder")


def _survey(config: InferConfig, task: str, out_dir: Path, exclude: list[Path]) -> int:
    """A names-only pass: count the images and refuse existing outputs unless ``overwrite``."""
    check = not config.overwrite and out_dir.is_dir()
    if check:
        for name in _run_level_outputs(task):
            if (out_dir / name).exists():
                raise _exists_error(out_dir / name)
    count = 0
    for item in iter_image_files(config.images, recursive=config.recursive, exclude=exclude):
        count += 1
        if check and task == "segmentation":
            for p in segmentation_output_paths(out_dir, item):
                if p.exists() or p.is_symlink():
                    raise _exists_error(p)
    if count == 0:
        hint = "; add --recursive to include sub-folders" if not config.recursive and has_subfolders(config.images) else ""
        raise DlcvError(f"{config.images}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)}){hint}")
    return count


def _labels(config: InferConfig, metadata: ArtifactMetadata) -> tuple[Path | None, ClassificationLabels | None]:
    if config.labels is None:
        return None, None
    if metadata.task == "segmentation":
        if not config.labels.is_dir():
            raise DlcvUsageError(
                f"--labels {config.labels}: segmentation labels are a folder of index-PNG masks named like the images"
            )
        return config.labels, None
    return None, ClassificationLabels.load(config.labels, metadata.class_names, config.recursive)


def _stream(pool: ThreadPoolExecutor, run: _Run, items: Iterator[ImageFile], spec: PreprocessSpec,
            window: int) -> None:
    """Submit loads through a bounded window of futures and feed results to ``run`` in order."""
    pending: deque[Future] = deque()

    def take() -> None:
        wait_start = time.perf_counter()
        loaded = pending.popleft().result()
        run.t["load_wait_s"] += time.perf_counter() - wait_start
        run.consume(loaded)

    try:
        for item in items:
            if not run.claim(item):
                continue
            pending.append(pool.submit(_load, item, spec, run.config.max_pixels, run.mask_dir))
            if len(pending) >= window:
                take()
        while pending:
            take()
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    run.flush()


def run_inference(config: InferConfig, *, log: Callable[[str], None] | None = None) -> InferSummary:
    """Run the model over the folder, write the outputs, return what happened.

    ``log`` receives per-file warnings (default: the ``dlcv.runtime.infer`` logger).
    Raises :class:`DlcvError` for problems with the run as a whole (missing folder, no
    images, existing outputs without ``overwrite``, a model without dlcv metadata).
    """
    log = log or logger.warning
    out_dir = config.out_dir
    _check_paths(config, out_dir)
    exclude = [out_dir] + ([config.labels] if config.labels is not None and config.labels.is_dir() else [])

    load_start = time.perf_counter()
    with open_backend(config.engine, device=config.device) as backend:
        model_load_s = time.perf_counter() - load_start
        metadata = backend.metadata
        mask_dir, cls_labels = _labels(config, metadata)
        total = _survey(config, metadata.task, out_dir, exclude)
        out_dir.mkdir(parents=True, exist_ok=True)

        show = config.progress if config.progress is not None else sys.stderr.isatty()
        bar = tqdm(total=total, unit="img", file=sys.stderr, disable=not show, dynamic_ncols=True, desc="dlcv-infer")

        def warn(message: str) -> None:
            with tqdm.external_write_mode(file=sys.stderr):
                log(message)

        run = _Run(config, backend, out_dir, mask_dir, cls_labels, bar, warn)
        stats = ListingStats()
        items = iter_image_files(config.images, recursive=config.recursive, exclude=exclude, stats=stats)
        wall_start = time.perf_counter()
        try:
            with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="dlcv-load") as pool:
                _stream(pool, run, items, metadata.preprocess, window=config.workers * 2 + config.batch_size)
        finally:
            bar.close()
        for folder, reason in stats.unreadable:
            run.errors.append((folder + "/", reason))
        outputs = _write_run_outputs(config, run, out_dir)
        timing = run.timing(time.perf_counter() - wall_start, model_load_s)

        metrics = report = None
        if run.scorer is not None:
            metrics, report = run.scorer.result()
        summary = InferSummary(
            task=metadata.task,
            out_dir=out_dir,
            found=total,
            processed=run.processed,
            failed=len(run.errors),
            skipped=stats.skipped,
            errors=sorted(run.errors),
            timing=timing,
            outputs=outputs,
            metrics=metrics,
            label_report=report,
            strict=config.strict,
        )
        record = {
            "dlcv_version": dlcv_version(),
            "task": metadata.task,
            "engine": str(config.engine),
            "backend": backend.name,
            "device": config.device,
            "precision": metadata.precision,
            "images": str(config.images),
            "labels": None if config.labels is None else str(config.labels),
            "counts": {
                "found": total,
                "processed": run.processed,
                "failed": len(run.errors),
                "skipped_not_images": stats.skipped,
                "folders_not_reentered": stats.revisits,
            },
            "timing": timing,
            "metrics": metrics,
            "label_report": report,
        }
        write_text_atomic(outputs["metrics_json"], json.dumps(_jsonable(record), indent=2, ensure_ascii=False) + "\n")
    return summary


def _write_run_outputs(config: InferConfig, run: _Run, out_dir: Path) -> dict[str, Path]:
    outputs = {"out_dir": out_dir, "metrics_json": out_dir / METRICS_JSON, "errors_csv": out_dir / ERRORS_CSV}
    write_text_atomic(outputs["errors_csv"], _csv_text(("file", "reason"), sorted(run.errors)))
    if run.task == "classification":
        outputs["predictions_csv"] = out_dir / PREDICTIONS_CSV
        write_text_atomic(outputs["predictions_csv"], _csv_text(PREDICTION_COLUMNS, sorted(run.rows)))
    return outputs
