"""Deployment view: the checkpoint (PyTorch) and a deployed artifact on the same input tensors.

The artifact (``.onnx``, ``.plan``/``.engine``, or another ``.pt``) is opened with
:func:`dlcv.runtime.backends.open_backend` and given exactly the tensors PyTorch gets; parity
is accumulated with :class:`dlcv.runtime.parity.ParityStats`, and both models are scored
against the ground truth with the runtime's metrics. The figure shows the images where the two
disagree most, so a parity problem can be seen, not only counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from dlcv.runtime.backends import Backend, open_backend
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metrics import ClassificationMetrics, ConfusionMatrix
from dlcv.runtime.parity import ParityStats
from dlcv.runtime.postprocess import softmax
from dlcv.runtime.preprocess import PreprocessSpec, input_to_rgb
from dlcv.train.checkpoint import file_sha256

from .display import disagreement_map
from .evaluation import EvalSplit, LoadedModel, iterate
from .figures import FigureFile, image_grid, probability_comparison
from .report import Section, Table
from .segmentation import Painter


@dataclass(frozen=True)
class ImageParity:
    index: int
    disagreement: float  # share of pixels (segmentation) or 1/0 (classification) whose label differs
    max_abs_error: float


def check_artifact(backend: Backend, ckpt: Mapping[str, Any], checkpoint_path: Path) -> list[str]:
    """Refuse an artifact of another task or class count; notes on other differences."""
    md = backend.metadata
    if md.task != ckpt["task"] or md.num_classes != ckpt["num_classes"]:
        raise DlcvError(
            f"--compare {backend.path}: a {md.task} model of {md.num_classes} classes, but the checkpoint is a "
            f"{ckpt['task']} model of {ckpt['num_classes']} classes; compare an artifact exported from it"
        )
    notes = []
    if md.preprocess != PreprocessSpec.from_dict(ckpt["preprocess"]):
        notes.append(
            "the artifact's preprocessing record differs from the checkpoint's; both models were given the "
            "checkpoint's tensors, so dlcv-infer with this artifact would see other inputs"
        )
    if md.source_checkpoint_sha256 and md.source_checkpoint_sha256 != file_sha256(checkpoint_path):
        notes.append(
            f"the artifact comes from another checkpoint file than `{checkpoint_path.name}` "
            f"(its source sha256 is {md.source_checkpoint_sha256[:12]}...)"
        )
    return notes


def _labels(logits: np.ndarray) -> np.ndarray:
    return logits.argmax(axis=1)


def _ground_truth_metrics(task: str, split: EvalSplit):
    info = split.info
    if task == "segmentation":
        return ConfusionMatrix(info.num_classes, info.ignore_index, info.exclude_classes)
    return ClassificationMetrics(info.num_classes)


@torch.no_grad()
def _pair(loaded: LoadedModel, backend: Backend, x: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    reference = loaded.model(x.to(device)).float().cpu().numpy()
    return reference, backend.infer(x.numpy())


def compare(
    loaded: LoadedModel, backend: Backend, split: EvalSplit, indices: Sequence[int], *, device: torch.device,
    batch_size: int, workers: int, progress: bool,
) -> tuple[ParityStats, list[ImageParity], dict]:  # fmt: skip
    """Run both models over ``indices``: parity, per-image disagreement, and each model's metrics."""
    task = split.info.task
    parity = ParityStats()
    per_image = []
    scored = {"PyTorch": _ground_truth_metrics(task, split), "deployed": _ground_truth_metrics(task, split)}
    for batch_indices, x, y in iterate(split, indices, batch_size, workers, f"compare with {backend.path.name}", progress):
        reference, deployed = _pair(loaded, backend, x, device)
        parity.update(reference, deployed)
        ref_labels, dep_labels = _labels(reference), _labels(np.nan_to_num(deployed, nan=-np.inf))
        gt = y.numpy()
        if task == "segmentation":
            scored["PyTorch"].update(gt, ref_labels)
            scored["deployed"].update(gt, dep_labels)
        else:
            scored["PyTorch"].update(gt, reference)
            scored["deployed"].update(gt, np.nan_to_num(deployed, nan=-np.inf))
        for k, index in enumerate(batch_indices):
            differ = ref_labels[k] != dep_labels[k]
            error = np.abs(deployed[k].astype(np.float64) - reference[k])
            per_image.append(ImageParity(index, float(np.mean(differ)), float(np.nanmax(error)) if error.size else 0.0))
    return parity, per_image, {name: m.compute() for name, m in scored.items()}


def most_disagreeing(per_image: Sequence[ImageParity], count: int) -> list[ImageParity]:
    """The ``count`` images with the largest label disagreement, then the largest logit error."""
    return sorted(per_image, key=lambda p: (-p.disagreement, -p.max_abs_error, p.index))[:count]


