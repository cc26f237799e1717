"""Transfer learning: pretrained weights from a local file, and which parameters train.

:func:`load_pretrained` copies a torchvision-format state dict (or a dlcv checkpoint's, or a
BYOL backbone from :mod:`dlcv.train.byol`) into a registry model, tensor by tensor, and
reports what was loaded and what was skipped and why. :func:`set_finetune` freezes the
backbone for feature extraction (``head``), optionally leaving its last stages trainable.

Each architecture family states here what its *head* is (the layers replaced or trained in
feature-extraction mode) and its backbone *stages* (first to last).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvError, DlcvUsageError

from .checkpoint import load_weights_only
from .models.fcn import FCN, course_key
from .models.vgg import vgg16_pool_indices

MISSING_IN_MODEL = "missing in model"
SHAPE_MISMATCH = "shape mismatch"
HEAD_REPLACED = "head replaced"
FINETUNE_MODES = ("all", "head")
# Prefixes added by torch.nn.DataParallel / DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Where other trainers keep the weights inside a checkpoint dict.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")

StateDict = Mapping[str, torch.Tensor]
Pair = tuple[str, "str | None", torch.Tensor]  # (name in the file, name in the model or None, tensor)


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
# families: what is the head, what are the stages, how do file names map onto ours


@dataclass(frozen=True)
class Family:
    """Transfer facts about one architecture family."""

    name: str
    head: tuple[str, ...]  # module prefixes trained with --finetune head (and replaced for new classes)
    stages: Callable[[nn.Module], list[tuple[str, ...]]]  # backbone stages as module prefixes, first to last
    map_keys: Callable[[nn.Module, StateDict], list[Pair]]
    vgg_batch_norm: bool | None = None  # VGG encoders: whether the file must carry batch norm


def _identity_pairs(model: nn.Module, state: StateDict) -> list[Pair]:
    return [(k, k, v) for k, v in state.items()]


def _course_pairs(model: nn.Module, state: StateDict) -> list[Pair]:
    return [(k, course_key(k), v) for k, v in state.items()]


def _deeplab_pairs(model: nn.Module, state: StateDict) -> list[Pair]:
    if any(k.startswith("backbone.") for k in state):  # torchvision deeplabv3 or a dlcv checkpoint
        return _identity_pairs(model, state)
    return [(k, f"backbone.{k}", v) for k, v in state.items()]  # a ResNet-50 (torchvision or BYOL)


def _resnet_pairs(model: nn.Module, state: StateDict) -> list[Pair]:
    if any(k.startswith("backbone.") for k in state):  # a DeepLabv3 file: its ResNet-50 backbone
        return [(k, k.removeprefix("backbone."), v) for k, v in state.items()]
    return _identity_pairs(model, state)


def _vgg_blocks(model: nn.Module) -> list[tuple[str, ...]]:
    bounds = [-1, *vgg16_pool_indices(model.features)]
    return [tuple(f"features.{i}" for i in range(a + 1, b + 1)) for a, b in zip(bounds, bounds[1:])]


def _indexed(prefix: str, indices: Iterable[int]) -> list[tuple[str, ...]]:
    return [(f"{prefix}.{i}",) for i in indices]


def _efficientnet_stages(model: nn.Module) -> list[tuple[str, ...]]:
    # features[0] is the stem, [1..7] the MBConv stages, [8] the 1×1 head conv (joined to the last stage)
    return [*_indexed("features", range(1, 7)), ("features.7", "features.8")]


def _convnext_stages(model: nn.Module) -> list[tuple[str, ...]]:
    # features[0] is the stem, odd indices the four stages, even ones the downsampling before them
    return [("features.1",), ("features.2", "features.3"), ("features.4", "features.5"), ("features.6", "features.7")]


FCN_HEAD = ("fc6", "fc7", "score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore", "upscore8", "upscore16")
DECONV_HEAD = tuple(f"{layer}{k}" for k in range(1, 6) for layer in ("deconv", "bn")) + ("classifier",)
_FCN = Family("fcn", FCN_HEAD, _vgg_blocks, _course_pairs, vgg_batch_norm=False)
_DECONV = Family("fcn_deconv", DECONV_HEAD, _vgg_blocks, _course_pairs, vgg_batch_norm=False)

FAMILIES: dict[str, Family] = {
    "cnn_small": Family("cnn_small", ("classifier",), lambda m: _indexed("features", (0, 3)), _identity_pairs),
    "vgg16_bn": Family("vgg16_bn", ("classifier",), _vgg_blocks, _identity_pairs, vgg_batch_norm=True),
    "alexnet": Family("alexnet", ("classifier",), lambda m: _indexed("features", (0, 3, 6, 8, 10)), _identity_pairs),
    "resnet50": Family("resnet", ("fc",), lambda m: [(f"layer{i}",) for i in range(1, 5)], _resnet_pairs),
    "efficientnet_b2": Family("efficientnet", ("classifier",), _efficientnet_stages, _identity_pairs),
    "convnext_base": Family("convnext", ("classifier",), _convnext_stages, _identity_pairs),
    "deeplabv3_resnet50": Family(
        "deeplabv3", ("classifier", "aux_classifier"), lambda m: [(f"backbone.layer{i}",) for i in range(1, 5)], _deeplab_pairs
    ),
    "fcn32s": _FCN,
    "fcn16s": _FCN,
    "fcn8s": _FCN,
    "fcn8s_deconv": _DECONV,
    "fcn32s_deconv": _DECONV,
}


def family_of(arch: str) -> Family:
    """The transfer facts for ``arch``; DlcvUsageError for an architecture without them."""
    try:
        return FAMILIES[arch]
    except KeyError:
        raise DlcvUsageError(
            f"no pretrained-weights or fine-tuning support for {arch!r}; supported: {', '.join(sorted(FAMILIES))}"
        ) from None


def _is_torchvision_vgg16(state: StateDict) -> bool:
    return "features.0.weight" in state and "classifier.0.weight" in state and "fc6.weight" not in state


def _check_vgg_flavour(state: StateDict, arch: str, batch_norm: bool, path) -> None:
    encoder = [k for k in state if k.startswith("features.")]
    if not encoder:
        return
    has_bn = any(k.endswith("running_mean") for k in encoder)
    if has_bn != batch_norm:
        have, want = ("VGG16-BN", "VGG16 (without batch norm)") if has_bn else ("VGG16 (without batch norm)", "VGG16-BN")
        raise DlcvError(f"{path}: holds {have} encoder weights, but {arch} needs {want} weights; their layer indices differ")


# ---------------------------------------------------------------------------------------------
# the two entry points


def load_pretrained(model: nn.Module, arch: str, path: str | os.PathLike) -> LoadReport:
    """Copy the weights of a local file into ``model`` (a registry model of ``arch``).

    Accepted: torchvision-format state dicts (VGG16 into the FCN family and fcn8s_deconv,
    VGG16-BN, ResNet-50, AlexNet, EfficientNet-B2, ConvNeXt-Base, DeepLabv3-ResNet50 or a
    ResNet-50 into DeepLabv3's backbone and the reverse), a dlcv checkpoint (its ``state_dict``), a BYOL
    backbone (``backbone.pt``), and FCN checkpoints with the course's layer names
    (``conv1_1`` ... ``conv5_3``, ``fc6``, ``score_fr``, ``upscore*``). Tensors of the wrong
    shape are skipped and reported; the classification layer of a new class count is the
    usual case (``head replaced``). Raises DlcvError when no backbone tensor fits (another
    architecture or width), for VGG16 weights given to a VGG16-BN model or the reverse, and
    for files that are not weights-only state dicts.
    """
    family = family_of(arch)
    state = read_state_dict(path)
    if family.vgg_batch_norm is not None:
        expect_bn = getattr(model, "batch_norm", family.vgg_batch_norm)  # FCNs may be built with batch_norm=True
        _check_vgg_flavour({course_key(k): v for k, v in state.items()}, arch, expect_bn, path)
    if isinstance(model, FCN) and _is_torchvision_vgg16(state):
        return dataclasses.replace(model.copy_params_from_vgg16(state), source=str(path))
    return transfer_tensors(model, family.map_keys(model, state), source=str(path), head=family.head)


def set_finetune(model: nn.Module, arch: str, mode: str, *, trainable_stages: int = 0) -> int:
    """Choose what trains; returns the number of trainable parameters (elements).

    ``all``: every parameter. ``head``: the backbone is frozen (a feature extractor) and only
    the family's head trains, plus the last ``trainable_stages`` backbone stages (e.g.
    ConvNeXt's "freeze all but the last stages"). Frozen BatchNorm layers also keep their
    running statistics: they run in inference mode even while the model trains.
    Build the optimiser afterwards, over ``[p for p in model.parameters() if p.requires_grad]``.
    """
    family = family_of(arch)
    if mode not in FINETUNE_MODES:
        raise DlcvUsageError(f"--finetune must be one of {', '.join(FINETUNE_MODES)}, not {mode!r}")
    stages = family.stages(model)
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
    trainable = family.head + tuple(p for stage in stages[len(stages) - trainable_stages :] for p in stage)
    for name, p in model.named_parameters():
        p.requires_grad_(_under(name, trainable))
    _freeze_batchnorm(model, trainable)
    if _count_trainable(model) == 0:
        raise DlcvError(f"{arch}: no parameter matched the head {family.head}; the model does not look like {arch}")
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
