"""dlcv-train: train a registered model on a dataset folder or the built-in demo data."""
from __future__ import annotations

from pathlib import Path

import click

from dlcv.runtime.cli_support import debug_option, handle_errors, parse_size

from .class_weights import CLASS_WEIGHTINGS


def _print_models(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .registry import list_models

        click.echo("\n".join(list_models()))
        ctx.exit(0)


def _print_formats(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .data.formats import list_formats

        for fmt in list_formats():
            click.echo(f"{fmt.name}\t{fmt.task}\t{fmt.description}")
        ctx.exit(0)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=True)
@click.option("--data", required=True, help="Dataset folder, or 'demo' for the built-in digits data.")
@click.option("--format", "fmt", default=None, help="Dataset layout (auto-detected when omitted; see --list-formats).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder [runs/MODEL].")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Channel width multiplier.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--input-size", default=None, help="Resize inputs to N or HxW (classification default 224; segmentation keeps sizes).")
@click.option("--class-weights", "class_weighting", type=click.Choice(CLASS_WEIGHTINGS), default="none", show_default=True)
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Continue from a run's last.pt.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option("--list-models", is_flag=True, expose_value=False, is_eager=True, callback=_print_models, help="Print the model names and exit.")
@click.option("--list-formats", is_flag=True, expose_value=False, is_eager=True, callback=_print_formats, help="Print the dataset layouts and exit.")
@debug_option
@handle_errors
def main(model, data, fmt, epochs, batch_size, lr, weight_decay, out, width, seed, device, input_size, class_weighting, num_workers, resume, quiet, debug):
    """Train MODEL; writes best.pt, last.pt (self-describing checkpoints) and log.csv to --out."""
    from .config import TrainConfig
    from .loop import train
    from .registry import model_info

    cfg = TrainConfig(
        model=model, data=data, out=out or Path("runs") / model, format=fmt, epochs=epochs, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, width=width, seed=seed, device=device, num_workers=num_workers,
        input_size=parse_size(input_size), class_weighting=class_weighting, progress=not quiet,
    )  # fmt: skip
    result = train(cfg, resume=resume)
    metric = "mIoU" if model_info(model).task == "segmentation" else "top-1"
    click.echo(f"best val {metric} {result.best_metric:.4f}: {result.best}")
    click.echo(f"last: {result.last}   log: {result.log}")
