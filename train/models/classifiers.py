"""Plain convolutional classifiers: the course's "model A" (``cnn_small``) and AlexNet."""
from __future__ import annotations

import torch
import torch.nn as nn

from dlcv.runtime.preprocess import PreprocessSpec

from ..registry import ModelConfig, imagenet_eval, register_model, scaled

CNN_SMALL_GRID = (8, 8)


class PooledClassifier(nn.Module):
    """torchvision's classifier shape: ``features`` → ``avgpool`` → flatten → ``classifier``
    (a Sequential ending in the class layer). Subclasses build those three modules."""

    features: nn.Module
    avgpool: nn.Module
    classifier: nn.Sequential

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer features (input to the class layer)."""
        return self.classifier[:-1](torch.flatten(self.avgpool(self.features(x)), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.forward_features(x))


class SmallCNN(PooledClassifier):
    """Two conv(3×3, padding 1)-ReLU-maxpool(2) blocks 3→32→64, then fc 128 and a class layer.

    The fc input is fixed at 64×8×8 by an adaptive average pool to 8×8: the course's 32×32
    images give exactly 8×8 after the two pools, so there the pool is the identity and the
    model (and its 550,258 parameters for 50 classes) is the course's; any other input size
    also works, averaged down (or replicated up) to the same 8×8 grid.
    """

    def __init__(self, *, num_classes: int, width: float = 1.0):
        super().__init__()
        c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(128, width)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(CNN_SMALL_GRID)
        self.classifier = nn.Sequential(
            nn.Linear(c2 * CNN_SMALL_GRID[0] * CNN_SMALL_GRID[1], hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


class AlexNet(PooledClassifier):
    """torchvision's AlexNet (same layers and names, so its weight files load), width-scaled.

    As torchvision's, it needs inputs of at least 63×63 (three stride-2 3×3 pools after a stride-4 conv).
    """

    def __init__(self, *, num_classes: int, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4 = (scaled(c, width) for c in (64, 192, 384, 256))
        hidden = scaled(4096, width)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c4 * 6 * 6, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


# The course's 32×32 images (model A is defined on them), resized as given; ImageNet mean/std.
CNN_SMALL = ModelConfig(
    task="classification", num_classes=50, preprocess=PreprocessSpec(resize="resize", size=(32, 32)),
    head=("classifier",), stages=lambda m: [("features.0",), ("features.3",)],
)  # fmt: skip
# torchvision's AlexNet_Weights.IMAGENET1K_V1: shorter side 256, centre crop 224, bilinear.
ALEXNET = ModelConfig(
    task="classification", num_classes=50, preprocess=imagenet_eval(224, 256),
    head=("classifier",), stages=lambda m: [(f"features.{i}",) for i in (0, 3, 6, 8, 10)],
)  # fmt: skip


@register_model("cnn_small", CNN_SMALL)
def cnn_small(*, num_classes: int, width: float = 1.0) -> nn.Module:
    """The course's "model A" baseline (see :class:`SmallCNN`)."""
    return SmallCNN(num_classes=num_classes, width=width)


@register_model("alexnet", ALEXNET)
def alexnet(*, num_classes: int, width: float = 1.0, dropout: float = 0.5) -> nn.Module:
    """AlexNet (torchvision architecture), last Linear sized for ``num_classes``."""
    return AlexNet(num_classes=num_classes, width=width, dropout=dropout)
