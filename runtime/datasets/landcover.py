"""``landcover``: ``NNNN_sat.jpg`` + ``NNNN_mask.png`` RGB colour masks -> 7 classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcv.runtime.imageio import is_image_file, read_image

from .base import DatasetFormat, DatasetInfo, LayoutOptions, Sample
from .folders import first_entries, images_in, pair_by_stem, split_dir


LANDCOVER_CLASSES = ("urban", "agriculture", "rangeland", "forest", "water", "barren", "unknown")
LANDCOVER_COLOURS = ((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0))
_LANDCOVER_IGNORE = 255


def _landcover_lut() -> np.ndarray:
    """Class per 3-bit colour code 4·R + 2·G + B; pure red (the one unused code) is ignored."""
    lut = np.full(8, _LANDCOVER_IGNORE, dtype=np.int64)
    for cls, (r, g, b) in enumerate(LANDCOVER_COLOURS):
        lut[4 * (r >= 128) + 2 * (g >= 128) + (b >= 128)] = cls
    return lut


class LandCoverFormat(DatasetFormat):
    """Satellite land cover: ``NNNN_sat.jpg`` with an RGB colour mask ``NNNN_mask.png``."""

    name = "landcover"
    task = "segmentation"
    description = "train/ validation/ (or val/) [test/] of NNNN_sat.jpg + NNNN_mask.png colour masks (7 classes)"
    _lut = _landcover_lut()

    def detect(self, root: Path) -> bool:
        folder = split_dir(root, "train")
        return folder is not None and any(p.stem.endswith("_sat") and is_image_file(p) for p in first_entries(folder))

    def info(self, root: Path) -> DatasetInfo:
        return DatasetInfo("segmentation", LANDCOVER_CLASSES, LANDCOVER_COLOURS, _LANDCOVER_IGNORE, exclude_classes=(6,))

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        folder = split_dir(root, split)
        if folder is None:
            return []
        files = images_in(folder)
        masks = {p.stem[: -len("_mask")]: p for p in files if p.stem.endswith("_mask")}
        images = [p for p in files if p.stem.endswith("_sat")]
        return pair_by_stem(images, masks, folder, key=lambda p: p.stem[: -len("_sat")])

    def read_labels(self, sample: Sample) -> np.ndarray:
        """Colour mask -> class indices; a channel counts as set at >= 128."""
        rgb = read_image(sample.target, max_pixels=None) >= 128
        code = 4 * rgb[:, :, 0].astype(np.int64) + 2 * rgb[:, :, 1] + rgb[:, :, 2]
        return self._lut[code]
