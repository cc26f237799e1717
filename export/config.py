"""Export configuration: one frozen record built at the CLI edge (docs/architecture.md, "Habits")."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.precision import FP16, FP32, INT8, PRECISION_NAMES, Gate, Precision, get_precision
from dlcv.runtime.tensorrt.profile import PROFILE_MAX_BATCH, PROFILE_MIN_BATCH, PROFILE_OPT_BATCH, Shape4  # noqa: F401

DEFAULT_OPSET = 18
# Passing bar for FP32 ONNX vs PyTorch FP32. The error allowed is
# ``atol * max(1, largest |reference logit|)``: absolute for small logits, relative beyond 1.
# Measured on CPU (onnxruntime 1.31 vs torch 2.15, VGG16-BN, FCN8s, FCN32s at widths
# 0.06..1.0): max error 1e-8..6e-7 for logits up to ~1, i.e. ~1e-6 relative. 1e-3 leaves
# three orders of magnitude for other CPUs, thread counts and trained weights, and still
# catches real defects (a wrong crop or a mis-lowered op gives errors of order 1e-2..1).
DEFAULT_ATOL = 1e-3
EXPORTERS = ("auto", "dynamo", "torchscript")

# The gates every precision is held to against PyTorch FP32 (a warning when missed; an error
# with --strict) are the precision records' (dlcv.runtime.precision); the options below replace
# one bar of one record each (GATE_OPTIONS: precision -> (Gate field, ExportConfig field)):
# --min-agreement FP32's label agreement (which the FP32 verification uses too),
# --fp16-min-agreement FP16's, --int8-max-drop INT8's mIoU/top-1 drop on labelled images
# (without labels INT8's record gate, label agreement, stands).
GATE_OPTIONS = {
    FP32.name: ("min_agreement", "min_agreement"),
    FP16.name: ("min_agreement", "fp16_min_agreement"),
    INT8.name: ("max_metric_drop", "int8_max_drop"),
}
DEFAULT_CALIB_COUNT = 64  # calibration images (an even spread over the folder)
DEFAULT_EVAL_COUNT = 100  # images in the precision comparison
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
# Measured on the trained demo FCN8s (64 calibration images, 150 val images, the INT8 file as
# written: uint8 activations, logits layer FP32): mIoU drop minmax 0.12, percentile 0.15,
# entropy 0.44 points; minmax also had the smallest max logit error (benchmarks/results/int8-study).
DEFAULT_CALIBRATION_METHOD = "minmax"

# TensorRT engine defaults (the profile's batch sizes live in dlcv.runtime.tensorrt.profile,
# shared with onnxruntime's TensorRT provider).
DEFAULT_WORKSPACE_MB = 4096
TIMING_CACHE_NAME = "tensorrt.timing.cache"  # in --out, shared by every build there


@dataclass(frozen=True)
class TensorRTConfig:
    """How ``dlcv-export --trt`` builds ``<arch>.plan``.

    ``precision`` picks the ONNX file the engine is compiled from (its types decide the
    engine's, docs/architecture.md contract 5). ``min_shape``/``opt_shape``/``max_shape``: the input's
    optimisation profile (None: derived from the checkpoint's input size, see
    :func:`dlcv.export.tensorrt_build.profile_shapes`). ``timing_cache``: None = ``<out>/{cache}``.
    ``version_compatible``: ``VERSION_COMPATIBLE`` + ``EXCLUDE_LEAN_RUNTIME``: an engine the lean
    runtime of the same TensorRT version loads, and later TensorRT versions load through that
    version's lean runtime library (``dlcv-infer --lean-runtime PATH``); no runtime is embedded.
    """.replace("{cache}", TIMING_CACHE_NAME)

    precision: str = "fp16"
    min_shape: Shape4 | None = None
    opt_shape: Shape4 | None = None
    max_shape: Shape4 | None = None
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Path | None = None
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))
        problems = []
        if self.precision not in PRECISION_NAMES:
            problems.append(f"--precision must be one of {', '.join(PRECISION_NAMES)}, not {self.precision!r}")
        if self.workspace_mb < 1:
            problems.append(f"--workspace must be a positive number of MB, got {self.workspace_mb}")
        for name in ("min_shape", "opt_shape", "max_shape"):
            shape = getattr(self, name)
            if shape is not None and (len(shape) != 4 or min(shape) < 1):
                problems.append(f"--{name.replace('_', '-')} needs four positive values BxCxHxW, got {shape}")
        if problems:
            raise DlcvUsageError("; ".join(problems))


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

    Reduced precisions (written beside the FP32 file, which is always written first):
    ``fp16`` -> ``<arch>.fp16.onnx``; ``int8`` -> ``<arch>.int8.onnx``, calibrated on up to
    ``calib_count`` images of ``calib`` (a folder of images, or a dataset whose train split is
    used) with ``calib_method``; ``int8_fp32_layers``: the layers computed in FP32 (None: the
    layers computing the logits, see :mod:`dlcv.export.int8`; () for none); ``int8_sensitivity``:
    first measure each layer's share of the INT8 metric drop on ``val``
    (:mod:`dlcv.export.int8_sensitivity`). Each is compared with PyTorch FP32 on up to ``eval_count``
    images: ``val`` (a dataset opened as the checkpoint recorded it; its evaluation split,
    :data:`dlcv.runtime.datasets.EVAL_SPLIT_ORDER`, with labels), else the calibration dataset's
    labelled images, else the calibration or ``images`` folder, else synthetic images. Gates:
    the precision records' defaults, with ``min_agreement``, ``fp16_min_agreement`` and
    ``int8_max_drop`` in their place (:meth:`gate`); ``strict`` makes a miss an error.
    ``tie_margin``: None = each precision record's near-tie margin.
    ``tensorrt``: also build a TensorRT engine (see :class:`TensorRTConfig`).
    ``argmax``: every ONNX file written (and so the engine built from one) ends in the task's
    in-graph postprocessing head instead of logits (:mod:`dlcv.export.heads`): an ArgMax label
    map for segmentation, TopK indices and probabilities for classification.
    """

    checkpoint: Path
    out: Path = Path(".")
    opset: int = DEFAULT_OPSET
    static: bool = False
    atol: float = DEFAULT_ATOL
    min_agreement: float = FP32.gate.min_agreement  # type: ignore[assignment]
    tie_margin: float | None = None
    input_size: tuple[int, int] | None = None
    batch: int = 1
    verify_shapes: tuple[tuple[int, int, int], ...] | None = None
    images: Path | None = None
    seed: int = 0
    exporter: str = "auto"
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    calib_count: int = DEFAULT_CALIB_COUNT
    calib_method: str = DEFAULT_CALIBRATION_METHOD
    val: Path | None = None
    eval_count: int = DEFAULT_EVAL_COUNT
    fp16_min_agreement: float = FP16.gate.min_agreement  # type: ignore[assignment]
    int8_max_drop: float = INT8.gate.max_metric_drop  # type: ignore[assignment]
    int8_fp32_layers: tuple[str, ...] | None = None
    int8_sensitivity: bool = False
    strict: bool = False
    tensorrt: TensorRTConfig | None = None
    argmax: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out", Path(self.out))
        for name in ("images", "calib", "val"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        problems = []
        if "int8" in self.precisions and self.calib is None:
            why = "--int8" if self.int8 else "--trt --precision int8"
            problems.append(f"{why} needs --calib DIR: a folder of real images to calibrate the INT8 ranges on")
        if self.static and ("int8" in self.precisions or self.val is not None):
            problems.append(
                "--static fixes the input shape, but INT8 calibration and --val run images at their own sizes; "
                "export without --static (an engine's shapes are fixed by --min-shape/--opt-shape/--max-shape)"
            )
        if self.int8_fp32_layers is not None:
            object.__setattr__(self, "int8_fp32_layers", tuple(self.int8_fp32_layers))
        int8_only = [o for o, on in (("--int8-fp32", self.int8_fp32_layers is not None), ("--int8-sensitivity", self.int8_sensitivity)) if on]
        if int8_only and "int8" not in self.precisions:
            problems.append(f"{' and '.join(int8_only)} apply to the INT8 file; add --int8")
        if self.int8_sensitivity and self.val is None:
            problems.append("--int8-sensitivity scores each layer's metric drop on labelled images; add --val DATASET")
        if self.calib_count < 1 or self.eval_count < 1:
            problems.append(f"--calib-count and --eval-count must be positive, got {self.calib_count} and {self.eval_count}")
        if self.calib_method not in CALIBRATION_METHODS:
            problems.append(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, not {self.calib_method!r}")
        if not 0 <= self.fp16_min_agreement <= 1:
            problems.append(f"--fp16-min-agreement must be within 0..1, got {self.fp16_min_agreement}")
        if not 0 <= self.int8_max_drop <= 1:
            problems.append(f"the INT8 metric drop allowed must be within 0..1 (0..100 points), got {self.int8_max_drop}")
        if not 7 <= self.opset <= 25:
            problems.append(f"--opset must be within 7..25, got {self.opset}")
        if not self.atol >= 0:
            problems.append(f"--atol must be a non-negative number, got {self.atol}")
        if self.tie_margin is not None and not self.tie_margin >= 0:
            problems.append(f"tie_margin must be a non-negative number, got {self.tie_margin}")
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

    @property
    def precisions(self) -> tuple[str, ...]:
        """The ONNX precisions to write: fp32 always, then those asked for (or the engine's)."""
        engine = self.tensorrt.precision if self.tensorrt is not None else None
        wanted = {FP32.name, *(p.name for p, on in ((FP16, self.fp16), (INT8, self.int8)) if on), engine}
        return tuple(p for p in PRECISION_NAMES if p in wanted)

    def gate(self, precision: Precision | str, labelled: bool) -> Gate:
        """``precision``'s default gate (:meth:`Precision.default_gate`) with the bar this config's
        option sets (:data:`GATE_OPTIONS`) in place of the record's; a bar the default gate does
        not hold (INT8's metric drop without labels) stays unset."""
        record = get_precision(precision) if isinstance(precision, str) else precision
        gate = record.default_gate(labelled)
        bar, option = GATE_OPTIONS.get(record.name, (None, None))
        if bar is None or getattr(gate, bar) is None:
            return gate
        return dataclasses.replace(gate, **{bar: getattr(self, option)})
