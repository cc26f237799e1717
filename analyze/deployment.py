"""Deployment view: the checkpoint (PyTorch) and a deployed artifact on the same input tensors.

The artifact (``.onnx``, ``.plan``/``.engine``, or another ``.pt``) is opened with
:func:`dlcv.runtime.backends.open_backend` (on ``--backend NAME`` when given) and given exactly
the tensors PyTorch gets; the runtime's comparator (:func:`dlcv.runtime.comparator.compare`)
measures parity (with the near-tie margin of the artifact's precision) and scores both models
against the ground truth, and its per-batch steps give each image's disagreement. The figure shows the images where the two
disagree most, so a parity problem can be seen, not only counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from dlcv.runtime.backends import Backend, open_backend
from dlcv.runtime.comparator import Batch, Candidate, Comparison, Step, compare, image_parity, model_output
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.postprocess import predicted_topk, softmax
from dlcv.runtime.preprocess import PreprocessSpec, input_to_rgb
from dlcv.runtime.task import get_task
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


class TorchReference:
    """The checkpoint's model as the comparator's reference: ``infer`` on ``device``, logits back."""

    def __init__(self, loaded: LoadedModel, device: torch.device):
        self.loaded, self.device = loaded, device

    @torch.no_grad()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.loaded.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


DEPLOYED = "deployed"  # the artifact's name in the comparison


def compare_with_artifact(
    loaded: LoadedModel, backend: Backend, split: EvalSplit, indices: Sequence[int], *, device: torch.device,
    batch_size: int, workers: int, progress: bool,
) -> tuple[Comparison, list[ImageParity]]:  # fmt: skip
    """Run both models over ``indices`` through the comparator: parity and each model's metrics
    (the checkpoint's ignore index and excluded classes), and every image's disagreement."""
    info = split.info
    metadata = backend.metadata.with_(ignore_index=info.ignore_index, exclude_classes=tuple(info.exclude_classes))
    batches = (
        Batch(x.numpy(), y.numpy(), ids)
        for ids, x, y in iterate(split, indices, batch_size, workers, f"compare with {backend.path.name}", progress)
    )
    per_image: list[ImageParity] = []

    def record_images(step: Step) -> None:
        if DEPLOYED in step.outputs:
            share, worst = image_parity(step.reference, step.outputs[DEPLOYED])
            per_image.extend(ImageParity(i, float(d), float(e)) for i, d, e in zip(step.batch.ids, share, worst))

    candidate = Candidate(DEPLOYED, backend, precision=backend.precision)
    comparison = compare(TorchReference(loaded, device), [candidate], batches, metadata, observe=record_images)
    error = comparison[DEPLOYED].error
    if error is not None:
        raise error
    return comparison, per_image


def most_disagreeing(per_image: Sequence[ImageParity], count: int) -> list[ImageParity]:
    """The ``count`` images with the largest label disagreement, then the largest logit error."""
    return sorted(per_image, key=lambda p: (-p.disagreement, -p.max_abs_error, p.index))[:count]


def _pair(loaded, backend, x: torch.Tensor, device):
    """Both models' outputs for one image (tensor 3×H×W), as the comparator reads them."""
    task = backend.metadata.task
    batch = x[None].numpy()
    return model_output(TorchReference(loaded, device).infer(batch), task), model_output(backend.infer(batch), task)


def _segmentation_figure(loaded, backend, split, chosen, out, device) -> FigureFile:
    painter = Painter(split)
    rows, titles = [], []
    for p in chosen:
        x, y = split.dataset[p.index]
        reference, deployed = _pair(loaded, backend, x, device)
        ref, dep = reference.labels[0], deployed.labels[0]
        rgb = input_to_rgb(x.numpy(), split.spec)
        rows.append([rgb, painter.labels(ref), painter.labels(dep), disagreement_map(rgb, ref != dep)])
        titles.append([
            split.name(p.index), "PyTorch", f"deployed ({backend.name})",
            f"disagreement (red)\n{100 * p.disagreement:.2f} % of pixels",
        ])  # fmt: skip
    title = f"PyTorch vs {backend.path.name}: the images with the most disagreement"
    return image_grid(rows, titles, out / "deployment_disagreement.png", title, painter.legend)


def _probabilities(backend, batch: np.ndarray) -> np.ndarray:
    """The deployed model's class probabilities for one image: the softmax of its logits, or a
    TopK head's probabilities on its k classes (zero elsewhere)."""
    md = backend.metadata
    outputs = backend.infer_outputs(batch)
    if not md.outputs.is_head:
        return softmax(np.nan_to_num(outputs[md.output_name], nan=-np.inf), axis=1)[0]
    indices, probs = predicted_topk(outputs, md, md.num_classes)
    out = np.zeros(md.num_classes)
    out[indices[0]] = probs[0]
    return out


def _classification_figure(loaded, backend, split, chosen, out, device) -> FigureFile:
    names = split.info.class_names
    images, titles, refs, deps = [], [], [], []
    for p in chosen:
        x, _ = split.dataset[p.index]
        reference, _ = _pair(loaded, backend, x, device)
        ref_p, dep_p = softmax(reference.values, axis=1)[0], _probabilities(backend, x[None].numpy())
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
    progress: bool, log: Callable[[str], None], backend_name: str | None = None,
) -> Section:  # fmt: skip
    """Parity numbers, both models' metrics and the most-disagreeing images' figure; the
    artifact runs on ``backend_name`` (a registry name; None: its suffix's default)."""
    with open_backend(artifact, device=device.type, backend=backend_name) as backend:
        notes = check_artifact(backend, ckpt, checkpoint_path)
        log(f"comparing {checkpoint_path.name} (PyTorch) with {artifact.name} ({backend.name}) on {len(indices)} images")
        comparison, per_image = compare_with_artifact(loaded, backend, split, indices, device=device,
                                                      batch_size=batch_size, workers=workers, progress=progress)  # fmt: skip
        chosen = most_disagreeing(per_image, count)
        draw = _segmentation_figure if get_task(split.info.task).per_pixel else _classification_figure
        figure = draw(loaded, backend, split, chosen, out, device)
        backend_name, precision = backend.name, backend.precision
    deployed = comparison[DEPLOYED]
    stats = deployed.parity
    scored = {"PyTorch": comparison.reference_metrics or {}, "deployed": deployed.metrics or {}}
    unit = get_task(split.info.task).unit
    parity_table = Table(
        ("measure", "value"),
        tuple((k.replace("_", " "), _fmt(stats[k])) for k in (
            "count", "agreement", "disagreements", "near_tie_disagreements", "tie_margin", "agreement_miou",
            "max_abs_logit_error", "mean_abs_logit_error", "max_abs_reference_logit", "nonfinite_logits",
        ) if k in stats),
    )  # fmt: skip
    keys = ("miou", "pixel_accuracy") if get_task(split.info.task).per_pixel else ("top1", "top5", "mean_class_accuracy")
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
        f"near-tie disagreements are flips where PyTorch's top-2 margin is below the tie margin of {precision}.",
        *notes,
    ]
    return Section("Deployment parity", tuple(paragraphs), (parity_table, metric_table), (figure,))


def _difference(scored: dict, key: str) -> float | None:
    a, b = scored["PyTorch"].get(key), scored["deployed"].get(key)
    if a is None or b is None:
        return None
    return float(b) - float(a)
