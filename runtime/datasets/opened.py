"""A dataset folder opened through its layout, layout options and class map."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvUsageError

from ..task import get_task
from .base import DatasetFormat, DatasetInfo, LayoutOptions, Sample, get_format
from .class_map import ClassMap, load_class_map
from .record import DatasetRecord


@dataclass(frozen=True)
class OpenDataset:
    """A dataset folder read through its layout, its options and an optional class map."""

    root: Path
    format: DatasetFormat
    options: LayoutOptions = LayoutOptions()
    class_map: ClassMap | None = None
    info: DatasetInfo = field(init=False)

    def __post_init__(self) -> None:
        info = self.format.info(self.root)
        object.__setattr__(self, "info", info if self.class_map is None else self.class_map.apply_info(info))

    @property
    def task(self) -> str:
        return self.format.task

    @property
    def record(self) -> DatasetRecord:
        """What a checkpoint records to reopen this dataset elsewhere (no paths)."""
        return DatasetRecord(self.format.name, self.options, self.class_map, self.info.ignore_index, self.info.exclude_classes)

    def samples(self, split: str) -> list[Sample]:
        samples = self.format.samples(self.root, split, self.options)
        if self.class_map is None or get_task(self.task).per_pixel:
            return samples
        mapped = [Sample(s.image, self.class_map.lut[s.target] if s.target < len(self.class_map.lut) else -1) for s in samples]
        return [s for s in mapped if s.target >= 0]

    def read_labels(self, sample: Sample) -> np.ndarray:
        labels = self.format.read_labels(sample)
        return labels if self.class_map is None else self.class_map.remap(labels, self.info.ignore_index)


def open_dataset(
    root: str | Path,
    name: str | None = None,
    options: LayoutOptions = LayoutOptions(),
    class_map: str | ClassMap | None = None,
) -> OpenDataset:
    """Recognise (or check) the layout of ``root`` and open it with ``options`` and ``class_map``
    (a preset name, a JSON file or a :class:`ClassMap`)."""
    root = Path(root)
    fmt = get_format(name, root)
    unused = [f.name for f in fields(LayoutOptions) if getattr(options, f.name) is not None and f.name not in fmt.options]
    if unused:
        flags = ", ".join("--" + f.replace("_", "-") for f in unused)
        raise DlcvUsageError(f"{root}: {flags} does not apply to the {fmt.name} layout")
    if isinstance(class_map, str):
        class_map = load_class_map(class_map)
    return OpenDataset(root, fmt, options, class_map)
