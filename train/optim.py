"""Optimisers, per-epoch learning-rate schedules and mixed precision for the training loop."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvError

from .config import TrainConfig

POLY_POWER = 0.9  # DeepLab's poly schedule: lr · (1 - epoch / epochs) ^ 0.9


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with ``cfg.momentum``), Adam or AdamW over the parameters that train."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise DlcvError(f"{cfg.model}: no trainable parameters (is everything frozen by --finetune {cfg.finetune}?)")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """The learning-rate schedule, stepped once per epoch by :func:`step_scheduler` (None: constant)."""
    if cfg.scheduler == "plateau":  # halve the rate when the validation metric stops improving
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=cfg.plateau_patience)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "poly":
        return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.epochs, power=POLY_POWER)
    return None


def step_scheduler(scheduler, metric: float) -> None:
    """Advance the schedule after an epoch; the plateau schedule watches the validation metric."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metric if math.isfinite(metric) else 0.0)
    else:
        scheduler.step()


class MixedPrecision:
    """FP16 autocast with gradient scaling on CUDA; a plain FP32 pass-through elsewhere."""

    def __init__(self, wanted: bool, device: torch.device):
        self.enabled = bool(wanted) and device.type == "cuda"
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled else None

    @staticmethod
    def unavailable_note(wanted: bool, device: torch.device) -> str | None:
        """Why --amp does nothing here, or None."""
        if wanted and device.type != "cuda":
            return f"--amp needs a CUDA device; training in FP32 on {device.type}"
        return None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.float16)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
