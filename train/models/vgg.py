"""VGG16 layers shared by the classifiers and the FCN family, in torchvision's layout."""
from __future__ import annotations

import torch.nn as nn

from dlcv.runtime.errors import DlcvError

from ..registry import ModelConfig, StateDict, imagenet_eval, register_model, same_names, scaled
from .classifiers import PooledClassifier

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def make_vgg16_features(
    width: float = 1.0, *, batch_norm: bool = False, first_padding: int = 1, ceil_mode: bool = False
) -> nn.Sequential:
    """torchvision's ``vgg16[_bn].features`` (same indices, so its state dicts load), width-scaled.

    The FCN family uses ``first_padding=100`` and ``ceil_mode=True`` as in the FCN paper.
    """
    layers: list[nn.Module] = []
    in_ch = 3
    first = True
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            continue
        out_ch = scaled(v, width)
        layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=first_padding if first else 1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        in_ch, first = out_ch, False
    return nn.Sequential(*layers)


def vgg16_conv_indices(batch_norm: bool = False) -> list[int]:
    """Indices of the 13 convolutions (conv1_1..conv5_3) in ``make_vgg16_features(batch_norm=...)``."""
    indices, i = [], 0
    for v in VGG16_CFG:
        if v == "M":
            i += 1
        else:
            indices.append(i)
            i += 3 if batch_norm else 2
    return indices


def vgg16_pool_indices(features: nn.Sequential) -> list[int]:
    """Indices of the five max-pool layers (pool1..pool5) in a VGG16 feature stack."""
    return [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]


def vgg16_stages(model: nn.Module) -> list[tuple[str, ...]]:
    """The five conv blocks of ``model.features`` (each up to and including its pool), first to last."""
    bounds = [-1, *vgg16_pool_indices(model.features)]
    return [tuple(f"features.{i}" for i in range(a + 1, b + 1)) for a, b in zip(bounds, bounds[1:])]


def check_vgg_flavour(state: StateDict, batch_norm: bool) -> None:
    """Refuse VGG16 encoder weights given to a VGG16-BN encoder and the reverse: their indices differ."""
    encoder = [k for k in state if k.startswith("features.")]
    if not encoder:
        return
    has_bn = any(k.endswith("running_mean") for k in encoder)
    if has_bn != batch_norm:
        have, want = ("VGG16-BN", "VGG16 (without batch norm)") if has_bn else ("VGG16 (without batch norm)", "VGG16-BN")
        raise DlcvError(f"the file holds {have} encoder weights, but the model needs {want} weights; their layer indices differ")


def vgg16_bn_keys(model: nn.Module, state: StateDict) -> list:
    """torchvision ``vgg16_bn`` names as they are; plain VGG16 weights are refused."""
    check_vgg_flavour(state, batch_norm=True)
    return same_names(model, state)


class VGG16Classifier(PooledClassifier):
    """torchvision's VGG16(-BN) with the last Linear sized for ``num_classes``, width-scaled."""

    def __init__(self, *, num_classes: int, width: float = 1.0, batch_norm: bool = True, dropout: float = 0.5):
        super().__init__()
        self.features = make_vgg16_features(width, batch_norm=batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = scaled(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(scaled(512, width) * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


# torchvision's VGG16_BN_Weights.IMAGENET1K_V1: shorter side 256, centre crop 224, bilinear.
VGG16_BN = ModelConfig(
    task="classification", num_classes=50, preprocess=imagenet_eval(224, 256), head=("classifier",),
    stages=vgg16_stages, map_keys=vgg16_bn_keys,
)  # fmt: skip


@register_model("vgg16_bn", VGG16_BN)
def vgg16_bn(*, num_classes: int, width: float = 1.0, dropout: float = 0.5) -> nn.Module:
    """VGG16 with batch norm (torchvision architecture), head replaced for ``num_classes``."""
    return VGG16Classifier(num_classes=num_classes, width=width, batch_norm=True, dropout=dropout)
