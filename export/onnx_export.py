"""Checkpoint -> FP32 ONNX, and FP16/INT8 ONNX (docs/architecture.md contracts 3, 5, 6), each verified against
PyTorch before it is published: the FP32 writer and the orchestration of every precision.

Steps, each its own function: :func:`load_source` (checkpoint, model, metadata) ->
:func:`plan_inputs` (which axes are dynamic, the sample, the verification shapes) ->
:func:`export_fp32` (the FP32 writer: torch.export-based exporter, TorchScript exporter as
fallback) -> :func:`dlcv.export.graph.finalize_graph` (tensor names, output dims, metadata under
``metadata_props["dlcv"]``) -> :func:`dlcv.export.graph.save_onnx` (single file, onnx.checker)
-> :func:`dlcv.export.verify.verify_onnx_file`.

The file is written under a temporary name, verified there, and renamed into place only when
verification passes: a failed export never leaves an artifact that looks valid.

Reduced precisions follow (:func:`write_precisions`): each has one writer returning its graph
(:data:`REDUCED_WRITERS`: :func:`dlcv.export.fp16.write_fp16`, :func:`dlcv.export.int8.write_int8`),
saved under a temporary name as :meth:`Precision.path <dlcv.runtime.precision.Precision.path>`
names it, compared together with the FP32 file against PyTorch FP32 on one evaluation set
(:func:`build_eval_set`; one table, one row per precision, each judged by
:meth:`ExportConfig.gate`), and published. A precision that misses its gate is a warning, or
with ``strict`` an error that publishes none of them.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import onnx
import torch
import torch.nn as nn

from dlcv.runtime.atomic import atomic_path
from dlcv.runtime.datasets import recognise_layout
from dlcv.runtime.errors import DlcvError, DlcvUsageError, first_line
from dlcv.runtime.imageio import read_image
from dlcv.runtime.metadata import ArtifactMetadata, read_onnx_metadata
from dlcv.runtime.precision import FP16, FP32, INT8, get_precision
from dlcv.runtime.task import get_task
from dlcv.runtime.tensorrt.profile import DEFAULT_NATURAL_SIZE  # the export sample's size when nothing fixes one
from dlcv.train.checkpoint import file_sha256, load_checkpoint, metadata_from_checkpoint, model_from_checkpoint

from .config import ExportConfig
from .fp16 import precision_summary, write_fp16
from .graph import default_opset, finalize_graph, graph_io, save_onnx
from .heads import append_head, check_head
from .int8 import calibration_paths, write_int8
from .verify import (
    EvalSet, ExportedArtifact, PrecisionReport, Shape, VerificationReport, _silent, compare_precisions,
    eval_set_from_dataset, eval_set_from_images, eval_set_from_shapes, raise_if_failed, read_image_folder,
    verify_onnx_file,
)  # fmt: skip

CHECKPOINT_SUFFIXES = (".pt", ".pth")
# A second verification size for dynamic height/width: odd, non-square, not a multiple of
# any stride, so size-dependent crops and ceil-mode pools are exercised.
ODD_SIZE = (97, 131)
# A third size for classifiers with dynamic height/width: a stride-32 backbone gives a 9×10
# map, which a 7×7 adaptive average pool must shrink by a non-integer factor, the case that
# exporters lower with fixed windows (wrong at other sizes).
LARGE_ODD_SIZE = (301, 327)
AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}

Log = Callable[[str], None]



@dataclass(frozen=True)
class ExportSource:
    """A loaded checkpoint: the rebuilt model (eval mode) and the metadata its artifacts carry."""

    path: Path
    checkpoint: Mapping[str, Any]
    model: nn.Module
    metadata: ArtifactMetadata


@dataclass(frozen=True)
class InputPlan:
    """Which input axes are dynamic, the export sample (batch, height, width), and where to verify."""

    sample: Shape
    dynamic_batch: bool
    dynamic_hw: bool
    verify_shapes: tuple[Shape, ...]

    def dynamic_axes(self) -> dict[int, str]:
        axes = {0: AXIS_NAMES[0]} if self.dynamic_batch else {}
        if self.dynamic_hw:
            axes.update({2: AXIS_NAMES[2], 3: AXIS_NAMES[3]})
        return axes

    def describe(self) -> str:
        dyn = [AXIS_NAMES[a] for a in sorted(self.dynamic_axes())]
        return "dynamic " + "/".join(dyn) if dyn else "static " + "x".join(map(str, (self.sample[0], 3) + self.sample[1:]))


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote and how it was verified."""

    onnx_path: Path
    metadata: ArtifactMetadata
    exporter: str  # "dynamo" (torch.export-based) | "torchscript"
    opset: int
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    size_bytes: int
    export_seconds: float
    verification: VerificationReport
    notes: tuple[str, ...] = field(default_factory=tuple)
    precision_paths: Mapping[str, Path] = field(default_factory=dict)  # every ONNX written, by precision
    precision_report: PrecisionReport | None = None
    eval_set: EvalSet | None = field(default=None, repr=False)  # reused to verify an engine
    checkpoint: Path | None = None

    @property
    def parity(self) -> dict:
        """The parity statistics over all verification shapes."""
        return self.verification.overall

    def to_dict(self) -> dict:
        return {
            "onnx_path": str(self.onnx_path),
            "arch": self.metadata.arch,
            "task": self.metadata.task,
            "precision": self.metadata.precision,
            "exporter": self.exporter,
            "opset": self.opset,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "size_bytes": self.size_bytes,
            "export_seconds": round(self.export_seconds, 3),
            "verification": self.verification.to_dict(),
            "notes": list(self.notes),
            "precision_paths": {k: str(v) for k, v in self.precision_paths.items()},
            "precisions": None if self.precision_report is None else self.precision_report.to_dict(),
        }


