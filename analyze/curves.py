"""Training curves from a run's ``log.csv`` (dlcv-train's columns), no torch."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.task import TASKS

from .figures import FigureFile, training_curves
from .report import Section

REQUIRED_COLUMNS = ("epoch", "train_loss", "val_loss", "val_metric", "lr")


@dataclass(frozen=True)
class TrainingLog:
    """log.csv's columns as float arrays (NaN where a cell is empty), one entry per epoch."""

    path: Path
    columns: dict[str, np.ndarray]

    @property
    def epochs(self) -> np.ndarray:
        return self.columns["epoch"]

    def best_epoch(self) -> int | None:
        metric = self.columns["val_metric"]
        if not np.any(np.isfinite(metric)):
            return None
        return int(self.epochs[int(np.nanargmax(metric))])


def _number(text: str | None, path: Path, line: int) -> float:
    if text is None or text.strip() == "":
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise DlcvError(f"{path}: line {line}: {text!r} is not a number") from None


def read_log(path: str | Path) -> TrainingLog:
    """Read dlcv-train's log.csv (``epoch,train_loss,val_loss,val_metric,val_pixel_accuracy,lr,seconds``)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DlcvError(f"{path}: lacks the column(s) {', '.join(missing)}; expected dlcv-train's log.csv")
            rows = list(reader)
    except FileNotFoundError:
        raise DlcvError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DlcvError(f"{path}: cannot be read as CSV ({exc})") from None
    if not rows:
        raise DlcvError(f"{path}: has no epoch rows yet")
    columns = {
        name: np.array([_number(r.get(name), path, i + 2) for i, r in enumerate(rows)], dtype=np.float64)
        for name in header
        if name
    }
    return TrainingLog(path, columns)


def curves_section(log: TrainingLog, task: str | None, out: Path) -> Section:
    """Losses, the validation metric and the learning rate over epochs."""
    cols = log.columns
    kind = TASKS.get(task or "")  # None: a log without a recorded task
    metric_name = f"val {kind.headline_name}" if kind else "val metric"
    metrics = {metric_name: cols["val_metric"]}
    if kind is not None and kind.per_pixel and "val_pixel_accuracy" in cols:
        metrics["val pixel accuracy"] = cols["val_pixel_accuracy"]
    best = log.best_epoch()
    figure: FigureFile = training_curves(
        log.epochs, {"train": cols["train_loss"], "val": cols["val_loss"]}, metrics, cols["lr"],
        out / "training_curves.png", f"training curves ({len(log.epochs)} epochs; dotted line: best epoch)", best,
    )  # fmt: skip
    text = f"From `{log.path}`: {len(log.epochs)} epochs"
    if best is not None:
        text += f"; best {metric_name} {np.nanmax(cols['val_metric']):.4f} at epoch {best}"
    return Section("Training curves", (text + ".",), (), (figure,))
