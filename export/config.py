"""Export configuration: one frozen record built at the CLI edge (DESIGN.md, "Habits to copy")."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.parity import DEFAULT_TIE_MARGIN

DEFAULT_OPSET = 18
# Passing bar for FP32 ONNX vs PyTorch FP32. The error allowed is
# ``atol * max(1, largest |reference logit|)``: absolute for small logits, relative beyond 1.
# Measured on CPU (onnxruntime 1.31 vs torch 2.15, VGG16-BN, FCN8s, FCN32s at widths
# 0.06..1.0): max error 1e-8..6e-7 for logits up to ~1, i.e. ~1e-6 relative. 1e-3 leaves
# three orders of magnitude for other CPUs, thread counts and trained weights, and still
# catches real defects (a wrong crop or a mis-lowered op gives errors of order 1e-2..1).
DEFAULT_ATOL = 1e-3
DEFAULT_MIN_AGREEMENT = 0.999
EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclass(frozen=True)
class ExportConfig:
    """What ``dlcv-export`` does with one checkpoint.

    ``input_size`` (height, width): the export sample's size, the size fixed by ``static``,
    and the "natural" verification size; None = the preprocessing size, or 128×128 when the
    preprocessing keeps the image size. ``batch``: the sample's batch (fixed by ``static``).
    ``verify_shapes``: (batch, height, width) triples to verify at; None = chosen from the
    model's dynamic axes (two or three shapes, batch > 1 where the batch is dynamic; see
    :func:`dlcv.export.onnx_export.plan_inputs`).
    ``images``: optional folder of real images for verification (synthetic images otherwise).
    ``exporter``: ``auto`` tries torch.export (dynamo) and falls back to TorchScript.
    """

    checkpoint: Path
    out: Path = Path(".")
    opset: int = DEFAULT_OPSET
    static: bool = False
    atol: float = DEFAULT_ATOL
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    tie_margin: float = DEFAULT_TIE_MARGIN
    input_size: tuple[int, int] | None = None
    batch: int = 1
    verify_shapes: tuple[tuple[int, int, int], ...] | None = None
    images: Path | None = None
    seed: int = 0
    exporter: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out", Path(self.out))
        if self.images is not None:
            object.__setattr__(self, "images", Path(self.images))
        problems = []
        if not 7 <= self.opset <= 25:
            problems.append(f"--opset must be within 7..25, got {self.opset}")
        if not self.atol >= 0:
            problems.append(f"--atol must be a non-negative number, got {self.atol}")
        if not 0 <= self.min_agreement <= 1:
            problems.append(f"--min-agreement must be within 0..1, got {self.min_agreement}")
        if self.batch < 1:
            problems.append(f"--batch must be positive, got {self.batch}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            problems.append(f"--input-size needs two positive values (height, width), got {self.input_size}")
        if self.verify_shapes is not None and (
            not self.verify_shapes or any(len(s) != 3 or min(s) < 1 for s in self.verify_shapes)
        ):
            problems.append("verify_shapes needs (batch, height, width) triples of positive values")
        if self.exporter not in EXPORTERS:
            problems.append(f"exporter must be one of {', '.join(EXPORTERS)}, not {self.exporter!r}")
        if problems:
            raise DlcvUsageError("; ".join(problems))