# ---------------------------------------------------------------------------------------------
# steps


def load_source(path: str | os.PathLike) -> ExportSource:
    """Load a dlcv checkpoint and rebuild its model; errors name the file."""
    path = Path(path)
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        hint = " (an ONNX file is already exported)" if path.suffix.lower() == ".onnx" else ""
        raise DlcvError(f"{path}: expected a dlcv checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), not a {path.suffix or 'suffix-less'} file{hint}")
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, source=str(path))
    metadata = metadata_from_checkpoint(ckpt, source_sha256=file_sha256(path), precision="fp32")
    return ExportSource(path, ckpt, model, metadata)


def plan_inputs(metadata: ArtifactMetadata, config: ExportConfig) -> InputPlan:
    """Dynamic batch always (unless static); dynamic height/width for segmentation and for
    preprocessing that keeps the image size; fixed at the preprocess size otherwise."""
    spec = metadata.preprocess
    fixed_size = tuple(spec.size) if spec.resize != "none" and spec.size else None
    natural = tuple(config.input_size or fixed_size or DEFAULT_NATURAL_SIZE)
    dynamic_hw = not config.static and (get_task(metadata.task).per_pixel or spec.resize == "none")
    if not dynamic_hw and config.input_size is not None and fixed_size and tuple(config.input_size) != fixed_size:
        raise DlcvUsageError(
            f"--input-size {config.input_size[0]}x{config.input_size[1]} differs from the size the preprocessing "
            f"fixes ({fixed_size[0]}x{fixed_size[1]}), which every deployed input will have"
        )
    if config.static:
        if spec.resize == "none" and config.input_size is None:
            raise DlcvUsageError(
                f"--static needs --input-size HxW for this {metadata.arch} model: its preprocessing keeps the "
                "image size, so no size is implied"
            )
        sample = (config.batch, *natural)
        return InputPlan(sample, False, False, config.verify_shapes or (sample,))  # type: ignore[arg-type]
    sample = (max(2, config.batch), *natural)
    if config.verify_shapes:
        shapes = tuple(config.verify_shapes)
    elif dynamic_hw:
        odd = ODD_SIZE if natural != ODD_SIZE else (ODD_SIZE[0] + 2, ODD_SIZE[1] + 2)
        shapes = ((2, *natural), (2, *odd))
        if not get_task(metadata.task).per_pixel:
            shapes += ((1, *LARGE_ODD_SIZE),)
    else:
        shapes = ((2, *natural), (3, *natural))
    return InputPlan(sample, True, dynamic_hw, shapes)  # type: ignore[arg-type]


