"""Segmentation analysis: one confusion matrix over the split, per-image scores, prediction grids."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.task_metrics import ConfusionMatrix
from dlcv.runtime.postprocess import colorize, palette_array
from dlcv.runtime.preprocess import input_to_rgb

from .evaluation import EvalSplit, LoadedModel, iterate
from .figures import FigureFile, image_grid
from .report import Section, Table


@dataclass(frozen=True)
class ImageScore:
    index: int
    name: str
    miou: float
    pixel_accuracy: float


def _confusion(split: EvalSplit) -> ConfusionMatrix:
    info = split.info
    return ConfusionMatrix(info.num_classes, info.ignore_index, info.exclude_classes)


def image_score(split: EvalSplit, index: int, gt: np.ndarray, pred: np.ndarray) -> tuple[ConfusionMatrix, ImageScore]:
    """One image's confusion matrix and its mIoU / pixel accuracy (NaN when it has no scored pixel)."""
    cm = _confusion(split)
    cm.update(gt, pred)
    result = cm.compute()
    return cm, ImageScore(index, split.name(index), result["miou"], result["pixel_accuracy"])


@torch.no_grad()
def score_images(
    loaded: LoadedModel, split: EvalSplit, indices: Sequence[int], *, device: torch.device, batch_size: int, workers: int,
    progress: bool,
) -> tuple[ConfusionMatrix, list[ImageScore]]:  # fmt: skip
    """The split's confusion matrix (the sum of the per-image ones) and every image's scores."""
    total = _confusion(split)
    scores = []
    for batch_indices, x, y in iterate(split, indices, batch_size, workers, f"{loaded.label}: segment", progress):
        pred = loaded.model(x.to(device)).argmax(1).cpu().numpy()
        gt = y.numpy()
        for k, index in enumerate(batch_indices):
            cm, score = image_score(split, index, gt[k], pred[k])
            total.merge(cm)
            scores.append(score)
    return total, sorted(scores, key=lambda s: s.index)


def find_images(split: EvalSplit, names: Sequence[str]) -> list[int]:
    """The split indices of images given by file name or stem; unknown names are an error."""
    by_name = {}
    for i, sample in enumerate(split.samples):
        by_name.setdefault(sample.image.name, i)
        by_name.setdefault(sample.image.stem, i)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        some = ", ".join(split.name(i) for i in range(min(5, len(split))))
        raise DlcvUsageError(
            f"--images: {', '.join(unknown)} not in the {split.split} split of {split.root} (its images: {some}, ...)"
        )
    return list(dict.fromkeys(by_name[n] for n in names))


def worst_images(scores: Sequence[ImageScore], count: int, rank_by: str) -> list[ImageScore]:
    """The ``count`` images with the lowest ``rank_by`` (images without a scored pixel left out)."""
    rated = [s for s in scores if not math.isnan(getattr(s, rank_by))]
    return sorted(rated, key=lambda s: (getattr(s, rank_by), s.name))[:count]


@torch.no_grad()
def predict(loaded: LoadedModel, split: EvalSplit, indices: Sequence[int], device: torch.device) -> dict[int, np.ndarray]:
    """Predicted label maps (at the model input's size) of a few images."""
    out = {}
    for batch_indices, x, _ in iterate(split, indices, 1, 0, "", False):
        out[batch_indices[0]] = loaded.model(x.to(device)).argmax(1)[0].cpu().numpy()
    return out


class Painter:
    """Draws a split's tensors and label maps as RGB tiles (the palette of the checkpoint)."""

    def __init__(self, split: EvalSplit):
        self.split = split
        self.palette = palette_array(split.info.palette, split.info.num_classes)

    def image(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(the input as the model saw it, its ground-truth label map), both at the input size."""
        x, y = self.split.dataset[index]
        return input_to_rgb(x.numpy(), self.split.spec), y.numpy()

    def labels(self, labels: np.ndarray) -> np.ndarray:
        return colorize(labels, self.palette, self.split.info.ignore_index)

    @property
    def legend(self):
        return self.split.info.class_names, self.palette


def _score_text(score: ImageScore) -> str:
    return f"mIoU {score.miou:.3f}, acc {score.pixel_accuracy:.3f}"


def prediction_grid(
    loaded: LoadedModel, split: EvalSplit, indices: Sequence[int], out: Path, title: str, device: torch.device
) -> FigureFile:
    """image | ground truth | prediction, one row per image."""
    painter = Painter(split)
    preds = predict(loaded, split, indices, device)
    rows, titles = [], []
    for index in indices:
        rgb, gt = painter.image(index)
        _, score = image_score(split, index, gt, preds[index])
        rows.append([rgb, painter.labels(gt), painter.labels(preds[index])])
        titles.append([split.name(index), "ground truth", f"prediction\n{_score_text(score)}"])
    return image_grid(rows, titles, out / "predictions.png", title, painter.legend)


def epochs_grid(
    models: Sequence[LoadedModel], split: EvalSplit, indices: Sequence[int], out: Path, device: torch.device
) -> FigureFile:
    """image | ground truth | the prediction of each model (epochs), one row per image."""
    painter = Painter(split)
    preds = [predict(m, split, indices, device) for m in models]
    rows, titles = [], []
    for index in indices:
        rgb, gt = painter.image(index)
        row, row_titles = [rgb, painter.labels(gt)], [split.name(index), "ground truth"]
        for model, pred in zip(models, preds):
            _, score = image_score(split, index, gt, pred[index])
            row.append(painter.labels(pred[index]))
            row_titles.append(f"{model.label}\nmIoU {score.miou:.3f}")
        rows.append(row)
        titles.append(row_titles)
    title = "the same images over training: " + ", ".join(m.label for m in models)
    return image_grid(rows, titles, out / "predictions_epochs.png", title, painter.legend)


def grid_section(
    loaded: LoadedModel, split: EvalSplit, scores: Sequence[ImageScore], names: Sequence[str], count: int, rank_by: str,
    out: Path, device: torch.device,
) -> tuple[Section, list[int]]:  # fmt: skip
    """The prediction grid of the chosen images (``names``) or the ``count`` worst; returns the images."""
    if names:
        indices = find_images(split, names)
        what = f"{len(indices)} chosen image(s)"
    else:
        worst = worst_images(scores, count, rank_by)
        indices = [s.index for s in worst]
        what = f"the {len(indices)} image(s) with the lowest per-image {'mIoU' if rank_by == 'miou' else 'pixel accuracy'}"
    if not indices:
        return Section("Predictions", ("No image has a scored pixel; nothing to rank.",)), []
    figure = prediction_grid(loaded, split, indices, out, f"{loaded.label}: {what}", device)
    text = (
        f"{what[0].upper() + what[1:]} of the {split.split} split, at the model input's size (grey: unlabelled pixels). "
        "Per-image mIoU averages the classes present in the image's ground truth or prediction."
    )
    by_index = {s.index: s for s in scores}
    rows = tuple((s.name, f"{s.miou:.4f}", f"{s.pixel_accuracy:.4f}") for s in (by_index[i] for i in indices))
    return Section("Predictions", (text,), (Table(("image", "mIoU", "pixel accuracy"), rows),), (figure,)), indices
