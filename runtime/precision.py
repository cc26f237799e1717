"""The precisions a deployed model can have (docs/architecture.md contract 9): one record each, used everywhere.

A :class:`Precision` names the file suffix dlcv-export writes it under (``<arch>.fp16.onnx``),
its default passing gate against PyTorch FP32, and the near-tie margin parity uses for it.
Export, bench, analyze, the metadata and every CLI read these records; nothing else lists
precisions. The precision of a file is what its metadata says, never guessed from its name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .errors import DlcvError, unknown_choice


def percent(share: float) -> str:
    """``0.995`` -> ``"99.5"``: one decimal, more only where one would round the bar."""
    text = f"{100 * share:.1f}"
    return text if abs(float(text) - 100 * share) < 1e-9 else f"{100 * share:.6g}"


@dataclass(frozen=True)
class Gate:
    """A passing bar against the reference (:func:`dlcv.runtime.comparator.judge` applies it).

    ``min_agreement``: share of labels (pixels or top-1) that must match. ``max_metric_drop``:
    how far the task metric may fall, in metric units (0.01 = 1 point of mIoU or top-1).
    ``max_abs_error``: largest absolute logit error allowed, relative beyond logits of magnitude
    1 (see :meth:`error_bound`). NaN/inf logits fail every gate.
    """

    min_agreement: float | None = None
    max_metric_drop: float | None = None
    max_abs_error: float | None = None

    def error_bound(self, max_abs_reference: float) -> float:
        """``max_abs_error`` in logit units up to reference logits of magnitude 1, relative to
        the largest one beyond (``inf`` when the gate sets no bound)."""
        if self.max_abs_error is None:
            return math.inf
        scale = max_abs_reference if math.isfinite(max_abs_reference) else 1.0
        return self.max_abs_error * max(1.0, scale)

    def describe(self, metric_name: str) -> str:
        parts = []
        if self.max_abs_error is not None:
            parts.append(f"max abs err <= {self.max_abs_error:g} x max(1, |logit|)")
        if self.min_agreement is not None:
            parts.append(f"agreement >= {percent(self.min_agreement)}%")
        if self.max_metric_drop is not None:
            parts.append(f"{metric_name} drop <= {100 * self.max_metric_drop:.1f} pt")
        return ", ".join(parts) or "-"


@dataclass(frozen=True)
class Precision:
    """One precision: its name, file suffix, default gates and near-tie margin.

    ``gate`` applies when the comparison images have labels, ``unlabelled_gate`` when they do
    not (then the task metric cannot be scored and label agreement stands in for it).
    ``tie_margin``: a label flip where the reference's top-2 logit margin is below this is
    counted as a near tie (rounding of this precision can cause it), in logit units.
    """

    name: str
    file_suffix: str  # "" for fp32: <arch>.onnx; ".fp16": <arch>.fp16.onnx
    gate: Gate
    unlabelled_gate: Gate
    tie_margin: float
    description: str

    def default_gate(self, labelled: bool) -> Gate:
        """The bar of this precision when the comparison images have labels, or not."""
        return self.gate if labelled else self.unlabelled_gate

    def file_name(self, arch: str, ext: str = ".onnx") -> str:
        """``fcn8s.onnx``, ``fcn8s.fp16.onnx``, ``fcn8s.int8.plan``."""
        return f"{arch}{self.file_suffix}{ext}"

    def path(self, out: str | Path, arch: str, ext: str = ".onnx") -> Path:
        return Path(out) / self.file_name(arch, ext)


# FP32 vs PyTorch FP32: measured max logit error ~1e-6 relative (onnxruntime, CPU), so 99.9 %
# agreement and a 1e-3 near-tie margin (about a thousand times that noise) catch real defects.
# FP16 (11-bit mantissa) and INT8 carry errors of order 1e-2 and 1e-1 on logits of magnitude
# 1-10: their margins are of that order. INT8 is judged by the task metric (mIoU/top-1 drop)
# on labelled images; without labels agreement stands in (a narrow random-weight FCN8s, whose
# top-2 margins are small everywhere, reaches 98.3-98.4 %; the trained demo FCN8s 99.998 %).
FP32 = Precision("fp32", "", Gate(min_agreement=0.999), Gate(min_agreement=0.999), 1e-3,
                 "FP32 weights and activations (the exported graph)")  # fmt: skip
FP16 = Precision("fp16", ".fp16", Gate(min_agreement=0.995), Gate(min_agreement=0.995), 1e-2,
                 "FP16 weights and activations, FP32 I/O, range-sensitive ops kept FP32")  # fmt: skip
INT8 = Precision("int8", ".int8", Gate(max_metric_drop=0.01), Gate(min_agreement=0.98), 1e-1,
                 "INT8 QDQ graph calibrated on real images")  # fmt: skip

PRECISIONS: dict[str, Precision] = {p.name: p for p in (FP32, FP16, INT8)}
PRECISION_NAMES: tuple[str, ...] = tuple(PRECISIONS)


def get_precision(name: str) -> Precision:
    """The record of ``name``; an unknown name is answered with the valid ones."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise DlcvError(unknown_choice("precision", name, PRECISIONS)) from None