def _export_dynamo(model: nn.Module, sample: torch.Tensor, plan: InputPlan, metadata: ArtifactMetadata, opset: int) -> onnx.ModelProto:
    axes = plan.dynamic_axes()
    # A named string marks an axis dynamic (torch.export's Dim.DYNAMIC) and names it in the graph.
    dynamic_shapes = (axes,) if axes else None  # positional: one entry per forward() argument
    program = torch.onnx.export(
        model, (sample,), None, dynamo=True, input_names=[metadata.input_name], output_names=[metadata.output_name],
        opset_version=opset, dynamic_shapes=dynamic_shapes, external_data=False, optimize=True, verbose=False,
    )  # fmt: skip
    return program.model_proto


def _export_torchscript(model: nn.Module, sample: torch.Tensor, plan: InputPlan, metadata: ArtifactMetadata, opset: int) -> onnx.ModelProto:
    axes = plan.dynamic_axes()
    out_axes = {a: n for a, n in axes.items() if a == 0 or get_task(metadata.task).per_pixel}
    dynamic_axes = {metadata.input_name: axes, metadata.output_name: out_axes} if axes else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            model, (sample,), buffer, dynamo=False, input_names=[metadata.input_name],
            output_names=[metadata.output_name], opset_version=opset, dynamic_axes=dynamic_axes,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


EXPORTER_FUNCTIONS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def export_fp32(
    model: nn.Module, metadata: ArtifactMetadata, plan: InputPlan, *, opset: int, exporter: str = "auto", log: Log = _silent
) -> tuple[onnx.ModelProto, str, tuple[str, ...]]:
    """Export ``model`` (FP32, eval) to an in-memory ModelProto; returns it, the exporter used, and notes.

    ``auto`` uses the torch.export-based exporter and falls back to the TorchScript one only
    when it raises; the reason is returned as a note.
    """
    model = model.eval()
    batch, height, width = plan.sample
    sample = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    notes: list[str] = []
    errors = []
    for name in order:
        try:
            with torch.no_grad():
                proto = EXPORTER_FUNCTIONS[name](model, sample, plan, metadata, opset)
            return proto, name, tuple(notes)
        except DlcvError:
            raise
        except Exception as exc:  # the exporters raise many types; keep the first line of each
            errors.append(f"{name}: {type(exc).__name__}: {first_line(exc)}")
            if name != order[-1]:
                note = f"the {name} exporter failed ({type(exc).__name__}: {first_line(exc)}); falling back to the TorchScript exporter"
                notes.append(note)
                log(f"warning: {note}")
    raise DlcvError(f"{metadata.arch}: ONNX export failed ({'; '.join(errors)})")


# ---------------------------------------------------------------------------------------------
# the whole step


