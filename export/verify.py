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
