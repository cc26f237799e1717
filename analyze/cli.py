"""``dlcv-analyze TARGET``: the figures of a course report, and a report.md showing them.

Thin: parses options, builds an :class:`AnalyzeConfig`, calls :func:`run_analysis`, prints.
Importing this module does not import torch (a metrics.json is drawn without it).
"""
from __future__ import annotations

from pathlib import Path

import click

from dlcv.runtime.cli_support import debug_option, handle_errors

from .config import DEFAULT_MAX_IMAGES, AnalyzeConfig
from .pipeline import run_analysis


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--data", help="Dataset folder, or 'demo', opened as the checkpoint recorded it; its val split (else test, train) is analysed.")
@click.option("--format", "fmt", default=None, help="Override the checkpoint's recorded dataset layout (default: the record; recognised from the folder when the checkpoint has none).")
@click.option("--class-map", default=None, help="Override the checkpoint's recorded relabelling (preset or JSON, as dlcv-train --class-map).")
@click.option("--compare", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A deployed model (.onnx, .plan/.engine) to run on the same tensors as PyTorch.")  # fmt: skip
@click.option("--backend", default=None, metavar="NAME",
              help="The backend --compare runs on (e.g. openvino for an .onnx; default: the one its suffix names).")
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run folder (dlcv-train --out): log.csv curves, epoch snapshots epochs/epoch_NNN.pt.")  # fmt: skip
@click.option("--metrics", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A dlcv-infer metrics.json to draw beside the checkpoint's (a deployed run's confusion matrix).")  # fmt: skip
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("analysis"), show_default=True,
              help="Folder for the PNG figures, report.md and metrics.json.")  # fmt: skip
@click.option("--images", default=None, help="Segmentation: comma-separated image names (or stems) to draw; default: the worst.")
@click.option("--count", type=int, default=4, show_default=True, help="Worst / most-disagreeing images drawn.")
@click.option("--rank-by", type=click.Choice(["miou", "pixel-accuracy"]), default="miou", show_default=True,
              help="Per-image score that picks the worst segmentation images.")  # fmt: skip
@click.option("--max-images", type=int, default=DEFAULT_MAX_IMAGES, show_default=True,
              help="Most images for the t-SNE/PCA features and for --compare (a seeded random choice).")  # fmt: skip
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="Data-loading processes.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the image choice and the embeddings.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@debug_option
@handle_errors
def main(target, data, fmt, class_map, compare, backend, runs, metrics, out, images, count, rank_by, max_images, batch_size,
         workers, device, seed, quiet, debug):  # fmt: skip
    """Analyse TARGET: a dlcv checkpoint (.pt, with --data), a run folder (its best.pt; curves and
    snapshots), or a dlcv-infer metrics.json (no PyTorch needed). Writes PNG figures and report.md."""
    config = AnalyzeConfig(
        target=target, data=data, format=fmt, class_map=class_map, compare=compare, backend=backend, runs=runs, metrics=metrics, out=out,
        images=_names(images), count=count, rank_by=rank_by.replace("-", "_"), max_images=max_images,
        batch_size=batch_size, workers=workers, device=device, seed=seed, progress=not quiet,
    )  # fmt: skip
    log = (lambda _: None) if quiet else (lambda message: click.echo(message, err=True))
    result = run_analysis(config, log=log)
    extra = f" and {result.metrics_json.name}" if result.metrics_json is not None else ""
    click.echo(f"wrote {result.report} with {len(result.figures)} figures{extra} to {config.out}")


if __name__ == "__main__":  # pragma: no cover
    main()
