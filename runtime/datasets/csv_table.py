"""``csv``: ``train.csv`` (``id,filename,label``) and the images it names."""
from __future__ import annotations

import csv
from pathlib import Path

from dlcv.runtime.errors import DlcvError, first_line

from .base import DatasetFormat, DatasetInfo, LayoutOptions, SPLITS, SPLIT_NAMES, Sample
from .folders import read_classes_json, split_dir


class CsvFormat(DatasetFormat):
    """``train.csv`` / ``val.csv`` / ``test.csv`` with ``filename`` and ``label`` columns."""

    name = "csv"
    task = "classification"
    description = "train.csv, val.csv (or validation.csv), [test.csv] with columns id,filename,label; images in train/ ... or beside the CSV"

    def _csv(self, root: Path, split: str) -> Path | None:
        for name in SPLIT_NAMES[split]:
            path = root / f"{name}.csv"
            if path.is_file():
                return path
        return None

    def detect(self, root: Path) -> bool:
        path = self._csv(root, "train")
        if path is None:
            return False
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f), [])
        except (OSError, UnicodeDecodeError):
            return False
        return {"filename", "label"} <= {h.strip() for h in header}

    def _rows(self, root: Path, split: str) -> list[tuple[int, str, str]]:
        """(line number, filename, label) rows of the split's CSV."""
        path = self._csv(root, split)
        if path is None:
            return []
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                fields = {h.strip() for h in reader.fieldnames or []}
                if not {"filename", "label"} <= fields:
                    raise DlcvError(f"{path}: needs a header with 'filename' and 'label' columns, found {sorted(fields)}")
                rows = [
                    (n, (r.get("filename") or "").strip(), (r.get("label") or "").strip())
                    for n, r in enumerate(({k.strip(): v for k, v in row.items() if k} for row in reader), start=2)
                ]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DlcvError(f"{path}: cannot read the CSV ({first_line(exc)})") from None
        for n, filename, label in rows:
            if not filename or not label:
                raise DlcvError(f"{path}, line {n}: empty filename or label; every row needs both")
        return rows

    def info(self, root: Path) -> DatasetInfo:
        data = read_classes_json(root)
        if data is not None:
            return DatasetInfo("classification", tuple(data["class_names"]))
        labels = {label for split in SPLITS for _, _, label in self._rows(root, split)}
        if not labels:
            raise DlcvError(f"{root}: the CSV files hold no labelled rows")
        if all(label.isdigit() for label in labels):
            return DatasetInfo("classification", tuple(str(i) for i in range(max(map(int, labels)) + 1)))
        return DatasetInfo("classification", tuple(sorted(labels)))

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        rows = self._rows(root, split)
        if not rows:
            return []
        names = self.info(root).class_names
        index = {name: i for i, name in enumerate(names)}
        csv_path = self._csv(root, split)
        folder = split_dir(root, split)
        out = []
        for n, filename, label in rows:
            target = index.get(label)
            if target is None and label.isdigit() and int(label) < len(names):
                target = int(label)
            if target is None:
                raise DlcvError(f"{csv_path}, line {n}: label {label!r} is not one of the {len(names)} classes")
            out.append(Sample(self._image_path(root, folder, filename, csv_path, n), target))
        return out

    @staticmethod
    def _image_path(root: Path, folder: Path | None, filename: str, csv_path: Path, line: int) -> Path:
        for base in (folder, root):
            if base is not None and (base / filename).is_file():
                return base / filename
        where = f"{folder} or {root}" if folder is not None else str(root)
        raise DlcvError(f"{csv_path}, line {line}: image {filename!r} not found in {where}")
