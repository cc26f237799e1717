"""The PyTorch reference backend: a dlcv checkpoint run eagerly, behind the runtime's Backend contract.

Registered by the train package itself (entry point ``dlcv.backends: torch``); torch and the
model code are imported when a checkpoint is opened, not when the registry reads this class.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcv.runtime.backends.base import Backend


class TorchBackend(Backend):
    """Runs a ``.pt`` checkpoint with PyTorch FP32 (eval mode, no grad): the parity reference."""

    name = "torch"
    suffixes = (".pt", ".pth")
    devices = ("cpu", "cuda")
    extra = "train"
    priority = 50
    options = ("threads",)
    deployed = False  # the PyTorch source of the deployed models, not one of them

    @classmethod
    def library_version(cls) -> str | None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("torch")
        except PackageNotFoundError:
            return None

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        torch = self.import_library("torch")

        from .checkpoint import file_sha256, load_checkpoint, metadata_from_checkpoint, model_from_checkpoint
        from .device import resolve_device

        path = Path(path)
        ckpt = load_checkpoint(path)
        super().__init__(path, metadata_from_checkpoint(ckpt, source_sha256=file_sha256(path)))
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.model = model_from_checkpoint(ckpt, source=str(path)).to(self.device)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.model = None
