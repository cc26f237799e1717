"""Ground truth of ``dlcv-infer --labels`` for classification: a CSV or a folder of
``<label>_<index>.<ext>`` files (the dlcv-cls layout's own file-name parser reads them).

A label is a class index or a class name (:func:`parse_label`); whether it is in range is the
scorer's rule (:mod:`dlcv.runtime.label_scoring`).
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.listing import ImageFile, iter_image_files

from .label_prefixed import label_in_name

_INT_RE = re.compile(r"[+-]?\d+")


def parse_label(token: str, class_names: tuple[str, ...]) -> int | None:
    """A label token -> class index: an integer as is (range checked later), or a class name; else None."""
    token = token.strip()
    if _INT_RE.fullmatch(token):
        return int(token)
    try:
        return class_names.index(token)
    except ValueError:
        return None


def _normalise_name(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class ClassificationLabels:
    """Ground truth for classification, keyed by the image's path relative to its folder.

    From a CSV with columns ``image_name,label`` (label: class index or class name), or a
    folder of ``<label>_<index>.<ext>`` files, read by the dlcv-cls layout's parser
    (:func:`~.label_prefixed.label_in_name`: the label is the part before the last
    ``_<digits>``; a file not named so has no label). A label is taken out when its image asks
    for it, so what remains at the end are the labels without an image.
    """

    def __init__(self, labels: dict[str, str], source: Path, class_names: tuple[str, ...]):
        self.labels = labels
        self.source = source
        self.class_names = class_names

    @classmethod
    def load(cls, path: Path, class_names: tuple[str, ...], recursive: bool) -> "ClassificationLabels":
        if path.is_dir():
            return cls.from_folder(path, class_names, recursive)
        return cls.from_csv(path, class_names)

    @classmethod
    def from_csv(cls, path: Path, class_names: tuple[str, ...]) -> "ClassificationLabels":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DlcvError(f"{path}: cannot read the labels CSV ({exc})") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if "image_name" not in fields or "label" not in fields:
            raise DlcvError(f"{path}: a labels CSV needs the columns image_name,label; found {','.join(fields) or 'none'}")
        reader.fieldnames = fields
        labels: dict[str, str] = {}
        try:
            for row in reader:
                name = _normalise_name(row.get("image_name") or "")
                if not name:
                    continue
                if name in labels:
                    raise DlcvError(
                        f"{path}: image_name {name!r} appears twice (line {reader.line_num}); keep one label per image"
                    )
                labels[name] = (row.get("label") or "").strip()
        except csv.Error as exc:
            raise DlcvError(f"{path}: malformed CSV at line {reader.line_num} ({exc})") from None
        return cls(labels, path, class_names)

    @classmethod
    def from_folder(cls, path: Path, class_names: tuple[str, ...], recursive: bool) -> "ClassificationLabels":
        labels: dict[str, str] = {}
        for item in iter_image_files(path, recursive=recursive):
            label = label_in_name(item.rel)
            if label is not None:
                labels[item.name] = label
        return cls(labels, path, class_names)

    def take(self, item: ImageFile) -> tuple[str, int | None, str]:
        """("ok", index, raw) | ("missing", None, "") | ("invalid", None, raw); the label is used up."""
        raw = self.labels.pop(item.name, None)
        if raw is None:
            return "missing", None, ""
        index = parse_label(raw, self.class_names)
        return ("invalid", None, raw) if index is None else ("ok", index, raw)

    def unused(self) -> list[str]:
        """Names of the labels no image asked for."""
        return sorted(self.labels)
