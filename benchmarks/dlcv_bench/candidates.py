"""The rows of a benchmark: the PyTorch baselines and every model file, each behind the Backend contract.

A :class:`Candidate` is opened once; a failure to open becomes its ``error`` and the run goes
on with the others. Any file :func:`dlcv.runtime.backends.open_backend` opens is a row
(ONNX of any precision on onnxruntime, TensorRT engines); an artifact exported from another
checkpoint is refused, since its parity against this one would mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlcv.runtime.backends import Backend, open_backend
from dlcv.runtime.errors import first_line
from dlcv.runtime.metadata import ArtifactMetadata

from .memory import current_rss_mb

SUFFIX_FAMILIES = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt", ".pt": "torch", ".pth": "torch"}
ENGINE_FAMILIES = ("tensorrt",)  # run on the GPU whatever --device says


@dataclass
class Candidate:
    """One backend row and what became of it."""

    backend: str  # family: torch | onnxruntime | tensorrt
    variant: str  # eager, channels_last, autocast, cuda_graphs for torch; the file kind otherwise
    precision: str
    device: str
    artifact: Path | None = None
    opener: Callable[[], Backend] | None = None
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    instance: Backend | None = None
    open_rss_mb: float | None = None
    label: str = ""

    @property
    def runnable(self) -> bool:
        """Opened and not skipped (a failure in one step does not keep it from the others)."""
        return self.instance is not None and self.skipped is None

    def fail(self, stage: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {first_line(exc)}"
        self.errors.append(f"{stage}: {text}")

    def open(self) -> None:
        """Open the backend (its resident-memory growth is recorded); a failure is recorded."""
        if self.opener is None or self.skipped is not None or self.errors:
            return
        before = current_rss_mb()
        try:
            self.instance = self.opener()
        except Exception as exc:  # a backend that cannot open is a row's error
            self.fail("open", exc)
            return
        after = current_rss_mb()
        self.open_rss_mb = None if before is None or after is None else after - before
        if self.backend != "torch":
            self.precision = self.instance.precision  # the file's own metadata decides

    def close(self) -> None:
        if self.instance is not None:
            try:
                self.instance.close()
            finally:
                self.instance = None


def precision_from_name(path: Path) -> str:
    """``x.fp16.onnx`` -> fp16, ``x.int8.plan`` -> int8, else fp32 (until the file's metadata says)."""
    parts = path.name.lower().split(".")
    return next((p for p in ("fp16", "int8") if p in parts[1:-1]), "fp32")


def artifact_candidate(path: Path, device: str, threads: int | None, reference: ArtifactMetadata) -> Candidate:
    """A row for a model file, opened by :func:`open_backend` on ``device`` (engines on the GPU)."""
    family = SUFFIX_FAMILIES.get(path.suffix.lower(), path.suffix.lstrip(".") or "unknown")
    run_on = ("cuda" if not device.startswith("cuda") else device) if family in ENGINE_FAMILIES else device
    options = {"threads": threads} if threads else {}

    def opener() -> Backend:
        backend = open_backend(path, device=run_on, **options)
        check_same_model(backend, reference)
        return backend

    return Candidate(family, path.suffix.lower().lstrip("."), precision_from_name(path), run_on, path, opener)


def check_same_model(backend: Backend, reference: ArtifactMetadata) -> None:
    """Refuse an artifact of another checkpoint, task or class list (closing it first)."""
    md = backend.metadata
    problems = []
    if (
        md.source_checkpoint_sha256
        and reference.source_checkpoint_sha256
        and md.source_checkpoint_sha256 != reference.source_checkpoint_sha256
    ):
        problems.append(f"it was exported from another checkpoint (SHA-256 {md.source_checkpoint_sha256[:12]}…)")
    if (md.task, md.num_classes) != (reference.task, reference.num_classes):
        problems.append(
            f"it is {md.task} with {md.num_classes} classes, the checkpoint {reference.task} with {reference.num_classes}"
        )
    if problems:
        backend.close()
        raise ValueError(f"{backend.path.name}: not this checkpoint's model: " + "; ".join(problems))


def assign_labels(candidates: list[Candidate]) -> None:
    """Readable, unique row names: ``torch eager fp32``, ``onnxruntime fp16``, ``tensorrt int8``."""
    seen: dict[str, int] = {}
    for c in candidates:
        base = (
            f"{c.backend} {c.variant} {c.precision}"
            if c.backend == "torch" and c.artifact is None
            else f"{c.backend} {c.precision}"
        )
        if c.artifact is not None and base in seen:
            base = f"{base} ({c.artifact.name})"
        seen[base] = seen.get(base, 0) + 1
        c.label = base if seen[base] == 1 else f"{base} #{seen[base]}"
