"""Model tensors and label maps as RGB pictures (numpy only)."""
from __future__ import annotations

import numpy as np

from dlcv.runtime.postprocess import colorize

DISAGREE_COLOUR = (255, 0, 0)


def colour_labels(labels: np.ndarray, palette: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """An H×W label map in the palette's colours, ignore-index pixels grey."""
    return colorize(labels, palette, ignore_index)


def disagreement_map(image_rgb: np.ndarray, disagree: np.ndarray) -> np.ndarray:
    """The image dimmed to a third of its brightness, with the disagreeing pixels in red."""
    out = (image_rgb.astype(np.float32) / 3).astype(np.uint8)
    out[disagree] = DISAGREE_COLOUR
    return out
