"""The layout contract: what a dataset means (DatasetInfo), its samples, the DatasetFormat
interface and the registry that auto-detects a folder's layout."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvError, unknown_choice
from dlcv.runtime.imageio import read_label_map


SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
DETECT_SAMPLE = 50  # entries looked at when recognising a layout (folders can be huge)


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's labels mean."""

    task: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] | None = None
    ignore_index: int = 255
    exclude_classes: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Sample:
    """One image and its target: a label-map path (segmentation) or a class index."""

    image: Path
    target: Path | int


@dataclass(frozen=True)
class LayoutOptions:
    """Choices that only some layouts take (the others ignore them)."""

    domains: tuple[str, ...] | None = None  # imagefolder <domain>/<class>/: the domains to use (all when None)
    split_sizes: tuple[int, int, int] | None = None  # cmp-facade train/val/test counts (500/30/76 by default)


class DatasetFormat(ABC):
    """A dataset layout: how to find it, its classes, its samples and their labels."""

    name: str
    task: str
    description: str
    options: tuple[str, ...] = ()  # the LayoutOptions fields this layout reads

    @abstractmethod
    def detect(self, root: Path) -> bool:
        """True when ``root`` looks like this layout."""

    @abstractmethod
    def info(self, root: Path) -> DatasetInfo:
        """Class names, palette and ignore rules."""

    @abstractmethod
    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        """The split's samples, in a stable order."""

    def read_labels(self, sample: Sample) -> np.ndarray:
        """The label map of a segmentation sample (int64 H×W)."""
        return read_label_map(sample.target)


_FORMATS: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    if fmt.name in _FORMATS:
        raise ValueError(f"dataset format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def list_formats() -> list[DatasetFormat]:
    return [_FORMATS[k] for k in sorted(_FORMATS)]


def format_named(name: str) -> DatasetFormat:
    """The registered layout called ``name`` (an unknown name is answered with the closest ones)."""
    if name not in _FORMATS:
        raise DlcvError(unknown_choice("dataset format", name, _FORMATS))
    return _FORMATS[name]


def get_format(name: str | None, root: Path) -> DatasetFormat:
    """The format named ``name``, or the one that recognises ``root`` when ``name`` is None."""
    root = Path(root)
    if not root.is_dir():
        raise DlcvError(f"{root}: dataset folder not found")
    if name is not None:
        fmt = format_named(name)
        if not fmt.detect(root):
            raise DlcvError(f"{root}: does not look like the {name!r} layout ({fmt.description})")
        return fmt
    matches = recognising(root)
    if not matches:
        known = "; ".join(f"{f.name}: {f.description}" for f in list_formats())
        raise DlcvError(f"{root}: no known dataset layout recognised. Known layouts: {known}")
    if len(matches) > 1:
        raise DlcvError(f"{root}: matches several layouts ({', '.join(f.name for f in matches)}); pass --format")
    return matches[0]


def recognising(root: Path) -> list[DatasetFormat]:
    """Every layout that recognises the folder ``root`` (by name)."""
    return [f for f in list_formats() if f.detect(Path(root))]
