"""The FCN family on VGG16 (FCN32s, FCN16s, FCN8s), as in Long et al. and the course specification.

One class serves every variant: a variant is the list of skip connections it fuses
(pool4, then pool3) and its final upsampling. Layer names follow the course
(``fc6``, ``score_fr``, ``score_pool4``, ``upscore2``...); the encoder is torchvision's
``vgg16.features`` layout (conv1_1 padded by 100, ceil-mode pools); its weights come from
:mod:`dlcv.train.models.vgg_weights` (torchvision VGG16 files and course-named checkpoints).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from dlcv.runtime.preprocess import PreprocessSpec

from ..registry import ModelConfig, register_model, scaled
from .vgg import make_vgg16_features, vgg16_pool_indices, vgg16_stages
from .vgg_weights import copy_vgg16_weights, fcn_keys


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
        """Load VGG16 weights (a torchvision-format state dict, or its file) into the encoder
        (:func:`dlcv.train.models.vgg_weights.copy_vgg16_weights`); returns its LoadReport."""
        return copy_vgg16_weights(self, source)

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
