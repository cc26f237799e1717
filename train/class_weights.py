"""Class weights for the loss, from label frequencies in the training split."""
from __future__ import annotations

import numpy as np

from dlcv.runtime.datasets import DatasetFormat, DatasetInfo, OpenDataset, Sample
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.task import get_task

CLASS_WEIGHTINGS = ("none", "median", "inverse")


def label_frequencies(samples: list[Sample], fmt: DatasetFormat | OpenDataset, info: DatasetInfo) -> np.ndarray:
    """Counts per class over the samples' targets (pixels for segmentation, images for classification);
    ``fmt`` reads the label maps (an OpenDataset applies its class map)."""
    counts = np.zeros(info.num_classes, dtype=np.int64)
    for s in samples:
        if get_task(info.task).per_pixel:
            labels = fmt.read_labels(s).reshape(-1)
            labels = labels[(labels >= 0) & (labels < info.num_classes)]
            counts += np.bincount(labels, minlength=info.num_classes)
        elif 0 <= int(s.target) < info.num_classes:
            counts[int(s.target)] += 1
    return counts


def class_weights(counts: np.ndarray, method: str) -> np.ndarray | None:
    """``median``: median frequency / frequency (SegNet's balancing); ``inverse``: total / (n · count).

    Classes absent from the training split get weight 0 (they contribute no loss anyway).
    """
    if method == "none":
        return None
    if method not in CLASS_WEIGHTINGS:
        raise DlcvError(f"unknown class weighting {method!r}; choose one of {', '.join(CLASS_WEIGHTINGS)}")
    counts = counts.astype(np.float64)
    present = counts > 0
    if not present.any():
        raise DlcvError("cannot weight classes: no labelled pixels or images in the training split")
    freq = counts / counts.sum()
    weights = np.zeros_like(freq)
    if method == "median":
        weights[present] = np.median(freq[present]) / freq[present]
    else:
        weights[present] = 1.0 / (present.sum() * freq[present])
    return weights.astype(np.float32)