def _segmentation_figure(loaded, backend, split, chosen, out, device) -> FigureFile:
    painter = Painter(split)
    rows, titles = [], []
    for p in chosen:
        x, y = split.dataset[p.index]
        reference, deployed = _pair(loaded, backend, x[None], device)
        ref, dep = _labels(reference)[0], _labels(np.nan_to_num(deployed, nan=-np.inf))[0]
        rgb = input_to_rgb(x.numpy(), split.spec)
        rows.append([rgb, painter.labels(ref), painter.labels(dep), disagreement_map(rgb, ref != dep)])
        titles.append([
            split.name(p.index), "PyTorch", f"deployed ({backend.name})",
            f"disagreement (red)\n{100 * p.disagreement:.2f} % of pixels",
        ])  # fmt: skip
    title = f"PyTorch vs {backend.path.name}: the images with the most disagreement"
    return image_grid(rows, titles, out / "deployment_disagreement.png", title, painter.legend)


def _classification_figure(loaded, backend, split, chosen, out, device) -> FigureFile:
    names = split.info.class_names
    images, titles, refs, deps = [], [], [], []
    for p in chosen:
        x, _ = split.dataset[p.index]
        reference, deployed = _pair(loaded, backend, x[None], device)
        ref_p, dep_p = softmax(reference, axis=1)[0], softmax(np.nan_to_num(deployed, nan=-np.inf), axis=1)[0]
        images.append(input_to_rgb(x.numpy(), split.spec))
        refs.append(ref_p)
        deps.append(dep_p)
        titles.append(
            f"{split.name(p.index)}\nPyTorch: {names[int(ref_p.argmax())]}  deployed: {names[int(dep_p.argmax())]}"
        )
    title = f"PyTorch vs {backend.path.name}: the images with the most disagreement"
    return probability_comparison(images, titles, np.stack(refs), np.stack(deps), names, out / "deployment_disagreement.png",
                                  title, deployed_label=f"deployed ({backend.name})")  # fmt: skip


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.6g}"
    return str(value)


def deployment_section(
    loaded: LoadedModel, ckpt: Mapping[str, Any], checkpoint_path: Path, artifact: Path, split: EvalSplit,
    indices: Sequence[int], count: int, out: Path, *, device: torch.device, batch_size: int, workers: int,
    progress: bool, log: Callable[[str], None],
) -> Section:  # fmt: skip
    """Parity numbers, both models' metrics and the most-disagreeing images' figure."""
    with open_backend(artifact, device=device.type) as backend:
        notes = check_artifact(backend, ckpt, checkpoint_path)
        log(f"comparing {checkpoint_path.name} (PyTorch) with {artifact.name} ({backend.name}) on {len(indices)} images")
        parity, per_image, scored = compare(loaded, backend, split, indices, device=device, batch_size=batch_size,
                                            workers=workers, progress=progress)  # fmt: skip
        chosen = most_disagreeing(per_image, count)
        draw = _segmentation_figure if split.info.task == "segmentation" else _classification_figure
        figure = draw(loaded, backend, split, chosen, out, device)
        backend_name, precision = backend.name, backend.precision
    stats = parity.compute()
    unit = "pixels" if split.info.task == "segmentation" else "images"
    parity_table = Table(
        ("measure", "value"),
        tuple((k.replace("_", " "), _fmt(stats[k])) for k in (
            "count", "agreement", "disagreements", "near_tie_disagreements", "agreement_miou",
            "max_abs_logit_error", "mean_abs_logit_error", "max_abs_reference_logit", "nonfinite_logits",
        ) if k in stats),
    )  # fmt: skip
    keys = ("miou", "pixel_accuracy") if split.info.task == "segmentation" else ("top1", "top5", "mean_class_accuracy")
    metric_table = Table(
        ("against the ground truth", "PyTorch", f"deployed ({backend_name}, {precision})", "difference"),
        tuple(
            (k, _fmt(scored["PyTorch"].get(k)), _fmt(scored["deployed"].get(k)), _fmt(_difference(scored, k)))
            for k in keys if k in scored["PyTorch"]
        ),
    )  # fmt: skip
    paragraphs = [
        f"`{checkpoint_path}` (PyTorch, FP32) against `{artifact}` ({backend_name}, {precision}) on the same "
        f"{len(indices)} preprocessed images of the {split.split} split. Agreement counts {unit} whose label matches; "
        "near-tie disagreements are flips where PyTorch's top-2 margin is below the tie margin.",
        *notes,
    ]
    return Section("Deployment parity", tuple(paragraphs), (parity_table, metric_table), (figure,))


def _difference(scored: dict, key: str) -> float | None:
    a, b = scored["PyTorch"].get(key), scored["deployed"].get(key)
    if a is None or b is None:
        return None
    return float(b) - float(a)
