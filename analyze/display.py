"""Parity pictures: where two models disagree (numpy only; label colours are runtime.postprocess.colorize)."""
from __future__ import annotations

import numpy as np

DISAGREE_COLOUR = (255, 0, 0)


def disagreement_map(image_rgb: np.ndarray, disagree: np.ndarray) -> np.ndarray:
    """The image dimmed to a third of its brightness, with the disagreeing pixels in red."""
    out = (image_rgb.astype(np.float32) / 3).astype(np.uint8)
    out[disagree] = DISAGREE_COLOUR
    return out
