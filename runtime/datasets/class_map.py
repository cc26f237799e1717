"""``--class-map``: relabel any layout with a preset (``camvid3``) or a JSON file.

A class map is recorded by its content (:meth:`ClassMap.to_dict`), never by the path of the
file it was read from: the file does not travel with a checkpoint or a deployed model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dlcv.runtime.errors import DlcvError, DlcvUsageError, first_line

from ..task import get_task
from .base import DatasetInfo


@dataclass(frozen=True)
class ClassMap:
    """Relabels a dataset: source class ``i`` becomes ``lut[i]``; -1 (and labels beyond the table)
    become the ignore index. Classification samples mapped to -1 are left out."""

    name: str
    class_names: tuple[str, ...]
    lut: tuple[int, ...]
    palette: tuple[tuple[int, int, int], ...] | None = None
    source_classes: int | None = None  # the class count the map was written for (checked)

    def __post_init__(self) -> None:
        bad = [v for v in self.lut if not -1 <= v < len(self.class_names)]
        if bad:
            raise DlcvUsageError(f"class map {self.name!r}: targets {bad} are outside 0..{len(self.class_names) - 1}")

    def apply_info(self, source: DatasetInfo) -> DatasetInfo:
        expected = self.source_classes if self.source_classes is not None else len(self.lut)
        if source.num_classes != expected:
            raise DlcvUsageError(
                f"class map {self.name!r} is written for {expected} source classes but the dataset has {source.num_classes}"
            )
        palette = self.palette if get_task(source.task).per_pixel else None
        return DatasetInfo(source.task, self.class_names, palette, source.ignore_index)

    def to_dict(self) -> dict[str, Any]:
        """The map's content as plain JSON values (what a checkpoint and an artifact record)."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "lut": list(self.lut),
            "palette": None if self.palette is None else [list(c) for c in self.palette],
            "source_classes": self.source_classes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "class map") -> "ClassMap":
        """The map :meth:`to_dict` wrote; errors name ``source``."""
        try:
            palette = data.get("palette")
            source_classes = data.get("source_classes")
            return cls(
                str(data["name"]),
                tuple(str(n) for n in data["class_names"]),
                tuple(int(v) for v in data["lut"]),
                None if palette is None else tuple(tuple(int(v) for v in c) for c in palette),
                None if source_classes is None else int(source_classes),
            )
        except DlcvError as exc:
            raise DlcvError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DlcvError(f"{source}: malformed class map ({type(exc).__name__}: {first_line(exc)})") from None

    def remap(self, labels: np.ndarray, ignore_index: int) -> np.ndarray:
        table = np.asarray(self.lut, dtype=np.int64)
        table = np.where(table < 0, ignore_index, table)
        out = np.full(labels.shape, ignore_index, dtype=np.int64)
        known = (labels >= 0) & (labels < len(table))
        out[known] = table[labels[known]]
        return out


CLASS_MAP_PRESETS = {
    # CamVid's 11 classes in three: static scene, the ground one walks or drives on, road users.
    "camvid3": ClassMap(
        "camvid3",
        ("background", "ground", "road_user"),
        # sky building pole road pavement tree sign fence car pedestrian bicyclist
        (0, 0, 0, 1, 1, 0, 0, 0, 2, 2, 2),
        ((0, 0, 0), (128, 64, 128), (220, 20, 60)),
    ),
}


def load_class_map(spec: str) -> ClassMap:
    """A preset name or a JSON file ``{"class_names": [...], "map": {"<source>": <target>, ...},
    "palette": [[r, g, b], ...] (optional), "source_classes": N (optional)}``; unlisted source
    classes are ignored."""
    if spec in CLASS_MAP_PRESETS:
        return CLASS_MAP_PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise DlcvUsageError(f"--class-map {spec!r}: neither a preset ({', '.join(CLASS_MAP_PRESETS)}) nor a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        names = tuple(str(n) for n in data["class_names"])
        mapping = {int(k): int(v) for k, v in data["map"].items()}
        palette = data.get("palette")
        source_classes = data.get("source_classes")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DlcvUsageError(f"{path}: expected a class map JSON with 'class_names' and 'map' ({first_line(exc)})") from None
    if not mapping or min(mapping) < 0:
        raise DlcvUsageError(f"{path}: 'map' needs source classes 0 or above")
    size = int(source_classes) if source_classes is not None else max(mapping) + 1
    lut = tuple(mapping.get(i, -1) for i in range(size))
    return ClassMap(
        path.stem, names, lut,
        None if palette is None else tuple(tuple(int(v) for v in c) for c in palette),
        None if source_classes is None else int(source_classes),
    )  # fmt: skip
