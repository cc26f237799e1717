"""The TensorRT optimisation profile of a model's input: one rule for ``dlcv-export --trt`` and for
onnxruntime's TensorRT execution provider (``trt_profile_min/opt/max_shapes``).

Defaults: batch 1/4/16 when the batch is dynamic (dlcv-infer's default batch, 4, is the
optimum); height and width at the model's natural size (opt), half of it (min) and twice it
(max) when they are dynamic; fixed dims as the graph fixes them. The natural size is the
export's ``--input-size``, else the size the preprocessing resizes to, else 128×128.

A segmentation model that keeps the image size (FCN, DeepLab: ``resize: none``) sees whole
photographs, so its default maximum covers :data:`LARGE_IMAGE_SIDE` on both sides (the seed
datasets' images are 512×512, 480×360 and up to 1024 on a side), at batch
:data:`LARGE_IMAGE_MAX_BATCH`: TensorRT sizes an engine's activation memory for the profile's
maximum, and 16 images of 1024×1024 through VGG16 would need tens of GB. Larger batches are
split by the backends.

``dlcv-export`` records the profile it used (or would use with ``--trt``) in the ONNX metadata
(``tensorrt_profile``); onnxruntime's TensorRT provider takes that one, so an ONNX file and the
engine built from it accept the same inputs.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import DlcvUsageError
from ..preprocess import PreprocessSpec
from ..task import get_task

PROFILE_MIN_BATCH, PROFILE_OPT_BATCH, PROFILE_MAX_BATCH = 1, 4, 16
DEFAULT_NATURAL_SIZE = (128, 128)  # when neither --input-size nor the preprocessing fixes one
LARGE_IMAGE_SIDE = 1024  # the default maximum height and width for segmentation models that keep the image size
LARGE_IMAGE_MAX_BATCH = PROFILE_OPT_BATCH
PROFILE_KEYS = ("min", "opt", "max")

Shape4 = tuple[int, int, int, int]  # N, C, H, W
Profile = tuple[Shape4, Shape4, Shape4]  # min, opt, max


def natural_size(preprocess: PreprocessSpec, input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """(height, width) a model is exported and profiled at."""
    fixed = tuple(preprocess.size) if preprocess.resize != "none" and preprocess.size else None
    return tuple(input_size or fixed or DEFAULT_NATURAL_SIZE)  # type: ignore[return-value]


def keeps_image_size(task: str, preprocess: PreprocessSpec) -> bool:
    """True for a per-pixel (segmentation) model fed whole images at their own size."""
    return get_task(task).per_pixel and preprocess.resize == "none"


def default_profile(
    dims: Sequence[int | None], task: str, preprocess: PreprocessSpec, input_size: Sequence[int] | None = None,
    min_shape: Shape4 | None = None, opt_shape: Shape4 | None = None, max_shape: Shape4 | None = None,
) -> Profile:  # fmt: skip
    """The profile dlcv-export builds with: :func:`optimisation_profile` at the model's natural
    size, covering :data:`LARGE_IMAGE_SIDE` for segmentation models that keep the image size."""
    cover = (LARGE_IMAGE_SIDE, LARGE_IMAGE_SIDE) if keeps_image_size(task, preprocess) else None
    return optimisation_profile(dims, natural_size(preprocess, input_size), min_shape, opt_shape, max_shape, cover=cover)


def profile_dict(profile: Profile) -> dict[str, list[int]]:
    """``{"min": [N,C,H,W], "opt": [...], "max": [...]}``, as metadata records it."""
    return {k: [int(d) for d in shape] for k, shape in zip(PROFILE_KEYS, profile)}


def profile_from_dict(data: object) -> Profile:
    """The inverse of :func:`profile_dict`; ValueError for anything else."""
    if not isinstance(data, dict) or set(data) != set(PROFILE_KEYS):
        raise ValueError(f"a profile needs the keys {', '.join(PROFILE_KEYS)}")
    shapes = tuple(tuple(int(d) for d in data[k]) for k in PROFILE_KEYS)
    if any(len(s) != 4 or min(s) < 1 for s in shapes):
        raise ValueError("every profile shape needs four positive dimensions")
    if not all(a <= b <= c for a, b, c in zip(*shapes)):
        raise ValueError("a profile needs min <= opt <= max in every dimension")
    return shapes  # type: ignore[return-value]


def widened(profile: Profile, max_size: Sequence[int]) -> Profile:
    """``profile`` with its maximum height and width raised to at least ``max_size`` (H, W)."""
    lo, opt, hi = profile
    return lo, opt, (hi[0], hi[1], max(hi[2], int(max_size[0])), max(hi[3], int(max_size[1])))


def graph_dims(shape: Sequence) -> list[int | None]:
    """A graph input's shape with every dynamic dimension (a name, None, -1 or 0) as None."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def optimisation_profile(
    dims: Sequence[int | None], natural: tuple[int, int], min_shape: Shape4 | None = None,
    opt_shape: Shape4 | None = None, max_shape: Shape4 | None = None, cover: tuple[int, int] | None = None,
) -> Profile:  # fmt: skip
    """(min, opt, max) input shapes for an input whose fixed dims are ``dims`` (None = dynamic).
    Given shapes win, and the defaults move to contain them (``max_shape=(2, 3, 64, 64)`` alone
    lowers opt's batch to 2). ``cover`` (H, W): the default maximum reaches at least that size,
    at batch :data:`LARGE_IMAGE_MAX_BATCH`. The result is checked against the fixed dims and
    min <= opt <= max."""
    h, w = natural
    defaults = {
        "min": (PROFILE_MIN_BATCH, 3, math.ceil(h / 2), math.ceil(w / 2)),
        "opt": (PROFILE_OPT_BATCH, 3, h, w),
        "max": (PROFILE_MAX_BATCH, 3, 2 * h, 2 * w),
    }
    if cover is not None:
        defaults["max"] = (LARGE_IMAGE_MAX_BATCH, 3, max(2 * h, cover[0]), max(2 * w, cover[1]))
    given = {"min": min_shape, "opt": opt_shape, "max": max_shape}
    # Defaults follow the graph's fixed dims and make room for the shapes that were given.
    chosen = {k: tuple(f if f is not None else v for f, v in zip(dims, given[k] or defaults[k])) for k in defaults}
    if given["min"] is None:
        chosen["min"] = tuple(map(min, chosen["min"], given["opt"] or chosen["max"]))
    if given["max"] is None:
        chosen["max"] = tuple(map(max, chosen["max"], given["opt"] or chosen["min"]))
    if given["opt"] is None:
        chosen["opt"] = tuple(min(max(o, a), b) for o, a, b in zip(chosen["opt"], chosen["min"], chosen["max"]))
    chosen = {k: tuple(given[k] or v) for k, v in chosen.items()}
    problems = []
    for key, shape in chosen.items():
        for axis, (fixed, value) in enumerate(zip(dims, shape)):
            if fixed is not None and value != fixed:
                problems.append(f"--{key}-shape {'x'.join(map(str, shape))}: axis {axis} is fixed at {fixed} in the ONNX graph")
    if not all(a <= b <= c for a, b, c in zip(chosen["min"], chosen["opt"], chosen["max"])):
        problems.append(
            "the profile needs min <= opt <= max in every dimension, got "
            + ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in chosen.items())
        )
    if problems:
        raise DlcvUsageError("; ".join(problems))
    return chosen["min"], chosen["opt"], chosen["max"]  # type: ignore[return-value]


def contains(profile: Profile, shape: Sequence[int]) -> bool:
    """True when ``shape`` lies within the profile in every dimension."""
    lo, _, hi = profile
    return all(a <= s <= b for a, s, b in zip(lo, shape, hi))


def shape_text(shape: Sequence[int]) -> str:
    """(1, 3, 64, 64) -> ``1x3x64x64``."""
    return "x".join(str(int(d)) for d in shape)
