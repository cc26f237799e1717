"""``dlcv-export CKPT``: a dlcv checkpoint -> ``<out>/<arch>.onnx`` (+ ``.fp16.onnx``, ``.int8.onnx``,
``.plan``), each verified against PyTorch.

Thin: parses options, builds an :class:`ExportConfig`, calls :func:`export_onnx` (and
:func:`~dlcv.export.tensorrt_build.build_engine` for ``--trt``, :func:`~dlcv.export.triton.write_repository`
for ``--triton``), prints.
"""
from __future__ import annotations

from pathlib import Path

import re

import click

from dlcv.runtime.cli_support import debug_option, handle_errors, parse_size
from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.precision import FP16, FP32, INT8, PRECISION_NAMES

from .config import (
    CALIBRATION_METHODS, DEFAULT_ATOL, DEFAULT_CALIB_COUNT, DEFAULT_CALIBRATION_METHOD, DEFAULT_EVAL_COUNT,
    DEFAULT_OPSET, DEFAULT_WORKSPACE_MB, TIMING_CACHE_NAME, ExportConfig, TensorRTConfig,
)  # fmt: skip
from .onnx_export import ExportResult, export_onnx
from .precisions import REDUCED
from .triton.repository import DEFAULT_MAX_BATCH, KINDS as TRITON_KINDS, MODEL_BACKENDS, TritonConfig, write_repository


