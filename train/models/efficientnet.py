"""EfficientNet-B2: torchvision's class and block configuration, width-scaled through its own width multiplier."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from torchvision.models.efficientnet import EfficientNet, MBConvConfig

from ..registry import ModelConfig, imagenet_eval, register_model

# (expand ratio, kernel, stride, in channels, out channels, layers): EfficientNet-B0's stages,
# which B2 scales by width 1.1 and depth 1.2 (torchvision's efficientnet_b2 configuration).
B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
B2_WIDTH, B2_DEPTH, B2_DROPOUT = 1.1, 1.2, 0.3


class EfficientNetClassifier(EfficientNet):
    """torchvision's EfficientNet (same parameter names) with :meth:`forward_features`."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features (input to the last Linear; dropout applies in training)."""
        return self.classifier[:-1](torch.flatten(self.avgpool(self.features(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.forward_features(x))


def efficientnet_stages(model: nn.Module) -> list[tuple[str, ...]]:
    """features[0] is the stem, [1..7] the MBConv stages, [8] the 1×1 head conv (joined to the last stage)."""
    return [*((f"features.{i}",) for i in range(1, 7)), ("features.7", "features.8")]


# torchvision's EfficientNet_B2_Weights.IMAGENET1K_V1: shorter side 288, centre crop 288, bicubic.
EFFICIENTNET_B2 = ModelConfig(
    task="classification", num_classes=50, preprocess=imagenet_eval(288, 288, "cubic"), head=("classifier",),
    stages=efficientnet_stages,
)  # fmt: skip


@register_model("efficientnet_b2", EFFICIENTNET_B2)
def efficientnet_b2(*, num_classes: int, width: float = 1.0, dropout: float = B2_DROPOUT) -> nn.Module:
    """EfficientNet-B2. ``width`` multiplies B2's own width multiplier (channels stay multiples of 8,
    at least 8, as torchvision rounds them); the depth is always B2's."""
    stage = partial(MBConvConfig, width_mult=B2_WIDTH * width, depth_mult=B2_DEPTH)
    return EfficientNetClassifier([stage(*s) for s in B0_STAGES], dropout=dropout, num_classes=num_classes)
