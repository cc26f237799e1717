"""Model tensors and label maps as RGB pictures (numpy only)."""
from __future__ import annotations

import numpy as np

from dlcv.runtime.postprocess import colorize
from dlcv.runtime.preprocess import PreprocessSpec

IGNORE_COLOUR = (128, 128, 128)  # unlabelled (ignore-index) pixels
DISAGREE_COLOUR = (255, 0, 0)


def input_to_rgb(x: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A preprocessed 3×H×W float input back to RGB uint8: the photo as the model saw it."""
    rgb = x.transpose(1, 2, 0) * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    if spec.color_order == "bgr":
        rgb = rgb[:, :, ::-1]
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def colour_labels(labels: np.ndarray, palette: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """An H×W label map in the palette's colours, ignore-index pixels grey."""
    labels = np.asarray(labels)
    ignore = labels == ignore_index if ignore_index is not None else np.zeros(labels.shape, bool)
    rgb = colorize(np.where(ignore, 0, labels), palette)
    rgb[ignore] = IGNORE_COLOUR
    return rgb


def disagreement_map(image_rgb: np.ndarray, disagree: np.ndarray) -> np.ndarray:
    """The image dimmed to a third of its brightness, with the disagreeing pixels in red."""
    out = (image_rgb.astype(np.float32) / 3).astype(np.uint8)
    out[disagree] = DISAGREE_COLOUR
    return out
