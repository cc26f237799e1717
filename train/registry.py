"""The model registry: ``@register_model("name", ModelConfig(...))`` on a builder, ``create_model(name, ...)`` to build.

A model owns its defaults (docs/architecture.md contract 7, timm's per-model config): the task, the
default class count, the preprocessing a checkpoint records unless the user overrides it,
the head (what head-only fine-tuning trains and a new class count replaces), the backbone
stages (``--trainable-stages``) and how foreign weight files' tensor names map onto its own.
Training, transfer learning and BYOL read these from here, so a new model is one module.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvError, unknown_choice
from dlcv.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from dlcv.runtime.task import TASK_NAMES

StateDict = Mapping[str, torch.Tensor]
# (name in the weights file, name in the model or None for "no counterpart", tensor to copy)
Pair = tuple[str, "str | None", torch.Tensor]
KeyMapper = Callable[[nn.Module, StateDict], "list[Pair]"]
Stages = Callable[[nn.Module], "list[tuple[str, ...]]"]


def same_names(model: nn.Module, state: StateDict) -> list[Pair]:
    """The default key mapper: the file's tensor names are the model's (torchvision layouts, dlcv checkpoints)."""
    return [(k, k, v) for k, v in state.items()]


def no_stages(model: nn.Module) -> list[tuple[str, ...]]:
    """The default stages: none (``--trainable-stages`` must stay 0)."""
    return []


@dataclass(frozen=True)
class ModelConfig:
    """A model's defaults, declared where the model is defined.

    ``preprocess``: what the checkpoint records when the user gives no ``--input-size``
    (the model's published values: colour order, resize policy and size, interpolation,
    mean, std). ``head``: module-name prefixes trained by ``--finetune head`` and replaced
    for a new class count (a shape mismatch there is reported as "head replaced").
    ``stages(model)``: the backbone stages as module-name prefixes, first to last.
    ``map_keys(model, state)``: pairs each tensor of a foreign weights file with the model's
    name for it (None: no counterpart); it may raise DlcvError for a file of the wrong kind.
    """

    task: str  # "segmentation" | "classification"
    num_classes: int
    preprocess: PreprocessSpec
    head: tuple[str, ...] = ()
    stages: Stages = field(default=no_stages, compare=False)
    map_keys: KeyMapper = field(default=same_names, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES:
            raise ValueError(f"task must be segmentation or classification, not {self.task!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if not isinstance(self.preprocess, PreprocessSpec):
            raise TypeError(f"preprocess must be a PreprocessSpec, not {type(self.preprocess).__name__}")
        if isinstance(self.head, str):
            raise TypeError(f"head must be a tuple of module names, not the string {self.head!r}")


@dataclass(frozen=True)
class ModelInfo:
    """A registered builder and its config."""

    name: str
    builder: Callable[..., nn.Module]
    config: ModelConfig

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def default_num_classes(self) -> int:
        return self.config.num_classes


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, config: ModelConfig):
    """Register a keyword-only builder ``builder(*, num_classes, width, **kwargs)`` under ``name``
    with its defaults; duplicate names are rejected."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"register_model({name!r}, ...) needs a ModelConfig, not {type(config).__name__}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].builder.__module__})")
        _REGISTRY[name] = ModelInfo(name, builder, config)
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


def model_config(name: str) -> ModelConfig:
    """The defaults ``name`` was registered with."""
    return model_info(name).config


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


def imagenet_eval(crop: int, resize: int, interpolation: str = "linear") -> PreprocessSpec:
    """torchvision's ImageNet evaluation transform (its weights' ``transforms()``): the shorter
    side scaled to ``resize``, a centred ``crop``×``crop``, RGB, ImageNet mean and std."""
    return PreprocessSpec(
        resize="shorter_center_crop", size=(crop, crop), resize_shorter=resize, interpolation=interpolation,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
    )  # fmt: skip


def preprocess_for(name: str, input_size: tuple[int, int] | None = None) -> PreprocessSpec:
    """The preprocessing a run of ``name`` records: the model's own, or with ``input_size``
    (``--input-size``) a plain resize to that size that keeps the model's colour order,
    interpolation, mean and std."""
    spec = model_config(name).preprocess
    if input_size is None:
        return spec
    return replace(spec, resize="resize", size=tuple(int(v) for v in input_size), resize_shorter=None)
