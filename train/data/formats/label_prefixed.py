"""``dlcv-cls``: split folders of ``<label>_<index>.png``."""
from __future__ import annotations

import re
from pathlib import Path

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file

from .base import DatasetFormat, DatasetInfo, LayoutOptions, SPLITS, Sample
from .folders import first_entries, images_in, read_classes_json, split_dir


_CLS_NAME = re.compile(r"^(\d+)_(\d+)$")


class LabelPrefixedFiles(DatasetFormat):
    """The course's classification layout: flat split folders of ``<label>_<index>.png``."""

    name = "dlcv-cls"
    task = "classification"
    description = "train/ val/ [test/] (or train_*/ ...) folders of <label>_<index>.png files"

    def detect(self, root: Path) -> bool:
        folder = split_dir(root, "train")
        if folder is None:
            return False
        names = [p.stem for p in first_entries(folder) if p.is_file() and is_image_file(p)]
        return bool(names) and all(_CLS_NAME.match(n) for n in names)

    def info(self, root: Path) -> DatasetInfo:
        data = read_classes_json(root)
        if data is not None:
            return DatasetInfo("classification", tuple(data["class_names"]))
        labels = {s.target for split in SPLITS for s in self.samples(root, split)}
        return DatasetInfo("classification", tuple(str(i) for i in range(max(labels) + 1)))

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        folder = split_dir(root, split)
        if folder is None:
            return []
        out = []
        for p in images_in(folder):
            m = _CLS_NAME.match(p.stem)
            if not m:
                raise DlcvError(f"{p}: file name is not '<label>_<index>' as the dlcv-cls layout needs")
            out.append(Sample(p, int(m.group(1))))
        return out
