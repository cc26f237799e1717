"""Training configuration: one frozen record built at the CLI edge."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .data.datasets import Augment
from dlcv.runtime.datasets import LayoutOptions

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("plateau", "cosine", "poly", "none")
FINETUNE_MODES = ("all", "head")

# Settings a resumed run may change: where and how fast it runs, and when it stops (the loop
# compares the layout it recognised instead of --format).
_RESUMABLE_CHANGES = (
    "data", "format", "out", "device", "num_workers", "progress", "patience", "pretrained", "overlays", "tensorboard",
    "snapshot_every", "epochs",
)  # fmt: skip


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
    model_args: tuple[tuple[str, object], ...] = ()  # extra builder keywords, e.g. (("batch_norm", True),)
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    input_size: tuple[int, int] | None = None  # resize (h, w); None = the model's registered preprocessing
    augment: Augment = field(default_factory=Augment)
    class_weighting: str = "none"  # none | median | inverse
    class_map: str | None = None  # preset name or JSON file (see dlcv.runtime.datasets.load_class_map)
    layout: LayoutOptions = field(default_factory=LayoutOptions)
    optimizer: str = "adam"  # sgd | adam | adamw
    momentum: float = 0.9  # SGD only
    scheduler: str = "plateau"  # plateau (on the validation metric) | cosine | poly | none; stepped per epoch
    plateau_patience: int = 3
    amp: bool = False  # mixed precision (CUDA only)
    patience: int | None = None  # early stopping: epochs without a better validation metric
    pretrained: str | None = None  # torchvision-format state dict to start from
    finetune: str = "all"  # all | head (backbone frozen)
    trainable_stages: int = 0  # with finetune=head: the last N backbone stages train too
    overlays: int = 4  # validation images drawn per epoch under overlays/ (segmentation)
    tensorboard: bool = True  # scalars under tensorboard/ when the package is installed
    snapshot_every: int = 0  # also keep epochs/epoch_NNN.pt every N epochs and at the end (0: none)
    progress: bool = True

    def __post_init__(self) -> None:
        from dlcv.runtime.errors import DlcvUsageError

        for name, value, allowed in (
            ("--optimizer", self.optimizer, OPTIMIZERS),
            ("--scheduler", self.scheduler, SCHEDULERS),
            ("--finetune", self.finetune, FINETUNE_MODES),
        ):
            if value not in allowed:
                raise DlcvUsageError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.patience is not None and self.patience < 1:
            raise DlcvUsageError(f"--patience must be at least 1, got {self.patience}")

    @property
    def arch_kwargs(self) -> dict:
        """The builder keywords the checkpoint records (``width`` plus ``--model-arg`` values)."""
        return {"width": self.width, **dict(self.model_args)}

    def trajectory(self) -> dict:
        """The settings that decide the weights a run produces (a resumed run must repeat them).

        ``epochs`` counts only for schedules planned over the whole run (cosine, poly)."""
        settings = {k: v for k, v in asdict(self).items() if k not in _RESUMABLE_CHANGES}
        if self.scheduler in ("cosine", "poly"):
            settings["epochs"] = self.epochs
        return json.loads(json.dumps(settings, default=str))
