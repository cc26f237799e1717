"""``dlcv-export --triton REPO``: a Triton model repository (model, pre/post-processing, ensemble)."""
from .repository import MODEL_BACKENDS, TritonConfig, TritonRepository, write_repository

__all__ = ["MODEL_BACKENDS", "TritonConfig", "TritonRepository", "write_repository"]
