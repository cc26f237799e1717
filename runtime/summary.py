"""What a ``dlcv-infer`` run did: counts, the timing split, and the lines the CLI prints."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from .task import get_task


class LatencyStats:
    """Per-image service times in constant memory: exact count and mean, percentiles from a
    uniform reservoir sample (exact while fewer than ``capacity`` images were timed)."""

    def __init__(self, capacity: int = 20_000, seed: int = 0):
        self.sample = np.empty(capacity, dtype=np.float64)
        self.count = 0
        self.total = 0.0
        self.rng = np.random.default_rng(seed)

    def add(self, seconds: float) -> None:
        self.total += seconds
        if self.count < len(self.sample):
            self.sample[self.count] = seconds
        else:
            slot = int(self.rng.integers(0, self.count + 1))
            if slot < len(self.sample):
                self.sample[slot] = seconds
        self.count += 1

    def milliseconds(self) -> dict[str, float]:
        """``latency_mean_ms``, ``latency_p50_ms``, ``latency_p95_ms`` (NaN when nothing was timed)."""
        if not self.count:
            return {"latency_mean_ms": math.nan, "latency_p50_ms": math.nan, "latency_p95_ms": math.nan}
        kept = self.sample[: min(self.count, len(self.sample))] * 1000.0
        return {
            "latency_mean_ms": 1000.0 * self.total / self.count,
            "latency_p50_ms": float(np.percentile(kept, 50)),
            "latency_p95_ms": float(np.percentile(kept, 95)),
        }


@dataclass
class InferSummary:
    """What a run did. ``metrics``/``label_report`` are None without labels.

    ``processed``: images run through the model in this run; ``kept``: images whose outputs an
    earlier run wrote (``--skip-existing``); ``skipped``: files that are not images; ``failed``:
    images that could not be processed (all listed in errors.csv; ``errors`` holds the first
    1000).
    """

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
    kept: int = 0
    backend: str | None = None  # which backend ran, and why

    @property
    def exit_code(self) -> int:
        """0 when some image has its outputs (and, with ``strict``, none failed); else 1."""
        if self.processed + self.kept == 0 or (self.strict and self.failed):
            return 1
        return 0

    @property
    def failure_message(self) -> str | None:
        """Why :attr:`exit_code` is 1 (None when it is 0)."""
        where = self.outputs.get("errors_csv")
        first = f"first: {self.errors[0][0]}: {self.errors[0][1]}; " if self.errors else ""
        if self.processed + self.kept == 0:
            return f"no image was processed successfully ({self.failed} failed; {first}all reasons in {where})"
        if self.strict and self.failed:
            return f"{self.failed} image(s) failed and --strict was given ({first}all reasons in {where})"
        return None

    def lines(self) -> list[str]:
        """The human-readable summary the CLI prints."""
        kept = f"{self.kept} kept from an earlier run, " if self.kept else ""
        out = [
            f"{self.processed} processed, {kept}{self.skipped} skipped (not images), {self.failed} failed "
            f"of {self.found} image files -> {self.out_dir}"
        ]
        if self.backend:
            out.append(f"backend: {self.backend}")
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
    if get_task(task).per_pixel:
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
        f"{report[key]['count']} {key.replace('_', ' ')}" + (f" ({report[key]['unit']})" if "unit" in report[key] else "")
        for key in ("missing", "size_mismatch", "unreadable", "invalid", "out_of_range", "labels_without_image")
        if key in report and report[key]["count"]
    ]
    if problems:
        lines.append("label problems: " + ", ".join(problems) + " (rules and lists in metrics.json)")
    return lines