def _shape(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def summary(result: ExportResult) -> str:
    md = result.metadata
    mb = result.size_bytes / 1e6
    outputs = f"{md.output_name}{_shape(result.output_shape)}"
    if md.outputs.is_head:
        outputs = f"{md.outputs.describe()}, primary {outputs}"
    lines = [
        f"wrote {result.onnx_path} ({mb:.1f} MB, {md.precision}, opset {result.opset}, {result.exporter} exporter): "
        f"{md.input_name}{_shape(result.input_shape)} -> {outputs}"
    ]
    for precision, path in result.precision_paths.items():
        if precision != "fp32":
            lines.append(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {precision})")
    return "\n".join(lines)


def parse_shape(text: str | None, option: str) -> tuple[int, int, int, int] | None:
    """``"BxCxHxW"`` (e.g. 1x3x256x256) -> a tuple of four ints; None stays None."""
    if text is None:
        return None
    parts = re.split(r"\s*[xX×,]\s*", text.strip())
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise DlcvUsageError(f"{option} must look like BxCxHxW with positive numbers (e.g. 4x3x256x256), not {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def parse_precisions(text: str | None) -> tuple[str, ...]:
    """``"fp16, int8"`` -> ("fp16", "int8"); None -> (); an unknown name is a one-line usage error."""
    if text is None:
        return ()
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in PRECISION_NAMES]
    if unknown or not names:
        raise DlcvUsageError(f"--precision takes a comma-separated list of {', '.join(PRECISION_NAMES)}, not {text!r}")
    return names


def precision_flags(command):
    """One ``--<name>`` flag per reduced precision of :data:`dlcv.export.precisions.REDUCED`."""
    for row in reversed(REDUCED):
        calib = "; needs --calib" if row.calibrated else ""
        help_text = f"Also write <arch>{row.record.file_suffix}.onnx ({row.record.description}{calib})."
        command = click.option(f"--{row.name}", is_flag=True, help=help_text)(command)
    return command


def parse_layers(text: str | None) -> tuple[str, ...] | None:
    """``"upscore8, fc6"`` -> ("upscore8", "fc6"); ``"none"`` -> (); None stays None."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise DlcvUsageError("--int8-fp32 needs layer names (comma-separated) or 'none'")
    return () if names == ("none",) else names


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder for <arch>.onnx.")  # fmt: skip
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset version.")
@click.option("--static", is_flag=True, help="Fix every input dimension (batch --batch, size --input-size).")
@click.option("--input-size", "input_size", metavar="HxW",
              help="Export/verification size; default: the preprocessing size (128x128 when it keeps the image size).")  # fmt: skip
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size fixed by --static.")
@click.option("--atol", type=float, default=DEFAULT_ATOL, show_default=True,
              help="Max abs logit error allowed, scaled by the largest reference logit when that exceeds 1.")  # fmt: skip
@click.option("--min-agreement", type=float, default=FP32.gate.min_agreement, show_default=True,
              help="Minimum label agreement (pixels or top-1) with PyTorch.")  # fmt: skip
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Folder of real images to verify with (default: synthetic images).")  # fmt: skip
@precision_flags
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="Calibration images for INT8: a folder of images, a dataset in the checkpoint's recorded layout (its train split), or demo (the built-in demo data).")  # fmt: skip
@click.option("--calib-count", type=int, default=DEFAULT_CALIB_COUNT, show_default=True,
              help="Calibration images used (an even spread over the folder).")  # fmt: skip
@click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), default=DEFAULT_CALIBRATION_METHOD,
              show_default=True, help="How INT8 activation ranges are chosen.")  # fmt: skip
@click.option("--int8-fp32", "int8_fp32", metavar="LAYERS", default=None,
              help="INT8: layers computed in FP32, by weight name (comma-separated, e.g. upscore8,features.0; 'none': "
                   "every layer INT8) [default: the layers that compute the logits].")  # fmt: skip
@click.option("--int8-sensitivity", is_flag=True,
              help="INT8: first measure each layer's share of the mIoU/top-1 drop on --val (every layer INT8, then each "
                   "one alone in FP32); prints it and writes <arch>.int8.sensitivity.json.")  # fmt: skip
@click.option("--val", type=click.Path(path_type=Path), default=None,
              help="Labelled dataset, opened as the checkpoint recorded it (its val split; else test, train), or demo, on which every precision's mIoU/top-1 is compared.")  # fmt: skip
@click.option("--eval-count", type=int, default=DEFAULT_EVAL_COUNT, show_default=True,
              help="Images in the precision comparison.")  # fmt: skip
@click.option("--fp16-min-agreement", type=float, default=FP16.gate.min_agreement, show_default=True,
              help="FP16 gate: label agreement with PyTorch FP32.")  # fmt: skip
@click.option("--int8-max-drop", type=float, default=100 * INT8.gate.max_metric_drop, show_default=True,
              help="INT8 gate: mIoU/top-1 drop allowed, in points (needs labels).")  # fmt: skip
@click.option("--argmax", is_flag=True,
              help="End every ONNX file (and the engine) in-graph postprocessing instead of logits: an ArgMax uint8 "
                   "label map N×H×W (segmentation), or TopK indices + softmax probabilities N×5 (classification).")  # fmt: skip
@click.option("--strict", is_flag=True, help="A precision that misses its gate is an error (exit 1), not a warning.")
@click.option("--trt", is_flag=True, help="Also build a TensorRT engine <arch>.plan (+ <arch>.plan.json).")
@click.option("--precision", "precision_list", metavar="LIST", default=None,
              help=f"Precisions to write beside FP32, comma-separated ({','.join(PRECISION_NAMES)}; the same as their "
                   "flags). With --trt: the one precision the engine is built from [default: fp16].")  # fmt: skip
@click.option("--min-shape", metavar="BxCxHxW", help="With --trt: smallest input of the optimisation profile.")
@click.option("--opt-shape", metavar="BxCxHxW", help="With --trt: input the engine is tuned for.")
@click.option("--max-shape", metavar="BxCxHxW", help="With --trt: largest input of the optimisation profile.")
@click.option("--workspace", type=int, default=DEFAULT_WORKSPACE_MB, show_default=True,
              help="With --trt: builder workspace memory limit, MB.")  # fmt: skip
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"With --trt: timing cache file, read and updated [default: <out>/{TIMING_CACHE_NAME}].")  # fmt: skip
@click.option("--version-compatible", is_flag=True,
              help="With --trt: an engine the lean runtime of this TensorRT version loads, and later versions load "
                   "through this version's lean runtime library (dlcv-infer --lean-runtime); none is embedded.")  # fmt: skip
@click.option("--tf32", is_flag=True,
              help="With --trt: let FP32 layers use TF32 (TensorRT's own default; dlcv builds true FP32 unless asked).")
@click.option("--device", default="cuda", show_default=True, metavar="cuda[:N]",
              help="With --trt: the GPU that builds and verifies the engine (the engine is bound to its model).")
@click.option("--triton", "triton_repo", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a Triton model repository there: the model, Python-backend pre/post-processing "
                   "(dlcv's own) and an image-in ensemble.")  # fmt: skip
@click.option("--triton-max-batch", type=click.IntRange(min=1), default=None,
              help=f"With --triton: max_batch_size of a dynamic-batch model [default: {DEFAULT_MAX_BATCH}].")
@click.option("--triton-instances", type=click.IntRange(min=1), default=None,
              help="With --triton: model instances (instance_group count) [default: 1].")
@click.option("--triton-kind", type=click.Choice(TRITON_KINDS), default=None,
              help="With --triton: where the model's instances run [default: gpu for tensorrt, else cpu].")
@click.option("--triton-model-backend", type=click.Choice(MODEL_BACKENDS), default=None,
              help="With --triton: onnxruntime (platform onnxruntime_onnx), tensorrt (the --trt engine, "
                   "tensorrt_plan) or python (dlcv's onnxruntime backend on Triton's Python backend, for "
                   "builds without the onnxruntime backend) [default: onnxruntime].")  # fmt: skip
@debug_option
@handle_errors
def main(checkpoint, out, opset, static, input_size, batch, atol, min_agreement, images, calib,
         calib_count, calib_method, int8_fp32, int8_sensitivity, val, eval_count, fp16_min_agreement, int8_max_drop,
         argmax, strict, trt, precision_list, min_shape, opt_shape, max_shape, workspace, timing_cache,
         version_compatible, tf32, device, triton_repo, triton_max_batch, triton_instances, triton_kind,
         triton_model_backend, debug, **precision_flags):  # fmt: skip
    """Export a dlcv checkpoint (CHECKPOINT.pt) to ONNX (FP32, optionally FP16/INT8) and a TensorRT
    engine, each verified against PyTorch; optionally a Triton model repository."""
    triton = _triton_config(triton_repo, triton_max_batch, triton_instances, triton_kind, triton_model_backend, trt)
    trt_only = {"--min-shape": min_shape, "--opt-shape": opt_shape, "--max-shape": max_shape,
                "--timing-cache": timing_cache, "--version-compatible": version_compatible or None,
                "--tf32": tf32 or None, "--device": None if device == "cuda" else device}  # fmt: skip
    if not trt and any(v is not None for v in trt_only.values()):
        raise DlcvUsageError(f"{', '.join(k for k, v in trt_only.items() if v is not None)} only apply with --trt")
    precisions = tuple(name for name, on in precision_flags.items() if on)
    listed = parse_precisions(precision_list)
    tensorrt = None
    if trt:
        if len(listed) > 1:
            raise DlcvUsageError(f"--trt builds one engine: --precision names its one precision, not {precision_list!r} "
                                 "(write the others with their flags, e.g. --fp16 --int8)")  # fmt: skip
        tensorrt = TensorRTConfig(
            precision=listed[0] if listed else FP16.name, min_shape=parse_shape(min_shape, "--min-shape"),
            opt_shape=parse_shape(opt_shape, "--opt-shape"), max_shape=parse_shape(max_shape, "--max-shape"),
            workspace_mb=workspace, timing_cache=timing_cache, version_compatible=version_compatible,
            tf32=tf32, device=device,
        )  # fmt: skip
    else:
        precisions += listed
    config = ExportConfig(
        checkpoint=checkpoint, out=out, opset=opset, static=static, input_size=parse_size(input_size),
        batch=batch, atol=atol, min_agreement=min_agreement, images=images, precisions=precisions, calib=calib,
        calib_count=calib_count, calib_method=calib_method, val=val, eval_count=eval_count,
        fp16_min_agreement=fp16_min_agreement, int8_max_drop=int8_max_drop / 100, strict=strict, tensorrt=tensorrt,
        argmax=argmax,
        int8_fp32_layers=parse_layers(int8_fp32), int8_sensitivity=int8_sensitivity,
    )  # fmt: skip
    result = export_onnx(config, log=click.echo)
    click.echo(summary(result))
    if tensorrt is not None:
        from .tensorrt_build import build_engine

        engine = build_engine(result, config, log=click.echo)
        click.echo(engine.summary())
    if triton is not None:
        write_repository(triton, result.onnx_path, engine.plan_path if tensorrt is not None else None, log=click.echo)


def _triton_config(repo, max_batch, instances, kind, model_backend, trt) -> TritonConfig | None:
    given = {"--triton-max-batch": max_batch, "--triton-instances": instances, "--triton-kind": kind,
             "--triton-model-backend": model_backend}  # fmt: skip
    if repo is None:
        if any(v is not None for v in given.values()):
            raise DlcvUsageError(f"{', '.join(k for k, v in given.items() if v is not None)} only apply with --triton REPO")
        return None
    if model_backend == "tensorrt" and not trt:
        raise DlcvUsageError("--triton-model-backend tensorrt serves the engine that --trt builds; add --trt")
    defaults = TritonConfig(repository=repo)
    return TritonConfig(
        repository=repo, max_batch=max_batch or defaults.max_batch, instances=instances or defaults.instances,
        kind=kind, model_backend=model_backend or defaults.model_backend,
    )  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    main()
