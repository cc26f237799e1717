"""The rows of a benchmark: the PyTorch baselines and every model file, each behind the Backend contract.

A :class:`BenchRow` is opened once; a failure to open becomes its ``error`` and the run goes
on with the others. A model file (or a served model, ``triton://HOST:PORT/NAME``) is a row per
backend it runs on (:func:`artifact_rows`): by default every installed backend that opens it
and runs on the run's device (an ``.onnx`` on the CPU: onnxruntime and OpenVINO, two rows),
else its suffix's default (whose opening then says what is missing); with ``--backends`` each
named backend that opens it. Its precision is what the file's metadata says, never guessed
from its name. An artifact exported from another checkpoint is refused, since its parity
against this one would mean nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlcv.runtime.backends import Backend, backends, backends_for, choose_backend, open_backend
from dlcv.runtime.backends.registry import scheme_of
from dlcv.runtime.errors import first_line
from dlcv.runtime.metadata import ArtifactMetadata

from .memory import current_rss_mb

UNKNOWN_PRECISION = "-"  # a model file's precision before its metadata is read


@dataclass
class BenchRow:
    """One backend row and what became of it."""

    backend: str  # the backend's registry name: torch | onnxruntime | openvino | tensorrt | ...
    variant: str  # eager, channels_last, autocast, cuda_graphs, compile for torch; the file kind otherwise
    precision: str  # the file's metadata decides once it is opened
    device: str
    artifact: Path | str | None = None  # a model file, or a served model's triton:// URL
    opener: Callable[[], Backend] | None = None
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    instance: Backend | None = None
    open_rss_mb: float | None = None
    label: str = ""
    default_backend: str | None = None  # the backend dlcv-infer picks for this file (None: a PyTorch row)

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
        if self.artifact is not None:
            self.precision = self.instance.precision  # the file's own metadata decides

    def close(self) -> None:
        if self.instance is not None:
            try:
                self.instance.close()
            finally:
                self.instance = None


@functools.lru_cache(maxsize=None)
def backend_version(name: str) -> str | None:
    """The library version of the backend a row runs on (None for a name no backend has)."""
    cls = backends().get(name)
    return cls.library_version() if cls is not None else None


def artifact_name(artifact: Path | str) -> str:
    """A file's name, or a served model's URL as given."""
    return str(artifact) if "://" in str(artifact) else Path(artifact).name


def artifact_kind(artifact: Path | str) -> str:
    """``onnx``, ``plan``; ``triton`` for a served model."""
    scheme = scheme_of(artifact)
    return scheme if scheme is not None else (Path(artifact).suffix.lower().lstrip(".") or "unknown")


def installed(cls: type[Backend]) -> bool:
    """True when the backend's library imports here."""
    return backend_version(cls.name) is not None


def row_backends(path: Path | str, selected: tuple[str, ...] | None, device: str = "cpu") -> list[type[Backend]]:
    """The backends a model file is benchmarked on, in registry order: with ``selected``
    (``--backends``) each one of them that opens it; by default every installed backend that
    opens it and runs on ``device`` (the peers a user of this machine can pick), or, when none
    is, its suffix's default (so the row's opening says what is missing)."""
    found = backends_for(path)
    if selected is not None:
        return [c for c in found if c.name in selected]
    base = device.split(":", 1)[0].lower()
    usable = [c for c in found if (base in c.devices or c.needs_gpu) and installed(c)]
    return usable or found[:1]


def row_device(cls: type[Backend], device: str) -> str:
    """Where ``cls`` runs for ``--device device``: a GPU-only backend (TensorRT) on ``cuda`` always."""
    return device if not cls.needs_gpu or device.startswith("cuda") else "cuda"


def artifact_rows(
    path: Path | str, selected: tuple[str, ...] | None, device: str, threads: int | None, reference: ArtifactMetadata
) -> list[BenchRow]:
    """The rows of one model file (or served model), one per backend of :func:`row_backends`
    (none: the file is not run). A file no backend opens is one row whose opening fails with the
    registry's message."""
    if not backends_for(path):
        return [_row(path, artifact_kind(path), None, device, threads, reference)]
    default = choose_backend(path, None, device).backend.name  # read now: an exported file is gone at report time
    rows = [
        _row(path, cls.name, cls.name, row_device(cls, device), threads, reference)
        for cls in row_backends(path, selected, device)
    ]
    for row in rows:
        row.default_backend = default
    return rows


def run_precision_rows(path: Path, precision: str, selected: tuple[str, ...] | None, device: str, threads: int | None,
                       reference: ArtifactMetadata) -> list[BenchRow]:  # fmt: skip
    """The rows of a file run in a run precision (``bf16``: the FP32 file in BF16), one per backend of
    :func:`row_backends` that runs it (:attr:`~dlcv.runtime.backends.Backend.run_precisions`); a
    backend that cannot on this machine (a CPU without BF16) fails its opening with the reason."""
    runs = [cls for cls in row_backends(path, selected, device) if precision in cls.run_precisions]
    if not runs:
        return []
    default = choose_backend(path, None, device, precision=precision).backend.name
    rows = [_row(path, cls.name, cls.name, row_device(cls, device), threads, reference, precision) for cls in runs]
    for row in rows:
        row.default_backend = default
        row.precision = precision
    return rows


def _row(path: Path | str, label: str, backend: str | None, device: str, threads: int | None,
         reference: ArtifactMetadata, precision: str | None = None) -> BenchRow:  # fmt: skip
    cls = backends().get(backend) if backend else None
    options = {"threads": threads} if threads and cls is not None and "threads" in cls.options else {}
    if precision is not None:
        options["precision"] = precision

    def opener() -> Backend:
        opened = open_backend(path, device=device, backend=backend, **options)
        check_same_model(opened, reference)
        return opened

    return BenchRow(label, artifact_kind(path), UNKNOWN_PRECISION, device, path, opener)


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
        name = getattr(backend, "url", None) or backend.path.name
        raise ValueError(f"{name}: not this checkpoint's model: " + "; ".join(problems))


def tf32_mark(row: BenchRow) -> str:
    """``+tf32`` for an FP32 TensorRT engine built with ``--tf32`` (its sidecar says so): not true FP32."""
    binding = getattr(row.instance, "binding", None)
    return "+tf32" if row.precision == "fp32" and getattr(binding, "tf32", False) else ""


def assign_labels(rows: list[BenchRow]) -> None:
    """Readable, unique row names: ``torch eager fp32``, ``onnxruntime fp16``, ``openvino int8``;
    a file that could not be opened is named by its file (its precision is unknown)."""
    seen: dict[str, int] = {}
    for c in rows:
        if c.artifact is None:
            base = f"{c.backend} {c.variant} {c.precision}" if c.backend == "torch" else f"{c.backend} {c.precision}"
        elif c.precision == UNKNOWN_PRECISION:
            base = f"{c.backend} ({artifact_name(c.artifact)})"
        else:
            base = f"{c.backend} {c.precision}{tf32_mark(c)}"
        if c.artifact is not None and base in seen:
            base = f"{base} ({artifact_name(c.artifact)})"
        seen[base] = seen.get(base, 0) + 1
        c.label = base if seen[base] == 1 else f"{base} #{seen[base]}"
