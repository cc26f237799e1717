"""A dataset folder opened through its layout, layout options and class map."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvUsageError

from .base import DatasetFormat, DatasetInfo, LayoutOptions, Sample, get_format
from .class_map import ClassMap, load_class_map


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

    def samples(self, split: str) -> list[Sample]:
        samples = self.format.samples(self.root, split, self.options)
        if self.class_map is None or self.task == "segmentation":
            return samples
        mapped = [Sample(s.image, self.class_map.lut[s.target] if s.target < len(self.class_map.lut) else -1) for s in samples]
        return [s for s in mapped if s.target >= 0]

    def read_labels(self, sample: Sample) -> np.ndarray:
        labels = self.format.read_labels(sample)
        return labels if self.class_map is None else self.class_map.remap(labels, self.info.ignore_index)


def open_dataset(
    root: str | Path, name: str | None = None, options: LayoutOptions = LayoutOptions(), class_map: str | None = None
) -> OpenDataset:
    """Recognise (or check) the layout of ``root`` and open it with ``options`` and ``class_map``."""
    root = Path(root)
    fmt = get_format(name, root)
    unused = [f for f in ("domains", "split_sizes") if getattr(options, f) is not None and f not in fmt.options]
    if unused:
        flags = ", ".join("--" + f.replace("_", "-") for f in unused)
        raise DlcvUsageError(f"{root}: {flags} does not apply to the {fmt.name} layout")
    return OpenDataset(root, fmt, options, None if class_map is None else load_class_map(class_map))
