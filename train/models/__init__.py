"""Model definitions; importing this package registers every model.

Classification: ``cnn_small``, ``vgg16_bn``, ``resnet50``, ``alexnet``, ``efficientnet_b2``,
``convnext_base`` (each with ``forward_features(x)``, the input of its last Linear).
Segmentation: ``fcn32s``, ``fcn16s``, ``fcn8s``, ``fcn8s_deconv`` / ``fcn32s_deconv``,
``deeplabv3_resnet50`` (logits at the input's height and width).
"""
from . import classifiers, convnext, deeplab, efficientnet, fcn, fcn_deconv, resnet, vgg  # noqa: F401  (registration on import)
