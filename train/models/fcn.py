"""The FCN family on VGG16 (FCN32s, FCN16s, FCN8s), as in Long et al. and the course specification.

One class serves every variant: a variant is the list of skip connections it fuses
(pool4, then pool3) and its final upsampling. Layer names follow the course
(``fc6``, ``score_fr``, ``score_pool4``, ``upscore2``...); the encoder is torchvision's
``vgg16.features`` layout (conv1_1 padded by 100, ceil-mode pools). :func:`course_key`
maps the course's encoder names (``conv1_1`` ... ``conv5_3``) onto it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.preprocess import PreprocessSpec

from ..registry import ModelConfig, Pair, StateDict, register_model, scaled
from .vgg import check_vgg_flavour, make_vgg16_features, vgg16_conv_indices, vgg16_pool_indices, vgg16_stages


@dataclass(frozen=True)
class Skip:
    """Fuse a pool layer: upsample the running score 2× (``upsample``), add the cropped pool score."""

    pool: str  # "pool4" | "pool3"
    upsample: str  # name of the 4/2 transposed conv applied before the addition
    crop: int


@dataclass(frozen=True)
class FCNVariant:
    skips: tuple[Skip, ...]
    final_name: str
    final_kernel: int
    final_stride: int
    final_crop: int


FCN_VARIANTS = {
    "fcn32s": FCNVariant((), "upscore", 64, 32, 19),
    "fcn16s": FCNVariant((Skip("pool4", "upscore2", 5),), "upscore16", 32, 16, 27),
    "fcn8s": FCNVariant((Skip("pool4", "upscore2", 5), Skip("pool3", "upscore_pool4", 9)), "upscore8", 16, 8, 31),
}
_POOL_CHANNELS = {"pool3": 256, "pool4": 512}


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights for a ConvTranspose2d that performs bilinear upsampling channel by channel."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = np.ogrid[:kernel_size, :kernel_size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    weight = np.zeros((channels, channels, kernel_size, kernel_size), dtype=np.float32)
    weight[range(channels), range(channels)] = filt
    return torch.from_numpy(weight)


def _crop(x: torch.Tensor, offset: int, like_h, like_w) -> torch.Tensor:
    return x[:, :, offset : offset + like_h, offset : offset + like_w]


class FCN(nn.Module):
    """A VGG16 fully convolutional network; output logits have the input's height and width."""

    def __init__(
        self, variant: FCNVariant, *, num_classes: int, width: float = 1.0, dropout: float = 0.5, batch_norm: bool = False
    ):
        super().__init__()
        self.variant = variant
        # batch_norm=True puts BatchNorm after every encoder convolution (torchvision's vgg16_bn
        # layout, so its weights load). Off by default, as in the paper; from scratch, without
        # ImageNet weights, it is what makes a narrow FCN train in minutes (the demo uses it).
        self.batch_norm = batch_norm
        self.features = make_vgg16_features(width, batch_norm=batch_norm, first_padding=100, ceil_mode=True)
        pools = vgg16_pool_indices(self.features)
        self._taps = {"pool3": pools[2], "pool4": pools[3]}
        c5, fc = scaled(512, width), scaled(4096, width)
        self.fc6 = nn.Conv2d(c5, fc, kernel_size=7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d(dropout)
        self.fc7 = nn.Conv2d(fc, fc, kernel_size=1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d(dropout)
        self.score_fr = nn.Conv2d(fc, num_classes, kernel_size=1)
        for skip in variant.skips:
            self.add_module(f"score_{skip.pool}", nn.Conv2d(scaled(_POOL_CHANNELS[skip.pool], width), num_classes, 1))
            self.add_module(skip.upsample, nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False))
        self.add_module(
            variant.final_name,
            nn.ConvTranspose2d(num_classes, num_classes, variant.final_kernel, stride=variant.final_stride, bias=False),
        )
        self._init_heads()

    def _init_heads(self) -> None:
        # He initialisation for the ReLU layers (as torchvision's VGG): PyTorch's default init
        # shrinks the signal through 15 plain convolutions and a from-scratch FCN then never
        # leaves the all-background solution. Pretrained VGG16 weights overwrite it.
        for m in [*self.features, self.fc6, self.fc7]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for name, m in self.named_children():
            if name.startswith("score"):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                m.weight.data.copy_(bilinear_kernel(m.in_channels, m.kernel_size[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2], x.shape[3]
        taps = {}
        h = x
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == self._taps["pool3"]:
                taps["pool3"] = h
            elif i == self._taps["pool4"]:
                taps["pool4"] = h
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.score_fr(h)
        for skip in self.variant.skips:
            h = getattr(self, skip.upsample)(h)
            pool_score = getattr(self, f"score_{skip.pool}")(taps[skip.pool])
            h = h + _crop(pool_score, skip.crop, h.shape[2], h.shape[3])
        h = getattr(self, self.variant.final_name)(h)
        return _crop(h, self.variant.final_crop, height, width).contiguous()

    def copy_params_from_vgg16(self, source: "str | Path | Mapping[str, torch.Tensor]"):
        """Load VGG16 weights (a torchvision-format state dict, or its file) into the encoder.

        ``classifier.0``/``classifier.3`` (fully connected) are reshaped into the ``fc6``/``fc7``
        convolutions; ``classifier.6`` (ImageNet's 1000 classes) has no counterpart. Returns a
        :class:`dlcv.train.pretrained.LoadReport`; raises DlcvError when nothing fits.
        """
        from ..pretrained import read_state_dict, transfer_tensors  # the transfer layer sits above the models

        state = source if isinstance(source, Mapping) else read_state_dict(source)
        has_bn = any(k.endswith("running_mean") for k in state)
        if has_bn and not self.batch_norm:
            raise DlcvError(
                "these are VGG16-BN weights; this FCN encoder is VGG16 without batch norm (torchvision's vgg16); "
                "build the model with batch_norm=True to load them"
            )
        if self.batch_norm and not has_bn:
            raise DlcvError("this FCN has a batch-norm encoder (batch_norm=True): it loads VGG16-BN weights (torchvision's vgg16_bn)")
        pairs = vgg16_pairs(self, state)
        return transfer_tensors(self, pairs, source=str(source) if not isinstance(source, Mapping) else "state dict")


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


FCN_HEAD = ("fc6", "fc7", "score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore", "upscore8", "upscore16")
# The encoder loads torchvision's VGG16 weights: RGB, ImageNet mean/std; fully convolutional, so
# the image keeps its size.
FCN_CONFIG = ModelConfig(
    task="segmentation", num_classes=21, preprocess=PreprocessSpec(resize="none"), head=FCN_HEAD,
    stages=vgg16_stages, map_keys=fcn_keys,
)  # fmt: skip


def _fcn_builder(name: str):
    def build(*, num_classes: int, width: float = 1.0, dropout: float = 0.5, batch_norm: bool = False) -> nn.Module:
        return FCN(FCN_VARIANTS[name], num_classes=num_classes, width=width, dropout=dropout, batch_norm=batch_norm)

    build.__name__ = name
    build.__doc__ = f"{name.upper()} on VGG16 (see :class:`FCN`)."
    return build


for _name in FCN_VARIANTS:
    register_model(_name, FCN_CONFIG)(_fcn_builder(_name))
