"""Analysis of a checkpoint on a dataset's validation split (PyTorch): the sections of the report.

Classification: confusion matrix, per-class accuracy, most-confused pairs, t-SNE/PCA of the
penultimate-layer features (the final model and, with a run folder, epoch snapshots).
Segmentation: confusion matrix, per-class IoU, most-confused pairs, a prediction grid of the
chosen or worst images (and the same images over training). Both write ``metrics.json`` from
the same metrics object the figures are drawn from, and optionally compare a deployed artifact.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.imageio import read_image
from dlcv.runtime.task import get_task
from dlcv.train.device import resolve_device

from . import classification, segmentation
from .config import AnalyzeConfig
from .confusion import confusion_section
from .deployment import deployment_section
from .evaluation import EvalSplit, LoadedModel, load_model, open_eval_split, subset
from .figures import FigureFile
from .metrics_file import METRICS_NAME, write_metrics_json
from .report import Section, Table
from .runs import RunFolder, first_middle_last, open_run


@dataclass(frozen=True)
class CheckpointAnalysis:
    title: str
    task: str
    sections: tuple[Section, ...]
    metrics_json: Path


def snapshot_models(run: RunFolder, ckpt: dict, device: torch.device) -> tuple[list[LoadedModel], str]:
    """The first, middle and last epoch snapshots (``epochs/epoch_NNN.pt``), else best.pt and last.pt;
    and a sentence saying which were used."""
    if run.snapshots:
        chosen = first_middle_last(run.snapshots)
        models = [load_model(s.path, device, f"epoch {s.epoch}", ckpt)[1] for s in chosen]
        epochs = ", ".join(str(s.epoch) for s in chosen)
        return models, f"{len(run.snapshots)} epoch snapshots in `{run.root / 'epochs'}`; shown: epochs {epochs}."
    models: dict[object, LoadedModel] = {}
    for path in (run.best, run.last):
        if path is not None:
            _, loaded = load_model(path, device, None, ckpt)
            label = path.name if loaded.epoch is None else f"{path.name} (epoch {loaded.epoch})"
            loaded = LoadedModel(label, loaded.epoch, loaded.path, loaded.model)
            models.setdefault(loaded.epoch if loaded.epoch is not None else path, loaded)
    ordered = sorted(models.values(), key=lambda m: -1 if m.epoch is None else m.epoch)
    found = ", ".join(m.label for m in ordered) or "nothing"
    return ordered, (
        f"`{run.root}` has no epoch snapshots (`epochs/epoch_NNN.pt`); the run's own checkpoints are used instead: {found}."
    )


def _overlay_figures(run: RunFolder, out: Path) -> list[FigureFile]:
    """Copies of the training loop's first, middle and last ``overlays/epoch_NNN.png``."""
    figures = []
    for item in first_middle_last(run.overlays):
        target = out / f"training_overlay_epoch_{item.epoch:03d}.png"
        shutil.copyfile(item.path, target)
        h, w = read_image(target).shape[:2]
        figures.append(FigureFile(target, w, h, f"dlcv-train's validation overlay after epoch {item.epoch}"))
    return figures


def _headline(task: str, metrics) -> str | None:
    """The headline number of a metrics dict, as ``mIoU 0.4321`` or ``top-1 0.8765`` (None without it)."""
    key, name = get_task(task).headline_key, get_task(task).headline_name
    if not isinstance(metrics, dict) or not isinstance(metrics.get(key), (int, float)):
        return None
    return f"{name} {metrics[key]:.4f}"


def _summary(path: Path, ckpt: dict, split: EvalSplit, metrics: dict, extra: list[str]) -> Section:
    rows = [
        ("checkpoint", f"`{path}`"),
        ("model", f"{ckpt['arch']} {json.dumps(ckpt['arch_kwargs'])}"),
        ("epoch", str(ckpt.get("epoch"))),
        ("classes", str(ckpt["num_classes"])),
        ("data", f"`{split.root}`, {split.split} split, {len(split)} images"),
        ("preprocessing", f"`{json.dumps(ckpt['preprocess'])}`"),
        ("measured here", _headline(ckpt["task"], metrics) or "n/a"),
    ]
    recorded = _headline(ckpt["task"], (ckpt.get("metrics") or {}).get("val"))  # what dlcv-train measured
    if recorded is not None:
        rows.append(("recorded in the checkpoint", recorded))
    return Section("Summary", tuple(list(split.notes) + extra), (Table(("", ""), tuple(rows)),))


