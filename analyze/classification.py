"""Classification analysis: metrics over the split, penultimate features and their embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from dlcv.runtime.task_metrics import ClassificationMetrics

from . import features as feats
from .evaluation import EvalSplit, LoadedModel, iterate
from .figures import EmbeddingPanel, FigureFile, embedding_panels
from .report import Section


@dataclass(frozen=True)
class ClassifierPass:
    """One model over the split: its metrics (every image run), and the features of ``indices``."""

    metrics: ClassificationMetrics
    indices: tuple[int, ...]  # the images whose features were kept (rows of ``features``)
    features: np.ndarray  # len(indices) × feature width
    labels: np.ndarray  # the ground-truth class of each row


def run_classifier(
    loaded: LoadedModel,
    split: EvalSplit,
    run_indices: Sequence[int],
    feature_indices: Sequence[int],
    *,
    device: torch.device,
    batch_size: int,
    workers: int,
    progress: bool,
    arch: str,
) -> ClassifierPass:
    """Run the model over ``run_indices`` (metrics) keeping the features of ``feature_indices``."""
    metrics = ClassificationMetrics(split.info.num_classes)
    keep = set(feature_indices)
    runner = feats.Penultimate(loaded.model, arch)
    rows: dict[int, np.ndarray] = {}
    labels: dict[int, int] = {}
    with torch.no_grad():
        for indices, x, y in iterate(split, run_indices, batch_size, workers, f"{loaded.label}: classify", progress):
            features, logits = runner(x.to(device))
            metrics.update(y.numpy(), logits.float().cpu().numpy())
            features = features.float().cpu().numpy()
            for k, index in enumerate(indices):
                if index in keep:
                    rows[index] = features[k]
                    labels[index] = int(y[k])
    order = tuple(sorted(rows))
    matrix = np.stack([rows[i] for i in order]) if order else np.zeros((0, runner.width or 0), np.float32)
    return ClassifierPass(metrics, order, matrix, np.array([labels[i] for i in order], dtype=np.int64))


def embedding_figures(
    passes: Sequence[tuple[str, ClassifierPass]],
    class_names: Sequence[str],
    out: Path,
    stem: str,
    what: str,
    seed: int,
    log: Callable[[str], None],
) -> tuple[list[FigureFile], list[str]]:
    """t-SNE and PCA figures (one panel per pass) of the passes' features; notes on what was skipped."""
    tsne_panels, pca_panels, notes = [], [], []
    for title, p in passes:
        n, d = p.features.shape
        problem = feats.unembeddable(p.features)
        if problem is not None:
            notes.append(f"{title}: no embedding, {problem}.")
            continue
        log(f"embedding {n} feature vectors ({d}-d) of {title}: PCA, t-SNE")
        pca_panels.append(EmbeddingPanel(title, feats.pca_2d(p.features, seed), p.labels))
        coords = feats.tsne_2d(p.features, seed)
        if coords is None:
            notes.append(f"{title}: t-SNE needs at least {feats.MIN_TSNE_POINTS} images, {n} were analysed")
        else:
            tsne_panels.append(EmbeddingPanel(title, coords, p.labels))
    figures = []
    for method, panels in (("tsne", tsne_panels), ("pca", pca_panels)):
        if panels:
            name = "t-SNE" if method == "tsne" else "PCA"
            title = f"{name} of the penultimate-layer features, {what}"
            figures.append(embedding_panels(panels, class_names, out / f"{stem}_{method}.png", title))
    return figures, notes


def features_section(
    final: tuple[str, ClassifierPass],
    snapshots: Sequence[tuple[str, ClassifierPass]],
    class_names: Sequence[str],
    out: Path,
    seed: int,
    total: int,
    log: Callable[[str], None],
) -> Section:
    """The final model's embeddings and, with snapshots, the same images' embeddings over epochs."""
    label, p = final
    n, d = p.features.shape
    paragraphs = [
        f"Penultimate-layer features ({d} values per image) of {n} of the {total} images, coloured by their "
        "ground-truth class. PCA is linear (distances comparable); t-SNE keeps neighbourhoods, not distances."
    ]
    figures, notes = embedding_figures([final], class_names, out, "features", label, seed, log)
    if snapshots:
        more, more_notes = embedding_figures(snapshots, class_names, out, "features_epochs", "over training", seed, log)
        figures += more
        notes += more_notes
        accuracies = (f"{t} (top-1 {s.metrics.compute()['top1']:.3f} on these images)" for t, s in snapshots)
        paragraphs.append("Over training: " + ", ".join(accuracies) + ".")
    paragraphs += notes
    return Section("Feature embeddings", tuple(paragraphs), (), tuple(figures))
