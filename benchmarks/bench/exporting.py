"""Artifacts for a run without explicit ones: export them from the checkpoint with dlcv-export's library.

FP32 ONNX always; the reduced precisions asked for (``ExportConfig.precisions``), each at
the file name its precision record gives (``<arch>.fp16.onnx``, ``<arch>.int8.onnx``). The
export is imported lazily, and anything that is missing or fails becomes a message for that
precision's row instead of stopping the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dlcv.runtime.errors import first_line
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.precision import FP32, get_precision

Log = Callable[[str], None]


@dataclass
class ExportOutcome:
    """The ONNX files written per precision, and why the others are absent."""

    paths: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def export_artifacts(
    checkpoint: Path,
    metadata: ArtifactMetadata,
    precisions: tuple[str, ...],
    *,
    out: Path,
    shape: tuple[int, int],
    calibration: Path,
    calib_count: int,
    eval_count: int,
    log: Log,
) -> ExportOutcome:
    """Export ``precisions`` of ``checkpoint`` into ``out`` (see the module docstring)."""
    outcome = ExportOutcome()
    try:
        from dlcv.export.config import ExportConfig
        from dlcv.export.onnx_export import export_onnx
        from dlcv.export.precisions import EXPORT_PRECISIONS
    except ImportError as exc:
        message = f"dlcv.export cannot be imported ({first_line(exc)}); install dlcv[train] or pass ONNX files"
        outcome.errors = dict.fromkeys(precisions, message)
        return outcome

    spec = metadata.preprocess
    fixed = tuple(spec.size) if spec.resize != "none" and spec.size else None
    # A size fixed by the preprocessing is the export's own; otherwise export and verify at ``shape``.
    base = dict(checkpoint=checkpoint, out=out, strict=False, input_size=None if fixed else tuple(shape))
    wanted = [p for p in precisions if p != FP32.name]
    extra: dict = {"precisions": tuple(wanted)}
    if any(EXPORT_PRECISIONS[p].calibrated for p in wanted):
        extra.update(calib=calibration, calib_count=calib_count)
    if wanted:
        extra["eval_count"] = eval_count

    try:
        export_onnx(ExportConfig(**base, **extra), log=log)
    except Exception as exc:  # an export problem is a row's error, never the run's end
        message = _describe(exc)
        if not wanted:
            outcome.errors.update(dict.fromkeys(precisions, f"export failed: {message}"))
            return outcome
        for p in wanted:
            outcome.errors[p] = f"export with --precision {','.join(wanted)} failed: {message}"
        if not FP32.path(out, metadata.arch).is_file():
            log(f"warning: export with {', '.join(wanted)} failed ({message}); exporting FP32 alone")
            try:
                export_onnx(ExportConfig(**base), log=log)
            except Exception as exc2:
                outcome.errors[FP32.name] = f"export failed: {_describe(exc2)}"
    for p in precisions:
        path = get_precision(p).path(out, metadata.arch)
        if path.is_file():  # published only after its verification: usable whatever failed later
            outcome.paths[p] = path
            outcome.errors.pop(p, None)
        elif p not in outcome.errors:
            outcome.errors[p] = f"the export wrote no {path.name}: this dlcv's export does not produce {p} ONNX files"
    return outcome
