"""DeepLabv3 with a ResNet-50 backbone: torchvision's model, returning one logits tensor.

torchvision's ``DeepLabV3`` returns ``{"out": ..., "aux": ...}``; dlcv's contract (training
loss, export, every backend) is one N×C×H×W tensor at the input size, so ``forward`` returns
``"out"``. The auxiliary FCN head on layer3 is off by default; with ``aux=True`` it is built
(so torchvision checkpoints that carry it load completely) and :meth:`forward_outputs` returns
both outputs for a loop that adds the auxiliary loss. The parameter names are torchvision's
(``backbone.layer4...``, ``classifier.0.convs...``, ``aux_classifier...``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3
from torchvision.models.segmentation.fcn import FCNHead

from dlcv.runtime.preprocess import PreprocessSpec

from ..registry import ModelConfig, StateDict, register_model, same_names, scaled
from .resnet import RESNET50_LAYERS, ResNet

ATROUS_RATES = (12, 24, 36)


def deeplab_head(in_channels: int, num_classes: int, channels: int) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` (same module order and names) with ``channels`` instead of 256."""
    return nn.Sequential(
        ASPP(in_channels, ATROUS_RATES, out_channels=channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, num_classes, 1),
    )


class DeepLabV3Logits(DeepLabV3):
    """torchvision's DeepLabV3 whose ``forward`` returns the ``"out"`` logits only."""

    def forward_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """torchvision's output dict: ``out`` and, when built with ``aux=True``, ``aux``."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_outputs(x)["out"]


def deeplab_keys(model: nn.Module, state: StateDict) -> list:
    """torchvision DeepLabv3 names (or a dlcv checkpoint's) as they are; a ResNet-50 file
    (torchvision's or a BYOL backbone) goes into ``backbone.``."""
    if any(k.startswith("backbone.") for k in state):
        return same_names(model, state)
    return [(k, f"backbone.{k}", v) for k, v in state.items()]


# torchvision's DeepLabV3_ResNet50_Weights: RGB, ImageNet mean/std, bilinear. They also scale the
# shorter side to 520; the preprocessing contract has no shorter-side-only policy, so the image
# keeps its size (the network takes any size).
DEEPLABV3_RESNET50 = ModelConfig(
    task="segmentation", num_classes=21, preprocess=PreprocessSpec(resize="none"), head=("classifier", "aux_classifier"),
    stages=lambda m: [(f"backbone.layer{i}",) for i in range(1, 5)], map_keys=deeplab_keys,
)  # fmt: skip


@register_model("deeplabv3_resnet50", DEEPLABV3_RESNET50)
def deeplabv3_resnet50(*, num_classes: int, width: float = 1.0, aux: bool = False) -> nn.Module:
    """DeepLabv3-ResNet50 (torchvision architecture: dilated layer3/layer4, output stride 8)."""
    resnet = ResNet(RESNET50_LAYERS, num_classes=1, width=width, replace_stride_with_dilation=(False, True, True))
    return_layers = {"layer4": "out", **({"layer3": "aux"} if aux else {})}
    backbone = IntermediateLayerGetter(resnet, return_layers=return_layers)  # drops avgpool and fc
    classifier = deeplab_head(resnet.out_channels, num_classes, scaled(256, width))
    aux_classifier = FCNHead(resnet.layer3[-1].conv3.out_channels, num_classes) if aux else None
    return DeepLabV3Logits(backbone, classifier, aux_classifier)
