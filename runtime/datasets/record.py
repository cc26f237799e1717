"""What a model's dataset was: the record a checkpoint (key ``dataset``) and every artifact's
metadata carry, so that export, calibration, bench and analyze reopen a dataset folder exactly
as training read it.

The record holds the layout's name, the layout options, the class map's *content* and the label
rules (ignore index, classes left out of the mean). It names no path: the dataset folder is
given again wherever the data is reopened, on whatever machine that is.

Label rules: when an artifact's metadata carries a record, the record is their source and the
metadata's top-level ``ignore_index`` / ``exclude_classes`` are copies of it, checked to be
equal (:class:`dlcv.runtime.metadata.ArtifactMetadata`); they stay at the top level for files
written without a record and for readers that only score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dlcv.runtime.errors import DlcvError, first_line

from .base import LayoutOptions
from .class_map import ClassMap

_KEYS = ("format", "options", "class_map", "ignore_index", "exclude_classes")


@dataclass(frozen=True)
class DatasetRecord:
    """How a dataset was read: layout, layout options, class map and label rules (JSON-able)."""

    format: str  # the layout's name (dlcv-train --list-formats)
    options: LayoutOptions = LayoutOptions()  # only the options the layout reads
    class_map: ClassMap | None = None  # the relabelling, by content
    ignore_index: int = 255
    exclude_classes: tuple[int, ...] = ()  # classes left out of mIoU (still reported per class)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (a checkpoint stays loadable with ``weights_only=True``)."""
        return {
            "format": self.format,
            "options": {
                "domains": None if self.options.domains is None else list(self.options.domains),
                "split_sizes": None if self.options.split_sizes is None else list(self.options.split_sizes),
            },
            "class_map": None if self.class_map is None else self.class_map.to_dict(),
            "ignore_index": self.ignore_index,
            "exclude_classes": list(self.exclude_classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "dataset record") -> "DatasetRecord":
        """The record :meth:`to_dict` wrote; errors name ``source`` (the file it came from)."""
        where = f"{source}: dataset record"
        if not isinstance(data, Mapping):
            raise DlcvError(f"{where} must be a JSON object")
        unknown = set(data) - set(_KEYS)
        if unknown:
            raise DlcvError(f"{where} has unknown keys {sorted(unknown)}; was it written by a newer dlcv?")
        try:
            options = data.get("options") or {}
            domains, sizes = options.get("domains"), options.get("split_sizes")
            class_map = data.get("class_map")
            return cls(
                format=str(data["format"]),
                options=LayoutOptions(
                    domains=None if domains is None else tuple(str(d) for d in domains),
                    split_sizes=None if sizes is None else tuple(int(v) for v in sizes),
                ),
                class_map=None if class_map is None else ClassMap.from_dict(class_map, where),
                ignore_index=int(data.get("ignore_index", 255)),
                exclude_classes=tuple(int(c) for c in data.get("exclude_classes", ())),
            )
        except KeyError as exc:
            raise DlcvError(f"{where} lacks the key {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise DlcvError(f"{where} is malformed ({type(exc).__name__}: {first_line(exc)})") from None

    def describe(self) -> str:
        """``camvid layout, class map camvid3`` (for messages and reports)."""
        parts = [f"{self.format} layout"]
        if self.options.domains is not None:
            parts.append(f"domains {', '.join(self.options.domains)}")
        if self.options.split_sizes is not None:
            parts.append(f"split {'/'.join(map(str, self.options.split_sizes))}")
        if self.class_map is not None:
            parts.append(f"class map {self.class_map.name}")
        return ", ".join(parts)
