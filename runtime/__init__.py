"""dlcv.runtime: the lean deployment layer (numpy, OpenCV, onnxruntime; optional TensorRT).

``dlcv.runtime.load(model) -> Predictor`` is its Python API (:mod:`.predictor`). Never imports torch.
"""
from .errors import DlcvError, DlcvUsageError, MissingDependencyError
from .metadata import ArtifactMetadata
from .task_metrics import ClassificationMetrics, ConfusionMatrix
from .preprocess import Geometry, PreprocessSpec, preprocess_image
from .predictor import ClassificationResult, Predictor, PredictorMetadata, SegmentationResult, TopClass, load
from .version import dlcv_version

__all__ = [
    "ArtifactMetadata",
    "ClassificationMetrics",
    "ClassificationResult",
    "ConfusionMatrix",
    "DlcvError",
    "DlcvUsageError",
    "Geometry",
    "MissingDependencyError",
    "Predictor",
    "PredictorMetadata",
    "PreprocessSpec",
    "SegmentationResult",
    "TopClass",
    "dlcv_version",
    "load",
    "preprocess_image",
]
