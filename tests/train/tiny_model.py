"""A model added the way a user adds one: this single module, nothing else touched.

It is not imported by the package; tests/train/test_model_config.py loads it into a copy of
the registry. Its config differs from every built-in one on purpose (BGR, a fixed odd size,
area interpolation, its own mean/std, layer names that foreign files spell differently), so
a test can tell that training, transfer and fine-tuning took them from here.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.train.registry import ModelConfig, register_model, scaled

NAME = "tiny_test_net"
# How another lab's files name our layers.
FOREIGN_NAMES = {"conv1": "stem", "bn1": "stem_bn", "conv2": "body", "classifier": "head"}


def foreign_keys(model: nn.Module, state) -> list:
    """``conv1.weight`` -> ``stem.weight`` and so on; our own names (a dlcv checkpoint) pass unchanged."""
    pairs = []
    for key, tensor in state.items():
        module, _, leaf = key.partition(".")
        pairs.append((key, f"{FOREIGN_NAMES.get(module, module)}.{leaf}", tensor))
    return pairs


TINY_CONFIG = ModelConfig(
    task="segmentation",
    num_classes=4,
    preprocess=PreprocessSpec(
        color_order="bgr", resize="resize", size=(24, 20), interpolation="area", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    ),
    head=("head",),
    stages=lambda model: [("stem", "stem_bn"), ("body",)],
    map_keys=foreign_keys,
)


class TinyNet(nn.Module):
    """conv-BN-ReLU, conv-ReLU, 1×1 class scores: logits at the input size."""

    def __init__(self, *, num_classes: int, width: float = 1.0):
        super().__init__()
        c = scaled(8, width)
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(c)
        self.body = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        return self.head(torch.relu(self.body(x)))


@register_model(NAME, TINY_CONFIG)
def tiny_test_net(*, num_classes: int, width: float = 1.0) -> nn.Module:
    """The tiny segmentation net of this module."""
    return TinyNet(num_classes=num_classes, width=width)
