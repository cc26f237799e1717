"""dlcv-train: train a registered model on a dataset folder or the built-in demo data.

``dlcv-train MODEL --data DIR ...`` trains (also under ``torchrun --nproc_per_node N -m dlcv.train``);
``dlcv-train byol --backbone NAME --data DIR ...`` pre-trains a backbone without labels.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import click

from dlcv.runtime.cli_support import debug_option, handle_errors, parse_size
from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.task import get_task

from .class_weights import CLASS_WEIGHTINGS
from .config import FINETUNE_MODES, OPTIMIZERS, SCHEDULERS


def _print_models(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .registry import list_models

        click.echo("\n".join(list_models()))
        ctx.exit(0)


def _print_formats(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from dlcv.runtime.datasets import CLASS_MAP_PRESETS, list_formats

        for fmt in list_formats():
            click.echo(f"{fmt.name}\t{fmt.task}\t{fmt.description}")
        click.echo(f"class-map presets (--class-map): {', '.join(CLASS_MAP_PRESETS)}")
        ctx.exit(0)


def _numbers(text: str | None, option: str, count: int, kind=float) -> tuple | None:
    """``"a,b[,c]"`` -> a tuple of ``count`` numbers (None stays None)."""
    if text is None:
        return None
    parts = [p for p in re.split(r"[,\s/]+", text.strip()) if p]
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count:
        raise DlcvUsageError(f"{option} needs {count} comma-separated {kind.__name__} values, not {text!r}")
    return values


def _augment(hflip: bool, vflip: bool, scale: str | None, crop: str | None, color_jitter: float):
    from .data.datasets import Augment

    return Augment(
        hflip=hflip, vflip=vflip, scale=_numbers(scale, "--scale", 2) or (1.0, 1.0),
        crop=parse_size(crop, "--crop"), color_jitter=color_jitter,
    )  # fmt: skip


class _DefaultCommand(click.Command):
    """The command ``dlcv-train`` runs when no sub-command is named: its usage omits a name."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path.strip(), " ".join(self.collect_usage_pieces(ctx)))


