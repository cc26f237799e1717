"""Transfer learning: pretrained weights from a local file, and which parameters train.

:func:`load_pretrained` copies a torchvision-format state dict (or a dlcv checkpoint's, or a
BYOL backbone from :mod:`dlcv.train.byol`) into a registry model, tensor by tensor, and
reports what was loaded and what was skipped and why. :func:`set_finetune` freezes the
backbone for feature extraction (``head``), optionally leaving its last stages trainable.

What the *head* is (the layers replaced or trained in feature-extraction mode), the backbone
*stages* (first to last) and how a file's tensor names map onto the model's are the model's own
registered config (:class:`dlcv.train.registry.ModelConfig`), read from the registry here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvError, DlcvUsageError

from .checkpoint import load_weights_only
from .registry import Pair, StateDict, model_config

MISSING_IN_MODEL = "missing in model"
SHAPE_MISMATCH = "shape mismatch"
HEAD_REPLACED = "head replaced"
FINETUNE_MODES = ("all", "head")
# Prefixes added by torch.nn.DataParallel / DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Where other trainers keep the weights inside a checkpoint dict.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")



# ---------------------------------------------------------------------------------------------
# reports


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor of the weights file that was not copied, and why."""

    name: str  # as named in the file
    reason: str  # MISSING_IN_MODEL | SHAPE_MISMATCH | HEAD_REPLACED
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.reason}{': ' + self.detail if self.detail else ''})"


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` copied: model tensor names loaded, file tensors skipped, and
    the model tensors the file did not provide (they keep their initialisation)."""

    source: str
    loaded: tuple[str, ...]
    skipped: tuple[SkippedTensor, ...]
    kept: tuple[str, ...] = ()

    def skipped_for(self, reason: str) -> tuple[SkippedTensor, ...]:
        return tuple(s for s in self.skipped if s.reason == reason)

    def summary(self, limit: int = 8) -> str:
        """One line for the CLI: ``loaded 30 tensors, skipped 2: classifier.6.weight (head replaced: ...), ...``."""
        text = f"{self.source}: loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}"
        if self.skipped:
            text += ": " + _listing([str(s) for s in self.skipped], limit)
        if self.kept:
            text += f"; {len(self.kept)} model tensors kept their initialisation: " + _listing(list(self.kept), limit)
        return text


def _listing(items: list[str], limit: int) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------
# reading weights files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file, loaded with ``weights_only=True``.

    Accepts a plain state dict (torchvision's format, a BYOL backbone) or a dict holding one
    under ``state_dict`` (dlcv checkpoints), ``model_state_dict`` or ``model``. A file that
    carries pickled Python objects is refused, never executed. ``module.`` / ``_orig_mod.``
    prefixes (DataParallel, torch.compile) are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: weights file not found")
    obj = load_weights_only(path, "weights file", "Save model.state_dict() instead of the model object.")
    state = _tensor_dict(obj)
    if state is None and isinstance(obj, Mapping):
        state = next((found for k in NESTED_STATE_KEYS if (found := _tensor_dict(obj.get(k)))), None)
    if not state:
        raise DlcvError(
            f"{path}: expected a state dict of tensors (or a checkpoint dict with one under "
            f"{', '.join(NESTED_STATE_KEYS)}), found {type(obj).__name__}"
        )
    return strip_wrapper_prefixes(state)


def _tensor_dict(obj) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def strip_wrapper_prefixes(state: StateDict) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        for prefix in WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = tensor
    return out


# ---------------------------------------------------------------------------------------------
# copying


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def transfer_tensors(model: nn.Module, pairs: Iterable[Pair], *, source: str, head: tuple[str, ...] = ()) -> LoadReport:
    """Copy each ``(file name, model name, tensor)`` whose model name exists with the same shape.

    A shape mismatch under one of the ``head`` prefixes is reported as a replaced head (the
    class layer sized for other classes); elsewhere as a mismatch. Raises DlcvError when no
    tensor outside the head fits: the file is for another architecture or width.
    """
    own = model.state_dict()
    loaded: list[str] = []
    skipped: list[SkippedTensor] = []
    with torch.no_grad():
        for name, target, tensor in pairs:
            if target is None or target not in own:
                skipped.append(SkippedTensor(name, MISSING_IN_MODEL))
                continue
            want = own[target]
            if tensor.shape != want.shape:
                reason = HEAD_REPLACED if _under(target, head) else SHAPE_MISMATCH
                detail = f"{tuple(tensor.shape)} in the file vs {tuple(want.shape)} in the model"
                skipped.append(SkippedTensor(name, reason, detail))
                continue
            want.copy_(tensor.to(want.dtype))
            loaded.append(target)
    if all(_under(name, head) for name in loaded):  # nothing, or only head tensors (a bias of the same class count)
        example = next((s for s in skipped if s.reason != MISSING_IN_MODEL), skipped[0] if skipped else "none")
        raise DlcvError(
            f"{source}: no tensor of this file fits the model's backbone ({len(skipped)} skipped, e.g. {example}); "
            "is it for this architecture, and at the model's width (1.0 for published weights)?"
        )
    done = set(loaded)
    return LoadReport(source, tuple(loaded), tuple(skipped), tuple(k for k in own if k not in done))


# ---------------------------------------------------------------------------------------------
# the two entry points


def load_pretrained(model: nn.Module, arch: str, path: str | os.PathLike) -> LoadReport:
    """Copy the weights of a local file into ``model`` (a registry model of ``arch``).

    The file's tensor names are mapped by the model's registered key mapper
    (:class:`~dlcv.train.registry.ModelConfig`); the registered models accept
    torchvision-format state dicts (VGG16 into the FCN family and fcn8s_deconv, VGG16-BN,
    ResNet-50, AlexNet, EfficientNet-B2, ConvNeXt-Base, DeepLabv3-ResNet50 or a ResNet-50 into
    DeepLabv3's backbone and the reverse), a dlcv checkpoint (its ``state_dict``), a BYOL
    backbone (``backbone.pt``), and FCN checkpoints with the course's layer names
    (``conv1_1`` ... ``conv5_3``, ``fc6``, ``score_fr``, ``upscore*``). Tensors of the wrong
    shape are skipped and reported; the classification layer of a new class count is the
    usual case (``head replaced``). Raises DlcvError when no backbone tensor fits (another
    architecture or width), when the key mapper refuses the file (VGG16 weights given to a
    VGG16-BN model or the reverse), and for files that are not weights-only state dicts.
    """
    config = model_config(arch)
    state = read_state_dict(path)
    try:
        pairs = config.map_keys(model, state)
    except DlcvError as exc:
        raise DlcvError(f"{path} for {arch}: {exc}") from None
    return transfer_tensors(model, pairs, source=str(path), head=config.head)


def set_finetune(model: nn.Module, arch: str, mode: str, *, trainable_stages: int = 0) -> int:
    """Choose what trains; returns the number of trainable parameters (elements).

    ``all``: every parameter. ``head``: the backbone is frozen (a feature extractor) and only
    the model's registered head trains, plus the last ``trainable_stages`` backbone stages (e.g.
    ConvNeXt's "freeze all but the last stages"). Frozen BatchNorm layers also keep their
    running statistics: they run in inference mode even while the model trains.
    Build the optimiser afterwards, over ``[p for p in model.parameters() if p.requires_grad]``.
    """
    config = model_config(arch)
    if mode not in FINETUNE_MODES:
        raise DlcvUsageError(f"--finetune must be one of {', '.join(FINETUNE_MODES)}, not {mode!r}")
    if mode == "head" and not config.head:
        raise DlcvUsageError(f"{arch} declares no head (ModelConfig.head), so --finetune head cannot choose what trains")
    stages = config.stages(model)
    if trainable_stages and mode != "head":
        raise DlcvUsageError("trainable stages apply to --finetune head (with all, every stage trains)")
    if not 0 <= trainable_stages <= len(stages):
        raise DlcvUsageError(
            f"{arch} has {len(stages)} backbone stages; trainable stages must be 0..{len(stages)}, got {trainable_stages}"
        )
    _release_batchnorm(model)
    if mode == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return _count_trainable(model)
    trainable = config.head + tuple(p for stage in stages[len(stages) - trainable_stages :] for p in stage)
    for name, p in model.named_parameters():
        p.requires_grad_(_under(name, trainable))
    _freeze_batchnorm(model, trainable)
    if _count_trainable(model) == 0:
        raise DlcvError(f"{arch}: no parameter matched the head {config.head}; the model does not look like {arch}")
    return _count_trainable(model)


def output_layer(model: nn.Module) -> tuple[str, nn.Linear]:
    """A classifier's class layer, ``(name, module)``: its last ``nn.Linear``, whose input is
    what ``forward_features`` returns."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise DlcvError(f"{type(model).__name__} has no Linear class layer; is it a classifier?")
    return found[-1]


def _count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_BN_HOOKS = "_dlcv_frozen_batchnorm_hooks"


def _inference_mode_hook(module: nn.Module, args) -> None:
    module.train(False)


def _freeze_batchnorm(model: nn.Module, trainable: tuple[str, ...]) -> None:
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not _under(name, trainable):
            handles.append(module.register_forward_pre_hook(_inference_mode_hook))
    model.__dict__[_BN_HOOKS] = handles


def _release_batchnorm(model: nn.Module) -> None:
    for handle in model.__dict__.pop(_BN_HOOKS, []):
        handle.remove()
