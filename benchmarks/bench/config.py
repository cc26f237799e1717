"""Benchmark configuration: one frozen record built at the CLI edge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dlcv.runtime.backends import backend_names, backends_for, deployed_suffixes
from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.precision import PRECISION_NAMES, RUN_PRECISION_NAMES

# The PyTorch baselines besides eager FP32 (dlcv.bench.torch_variants.TORCH_VARIANTS, which imports torch).
TORCH_VARIANT_NAMES = ("channels_last", "autocast", "cuda_graphs", "compile")
DEFAULT_RESULTS_DIR = Path("benchmarks/results")
DEFAULT_SHAPE = (224, 224)  # when neither --shape, the preprocessing nor the data fixes one


@dataclass(frozen=True)
class BenchConfig:
    """What ``dlcv-bench`` measures.

    ``artifacts``: model files any :func:`dlcv.runtime.backends.open_backend` opens (.onnx,
    .plan/.engine), or served models (``triton://HOST:PORT/NAME``, kept as URL strings);
    empty = export ``precisions`` from the checkpoint into a temporary folder; a run precision
    among them (``bf16``) adds rows of the FP32 file on each backend that runs it in that precision.
    ``data``: None (synthetic images at ``shape``), ``"demo"`` (the built-in demo set) or a
    dataset folder, opened as the checkpoint recorded it (its evaluation split: val, else test,
    else train), or a plain folder of images.
    ``backends``: registry names of the backends to run (None = every PyTorch baseline, and each
    model file on every installed backend that opens it and runs on ``device``: on the CPU an
    ``.onnx`` on onnxruntime and OpenVINO; :func:`dlcv.bench.candidates.row_backends`): each
    model file runs on every named backend that opens it (``onnxruntime``: only there), ``torch``
    adds the PyTorch baselines; PyTorch eager FP32 always runs, it is the parity reference.
    ``torch_variants``: the PyTorch baselines besides eager to time (None = all of
    :data:`dlcv.bench.torch_variants.TORCH_VARIANTS`). ``shape`` (H, W): the latency input size.
    Timing: ``warmup`` untimed calls, then ``iters`` timed calls per backend and batch size,
    split into ``rounds`` interleaved rounds (every backend takes its turn in each round, so
    a noisy machine slows them alike). ``ceiling_size``: the matrix size of the FP32 matmul
    ceiling (None: 2048 on the CPU, 8192 on a GPU). ``images``: images compared for parity;
    ``e2e_images``: images run through the file-to-file pipeline split. ``tie_margin``: None =
    each precision record's margin (:mod:`dlcv.runtime.precision`).
    """

    checkpoint: Path
    artifacts: tuple[Path | str, ...] = ()
    data: str | None = None
    backends: tuple[str, ...] | None = None
    torch_variants: tuple[str, ...] | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    shape: tuple[int, int] | None = None
    warmup: int = 3
    iters: int = 20
    rounds: int = 5
    device: str = "cpu"
    precisions: tuple[str, ...] = PRECISION_NAMES
    images: int = 32
    e2e_images: int = 16
    bootstrap: int = 1000
    tie_margin: float | None = None
    seed: int = 0
    threads: int | None = None
    ceiling_size: int | None = None
    out: Path = DEFAULT_RESULTS_DIR
    name: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "artifacts", tuple(str(a) if "://" in str(a) else Path(a) for a in self.artifacts))
        object.__setattr__(self, "out", Path(self.out))
        problems = []
        if self.checkpoint.suffix.lower() in deployed_suffixes():
            problems.append(
                f"{self.checkpoint} is a deployed model; dlcv-bench takes the PyTorch checkpoint first (the parity "
                f"reference), then the artifacts: dlcv-bench best.pt {self.checkpoint}"
            )
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            problems.append(f"--batch-sizes needs positive integers, got {list(self.batch_sizes)}")
        if self.warmup < 0 or self.iters < 1:
            problems.append(f"--warmup must be >= 0 and --iters >= 1, got {self.warmup} and {self.iters}")
        if not 1 <= self.rounds:
            problems.append(f"--rounds must be >= 1, got {self.rounds}")
        reference = backends_for(self.checkpoint)  # the PyTorch reference's backend decides the devices
        devices = reference[0].devices if reference else ("cpu", "cuda")
        if self.device.split(":")[0] not in devices:
            problems.append(f"--device must be {' or '.join(devices)} (cuda:N), not {self.device!r}")
        known = PRECISION_NAMES + RUN_PRECISION_NAMES
        unknown = [p for p in self.precisions if p not in known]
        if unknown or "fp32" not in self.precisions:
            problems.append(f"--precisions takes {', '.join(known)} and must include fp32, got {list(self.precisions)}")
        if self.backends is not None:
            bad = [b for b in self.backends if b not in backend_names()]
            if bad or not self.backends:
                problems.append(f"--backends takes {', '.join(backend_names())}, got {list(self.backends)}")
        if self.torch_variants is not None and not set(self.torch_variants) <= set(TORCH_VARIANT_NAMES):
            problems.append(
                f"--torch-variants takes {', '.join(TORCH_VARIANT_NAMES)} (eager always runs), got {list(self.torch_variants)}"
            )
        if self.images < 1 or self.e2e_images < 0:
            problems.append(f"--images must be >= 1 and --e2e-images >= 0, got {self.images} and {self.e2e_images}")
        if self.bootstrap < 1:
            problems.append(f"--bootstrap must be >= 1, got {self.bootstrap}")
        if self.tie_margin is not None and not self.tie_margin >= 0:
            problems.append(f"--tie-margin must be a non-negative number, got {self.tie_margin}")
        if self.ceiling_size is not None and self.ceiling_size < 16:
            problems.append(f"--ceiling-size must be at least 16, got {self.ceiling_size}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"--threads must be positive, got {self.threads}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            problems.append(f"--name must be a plain folder name (letters, digits, . _ -), got {self.name!r}")
        if problems:
            raise DlcvUsageError("; ".join(problems))

    @property
    def rounds_used(self) -> int:
        """Interleaved rounds actually run (never more than the timed calls)."""
        return min(self.rounds, self.iters)

    def wants(self, backend: str) -> bool:
        """True when ``backend`` is to be benchmarked."""
        return self.backends is None or backend in self.backends

    def wants_torch_variant(self, variant: str) -> bool:
        """True when the PyTorch baseline ``variant`` is to be timed (eager always is)."""
        return variant == "eager" or self.torch_variants is None or variant in self.torch_variants


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """``"1,8"`` -> (1, 8)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DlcvUsageError(f"{option} must be a comma-separated list of integers, not {text!r}") from None
    if not values:
        raise DlcvUsageError(f"{option} needs at least one value")
    return values


def parse_name_list(text: str, option: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """``"torch,onnxruntime"`` -> ("torch", "onnxruntime"); names outside ``allowed`` are a usage error."""
    values = tuple(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise DlcvUsageError(f"{option} takes a comma-separated list of {', '.join(allowed)}, not {text!r}")
    return values
