"""dlcv.train: models, datasets, the training loop and self-describing checkpoints (PyTorch).

The package itself imports nothing heavy: the runtime's backend registry reads
:class:`dlcv.train.torch_backend.TorchBackend`'s identity without loading torch. The
registry functions below are imported on first use.
"""
from __future__ import annotations

__all__ = ["ModelConfig", "create_model", "list_models", "model_config", "model_info", "register_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
