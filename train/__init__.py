"""dlcv.train: models, datasets, the training loop and self-describing checkpoints (PyTorch)."""
from .registry import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
