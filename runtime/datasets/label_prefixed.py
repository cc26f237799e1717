"""``dlcv-cls``: split folders of ``<label>_<index>.png``, and the parser of those file names.

:func:`label_in_name` is the one reader of ``<label>_<index>`` names: the layout uses it for its
samples, and ``dlcv-infer --labels FOLDER`` for the ground truth of a folder of such files.
"""
from __future__ import annotations

import re
from pathlib import Path

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file

from .base import DatasetFormat, DatasetInfo, LayoutOptions, SPLITS, Sample
from .folders import first_entries, images_in, read_classes_json, split_dir


_LABEL_INDEX = re.compile(r"^(?P<label>.+)_(?P<index>\d+)$")


def label_in_name(path: str | Path) -> str | None:
    """The ``<label>`` of a file named ``<label>_<index>.<ext>`` (everything before the last
    ``_<digits>``), or None when the name is not of that form."""
    match = _LABEL_INDEX.match(Path(path).stem)
    return None if match is None else match.group("label")


def _class_index(path: Path) -> int | None:
    """The class index a dlcv-cls file name gives (its label must be a number)."""
    label = label_in_name(path)
    return int(label) if label is not None and label.isdigit() else None


class LabelPrefixedFiles(DatasetFormat):
    """The course's classification layout: flat split folders of ``<label>_<index>.png``."""

    name = "dlcv-cls"
    task = "classification"
    description = "train/ val/ [test/] (or train_*/ ...) folders of <label>_<index>.png files"

    def detect(self, root: Path) -> bool:
        folder = split_dir(root, "train")
        if folder is None:
            return False
        files = [p for p in first_entries(folder) if p.is_file() and is_image_file(p)]
        return bool(files) and all(_class_index(p) is not None for p in files)

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
            index = _class_index(p)
            if index is None:
                raise DlcvError(f"{p}: file name is not '<label>_<index>' as the dlcv-cls layout needs")
            out.append(Sample(p, index))
        return out
