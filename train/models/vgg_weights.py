"""VGG16 weights into the FCN family (FCN8s/16s/32s and the deconvolution FCN): one module for both.

Three sources: a torchvision VGG16 / VGG16-BN state dict (its ``classifier.0``/``classifier.3``
fully connected layers reshaped into the ``fc6``/``fc7`` convolutions; ``classifier.6``, ImageNet's
1000 classes, has no counterpart), a checkpoint with the course's layer names (``conv1_1`` ...
``conv5_3``, mapped onto torchvision's ``features`` indices by :func:`course_key`), and our own
names. VGG16 weights for a VGG16-BN encoder, or the reverse, are refused: their indices differ.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvError

from ..pretrained import LoadReport, read_state_dict, transfer_tensors
from ..registry import Pair, StateDict
from .vgg import check_vgg_flavour, vgg16_conv_indices


def copy_vgg16_weights(model: nn.Module, source: "str | Path | Mapping[str, torch.Tensor]") -> LoadReport:
    """Load VGG16 weights (a torchvision-format state dict, or its file) into an FCN's encoder and
    ``fc6``/``fc7``; a :class:`~dlcv.train.pretrained.LoadReport`; DlcvError when nothing fits."""
    state = source if isinstance(source, Mapping) else read_state_dict(source)
    has_bn = any(k.endswith("running_mean") for k in state)
    if has_bn and not model.batch_norm:
        raise DlcvError(
            "these are VGG16-BN weights; this FCN encoder is VGG16 without batch norm (torchvision's vgg16); "
            "build the model with batch_norm=True to load them"
        )
    if model.batch_norm and not has_bn:
        raise DlcvError("this FCN has a batch-norm encoder (batch_norm=True): it loads VGG16-BN weights (torchvision's vgg16_bn)")
    pairs = vgg16_pairs(model, state)
    return transfer_tensors(model, pairs, source=str(source) if not isinstance(source, Mapping) else "state dict")


def vgg16_pairs(model: nn.Module, state: StateDict) -> list[Pair]:
    """A torchvision VGG16 state dict paired with an FCN's names; ``classifier.0``/``classifier.3``
    reshaped into the ``fc6``/``fc7`` convolutions."""
    own = model.state_dict()
    pairs = []
    for key, tensor in state.items():
        target = vgg16_key_to_fcn(key)
        if target in own and tensor.shape != own[target].shape and tensor.numel() == own[target].numel():
            tensor = tensor.reshape(own[target].shape)  # fully connected -> 7×7 / 1×1 convolution
        pairs.append((key, target, tensor))
    return pairs


def vgg16_key_to_fcn(key: str) -> str | None:
    """The FCN parameter a torchvision VGG16 parameter becomes (None: no counterpart)."""
    prefix, _, leaf = key.rpartition(".")
    if prefix.startswith("features."):
        return key
    return {"classifier.0": f"fc6.{leaf}", "classifier.3": f"fc7.{leaf}"}.get(prefix)


# The course's VGG16 layer names (conv1_1 ... conv5_3) and their torchvision ``features`` index.
COURSE_CONV_NAMES = tuple(f"conv{block}_{i}" for block, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1))


def course_key(key: str) -> str:
    """Map a course-named FCN parameter (``conv3_2.weight``) to ours (``features.12.weight``).

    ``fc6``, ``fc7``, ``score_*`` and ``upscore*`` are named alike in both and pass unchanged.
    """
    prefix, _, leaf = key.rpartition(".")
    if prefix in _COURSE_TO_FEATURES:
        return f"features.{_COURSE_TO_FEATURES[prefix]}.{leaf}"
    return key


_COURSE_TO_FEATURES = dict(zip(COURSE_CONV_NAMES, vgg16_conv_indices()))


def course_pairs(model: nn.Module, state: StateDict) -> list[Pair]:
    """A VGG16-encoder file paired with our names: the course's ``conv1_1``... mapped, the rest
    as named. VGG16 weights for a VGG16-BN encoder (or the reverse) are refused."""
    check_vgg_flavour({course_key(k): v for k, v in state.items()}, getattr(model, "batch_norm", False))
    return [(k, course_key(k), v) for k, v in state.items()]


def _is_torchvision_vgg16(state: StateDict) -> bool:
    return "features.0.weight" in state and "classifier.0.weight" in state and "fc6.weight" not in state


def fcn_keys(model: nn.Module, state: StateDict) -> list[Pair]:
    """The FCN family's key mapper: torchvision VGG16 (fully connected layers into fc6/fc7),
    course-named FCN checkpoints, and our own names."""
    if _is_torchvision_vgg16(state):
        check_vgg_flavour(state, model.batch_norm)
        return vgg16_pairs(model, state)
    return course_pairs(model, state)
