"""``camvid``: ``train/ trainannot/ val/ valannot/ [test/ testannot/]``, images and index-PNG masks."""
from __future__ import annotations

from pathlib import Path

from .base import DatasetFormat, DatasetInfo, LayoutOptions, Sample
from .folders import images_in, pair_by_stem, read_classes_json


class SegmentationFolders(DatasetFormat):
    """CamVid layout: ``train/`` images with ``trainannot/`` index PNGs of the same stem."""

    name = "camvid"
    task = "segmentation"
    description = "train/ trainannot/ val/ valannot/ [test/ testannot/] with index-PNG masks (classes.json optional)"
    default_classes = (
        "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
    )  # fmt: skip
    default_ignore = 11  # CamVid's void

    def detect(self, root: Path) -> bool:
        return (root / "train").is_dir() and (root / "trainannot").is_dir()

    def info(self, root: Path) -> DatasetInfo:
        data = read_classes_json(root)
        if data is None:
            return DatasetInfo("segmentation", self.default_classes, None, self.default_ignore)
        palette = data.get("palette")
        return DatasetInfo(
            "segmentation",
            tuple(data["class_names"]),
            tuple(tuple(int(v) for v in c) for c in palette) if palette else None,
            int(data.get("ignore_index", 255)),
            tuple(int(c) for c in data.get("exclude_classes", ())),
        )

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        images, annots = root / split, root / f"{split}annot"
        if not images.is_dir() or not annots.is_dir():
            return []
        return pair_by_stem(images_in(images), {p.stem: p for p in images_in(annots)}, annots)
