"""VGG16 encoder + learned decoder of five 2× transposed convolutions (the reports' "FCN8s with deconvolutions").

Decoder step k: ``ConvTranspose2d(3×3, stride 2)`` → ReLU → BatchNorm; with ``skip=True`` the
pool4 and pool3 features are added before the first two BatchNorms (``bn(relu(deconv(x)) + pool)``),
without it the decoder sees pool5 only. A 1×1 convolution gives the class scores. The two
settings have the same parameters, so their comparison isolates the skip connections.

Any input size works: the encoder pools round up (``ceil_mode``), each transposed convolution
doubles the size, and its output is cropped to the size of the tensor the matching pool had
consumed, so the last one ends exactly at the input size. The encoder is torchvision's
``vgg16.features`` (its weight files load).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dlcv.runtime.preprocess import PreprocessSpec

from ..registry import ModelConfig, register_model, scaled
from .vgg import make_vgg16_features, vgg16_pool_indices, vgg16_stages
from .vgg_weights import course_pairs

DECODER_CHANNELS = (512, 256, 128, 64, 32)  # outputs of deconv1..deconv5


class FCNDeconv(nn.Module):
    """VGG16 encoder, five deconv-ReLU-BatchNorm steps (optional pool4/pool3 skips), 1×1 classifier."""

    def __init__(self, *, num_classes: int, width: float = 1.0, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.features = make_vgg16_features(width, ceil_mode=True)
        self._pools = vgg16_pool_indices(self.features)
        in_ch = scaled(512, width)
        for k, out in enumerate(DECODER_CHANNELS, start=1):
            out = scaled(out, width)
            deconv = nn.ConvTranspose2d(in_ch, out, kernel_size=3, stride=2, padding=1, output_padding=1)
            self.add_module(f"deconv{k}", deconv)
            self.add_module(f"bn{k}", nn.BatchNorm2d(out))
            in_ch = out
        self.relu = nn.ReLU(inplace=True)
        self.classifier = nn.Conv2d(in_ch, num_classes, kernel_size=1)
        for m in self.modules():  # He initialisation for the ReLU network, as torchvision's VGG
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool_inputs = []  # the size each pool consumed: what the matching deconv must restore
        pool_outputs = []
        h = x
        for i, layer in enumerate(self.features):
            if i in self._pools:
                pool_inputs.append(h.shape[2:])
            h = layer(h)
            if i in self._pools:
                pool_outputs.append(h)
        skips = {1: pool_outputs[3], 2: pool_outputs[2]} if self.skip else {}  # pool4, pool3
        for k in range(1, len(DECODER_CHANNELS) + 1):
            size = pool_inputs[-k]
            h = self.relu(getattr(self, f"deconv{k}")(h))[:, :, : size[0], : size[1]]
            if k in skips:
                h = h + skips[k]
            h = getattr(self, f"bn{k}")(h)
        return self.classifier(h)


DECONV_HEAD = tuple(f"{layer}{k}" for k in range(1, 6) for layer in ("deconv", "bn")) + ("classifier",)
# The encoder loads torchvision's VGG16 weights: RGB, ImageNet mean/std, any image size.
FCN_DECONV = ModelConfig(
    task="segmentation", num_classes=21, preprocess=PreprocessSpec(resize="none"), head=DECONV_HEAD,
    stages=vgg16_stages, map_keys=course_pairs,
)  # fmt: skip


@register_model("fcn8s_deconv", FCN_DECONV)
def fcn8s_deconv(*, num_classes: int, width: float = 1.0, skip: bool = True) -> nn.Module:
    """VGG16 + five-deconvolution decoder; ``skip=True`` adds pool4 and pool3 (see :class:`FCNDeconv`)."""
    return FCNDeconv(num_classes=num_classes, width=width, skip=skip)


@register_model("fcn32s_deconv", FCN_DECONV)
def fcn32s_deconv(*, num_classes: int, width: float = 1.0) -> nn.Module:
    """``fcn8s_deconv`` without skip connections (its 32× pool5 path only), named for the comparison."""
    return FCNDeconv(num_classes=num_classes, width=width, skip=False)
