"""A training run's folder as the analysis reads it (no torch).

What every run has: ``best.pt``, ``last.pt`` and ``log.csv``. Per-epoch files are used when
present: checkpoint snapshots ``epochs/epoch_NNN.pt`` (self-describing checkpoints, NNN the
epoch, at least three digits) and the training loop's ``overlays/epoch_NNN.png`` figures.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from dlcv.runtime.errors import DlcvError

SNAPSHOT_FOLDER = "epochs"
OVERLAY_FOLDER = "overlays"
LOG_NAME = "log.csv"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.(pt|png)$")

T = TypeVar("T")


@dataclass(frozen=True)
class EpochFile:
    epoch: int
    path: Path


@dataclass(frozen=True)
class RunFolder:
    root: Path
    log_csv: Path | None
    best: Path | None
    last: Path | None
    snapshots: tuple[EpochFile, ...]  # epochs/epoch_NNN.pt, by epoch
    overlays: tuple[EpochFile, ...]  # overlays/epoch_NNN.png, by epoch


def _epoch_files(folder: Path, suffix: str) -> tuple[EpochFile, ...]:
    if not folder.is_dir():
        return ()
    found = []
    for p in folder.iterdir():
        m = _EPOCH_FILE.match(p.name)
        if m and m.group(2) == suffix and p.is_file():
            found.append(EpochFile(int(m.group(1)), p))
    return tuple(sorted(found, key=lambda f: f.epoch))


def open_run(path: str | Path) -> RunFolder:
    """Read a run folder's listing; it must hold at least one of log.csv, best.pt, last.pt."""
    root = Path(path)
    if not root.is_dir():
        raise DlcvError(f"--runs {root}: not a folder; give the folder dlcv-train wrote (--out)")

    def existing(name: str) -> Path | None:
        p = root / name
        return p if p.is_file() else None

    run = RunFolder(
        root, existing(LOG_NAME), existing("best.pt"), existing("last.pt"),
        _epoch_files(root / SNAPSHOT_FOLDER, "pt"), _epoch_files(root / OVERLAY_FOLDER, "png"),
    )  # fmt: skip
    if run.log_csv is None and run.best is None and run.last is None:
        raise DlcvError(f"--runs {root}: holds none of log.csv, best.pt, last.pt; is it a dlcv-train output folder?")
    return run


def first_middle_last(items: Sequence[T]) -> list[T]:
    """The first, middle and last items (fewer when there are fewer), in order."""
    if len(items) <= 3:
        return list(items)
    return [items[0], items[(len(items) - 1) // 2], items[-1]]
