"""``dlcv-export CKPT``: a dlcv checkpoint -> ``<out>/<arch>.onnx``, verified against PyTorch.

Thin: parses options, builds an :class:`ExportConfig`, calls :func:`export_onnx`, prints.
"""
from __future__ import annotations

from pathlib import Path

import click

from dlcv.runtime.cli_support import debug_option, handle_errors, parse_size

from .config import DEFAULT_ATOL, DEFAULT_MIN_AGREEMENT, DEFAULT_OPSET, ExportConfig
from .onnx_export import ExportResult, export_onnx


def _shape(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def summary(result: ExportResult) -> str:
    md = result.metadata
    mb = result.size_bytes / 1e6
    return (
        f"wrote {result.onnx_path} ({mb:.1f} MB, {md.precision}, opset {result.opset}, {result.exporter} exporter): "
        f"{md.input_name}{_shape(result.input_shape)} -> {md.output_name}{_shape(result.output_shape)}"
    )


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
@click.option("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, show_default=True,
              help="Minimum label agreement (pixels or top-1) with PyTorch.")  # fmt: skip
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Folder of real images to verify with (default: synthetic images).")  # fmt: skip
@debug_option
@handle_errors
def main(checkpoint, out, opset, static, input_size, batch, atol, min_agreement, images, debug):
    """Export a dlcv checkpoint (CHECKPOINT.pt) to ONNX and verify it against PyTorch."""
    config = ExportConfig(
        checkpoint=checkpoint, out=out, opset=opset, static=static, input_size=parse_size(input_size),
        batch=batch, atol=atol, min_agreement=min_agreement, images=images,
    )  # fmt: skip
    result = export_onnx(config, log=click.echo)
    click.echo(summary(result))


if __name__ == "__main__":  # pragma: no cover
    main()
