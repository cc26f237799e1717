"""The PyTorch reference backend: a dlcv checkpoint run eagerly, behind the runtime's Backend contract."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlcv.runtime.backends.base import Backend

from .checkpoint import file_sha256, load_checkpoint, metadata_from_checkpoint, model_from_checkpoint
from .device import resolve_device


class TorchBackend(Backend):
    """Runs a ``.pt`` checkpoint with PyTorch FP32 (eval mode, no grad): the parity reference."""

    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        path = Path(path)
        ckpt = load_checkpoint(path)
        super().__init__(path, metadata_from_checkpoint(ckpt, source_sha256=file_sha256(path)))
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.model = model_from_checkpoint(ckpt, source=str(path)).to(self.device)

    @classmethod
    def from_model(cls, model: torch.nn.Module, metadata, path: str | Path = "<in-memory>") -> "TorchBackend":
        """Wrap an already-built model (used right after training or in export checks)."""
        self = cls.__new__(cls)
        Backend.__init__(self, Path(path), metadata)
        self.device = next(model.parameters()).device
        self.model = model.eval()
        return self

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.model(torch.from_numpy(batch).to(self.device))
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.model = None
