"""Dataset layouts on disk (``--format``): a registry of readers, auto-detected when not named.

Each format lists the samples of a split and reads their targets; every image is read by
dlcv.runtime's decoder, so training sees exactly what deployment sees.
"""
from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file, read_label_map

SPLITS = ("train", "val", "test")


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


class DatasetFormat(ABC):
    """A dataset layout: how to find it, its classes, its samples and their labels."""

    name: str
    task: str
    description: str

    @abstractmethod
    def detect(self, root: Path) -> bool:
        """True when ``root`` looks like this layout."""

    @abstractmethod
    def info(self, root: Path) -> DatasetInfo:
        """Class names, palette and ignore rules."""

    @abstractmethod
    def samples(self, root: Path, split: str) -> list[Sample]:
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


def get_format(name: str | None, root: Path) -> DatasetFormat:
    """The format named ``name``, or the one that recognises ``root`` when ``name`` is None."""
    root = Path(root)
    if not root.is_dir():
        raise DlcvError(f"{root}: dataset folder not found")
    if name is not None:
        if name not in _FORMATS:
            raise DlcvError(f"unknown dataset format {name!r}; choose one of: {', '.join(sorted(_FORMATS))}")
        fmt = _FORMATS[name]
        if not fmt.detect(root):
            raise DlcvError(f"{root}: does not look like the {name!r} layout ({fmt.description})")
        return fmt
    matches = [f for f in list_formats() if f.detect(root)]
    if not matches:
        known = "; ".join(f"{f.name}: {f.description}" for f in list_formats())
        raise DlcvError(f"{root}: no known dataset layout recognised. Known layouts: {known}")
    if len(matches) > 1:
        raise DlcvError(f"{root}: matches several layouts ({', '.join(f.name for f in matches)}); pass --format")
    return matches[0]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _split_dir(root: Path, split: str, suffix: str = "") -> Path | None:
    """``root/split`` or the one ``root/split_*`` folder (e.g. the course's ``train_50``)."""
    exact = root / f"{split}{suffix}"
    if exact.is_dir():
        return exact
    candidates = sorted(p for p in root.glob(f"{split}_*{suffix}") if p.is_dir())
    return candidates[0] if len(candidates) == 1 else None


def _read_classes_json(root: Path) -> dict | None:
    path = root / "classes.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = [str(n) for n in data["class_names"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DlcvError(f"{path}: expected JSON with a 'class_names' list ({exc})") from None
    data["class_names"] = names
    return data


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
        data = _read_classes_json(root)
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

    def samples(self, root: Path, split: str) -> list[Sample]:
        images, annots = root / split, root / f"{split}annot"
        if not images.is_dir() or not annots.is_dir():
            return []
        masks = {p.stem: p for p in _images_in(annots)}
        out, missing = [], []
        for img in _images_in(images):
            if img.stem in masks:
                out.append(Sample(img, masks[img.stem]))
            else:
                missing.append(img.name)
        if missing:
            raise DlcvError(
                f"{annots}: no mask for {len(missing)} image(s) of {images} (first: {missing[0]}); "
                "every image needs a mask with the same file stem"
            )
        return out


_CLS_NAME = re.compile(r"^(\d+)_(.+)$")


class LabelPrefixedFiles(DatasetFormat):
    """The course's classification layout: flat split folders of ``<label>_<index>.png``."""

    name = "dlcv-cls"
    task = "classification"
    description = "train/ val/ [test/] (or train_*/ ...) folders of <label>_<index>.png files"

    def detect(self, root: Path) -> bool:
        folder = _split_dir(root, "train")
        if folder is None:
            return False
        names = [p.stem for p in _images_in(folder)[:50]]
        return bool(names) and all(_CLS_NAME.match(n) for n in names)

    def info(self, root: Path) -> DatasetInfo:
        data = _read_classes_json(root)
        if data is not None:
            return DatasetInfo("classification", tuple(data["class_names"]))
        labels = {s.target for split in SPLITS for s in self.samples(root, split)}
        return DatasetInfo("classification", tuple(str(i) for i in range(max(labels) + 1)))

    def samples(self, root: Path, split: str) -> list[Sample]:
        folder = _split_dir(root, split)
        if folder is None:
            return []
        out = []
        for p in _images_in(folder):
            m = _CLS_NAME.match(p.stem)
            if not m:
                raise DlcvError(f"{p}: file name does not start with '<label>_' as the dlcv-cls layout needs")
            out.append(Sample(p, int(m.group(1))))
        return out


register_format(SegmentationFolders())
register_format(LabelPrefixedFiles())
