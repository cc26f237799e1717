"""Training configuration: one frozen record built at the CLI edge."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .data.datasets import Augment


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. ``data`` is a dataset folder or ``"demo"``."""

    model: str
    data: str
    out: Path
    format: str | None = None
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    width: float = 1.0
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    input_size: tuple[int, int] | None = None  # classification resize (h, w); None = the model's default
    augment: Augment = field(default_factory=Augment)
    class_weighting: str = "none"  # none | median | inverse
    plateau_patience: int = 3
    progress: bool = True
