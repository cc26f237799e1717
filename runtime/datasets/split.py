"""One way to open a dataset split from what a model recorded: :func:`open_split`.

Training, export verification, INT8 calibration, dlcv-bench and dlcv-analyze all open data
here. A folder is read with the layout, layout options and class map the checkpoint recorded
(:class:`~.record.DatasetRecord`); only when nothing was recorded (checkpoints from before the
record existed) is its layout recognised from the folder. An explicit ``format`` / ``class_map``
overrides the record; a folder in another layout than the recorded one is an error, never a
silent guess.

Evaluation split (``split=None``): the first non-empty split of :data:`EVAL_SPLIT_ORDER`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TypeVar, Union

import numpy as np

from dlcv.runtime.errors import DlcvError, DlcvUsageError

from ..task import get_task
from .base import SPLITS, DatasetFormat, DatasetInfo, LayoutOptions, Sample, format_named, get_format, recognising
from .class_map import ClassMap
from .opened import OpenDataset, open_dataset
from .record import DatasetRecord

if TYPE_CHECKING:  # the metadata module imports this package (its ``dataset`` field)
    from dlcv.runtime.metadata import ArtifactMetadata

    Source = Union[ArtifactMetadata, DatasetRecord, None]

# The split a model is evaluated on when none is named (export's precision table, dlcv-bench,
# dlcv-analyze): val first, because it is the split training scored best.pt on, so the FP32
# reference metric these tools print can be checked against the checkpoint's own `metrics`
# (a dataset reopened differently shows at once), and routine tools should not wear out the
# held-out test split; test when a layout has no val split; train last (INT8 calibrates on it
# and the weights were fitted to it: a note says so).
EVAL_SPLIT_ORDER = ("val", "test", "train")

T = TypeVar("T")


def evenly_spread(items: Sequence[T], count: int) -> list[T]:
    """``count`` items spread evenly over ``items``, first and last included (all when fewer)."""
    if count >= len(items):
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, max(count, 1)).round().astype(int))
    return [items[i] for i in picks]


@dataclass(frozen=True)
class DatasetSplit:
    """One split of an opened dataset: its samples, and notes worth showing to the user."""

    dataset: OpenDataset
    name: str  # train | val | test
    samples: tuple[Sample, ...]
    notes: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return self.dataset.root

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info

    @property
    def task(self) -> str:
        return self.dataset.task

    @property
    def record(self) -> DatasetRecord:
        return self.dataset.record

    def __len__(self) -> int:
        return len(self.samples)

    def read_labels(self, sample: Sample):
        """The label map of a segmentation sample, class map applied (int64 H×W)."""
        return self.dataset.read_labels(sample)

    def subset(self, count: int) -> "DatasetSplit":
        """The same split with at most ``count`` samples, spread evenly over it."""
        return replace(self, samples=tuple(evenly_spread(self.samples, count)))

    def describe(self) -> str:
        """``the val split of ROOT (camvid layout, class map camvid3)``."""
        return f"the {self.name} split of {self.root} ({self.record.describe()})"

    def mismatch(self, metadata: "ArtifactMetadata") -> str | None:
        """Why this split's labels cannot score the model ``metadata`` describes (None: they can)."""
        return _mismatch(self.dataset, metadata)


def _mismatch(dataset: OpenDataset, metadata: "ArtifactMetadata") -> str | None:
    if dataset.task != metadata.task:
        return f"a {dataset.task} dataset ({dataset.record.describe()}), but the model is a {metadata.task} model"
    if dataset.info.num_classes != metadata.num_classes:
        return f"the dataset has {dataset.info.num_classes} classes ({dataset.record.describe()}), the model {metadata.num_classes}"
    return None


def _recorded(source: "Source") -> tuple[DatasetRecord | None, "ArtifactMetadata | None"]:
    if source is None:
        return None, None
    if isinstance(source, DatasetRecord):
        return source, None
    return source.dataset, source


def _wrong_layout(root: Path, recorded: str, found: Sequence[DatasetFormat]) -> DlcvError:
    what = f"a {found[0].name} dataset" if found else "not in that layout"
    return DlcvError(
        f"{root}: the model's dataset was read as the {recorded} layout (recorded in its metadata), but this "
        f"folder is {what}; give a folder in the {recorded} layout ({format_named(recorded).description})"
    )


