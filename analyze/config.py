"""What one ``dlcv-analyze`` run does (built at the CLI edge)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlcv.runtime.backends import resolve_backend
from dlcv.runtime.errors import DlcvUsageError

RANK_BY = ("miou", "pixel_accuracy")
DEFAULT_MAX_IMAGES = 1000


@dataclass(frozen=True)
class AnalyzeConfig:
    """``target``: a dlcv checkpoint (``.pt``), a run folder (its ``best.pt``, and the folder as
    ``runs``), or a ``metrics.json`` (drawn without PyTorch).

    ``data``: dataset folder or ``"demo"`` whose val split (else test, else train) is analysed,
    opened as the checkpoint recorded it; ``format`` / ``class_map`` override the record.
    ``images``: image names (file names or stems) for the segmentation grids; otherwise the
    ``count`` worst by ``rank_by``. ``max_images``: the most validation images whose features go
    into t-SNE/PCA and that the ``compare`` artifact is run on (a seeded random choice); the
    confusion matrix uses them all. ``metrics``: a deployed run's metrics.json drawn beside.
    ``backend``: the backend ``compare`` runs on (a registry name; None: its suffix's default).
    """

    target: Path
    data: str | None = None
    format: str | None = None
    class_map: str | None = None
    compare: Path | None = None
    backend: str | None = None
    runs: Path | None = None
    metrics: Path | None = None
    out: Path = Path("analysis")
    images: tuple[str, ...] = ()
    count: int = 4
    rank_by: str = "miou"
    max_images: int = DEFAULT_MAX_IMAGES
    batch_size: int = 16
    workers: int = 0
    device: str = "cpu"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        for name in ("count", "max_images", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            problems.append(f"--workers must be 0 or more, got {self.workers}")
        if self.rank_by not in RANK_BY:
            problems.append(f"--rank-by must be one of {', '.join(RANK_BY)}, not {self.rank_by!r}")
        if self.backend is not None and self.compare is None:
            problems.append("--backend chooses the backend --compare runs on; give --compare ARTIFACT too")
        if problems:
            raise DlcvUsageError("; ".join(problems))
        if self.backend is not None:
            resolve_backend(self.compare, self.backend)  # unknown name, or one that does not open that file

    @property
    def reads_metrics_json(self) -> bool:
        """True when the target is a metrics.json (the path that needs no PyTorch)."""
        return self.target.suffix.lower() == ".json"
