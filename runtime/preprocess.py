"""The preprocessing contract: one versioned, JSON-able record and the one function that executes it.

Training evaluation, export verification and every backend call :func:`preprocess_image`,
so the tensor a deployed model sees is the tensor the model was evaluated on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from .errors import DlcvError

PREPROCESS_VERSION = 1

RESIZE_POLICIES = ("none", "resize", "letterbox", "shorter_center_crop")
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST_EXACT,  # pixel-centre aligned (PIL's nearest); INTER_NEAREST drifts
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How an RGB uint8 image becomes the model's float32 C×H×W input.

    ``resize``: ``none`` keeps the image size (fully convolutional models); ``resize``
    stretches to ``size``; ``letterbox`` fits inside ``size`` keeping the aspect ratio and pads
    with ``pad_value``; ``shorter_center_crop`` scales the shorter side to ``resize_shorter``
    and crops ``size`` from the centre (the ImageNet evaluation transform).
    Values are scaled to [0, 1], then normalised with ``mean`` and ``std`` per channel.
    """

    version: int = PREPROCESS_VERSION
    color_order: str = "rgb"
    resize: str = "none"
    size: tuple[int, int] | None = None  # (height, width)
    resize_shorter: int | None = None
    interpolation: str = "linear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_value: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.version != PREPROCESS_VERSION:
            problems.append(f"version {self.version} is not supported (this dlcv reads version {PREPROCESS_VERSION})")
        if self.color_order not in ("rgb", "bgr"):
            problems.append(f"color_order must be 'rgb' or 'bgr', not {self.color_order!r}")
        if self.resize not in RESIZE_POLICIES:
            problems.append(f"resize must be one of {', '.join(RESIZE_POLICIES)}, not {self.resize!r}")
        if self.resize != "none" and (self.size is None or len(self.size) != 2 or min(self.size) < 1):
            problems.append(f"resize={self.resize!r} needs size=(height, width) with positive values")
        if self.resize == "shorter_center_crop" and (self.resize_shorter or 0) < 1:
            problems.append("resize='shorter_center_crop' needs resize_shorter > 0")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append("mean and std need three values each, std all positive")
        if not 0 <= self.pad_value <= 255:
            problems.append("pad_value must be within 0..255")
        if problems:
            raise DlcvError("invalid preprocessing record: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists instead of tuples)."""
        d = asdict(self)
        for key in ("size", "mean", "std"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessSpec":
        """Build from a dict as stored in a checkpoint or artifact; unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise DlcvError(f"invalid preprocessing record: expected a mapping, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DlcvError(f"invalid preprocessing record: unknown keys {sorted(unknown)}")
        kwargs = dict(data)
        try:
            for key in ("size", "mean", "std"):
                if kwargs.get(key) is not None:
                    kwargs[key] = tuple(kwargs[key])
            if kwargs.get("size") is not None:
                kwargs["size"] = tuple(int(v) for v in kwargs["size"])
            if kwargs.get("resize_shorter") is not None:
                kwargs["resize_shorter"] = int(kwargs["resize_shorter"])
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise DlcvError(f"invalid preprocessing record: {exc}") from None


@dataclass(frozen=True)
class Geometry:
    """Where the original image sits in the model input, to map predictions back.

    The original (``orig_h``×``orig_w``) was scaled to ``scaled_h``×``scaled_w`` and placed
    with its top-left corner at (``top``, ``left``) of the input (negative when cropped).
    """

    orig_h: int
    orig_w: int
    scaled_h: int
    scaled_w: int
    top: int
    left: int
    input_h: int
    input_w: int


def _plan_geometry(h: int, w: int, spec: PreprocessSpec) -> Geometry:
    if spec.resize == "none":
        return Geometry(h, w, h, w, 0, 0, h, w)
    out_h, out_w = spec.size  # type: ignore[misc]
    if spec.resize == "resize":
        return Geometry(h, w, out_h, out_w, 0, 0, out_h, out_w)
    if spec.resize == "letterbox":
        scale = min(out_h / h, out_w / w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        return Geometry(h, w, sh, sw, (out_h - sh) // 2, (out_w - sw) // 2, out_h, out_w)
    # shorter_center_crop
    scale = spec.resize_shorter / min(h, w)  # type: ignore[operator]
    sh, sw = max(out_h, math.floor(h * scale + 0.5)), max(out_w, math.floor(w * scale + 0.5))
    return Geometry(h, w, sh, sw, -((sh - out_h) // 2), -((sw - out_w) // 2), out_h, out_w)


def _place(array: np.ndarray, g: Geometry, interpolation: int, fill: int) -> np.ndarray:
    """Scale ``array`` (H×W or H×W×C) per ``g`` and place it into the input canvas."""
    if (g.scaled_h, g.scaled_w) != array.shape[:2]:
        array = cv2.resize(array, (g.scaled_w, g.scaled_h), interpolation=interpolation)
    if g.top == 0 and g.left == 0 and (g.scaled_h, g.scaled_w) == (g.input_h, g.input_w):
        return array
    if g.top <= 0 and g.left <= 0:  # centre crop
        return array[-g.top : -g.top + g.input_h, -g.left : -g.left + g.input_w]
    canvas = np.full((g.input_h, g.input_w) + array.shape[2:], fill, dtype=array.dtype)
    canvas[g.top : g.top + g.scaled_h, g.left : g.left + g.scaled_w] = array
    return canvas


def preprocess_image(image_rgb: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, Geometry]:
    """Turn an RGB uint8 H×W×3 image into the float32 3×H×W model input, and its geometry."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise DlcvError(
            f"preprocess_image expects an RGB uint8 H×W×3 array, got {image_rgb.dtype} {image_rgb.shape}"
        )
    g = _plan_geometry(image_rgb.shape[0], image_rgb.shape[1], spec)
    placed = _place(image_rgb, g, INTERPOLATIONS[spec.interpolation], spec.pad_value)
    if spec.color_order == "bgr":
        placed = placed[:, :, ::-1]
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, dtype=np.float32)
    x = (placed.astype(np.float32) * scale - mean) * inv_std
    return np.ascontiguousarray(x.transpose(2, 0, 1)), g


