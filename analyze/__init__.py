"""dlcv.analyze: the figures of a course report from one command (``dlcv-analyze``).

Feature embeddings (t-SNE/PCA of the penultimate layer), confusion matrices, per-class IoU,
worst-image and over-training prediction grids, training curves, and the deployed model's
disagreement with PyTorch, written as PNGs with a ``report.md`` that shows them. A deployed
run's ``metrics.json`` is drawn without PyTorch; importing this package does not import torch.
"""
from .config import AnalyzeConfig
from .pipeline import AnalysisResult, run_analysis

__all__ = ["AnalysisResult", "AnalyzeConfig", "run_analysis"]
