"""The TensorRT optimisation profile of a model's input: one rule for ``dlcv-export --trt`` and for
onnxruntime's TensorRT execution provider (``trt_profile_min/opt/max_shapes``).

Defaults: batch 1/4/16 when the batch is dynamic (dlcv-infer's default batch, 4, is the
optimum); height and width at the model's natural size (opt), half of it (min) and twice it
(max) when they are dynamic; fixed dims as the graph fixes them. The natural size is the
export's ``--input-size``, else the size the preprocessing resizes to, else 128×128.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import DlcvUsageError
from ..preprocess import PreprocessSpec

PROFILE_MIN_BATCH, PROFILE_OPT_BATCH, PROFILE_MAX_BATCH = 1, 4, 16
DEFAULT_NATURAL_SIZE = (128, 128)  # when neither --input-size nor the preprocessing fixes one

Shape4 = tuple[int, int, int, int]  # N, C, H, W
Profile = tuple[Shape4, Shape4, Shape4]  # min, opt, max


def natural_size(preprocess: PreprocessSpec, input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """(height, width) a model is exported and profiled at."""
    fixed = tuple(preprocess.size) if preprocess.resize != "none" and preprocess.size else None
    return tuple(input_size or fixed or DEFAULT_NATURAL_SIZE)  # type: ignore[return-value]


def graph_dims(shape: Sequence) -> list[int | None]:
    """A graph input's shape with every dynamic dimension (a name, None, -1 or 0) as None."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


def optimisation_profile(
    dims: Sequence[int | None], natural: tuple[int, int], min_shape: Shape4 | None = None,
    opt_shape: Shape4 | None = None, max_shape: Shape4 | None = None,
) -> Profile:  # fmt: skip
    """(min, opt, max) input shapes for an input whose fixed dims are ``dims`` (None = dynamic).
    Given shapes win, and the defaults move to contain them (``max_shape=(2, 3, 64, 64)`` alone
    lowers opt's batch to 2). The result is checked against the fixed dims and min <= opt <= max."""
    h, w = natural
    defaults = {
        "min": (PROFILE_MIN_BATCH, 3, math.ceil(h / 2), math.ceil(w / 2)),
        "opt": (PROFILE_OPT_BATCH, 3, h, w),
        "max": (PROFILE_MAX_BATCH, 3, 2 * h, 2 * w),
    }
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