def preprocess_label_map(labels: np.ndarray, spec: PreprocessSpec, ignore_index: int) -> np.ndarray:
    """Apply the image's geometry to its label map (nearest neighbour; padding = ``ignore_index``)."""
    g = _plan_geometry(labels.shape[0], labels.shape[1], spec)
    return _place(labels.astype(np.int32, copy=False), g, cv2.INTER_NEAREST_EXACT, ignore_index)


def restore_label_map(pred: np.ndarray, g: Geometry) -> np.ndarray:
    """Map a predicted label map at input size back onto the original image (nearest neighbour);
    float32 per-pixel scores are mapped the same way."""
    if pred.shape[:2] != (g.input_h, g.input_w):
        raise DlcvError(f"prediction of shape {pred.shape[:2]} does not match the input size {(g.input_h, g.input_w)}")
    if g.top >= 0 and g.left >= 0:
        region = pred[g.top : g.top + g.scaled_h, g.left : g.left + g.scaled_w]
    else:  # the input was a centre crop: pad back with the border prediction
        region = np.pad(pred, ((-g.top, g.scaled_h - g.input_h + g.top), (-g.left, g.scaled_w - g.input_w + g.left)), mode="edge")
    if region.shape[:2] == (g.orig_h, g.orig_w):
        return region
    dtype = region.dtype
    work = region if dtype in (np.uint8, np.uint16, np.int32, np.float32) else region.astype(np.int32)
    resized = cv2.resize(work, (g.orig_w, g.orig_h), interpolation=cv2.INTER_NEAREST_EXACT)
    return resized.astype(dtype, copy=False)


def input_to_rgb(x: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Undo the normalisation: a 3×H×W model input back to RGB uint8 (the photo as the model saw it)."""
    rgb = x.transpose(1, 2, 0) * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    if spec.color_order == "bgr":
        rgb = rgb[:, :, ::-1]
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
