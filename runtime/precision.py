"""The precisions a deployed model can have (DESIGN.md contract 7): one record each, used everywhere.

A :class:`Precision` names the file suffix dlcv-export writes it under (``<arch>.fp16.onnx``),
its default passing gate against PyTorch FP32, and the near-tie margin parity uses for it.
Export, bench, analyze, the metadata and every CLI read these records; nothing else lists
precisions. The precision of a file is what its metadata says, never guessed from its name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DlcvError, unknown_choice


@dataclass(frozen=True)
class Gate:
    """A passing bar against the reference: minimum label agreement and/or maximum metric drop
    (in metric units: 0.01 = 1 point of mIoU or top-1)."""

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

    def gate_for(self, labelled: bool) -> Gate:
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