def recognise_layout(root: str | Path, source: "Source" = None, *, format: str | None = None) -> DatasetFormat | None:
    """The layout ``root`` is opened with, or None when it is no dataset (a plain folder of images).

    ``format`` (explicit) or else the recorded layout must be the folder's; without either the
    layout is recognised. A folder in another layout than the recorded one is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DlcvError(f"{root}: folder not found")
    if format is not None:
        return get_format(format, root)
    record, _ = _recorded(source)
    if record is None:
        return get_format(None, root) if recognising(root) else None
    fmt = format_named(record.format)
    if fmt.detect(root):
        return fmt
    found = recognising(root)
    if found:
        raise _wrong_layout(root, record.format, found)
    return None


def _dataset_layout(root: Path, record: DatasetRecord | None, format: str | None) -> DatasetFormat:
    """The layout to open ``root`` with; an error naming the folder when it has none."""
    if not root.is_dir():
        raise DlcvError(f"{root}: dataset folder not found")
    fmt = recognise_layout(root, record, format=format)
    if fmt is not None:
        return fmt
    if record is not None:
        raise _wrong_layout(root, record.format, ())
    return get_format(None, root)  # raises: no known layout, and lists them


def open_split(
    root: str | Path,
    source: "Source" = None,
    split: str | None = None,
    *,
    format: str | None = None,
    class_map: str | ClassMap | None = None,
) -> DatasetSplit:
    """Open ``split`` of the dataset folder ``root`` as ``source`` recorded it.

    ``source``: an :class:`~dlcv.runtime.metadata.ArtifactMetadata` (its ``dataset`` record is
    used, and the dataset's task and class count are checked against the model's), a bare
    :class:`DatasetRecord`, or None (the layout is recognised). ``split=None``: the first
    non-empty split of :data:`EVAL_SPLIT_ORDER`. ``format`` / ``class_map``: explicit overrides
    of the record (a preset name, a JSON file or a :class:`ClassMap`).
    """
    root = Path(root)
    record, metadata = _recorded(source)
    if split is not None and split not in SPLITS:
        raise DlcvUsageError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    fmt = _dataset_layout(root, record, format)
    options = record.options if record is not None and record.format == fmt.name else LayoutOptions()
    if class_map is None and record is not None:
        class_map = record.class_map
    dataset = open_dataset(root, fmt.name, options, class_map)
    notes: list[str] = []
    if metadata is not None:
        notes += _check(dataset, metadata, recorded=record is not None)
    if split is None:
        split, samples = _evaluation_split(dataset)
        if split != EVAL_SPLIT_ORDER[0]:
            skipped = " or ".join(EVAL_SPLIT_ORDER[: EVAL_SPLIT_ORDER.index(split)])
            notes.append(f"the dataset has no {skipped} split; its {split} split is used")
        if split == "train":
            notes.append("training images: the weights were fitted (and INT8 is calibrated) on them, so scores are optimistic")
    else:
        samples = dataset.samples(split)
        if not samples:
            raise DlcvError(f"{root}: the {split} split holds no images ({dataset.record.describe()})")
    return DatasetSplit(dataset, split, tuple(samples), tuple(notes))


def _evaluation_split(dataset: OpenDataset) -> tuple[str, list[Sample]]:
    for name in EVAL_SPLIT_ORDER:
        samples = dataset.samples(name)
        if samples:
            return name, samples
    raise DlcvError(
        f"{dataset.root}: no images in its {', '.join(EVAL_SPLIT_ORDER)} splits ({dataset.record.describe()})"
    )


def _check(dataset: OpenDataset, metadata: "ArtifactMetadata", recorded: bool) -> list[str]:
    """Refuse a dataset whose labels cannot score the model; notes for differences that do not stop it."""
    problem = _mismatch(dataset, metadata)
    if problem is not None:
        hint = "" if recorded else " (the model records no dataset: its layout was recognised, without a class map)"
        raise DlcvUsageError(f"{dataset.root}: {problem}{hint}")
    notes = []
    if tuple(dataset.info.class_names) != tuple(metadata.class_names):
        shown = ", ".join(dataset.info.class_names[:5]) + ("..." if dataset.info.num_classes > 5 else "")
        notes.append(f"the dataset's class names ({shown}) differ from the model's; the model's names are shown")
    if get_task(dataset.task).per_pixel and dataset.info.ignore_index != metadata.ignore_index:
        notes.append(
            f"the dataset marks unlabelled pixels {dataset.info.ignore_index}, the model ignores {metadata.ignore_index}"
        )
    return notes
