"""Per-epoch prediction figures: image | ground truth | prediction for a fixed set of validation
images, saved as ``overlays/epoch_NNN.png`` (the reports' early/middle/final epoch figures)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from dlcv.runtime.imageio import write_png
from dlcv.runtime.postprocess import colorize, palette_array
from dlcv.runtime.preprocess import input_to_rgb
from dlcv.runtime.task import get_task

from .data.datasets import ImageDataset

TILE_HEIGHT = (96, 256)  # tiles are scaled into this height range (nearest neighbour keeps labels crisp)
LINE = 16  # pixels per header line (the epoch, then the column titles)
GAP = 4  # white pixels between tiles and rows
TITLES = ("image", "ground truth", "prediction")


def overlay_indices(length: int, count: int) -> list[int]:
    """``count`` indices spread evenly over a set of ``length`` (the same ones every epoch)."""
    if length <= 0 or count <= 0:
        return []
    return sorted({int(round(v)) for v in np.linspace(0, length - 1, min(count, length))})


def _tile_scale(height: int) -> float:
    lo, hi = TILE_HEIGHT
    if height < lo:
        return float(int(np.ceil(lo / height)))
    return min(1.0, hi / height)


def _resize(array: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return array
    h, w = array.shape[:2]
    return cv2.resize(array, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST_EXACT)


def _text(bar: np.ndarray, text: str, x: int, line: int) -> None:
    cv2.putText(bar, text, (x + 2, (line + 1) * LINE - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)


def _header(tile_width: int, total_width: int, epoch: int) -> np.ndarray:
    bar = np.full((2 * LINE, total_width, 3), 255, np.uint8)
    _text(bar, f"epoch {epoch}", 0, 0)
    for i, title in enumerate(TITLES):
        _text(bar, title, i * (tile_width + GAP), 1)
    return bar


def _side_by_side(tiles: list[np.ndarray]) -> np.ndarray:
    gap = np.full((tiles[0].shape[0], GAP, 3), 255, np.uint8)
    parts = [p for t in tiles for p in (t, gap)][:-1]
    return np.concatenate(parts, axis=1)


class OverlayWriter:
    """Draws the model's predictions on fixed validation images after each epoch."""

    def __init__(self, dataset: ImageDataset, out_dir: Path, count: int = 4):
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.indices = overlay_indices(len(dataset), count) if get_task(dataset.info.task).per_pixel else []
        info = dataset.info
        self.palette = palette_array(info.palette, info.num_classes)

    @property
    def enabled(self) -> bool:
        return bool(self.indices)

    def _colour(self, labels: np.ndarray) -> np.ndarray:
        return colorize(labels, self.palette, self.dataset.info.ignore_index)

    def _row(self, model: nn.Module, index: int, device: torch.device) -> np.ndarray:
        x, y = self.dataset[index]
        pred = model(x[None].to(device)).argmax(1)[0].cpu().numpy()
        labels = y.numpy()
        tiles = [input_to_rgb(x.numpy(), self.dataset.spec), self._colour(labels), self._colour(pred)]
        scale = _tile_scale(labels.shape[0])
        return _side_by_side([_resize(t, scale) for t in tiles])

    @torch.no_grad()
    def write(self, model: nn.Module, epoch: int, device: torch.device) -> Path | None:
        """Save ``overlays/epoch_NNN.png``; returns its path (None when there is nothing to draw)."""
        if not self.enabled:
            return None
        was_training = model.training
        model.eval()
        try:
            rows = [self._row(model, i, device) for i in self.indices]
        finally:
            model.train(was_training)
        tile_width, width = (rows[0].shape[1] - 2 * GAP) // 3, max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, GAP), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        figure = np.concatenate([_header(tile_width, width, epoch)] + rows, axis=0)
        path = self.out_dir / f"epoch_{epoch:03d}.png"
        write_png(path, figure)
        return path