class _TrainOrByol(click.Group):
    """``dlcv-train MODEL ...`` runs the ``train`` command; ``dlcv-train byol ...`` the BYOL one."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] in self.commands and args[0] != "train":
            return super().resolve_command(ctx, args)
        return "", self.commands["train"], args

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.commands["train"].format_help(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text("dlcv-train byol --backbone NAME --data DIR ...: self-supervised pre-training (dlcv-train byol --help).")


def _model_args(pairs: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    """``("batch_norm=true", "dropout=0.1")`` -> ``(("batch_norm", True), ("dropout", 0.1))`` (JSON values, else text)."""
    out = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise DlcvUsageError(f"--model-arg must look like KEY=VALUE (e.g. batch_norm=true), not {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.append((key.strip(), value))
    return tuple(out)


@click.group(cls=_TrainOrByol, context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True})
def main() -> None:
    """Train a model (dlcv-train MODEL --data DIR ...) or pre-train a backbone (dlcv-train byol ...)."""


@main.command("train", cls=_DefaultCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", required=True)
@click.option("--data", required=True, help="Dataset folder, or 'demo' for the built-in digits data.")
@click.option("--format", "fmt", default=None, help="Dataset layout (auto-detected when omitted; see --list-formats).")
@click.option("--class-map", default=None, help="Relabel classes: a preset (camvid3: CamVid's 11 classes -> background/ground/road_user) or a JSON file.")
@click.option("--domains", default=None, help="imagefolder <domain>/<class>/ layouts (Office-Home): comma-separated domains to use [all].")
@click.option("--split-sizes", default=None, help="cmp-facade: TRAIN,VAL,TEST image counts [500,30,76, scaled to the folder].")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True)
@click.option("--momentum", type=click.FloatRange(min=0, max=1), default=0.9, show_default=True, help="SGD momentum.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default="plateau", show_default=True,
              help="Per-epoch learning rate: plateau (halve when val metric stalls), cosine, poly (power 0.9), none.")  # fmt: skip
@click.option("--plateau-patience", type=click.IntRange(min=0), default=3, show_default=True, help="Epochs the plateau schedule waits.")
@click.option("--patience", type=click.IntRange(min=1), default=None, help="Early stopping: stop after N epochs without a better val metric.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder [runs/MODEL; with --resume, its folder].")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Channel width multiplier.")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Extra model option (repeatable), e.g. batch_norm=true for an FCN with a batch-norm encoder, skip=false.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (under torchrun: cuda = one GPU per process).")
@click.option("--input-size", default=None, help="Resize inputs to N or HxW [the model's own preprocessing: ImageNet classifiers 256/224 centre crop, segmentation keeps sizes].")
@click.option("--class-weights", "class_weighting", type=click.Choice(CLASS_WEIGHTINGS), default="none", show_default=True)
@click.option("--hflip", is_flag=True, help="Augment: random horizontal flips (image and mask).")
@click.option("--vflip", is_flag=True, help="Augment: random vertical flips (image and mask).")
@click.option("--scale", default=None, help="Augment: random rescale MIN,MAX (e.g. 0.5,2.0; image and mask).")
@click.option("--crop", default=None, help="Augment: random crop HxW, padded when smaller (image and mask; mask padding is ignored).")
@click.option("--color-jitter", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0, show_default=True, help="Augment: per-channel gain and brightness ±X (image only).")
@click.option("--amp", is_flag=True, help="Mixed precision (FP16 autocast + gradient scaling) on CUDA; a no-op with a note on the CPU.")
@click.option("--pretrained", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None, help="Start from a torchvision-format state dict, dlcv checkpoint or BYOL backbone.")
@click.option("--finetune", type=click.Choice(FINETUNE_MODES), default="all", show_default=True, help="all: every layer trains; head: backbone frozen.")
@click.option("--trainable-stages", type=click.IntRange(min=0), default=0, show_default=True, help="With --finetune head: the last N backbone stages train too.")
@click.option("--overlays", type=click.IntRange(min=0), default=4, show_default=True, help="Validation images drawn each epoch to overlays/epoch_NNN.png (segmentation; 0: none).")
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True, help="TensorBoard scalars under RUN/tensorboard (when installed).")
@click.option("--snapshot-every", type=click.IntRange(min=0), default=0, show_default=True, help="Also keep epochs/epoch_NNN.pt every N epochs and at the end (0: none).")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Continue exactly from a run's last.pt (repeat the run's options).")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.option("--list-models", is_flag=True, expose_value=False, is_eager=True, callback=_print_models, help="Print the model names and exit.")
@click.option("--list-formats", is_flag=True, expose_value=False, is_eager=True, callback=_print_formats, help="Print the dataset layouts and exit.")
@debug_option
@handle_errors
def train_command(model, data, fmt, class_map, domains, split_sizes, epochs, batch_size, lr, weight_decay, optimizer, momentum,
                  scheduler, plateau_patience, patience, out, width, model_args, seed, device, input_size, class_weighting, hflip, vflip,
                  scale, crop, color_jitter, amp, pretrained, finetune, trainable_stages, overlays, tensorboard, snapshot_every,
                  num_workers, resume, quiet, debug):  # fmt: skip
    """Train MODEL; writes best.pt, last.pt (self-describing checkpoints), log.csv, overlays/ and
    tensorboard/ to --out."""
    from .config import TrainConfig
    from dlcv.runtime.datasets import LayoutOptions
    from .loop import train
    from .registry import model_info

    if out is None:
        out = resume.parent if resume is not None else Path("runs") / model
    layout = LayoutOptions(
        domains=None if domains is None else tuple(d.strip() for d in domains.split(",") if d.strip()),
        split_sizes=_numbers(split_sizes, "--split-sizes", 3, int),
    )
    cfg = TrainConfig(
        model=model, data=data, out=out, format=fmt, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, width=width, model_args=_model_args(model_args), seed=seed, device=device, num_workers=num_workers,
        input_size=parse_size(input_size), augment=_augment(hflip, vflip, scale, crop, color_jitter),
        class_weighting=class_weighting, class_map=class_map, layout=layout, optimizer=optimizer, momentum=momentum,
        scheduler=scheduler, plateau_patience=plateau_patience, amp=amp, patience=patience,
        pretrained=None if pretrained is None else str(pretrained), finetune=finetune, trainable_stages=trainable_stages,
        overlays=overlays, tensorboard=tensorboard, snapshot_every=snapshot_every, progress=not quiet,
    )  # fmt: skip
    result = train(cfg, resume=resume)
    if result.rank != 0:
        return
    metric = get_task(model_info(model).task).headline_name
    stopped = "  (stopped early)" if result.stopped_early else ""
    click.echo(f"best val {metric} {result.best_metric:.4f}: {result.best}{stopped}")
    click.echo(f"last: {result.last}   log: {result.log}")


@main.command("byol", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backbone", required=True, help="Backbone architecture to pre-train (e.g. resnet50).")
@click.option("--data", required=True, help="Image folder (labels unused), in any layout of --list-formats.")
@click.option("--format", "fmt", default=None, help="Dataset layout (auto-detected when omitted).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run folder [runs/byol-BACKBONE].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs [ByolConfig's default].")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Batch size [ByolConfig's default].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate [ByolConfig's default].")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Channel width multiplier.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--input-size", default=None, help="View size N or HxW [ByolConfig's default].")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@debug_option
@handle_errors
def byol_command(backbone, data, fmt, out, epochs, batch_size, lr, width, seed, device, input_size, num_workers, quiet, debug):
    """Self-supervised BYOL pre-training of a backbone; the saved backbone is accepted by --pretrained."""
    from .byol import ByolConfig, train_byol

    optional = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "input_size": parse_size(input_size)}
    cfg = ByolConfig(
        backbone=backbone, data=data, out=out or Path("runs") / f"byol-{backbone}", format=fmt, width=width,
        seed=seed, device=device, num_workers=num_workers, progress=not quiet,
        **{k: v for k, v in optional.items() if v is not None},
    )  # fmt: skip
    result = train_byol(cfg)
    click.echo(f"backbone: {result.backbone_path}   log: {result.log_path}")
    click.echo(f"fine-tune with: dlcv-train {backbone} --data DIR --pretrained {result.backbone_path} [--finetune head]")
