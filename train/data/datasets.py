"""PyTorch datasets over a dataset layout, preprocessing with the runtime's one function; augmentation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dlcv.runtime.datasets import DatasetInfo, Sample
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import read_image
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image, preprocess_label_map
from dlcv.runtime.task import get_task


@dataclass(frozen=True)
class Augment:
    """Training augmentation. Geometry (flips, scale, crop) is applied to image and mask alike;
    colour jitter to the image only. ``crop`` (h, w) makes variable-size images batchable.
    Evaluation never augments: it sees the preprocessing contract's tensor only."""

    hflip: bool = False
    vflip: bool = False
    scale: tuple[float, float] = (1.0, 1.0)
    crop: tuple[int, int] | None = None
    color_jitter: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise DlcvUsageError(f"--scale needs 0 < MIN <= MAX, got {lo},{hi}")
        if self.crop is not None and min(self.crop) < 1:
            raise DlcvUsageError(f"--crop needs a positive size, got {self.crop}")
        if not 0 <= self.color_jitter < 1:
            raise DlcvUsageError(f"--color-jitter must be within [0, 1), got {self.color_jitter}")

    @property
    def active(self) -> bool:
        return self.hflip or self.vflip or self.scale != (1.0, 1.0) or self.crop is not None or self.color_jitter > 0


def _augment(image: np.ndarray, labels: np.ndarray | None, aug: Augment, rng: np.random.Generator, ignore: int):
    if aug.hflip and rng.random() < 0.5:
        image = image[:, ::-1]
        labels = None if labels is None else labels[:, ::-1]
    if aug.vflip and rng.random() < 0.5:
        image = image[::-1]
        labels = None if labels is None else labels[::-1]
    if aug.scale != (1.0, 1.0):
        s = float(rng.uniform(*aug.scale))
        h, w = max(1, round(image.shape[0] * s)), max(1, round(image.shape[1] * s))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        if labels is not None:
            labels = cv2.resize(labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    if aug.crop is not None:
        ch, cw = aug.crop
        ph, pw = max(0, ch - image.shape[0]), max(0, cw - image.shape[1])
        if ph or pw:
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
            if labels is not None:
                labels = np.pad(labels, ((0, ph), (0, pw)), constant_values=ignore)
        top = int(rng.integers(0, image.shape[0] - ch + 1))
        left = int(rng.integers(0, image.shape[1] - cw + 1))
        image = image[top : top + ch, left : left + cw]
        labels = None if labels is None else labels[top : top + ch, left : left + cw]
    if aug.color_jitter > 0:
        j = aug.color_jitter
        gain = rng.uniform(1 - j, 1 + j, size=3)
        bias = rng.uniform(-j, j) * 255
        image = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image), None if labels is None else np.ascontiguousarray(labels)


class ImageDataset(Dataset):
    """Samples of one split as (input tensor, target) pairs.

    Segmentation targets are int64 H×W label maps (``ignore_index`` where unlabelled);
    classification targets are class indices. Without augmentation the input tensor is
    exactly ``preprocess_image(read_image(path), spec)``: the deployment tensor.
    ``fmt`` reads the label maps: a DatasetFormat or an OpenDataset (which applies a class map).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        fmt,
        info: DatasetInfo,
        spec: PreprocessSpec,
        augment: Augment = Augment(),
        seed: int = 0,
    ):
        self.samples = list(samples)
        self.fmt, self.info, self.spec, self.augment = fmt, info, spec, augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Vary augmentation by epoch while staying reproducible across runs and resumes."""
        self.epoch = epoch

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image = read_image(sample.image)
        segmentation = get_task(self.info.task).per_pixel
        labels = self.fmt.read_labels(sample) if segmentation else None
        if labels is not None and labels.shape != image.shape[:2]:
            raise DlcvError(f"{sample.target}: mask is {labels.shape[1]}×{labels.shape[0]} but its image is {image.shape[1]}×{image.shape[0]}")
        if self.augment.active:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, labels = _augment(image, labels, self.augment, rng, self.info.ignore_index)
        x, _ = preprocess_image(image, self.spec)
        if segmentation:
            y = preprocess_label_map(labels, self.spec, self.info.ignore_index)
            return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        return torch.from_numpy(x), int(sample.target)


def collate_by_size(batch: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stack a batch into one (inputs, targets) pair per input size, in first-seen order.

    Segmentation sets such as CMP's facades mix image sizes; each size becomes its own group
    (the loop weights the groups' losses by their share of the batch), so no image is resized
    or cropped behind the user's back.
    """
    groups: dict[tuple, list] = {}
    for x, y in batch:
        groups.setdefault(tuple(x.shape), []).append((x, y))
    out = []
    for items in groups.values():
        xs = torch.stack([x for x, _ in items])
        ys = torch.stack([y for _, y in items]) if torch.is_tensor(items[0][1]) else torch.tensor([y for _, y in items])
        out.append((xs, ys))
    return out