def export_onnx(config: ExportConfig, log: Log | None = None) -> ExportResult:
    """Write ``<out>/<arch>.onnx`` from ``config.checkpoint`` (FP32), verified against PyTorch.

    Raises :class:`DlcvError` with a one-line message for bad input, an export the ONNX
    checker rejects, or a verification that misses ``atol`` / ``min_agreement`` (the file is
    then not written).
    """
    log = log or _silent
    log(f"loading checkpoint {config.checkpoint}")
    source = load_source(config.checkpoint)
    md = source.metadata
    images = read_image_folder(config.images) if config.images is not None else None
    plan = plan_inputs(md, config)
    target = FP32.path(config.out, md.arch)

    log(f"exporting {md.arch} ({md.task}, {md.num_classes} classes) to ONNX opset {config.opset}, {plan.describe()}")
    t0 = time.perf_counter()
    proto, exporter, notes = export_fp32(source.model, md, plan, opset=config.opset, exporter=config.exporter, log=log)
    seconds = time.perf_counter() - t0
    checkpoint_path = source.path
    del source  # the reference backend reloads the checkpoint from the file; keep one copy in memory
    exporter_label = "torch.export-based (dynamo=True)" if exporter == "dynamo" else "TorchScript (dynamo=False)"
    log(f"exported with the {exporter_label} exporter in {seconds:.1f}s")
    finalize_graph(proto, md)
    input_shape, output_shape = graph_io(proto, md)
    opset = default_opset(proto)
    if opset != config.opset:
        notes += (f"opset {config.opset} was asked for, the exporter produced opset {opset}",)
        log(f"warning: {notes[-1]}")

    with contextlib.ExitStack() as stack:
        # with --argmax the logits graph is verified, and the reduced precisions are written from it, in a
        # work folder; the published files carry the head
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dlcv-export-"))) if config.argmax else None
        with atomic_path(target) as tmp:
            logits_file = work / target.name if work is not None else tmp
            log(f"writing {target} and checking the graph (onnx.checker)")
            save_onnx(proto, logits_file, final_name=target.name)
            del proto
            shapes = ", ".join("x".join(map(str, (n, 3, h, w))) for n, h, w in plan.verify_shapes)
            source_kind = f"{len(images)} images from {config.images}" if images else "synthetic images"
            log(f"verifying against PyTorch FP32 on onnxruntime (CPU) at {shapes} ({source_kind})")
            report = verify_onnx_file(
                logits_file, checkpoint_path, plan.verify_shapes, atol=config.atol, min_agreement=config.min_agreement,
                tie_margin=config.tie_margin, seed=config.seed, images=images, log=log,
            )  # fmt: skip
            raise_if_failed(report, target.name, f"{target.name} was not written")
            if config.argmax:
                md, input_shape, output_shape = _write_head(logits_file, tmp, target.name, plan, config, images, log)
                head_report = verify_onnx_file(
                    tmp, checkpoint_path, plan.verify_shapes, atol=config.atol, min_agreement=config.min_agreement,
                    tie_margin=config.tie_margin, seed=config.seed, images=images, log=log,
                )  # fmt: skip
                raise_if_failed(head_report, target.name, f"{target.name} was not written")
            size = tmp.stat().st_size

        paths: dict[str, Path] = {FP32.name: target}
        precision_report = eval_set = None
        if len(config.precisions) > 1 or config.val is not None or config.tensorrt is not None:
            eval_set = build_eval_set(config, md, plan, images, log)
            more, precision_report = write_precisions(config, target, checkpoint_path, md, eval_set, log,
                                                      logits_fp32=logits_file if work is not None else None, plan=plan)  # fmt: skip
            paths.update(more)
    return ExportResult(
        onnx_path=target,
        metadata=md,
        exporter=exporter,
        opset=opset,
        input_shape=input_shape,
        output_shape=output_shape,
        size_bytes=size,
        export_seconds=seconds,
        verification=report,
        notes=notes,
        precision_paths=paths,
        precision_report=precision_report,
        eval_set=eval_set,
        checkpoint=checkpoint_path,
    )


def _check_batches(metadata: ArtifactMetadata, plan: InputPlan, config: ExportConfig, images) -> list:
    """The verification batches (the FP32 check's inputs) on which a head is checked against its logits."""
    return [b.inputs for b in eval_set_from_shapes(metadata, plan.verify_shapes, seed=config.seed, images=images).batches]


def _write_head(logits_file: Path, target_tmp: Path, name: str, plan: InputPlan, config: ExportConfig, images,
                log: Log) -> tuple[ArtifactMetadata, tuple, tuple]:  # fmt: skip
    """The logits file with the task's head appended (:func:`dlcv.export.heads.append_head`), saved to
    ``target_tmp`` and checked against the logits file; returns its metadata and I/O shapes."""
    metadata = read_onnx_metadata(logits_file)
    proto, head_md = append_head(onnx.load(str(logits_file)), metadata)
    log(f"appending the in-graph {head_md.outputs.describe()} head (--argmax)")
    input_shape, output_shape = graph_io(proto, head_md)
    save_onnx(proto, target_tmp, final_name=name)
    check_head(logits_file, target_tmp, _check_batches(metadata, plan, config, images))
    log(f"  {name}: the head answers exactly what the logits' postprocessing answers on the verification batches")
    return head_md, input_shape, output_shape


# ---------------------------------------------------------------------------------------------
# reduced precisions


