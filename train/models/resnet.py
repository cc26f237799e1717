"""ResNet-50 (torchvision's architecture and parameter names), width-scaled; also DeepLabv3's backbone.

torchvision's ``ResNet`` fixes the stem and stage widths (64..512), so this class repeats its
``_make_layer`` with scaled widths and builds the stages from torchvision's own
``Bottleneck`` blocks. At ``width=1.0`` the state dict (names and shapes) is torchvision's
``resnet50``, so its weight files load unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.resnet import Bottleneck, conv1x1

from ..registry import ModelConfig, StateDict, imagenet_eval, register_model, same_names, scaled

RESNET50_LAYERS = (3, 4, 6, 3)


class ResNet(nn.Module):
    """torchvision's Bottleneck ResNet: ``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``.

    ``replace_stride_with_dilation`` (layer2, layer3, layer4) as in torchvision: DeepLabv3
    uses (False, True, True) for an output stride of 8.
    """

    def __init__(
        self,
        layers: Sequence[int] = RESNET50_LAYERS,
        *,
        num_classes: int,
        width: float = 1.0,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
    ):
        super().__init__()
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(f"replace_stride_with_dilation needs 3 values, got {replace_stride_with_dilation}")
        self.inplanes = scaled(64, width)
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        dilate = replace_stride_with_dilation
        self.layer1 = self._make_layer(scaled(64, width), layers[0])
        self.layer2 = self._make_layer(scaled(128, width), layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(scaled(256, width), layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(scaled(512, width), layers[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():  # torchvision's initialisation (nn.Linear keeps PyTorch's default)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @property
    def out_channels(self) -> int:
        """Channels of layer4's output (2048 at width 1.0)."""
        return self.inplanes

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * Bottleneck.expansion, stride), nn.BatchNorm2d(planes * Bottleneck.expansion)
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled layer4 features (input to ``fc``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet_keys(model: nn.Module, state: StateDict) -> list:
    """torchvision ResNet names as they are; a DeepLabv3 file gives its ResNet-50 backbone."""
    if any(k.startswith("backbone.") for k in state):
        return [(k, k.removeprefix("backbone."), v) for k, v in state.items()]
    return same_names(model, state)


# torchvision's ResNet50_Weights.IMAGENET1K_V1: shorter side 256, centre crop 224, bilinear.
RESNET50 = ModelConfig(
    task="classification", num_classes=65, preprocess=imagenet_eval(224, 256), head=("fc",),
    stages=lambda m: [(f"layer{i}",) for i in range(1, 5)], map_keys=resnet_keys,
)  # fmt: skip


@register_model("resnet50", RESNET50)
def resnet50(*, num_classes: int, width: float = 1.0) -> nn.Module:
    """ResNet-50 (torchvision architecture), ``fc`` sized for ``num_classes`` (default: Office-Home's 65)."""
    return ResNet(RESNET50_LAYERS, num_classes=num_classes, width=width)
