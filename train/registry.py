"""The model registry: ``@register_model("name")`` on a builder, ``create_model(name, ...)`` to build."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from dlcv.runtime.errors import DlcvError, unknown_choice


@dataclass(frozen=True)
class ModelInfo:
    """A registered builder and what it makes."""

    name: str
    task: str  # "segmentation" | "classification"
    builder: Callable[..., nn.Module]
    default_num_classes: int


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, task: str, default_num_classes: int):
    """Register a keyword-only builder ``builder(*, num_classes, width, **kwargs)`` under ``name``."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__})")
        if task not in ("segmentation", "classification"):
            raise ValueError(f"task must be segmentation or classification, not {task!r}")
        _REGISTRY[name] = ModelInfo(name, task, builder, default_num_classes)
        return builder

    return decorator


def _ensure_loaded() -> None:
    # The model modules register themselves on import; importing the package is enough.
    from . import models  # noqa: F401


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; unknown names are answered with the valid ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DlcvError(unknown_choice("model", name, _REGISTRY)) from None


def create_model(name: str, *, num_classes: int | None = None, width: float = 1.0, **kwargs) -> nn.Module:
    """Build a registered model. ``width`` scales every channel count (1.0 = the published size)."""
    info = model_info(name)
    if width <= 0:
        raise DlcvError(f"width must be positive, got {width}")
    n = info.default_num_classes if num_classes is None else int(num_classes)
    if n < 1:
        raise DlcvError(f"num_classes must be positive, got {n}")
    accepted = [p for p in inspect.signature(info.builder).parameters if p not in ("num_classes", "width")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise DlcvError(
            f"{name} takes no option {', '.join(unknown)}; its options are: {', '.join(accepted) or 'none'}"
        )
    return info.builder(num_classes=n, width=width, **kwargs)


def scaled(channels: int, width: float) -> int:
    """A channel count scaled by ``width``, at least 1."""
    return max(1, int(round(channels * width)))
