"""Model outputs -> answers: label maps and colour masks (segmentation), softmax top-k (classification).

numpy only. Ties are broken towards the lower class index everywhere (``np.argmax`` and a
stable sort; an in-graph ArgMax/TopK head does the same), so the label written for an image
and the label its metrics score agree. :func:`predicted_labels` and :func:`predicted_topk`
take a model's outputs of either kind (:mod:`dlcv.runtime.output_spec`): logits are
postprocessed here, a head's labels or TopK are used as they are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from .errors import DlcvError
from .output_spec import LABELS, LOGITS, TOPK

if TYPE_CHECKING:
    from .metadata import ArtifactMetadata


def default_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map (class 0 black, 1 dark red, 2 dark green...) as ``num_classes``×3 uint8.

    Used when an artifact's metadata carries no palette; distinct for up to 2^24 classes.
    """
    if num_classes < 1:
        raise DlcvError(f"num_classes must be positive, got {num_classes}")
    index = np.arange(num_classes, dtype=np.int64)
    palette = np.zeros((num_classes, 3), dtype=np.int64)
    c = index.copy()
    for shift in range(7, -1, -1):
        for channel in range(3):
            palette[:, channel] |= ((c >> channel) & 1) << shift
        c >>= 3
    return palette.astype(np.uint8)


def palette_array(palette: Sequence[Sequence[int]] | None, num_classes: int) -> np.ndarray:
    """The metadata's palette as ``num_classes``×3 uint8, or :func:`default_palette` when it has none."""
    if palette is None:
        return default_palette(num_classes)
    array = np.asarray(palette, dtype=np.int64)
    if array.shape != (num_classes, 3) or array.min() < 0 or array.max() > 255:
        raise DlcvError(f"palette must hold {num_classes} RGB triples within 0..255, got shape {array.shape}")
    return array.astype(np.uint8)


def label_dtype(num_classes: int) -> np.dtype:
    """The smallest PNG-writable integer type for class indices (uint8 up to 256 classes, else uint16)."""
    if num_classes <= 256:
        return np.dtype(np.uint8)
    if num_classes <= 65536:
        return np.dtype(np.uint16)
    raise DlcvError(f"{num_classes} classes do not fit a 16-bit index PNG")


def segmentation_labels(logits: np.ndarray) -> np.ndarray:
    """N×C×H×W logits -> N×H×W class indices (uint8, or uint16 above 256 classes)."""
    if logits.ndim != 4:
        raise DlcvError(f"segmentation logits must be N×C×H×W, got shape {logits.shape}")
    return np.argmax(logits, axis=1).astype(label_dtype(logits.shape[1]))


IGNORE_COLOUR = (128, 128, 128)  # unlabelled (ignore-index) pixels


def colorize(labels: np.ndarray, palette: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """H×W class indices -> H×W×3 RGB uint8 via ``palette`` (indices beyond it are drawn black;
    ``ignore_index`` pixels grey)."""
    labels = np.asarray(labels)
    ignore = labels == ignore_index if ignore_index is not None else None
    if ignore is not None:
        labels = np.where(ignore, 0, labels)
    if labels.size and int(labels.max()) >= len(palette):
        palette = np.concatenate([palette, np.zeros((int(labels.max()) + 1 - len(palette), 3), np.uint8)])
    rgb = palette[labels]
    if ignore is not None:
        rgb[ignore] = IGNORE_COLOUR
    return rgb


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """N×C logits -> (N×k class indices, N×k softmax probabilities), best first.

    Ordered by the logits with a stable sort (ties: lower index first), the order
    :class:`~dlcv.runtime.task_metrics.ClassificationMetrics` scores with.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise DlcvError(f"classification logits must be N×C, got shape {logits.shape}")
    k = max(1, min(k, logits.shape[1]))
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    probs = np.take_along_axis(softmax(logits, axis=1), order, axis=1)
    return order, probs


def predicted_labels(outputs: Mapping[str, np.ndarray], metadata: "ArtifactMetadata") -> np.ndarray:
    """A segmentation model's N×H×W class indices (:func:`label_dtype`): numpy's argmax of its
    logits, or its in-graph ArgMax's labels as they are (only the dtype is narrowed)."""
    spec = metadata.outputs
    values = outputs[spec.primary.name]
    if spec.kind == LOGITS:
        return segmentation_labels(values)
    if spec.kind != LABELS:
        raise DlcvError(f"a segmentation model's outputs are logits or labels, not {spec.kind}")
    return values.astype(label_dtype(metadata.num_classes), copy=False)


def predicted_topk(outputs: Mapping[str, np.ndarray], metadata: "ArtifactMetadata", k: int) -> tuple[np.ndarray, np.ndarray]:
    """A classification model's (N×k class indices, N×k probabilities), best first: :func:`topk`
    of its logits, or its in-graph TopK head's indices and scores (k at most the head's)."""
    spec = metadata.outputs
    if spec.kind == LOGITS:
        return topk(outputs[spec.primary.name], k)
    if spec.kind != TOPK:
        raise DlcvError(f"a classification model's outputs are logits or topk, not {spec.kind}")
    indices, scores = (outputs[t.name] for t in spec.tensors)
    k = max(1, min(k, indices.shape[1]))
    return indices[:, :k].astype(np.int64, copy=False), scores[:, :k].astype(np.float64)
