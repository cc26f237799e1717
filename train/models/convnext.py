"""ConvNeXt-Base with the course's head: torchvision's network, the last Linear replaced by a small MLP."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt

from ..registry import ModelConfig, imagenet_eval, register_model, scaled

# (in channels, out channels, blocks) per stage: torchvision's convnext_base.
BASE_STAGES = ((128, 256, 3), (256, 512, 3), (512, 1024, 27), (1024, None, 3))
BASE_STOCHASTIC_DEPTH = 0.5
HEAD_HIDDEN = 500


class ConvNeXtClassifier(ConvNeXt):
    """torchvision's ConvNeXt whose classifier ends Flatten → Linear(C, 500) → ReLU → Linear(500, n).

    torchvision's ``classifier`` is [LayerNorm2d, Flatten, Linear(C, 1000)]; the final
    LayerNorm is kept (its pretrained weights load), the Linear becomes the MLP, so the
    parameter names are ``classifier.0`` (norm), ``classifier.2`` and ``classifier.4``.
    """

    def __init__(self, stages, *, num_classes: int, hidden: int, stochastic_depth_prob: float):
        super().__init__([CNBlockConfig(*s) for s in stages], stochastic_depth_prob=stochastic_depth_prob)
        norm, flatten, linear = self.classifier
        self.classifier = nn.Sequential(
            norm, flatten, nn.Linear(linear.in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )
        for m in self.classifier:  # torchvision's ConvNeXt initialisation
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 500-d hidden features of the head (input to the last Linear)."""
        return self.classifier[:-1](self.avgpool(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.forward_features(x))


def convnext_stages(model: nn.Module) -> list[tuple[str, ...]]:
    """features[0] is the stem, odd indices the four stages, even ones the downsampling before them."""
    return [("features.1",), ("features.2", "features.3"), ("features.4", "features.5"), ("features.6", "features.7")]


# torchvision's ConvNeXt_Base_Weights.IMAGENET1K_V1: shorter side 232, centre crop 224, bilinear.
CONVNEXT_BASE = ModelConfig(
    task="classification", num_classes=50, preprocess=imagenet_eval(224, 232), head=("classifier",), stages=convnext_stages
)


@register_model("convnext_base", CONVNEXT_BASE)
def convnext_base(
    *, num_classes: int, width: float = 1.0, stochastic_depth_prob: float = BASE_STOCHASTIC_DEPTH
) -> nn.Module:
    """ConvNeXt-Base (torchvision architecture) with the head Linear(1024, 500) → ReLU → Linear(500, n).

    Freezing all but the last stages is a fine-tuning choice, not an architecture one:
    :func:`dlcv.train.pretrained.set_finetune` with ``trainable_stages``.
    """
    stages = [(scaled(i, width), None if o is None else scaled(o, width), n) for i, o, n in BASE_STAGES]
    return ConvNeXtClassifier(
        stages, num_classes=num_classes, hidden=scaled(HEAD_HIDDEN, width), stochastic_depth_prob=stochastic_depth_prob
    )