def _classification(
    config: AnalyzeConfig, final: LoadedModel, ckpt: dict, split: EvalSplit, snapshots: list[LoadedModel],
    device: torch.device, out: Path, log: Callable[[str], None],
) -> tuple[list[Section], Path, dict]:  # fmt: skip
    names = split.info.class_names
    every = range(len(split))
    kept = subset(len(split), config.max_images, config.seed)
    common = dict(device=device, batch_size=config.batch_size, workers=config.workers, progress=config.progress, arch=ckpt["arch"])
    final_pass = classification.run_classifier(final, split, every, kept, **common)
    metrics = final_pass.metrics.compute()
    metrics_json = write_metrics_json(out / METRICS_NAME, "classification", metrics, names, checkpoint=str(config.target),
                                      data=str(split.root), split=split.split)  # fmt: skip
    sections = [confusion_section(final_pass.metrics.confusion, names, "classification", out,
                                  title=f"{final.label} on the {split.split} split", metrics=metrics)]  # fmt: skip
    snapshot_passes = [(m.label, classification.run_classifier(m, split, kept, kept, **common)) for m in snapshots]
    sections.append(classification.features_section(
        (final.label, final_pass), snapshot_passes, names, out, config.seed, len(split), log,
    ))  # fmt: skip
    return sections, metrics_json, metrics


def _segmentation(
    config: AnalyzeConfig, final: LoadedModel, split: EvalSplit, snapshots: list[LoadedModel], device: torch.device, out: Path,
) -> tuple[list[Section], Path, dict]:  # fmt: skip
    common = dict(device=device, batch_size=config.batch_size, workers=config.workers, progress=config.progress)
    confusion, scores = segmentation.score_images(final, split, range(len(split)), **common)
    metrics = {**confusion.compute(), "ignore_index": split.info.ignore_index}
    metrics_json = write_metrics_json(out / METRICS_NAME, "segmentation", metrics, split.info.class_names,
                                      checkpoint=str(config.target), data=str(split.root), split=split.split)  # fmt: skip
    sections = [confusion_section(confusion, split.info.class_names, "segmentation", out,
                                  title=f"{final.label} on the {split.split} split", metrics=metrics)]  # fmt: skip
    grid, indices = segmentation.grid_section(final, split, scores, config.images, config.count, config.rank_by, out, device)
    sections.append(grid)
    if snapshots and indices:
        figure = segmentation.epochs_grid(snapshots, split, indices, out, device)
        sections.append(Section("Predictions over training", ("The same images' predictions by each model.",), (), (figure,)))
    return sections, metrics_json, metrics


def analyze_checkpoint(config: AnalyzeConfig, log: Callable[[str], None]) -> CheckpointAnalysis:
    """Every checkpoint section of the report, and the metrics.json written beside it."""
    if config.data is None:
        raise DlcvUsageError("--data DIR|demo is needed to analyse a checkpoint (its validation split is run)")
    device = resolve_device(config.device)
    out = config.out
    ckpt, final = load_model(config.target, device)
    if config.images and not get_task(ckpt["task"]).per_pixel:
        raise DlcvUsageError("--images picks the images of the segmentation grids; this checkpoint is a classifier")
    final = LoadedModel(f"{config.target.name} (epoch {final.epoch})" if final.epoch is not None else config.target.name,
                        final.epoch, final.path, final.model)  # fmt: skip
    split = open_eval_split(config.data, ckpt, config.format, config.class_map)
    log(f"{ckpt['arch']}: {len(split)} {split.split} images from {split.root}")
    run = open_run(config.runs) if config.runs is not None else None
    snapshots, extra = [], []
    if run is not None:
        snapshots, sentence = snapshot_models(run, ckpt, device)
        extra.append(sentence)
        if len(snapshots) < 2:
            extra.append("Fewer than two distinct epochs: no over-training figures.")
            snapshots = []
    if not get_task(ckpt["task"]).per_pixel:
        sections, metrics_json, metrics = _classification(config, final, ckpt, split, snapshots, device, out, log)
    else:
        sections, metrics_json, metrics = _segmentation(config, final, split, snapshots, device, out)
        if run is not None and not run.snapshots and run.overlays:
            sections.append(Section("Training overlays", (f"Figures dlcv-train drew during the run (`{run.root / 'overlays'}`).",),
                                    (), tuple(_overlay_figures(run, out))))  # fmt: skip
    sections.insert(0, _summary(config.target, ckpt, split, metrics, extra + [f"Metrics written to `{metrics_json}`."]))
    if config.compare is not None:
        indices = subset(len(split), config.max_images, config.seed)
        sections.append(deployment_section(
            final, ckpt, config.target, config.compare, split, indices, config.count, out, device=device,
            backend_name=config.backend, batch_size=config.batch_size, workers=config.workers,
            progress=config.progress, log=log,
        ))  # fmt: skip
    title = f"{ckpt['arch']} — {config.target.name}"
    return CheckpointAnalysis(title, ckpt["task"], tuple(sections), metrics_json)