def build_eval_set(config: ExportConfig, metadata: ArtifactMetadata, plan: InputPlan, images, log: Log = _silent) -> EvalSet:
    """The images every precision is compared on: ``--val`` (labelled), else the calibration
    folder (labelled when it is a dataset: opened as the checkpoint recorded it, and an error
    when it does not fit the model), else ``--images``, else the FP32 verification batches
    (always for a ``--static`` graph, whose fixed shape other images would not fit)."""
    if config.static:  # fixed shapes: only the verification batches fit
        return eval_set_from_shapes(metadata, plan.verify_shapes, seed=config.seed, images=images)
    if config.val is not None:
        return eval_set_from_dataset(config.val, metadata, config.eval_count, log)
    if config.calib is not None:
        if recognise_layout(config.calib, metadata) is not None:
            return eval_set_from_dataset(config.calib, metadata, config.eval_count, log)
        paths, where = calibration_paths(config.calib, config.eval_count, metadata.dataset)
        return eval_set_from_images([read_image(p) for p in paths], metadata, where)
    if images:
        return eval_set_from_images(images[: config.eval_count], metadata, str(config.images))
    return eval_set_from_shapes(metadata, plan.verify_shapes, seed=config.seed)


# The writer of each reduced precision: (FP32 file, metadata, config, log) -> its finalised graph.
REDUCED_WRITERS: dict[str, Callable[[Path, ArtifactMetadata, ExportConfig, Log], onnx.ModelProto]] = {
    FP16.name: write_fp16,
    INT8.name: write_int8,
}


def write_precisions(
    config: ExportConfig, fp32_path: Path, checkpoint: Path, metadata: ArtifactMetadata, eval_set: EvalSet, log: Log = _silent,
    *, logits_fp32: Path | None = None, plan: InputPlan | None = None,
) -> tuple[dict[str, Path], PrecisionReport]:  # fmt: skip
    """Write the FP16/INT8 files config asks for, compare them (and FP32) with PyTorch on
    ``eval_set``, log the table, publish; returns the published paths and the report.

    With ``config.argmax`` the writers convert ``logits_fp32`` (the FP32 logits graph; ``fp32_path``
    and ``metadata`` are the published head file's) and each result gets the head appended,
    checked against its own logits graph on ``plan``'s verification batches."""
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dlcv.train.torch_backend import TorchBackend

    reduced = [get_precision(p) for p in config.precisions if p != FP32.name]
    labelled = eval_set.labelled
    source, source_md = fp32_path, metadata
    if config.argmax:
        if logits_fp32 is None or plan is None:
            raise ValueError("--argmax: write_precisions needs the FP32 logits graph and the input plan")
        source = logits_fp32
        source_md = read_onnx_metadata(logits_fp32)
    with contextlib.ExitStack() as stack:
        staged: dict[str, Path] = {FP32.name: fp32_path}
        for precision in reduced:
            target = precision.path(config.out, metadata.arch)
            tmp = stack.enter_context(atomic_path(target))
            log(f"writing {target} ({precision.name})")
            proto = REDUCED_WRITERS[precision.name](source, source_md, config, log)
            summary = precision_summary(proto)
            if config.argmax:
                logits_file = source.with_name(target.name)
                save_onnx(proto, logits_file, final_name=target.name)
                del proto
                _write_head(logits_file, tmp, target.name, plan, config, None, log)
            else:
                save_onnx(proto, tmp, final_name=target.name)
                del proto
            log(f"  {precision.name}: initialisers {summary['initializers']}, I/O {summary['io']}, "
                f"{summary['ops'].get('QuantizeLinear', 0)} QuantizeLinear, {summary['ops'].get('Cast', 0)} Cast")  # fmt: skip
            staged[precision.name] = tmp
        artifacts = [
            ExportedArtifact(name, get_precision(name).file_name(metadata.arch), lambda path=path: OnnxRuntimeBackend(path),
                             get_precision(name), config.gate(name, labelled), config.tie_margin)
            for name, path in staged.items()
        ]  # fmt: skip
        log(f"comparing {', '.join(staged)} with PyTorch FP32 on {eval_set.source} (onnxruntime, CPU)")
        with TorchBackend(checkpoint) as reference:
            report = compare_precisions(reference, artifacts, eval_set)
        log(report.table())
        for row in report.rows:
            if row.passed:
                continue
            message = f"{row.artifact} misses its gate: {'; '.join(row.failures)}"
            if config.strict:
                written = ", ".join(p.file_name(metadata.arch) for p in reduced)
                raise DlcvError(f"{message} (--strict: {written} not written)")
            log(f"warning: {message}")
    return {name: get_precision(name).path(config.out, metadata.arch) for name in staged}, report
