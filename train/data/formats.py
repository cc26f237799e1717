"""Dataset layouts on disk (``--format``): a registry of readers, auto-detected when not named.

Each format lists the samples of a split and reads their targets; every image is read by
dlcv.runtime's decoder, so training sees exactly what deployment sees. The layouts:

``camvid``      ``train/ trainannot/ val/ valannot/ [test/ testannot/]``: images and index-PNG masks
                of the same stem; the 11 SegNet classes with void (11) ignored, or ``classes.json``.
``dlcv-cls``    ``train/ val/ [test/]`` (or ``train_*/`` ...) folders of ``<label>_<index>.png``.
``imagefolder`` class folders per split (``train/<class>/x.jpg``, ``val/`` or ``validation/``,
                ``test/``), or Office-Home's ``<domain>/<class>/x.jpg`` without split folders: then
                ``--domains`` picks the domains (all by default) and every class of every domain is
                split by file-name order, the 9th of each 10 files to val, the 10th to test, the
                rest to train (80/10/10, the same files on every machine).
``csv``         ``train.csv`` (``id,filename,label``; val.csv/validation.csv, test.csv likewise) with the
                images in ``train/`` (or beside the CSV); labels are class indices or class names.
``landcover``   ``train/ validation/`` (or ``val/``) of ``NNNN_sat.jpg`` + ``NNNN_mask.png`` RGB colour
                masks -> 7 classes; mIoU over the first six ("unknown" excluded).
``cmp-facade``  ``base/ [extended/]`` of ``cmp_bNNNN.jpg`` + ``cmp_bNNNN.png`` (labels 1-12 -> 0-11),
                split 500/30/76 (train/val/test) by a fixed permutation, as in the course notebook.

``--class-map`` relabels any layout: a preset name (``camvid3``) or a JSON file.
"""
from __future__ import annotations

import csv
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvError, DlcvUsageError, first_line
from dlcv.runtime.imageio import is_image_file, read_image, read_label_map

SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}
_DETECT_SAMPLE = 50  # entries looked at when recognising a layout (folders can be huge)


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


@dataclass(frozen=True)
class LayoutOptions:
    """Choices that only some layouts take (the others ignore them)."""

    domains: tuple[str, ...] | None = None  # imagefolder <domain>/<class>/: the domains to use (all when None)
    split_sizes: tuple[int, int, int] | None = None  # cmp-facade train/val/test counts (500/30/76 by default)


class DatasetFormat(ABC):
    """A dataset layout: how to find it, its classes, its samples and their labels."""

    name: str
    task: str
    description: str
    options: tuple[str, ...] = ()  # the LayoutOptions fields this layout reads

    @abstractmethod
    def detect(self, root: Path) -> bool:
        """True when ``root`` looks like this layout."""

    @abstractmethod
    def info(self, root: Path) -> DatasetInfo:
        """Class names, palette and ignore rules."""

    @abstractmethod
    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
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


# --- folder helpers ------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _first_entries(folder: Path, limit: int = _DETECT_SAMPLE) -> list[Path]:
    """Up to ``limit`` entries of ``folder`` (unsorted: enough to recognise a layout cheaply)."""
    out = []
    for entry in folder.iterdir():
        if not entry.name.startswith("."):
            out.append(entry)
            if len(out) >= limit:
                break
    return out


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and is_image_file(p) for p in _first_entries(folder))


def _split_dir(root: Path, split: str, suffix: str = "") -> Path | None:
    """``root/<split>`` under any of the split's names (val: val, validation, valid), or the one
    ``root/<split>_*`` folder (e.g. the course's ``train_50``)."""
    for name in SPLIT_NAMES.get(split, (split,)):
        exact = root / f"{name}{suffix}"
        if exact.is_dir():
            return exact
    for name in SPLIT_NAMES.get(split, (split,)):
        candidates = sorted(p for p in root.glob(f"{name}_*{suffix}") if p.is_dir())
        if len(candidates) == 1:
            return candidates[0]
    return None


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


def _pair_by_stem(images: list[Path], masks: dict[str, Path], where: Path, key=lambda p: p.stem) -> list[Sample]:
    """Samples of ``images`` with the mask of the same key; every image must have one."""
    out, missing = [], []
    for img in images:
        if key(img) in masks:
            out.append(Sample(img, masks[key(img)]))
        else:
            missing.append(img.name)
    if missing:
        raise DlcvError(
            f"{where}: no mask for {len(missing)} image(s) (first: {missing[0]}); every image needs its mask"
        )
    return out


# --- camvid --------------------------------------------------------------------------------------


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

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        images, annots = root / split, root / f"{split}annot"
        if not images.is_dir() or not annots.is_dir():
            return []
        return _pair_by_stem(_images_in(images), {p.stem: p for p in _images_in(annots)}, annots)


# --- dlcv-cls ------------------------------------------------------------------------------------

_CLS_NAME = re.compile(r"^(\d+)_(\d+)$")


class LabelPrefixedFiles(DatasetFormat):
    """The course's classification layout: flat split folders of ``<label>_<index>.png``."""

    name = "dlcv-cls"
    task = "classification"
    description = "train/ val/ [test/] (or train_*/ ...) folders of <label>_<index>.png files"

    def detect(self, root: Path) -> bool:
        folder = _split_dir(root, "train")
        if folder is None:
            return False
        names = [p.stem for p in _first_entries(folder) if p.is_file() and is_image_file(p)]
        return bool(names) and all(_CLS_NAME.match(n) for n in names)

    def info(self, root: Path) -> DatasetInfo:
        data = _read_classes_json(root)
        if data is not None:
            return DatasetInfo("classification", tuple(data["class_names"]))
        labels = {s.target for split in SPLITS for s in self.samples(root, split)}
        return DatasetInfo("classification", tuple(str(i) for i in range(max(labels) + 1)))

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        folder = _split_dir(root, split)
        if folder is None:
            return []
        out = []
        for p in _images_in(folder):
            m = _CLS_NAME.match(p.stem)
            if not m:
                raise DlcvError(f"{p}: file name is not '<label>_<index>' as the dlcv-cls layout needs")
            out.append(Sample(p, int(m.group(1))))
        return out


# --- imagefolder (split/class/image or Office-Home domain/class/image) -------------------------

DOMAIN_SPLIT_PERIOD = 10  # of every 10 files of a class (by name): #9 -> val, #10 -> test


class ImageFolderFormat(DatasetFormat):
    """Class subfolders per split, or Office-Home's ``<domain>/<class>/`` split deterministically."""

    name = "imagefolder"
    task = "classification"
    options = ("domains",)
    description = (
        "train/<class>/*.jpg, val/ (or validation/), [test/]; or <domain>/<class>/*.jpg (Office-Home: "
        "--domains picks domains, 80/10/10 split by file order)"
    )

    def _split_layout(self, root: Path) -> Path | None:
        train = _split_dir(root, "train")
        if train is None:
            return None
        entries = _first_entries(train)
        has_classes = any(p.is_dir() and _holds_images(p) for p in entries)
        return train if has_classes and not any(p.is_file() and is_image_file(p) for p in entries) else None

    def _domains(self, root: Path) -> list[Path]:
        """The domain folders of a ``<domain>/<class>/image`` layout ([] when it is not one)."""
        if _split_dir(root, "train") is not None:
            return []
        domains = _subfolders(root)
        if not domains:
            return []
        for domain in domains[:_DETECT_SAMPLE]:
            entries = _first_entries(domain)
            if any(p.is_file() and is_image_file(p) for p in entries):
                return []
            if not any(p.is_dir() and _holds_images(p) for p in entries):
                return []
        return domains

    def detect(self, root: Path) -> bool:
        return self._split_layout(root) is not None or bool(self._domains(root))

    def _class_folders(self, root: Path) -> list[Path]:
        """Every class folder of every split or domain (class names are shared across them)."""
        parents = self._domains(root) or [d for s in SPLITS if (d := _split_dir(root, s)) is not None]
        return [c for parent in parents for c in _subfolders(parent)]

    def info(self, root: Path) -> DatasetInfo:
        names = sorted({c.name for c in self._class_folders(root)})
        if not names:
            raise DlcvError(f"{root}: no class folders found ({self.description})")
        return DatasetInfo("classification", tuple(names))

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        index = {name: i for i, name in enumerate(self.info(root).class_names)}
        domains = self._domains(root)
        if not domains:
            if options.domains is not None:
                raise DlcvUsageError(f"{root}: --domains needs <domain>/<class>/ folders, but this dataset has split folders")
            folder = _split_dir(root, split)
            if folder is None:
                return []
            return [Sample(p, index[c.name]) for c in _subfolders(folder) for p in _images_in(c)]
        chosen = self._chosen_domains(root, domains, options.domains)
        out = []
        for domain in chosen:
            for cls in _subfolders(domain):
                for i, p in enumerate(_images_in(cls)):
                    if _domain_split(i) == split:
                        out.append(Sample(p, index[cls.name]))
        return out

    @staticmethod
    def _chosen_domains(root: Path, domains: list[Path], wanted: tuple[str, ...] | None) -> list[Path]:
        if wanted is None:
            return domains
        by_name = {d.name.lower(): d for d in domains}
        unknown = [w for w in wanted if w.lower() not in by_name]
        if unknown:
            raise DlcvUsageError(
                f"{root}: no domain folder {', '.join(map(repr, unknown))}; the domains are "
                f"{', '.join(d.name for d in domains)}"
            )
        return [by_name[w.lower()] for w in wanted]


def _domain_split(position: int) -> str:
    slot = position % DOMAIN_SPLIT_PERIOD
    return "val" if slot == DOMAIN_SPLIT_PERIOD - 2 else "test" if slot == DOMAIN_SPLIT_PERIOD - 1 else "train"


# --- csv -----------------------------------------------------------------------------------------


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
        data = _read_classes_json(root)
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
        folder = _split_dir(root, split)
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


# --- landcover -----------------------------------------------------------------------------------

LANDCOVER_CLASSES = ("urban", "agriculture", "rangeland", "forest", "water", "barren", "unknown")
LANDCOVER_COLOURS = ((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0))
_LANDCOVER_IGNORE = 255


def _landcover_lut() -> np.ndarray:
    """Class per 3-bit colour code 4·R + 2·G + B; pure red (the one unused code) is ignored."""
    lut = np.full(8, _LANDCOVER_IGNORE, dtype=np.int64)
    for cls, (r, g, b) in enumerate(LANDCOVER_COLOURS):
        lut[4 * (r >= 128) + 2 * (g >= 128) + (b >= 128)] = cls
    return lut


class LandCoverFormat(DatasetFormat):
    """Satellite land cover: ``NNNN_sat.jpg`` with an RGB colour mask ``NNNN_mask.png``."""

    name = "landcover"
    task = "segmentation"
    description = "train/ validation/ (or val/) [test/] of NNNN_sat.jpg + NNNN_mask.png colour masks (7 classes)"
    _lut = _landcover_lut()

    def detect(self, root: Path) -> bool:
        folder = _split_dir(root, "train")
        return folder is not None and any(p.stem.endswith("_sat") and is_image_file(p) for p in _first_entries(folder))

    def info(self, root: Path) -> DatasetInfo:
        return DatasetInfo("segmentation", LANDCOVER_CLASSES, LANDCOVER_COLOURS, _LANDCOVER_IGNORE, exclude_classes=(6,))

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        folder = _split_dir(root, split)
        if folder is None:
            return []
        files = _images_in(folder)
        masks = {p.stem[: -len("_mask")]: p for p in files if p.stem.endswith("_mask")}
        images = [p for p in files if p.stem.endswith("_sat")]
        return _pair_by_stem(images, masks, folder, key=lambda p: p.stem[: -len("_sat")])

    def read_labels(self, sample: Sample) -> np.ndarray:
        """Colour mask -> class indices; a channel counts as set at >= 128."""
        rgb = read_image(sample.target, max_pixels=None) >= 128
        code = 4 * rgb[:, :, 0].astype(np.int64) + 2 * rgb[:, :, 1] + rgb[:, :, 2]
        return self._lut[code]


# --- cmp-facade ----------------------------------------------------------------------------------

CMP_CLASSES = (
    "background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco", "molding", "pillar", "shop",
)  # fmt: skip
CMP_PALETTE = (
    (0, 0, 170), (0, 0, 255), (0, 85, 255), (0, 170, 255), (0, 255, 255), (85, 255, 170),
    (170, 255, 85), (255, 255, 0), (255, 170, 0), (255, 85, 0), (255, 0, 0), (170, 0, 0),
)  # fmt: skip
CMP_SPLIT = (500, 30, 76)  # the course notebook's train/val/test counts over base + extended (606 pairs)
CMP_SPLIT_SEED = 0
_CMP_FOLDERS = ("base", "extended")


def read_index_png(path: Path) -> np.ndarray:
    """Class indices of an index PNG, palette-coded ('P' mode, as CMP's masks are) or gray.

    OpenCV expands palette PNGs to colours, so palette files are read with Pillow
    (a torchvision dependency) to keep their indices.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode == "P":
                return np.asarray(img, dtype=np.uint8).astype(np.int64)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DlcvError(f"{path}: not a readable label PNG ({first_line(exc)})") from None
    return read_label_map(path)


class CmpFacadeFormat(DatasetFormat):
    """CMP facades: ``base/`` and ``extended/`` of ``cmp_*.jpg`` photos with ``cmp_*.png`` label maps."""

    name = "cmp-facade"
    task = "segmentation"
    options = ("split_sizes",)
    description = "base/ [extended/] of cmp_bNNNN.jpg + cmp_bNNNN.png (labels 1-12); split 500/30/76 by a fixed permutation"

    def detect(self, root: Path) -> bool:
        base = root / "base"
        return base.is_dir() and any(p.name.startswith("cmp_") and p.suffix.lower() == ".jpg" for p in _first_entries(base))

    def info(self, root: Path) -> DatasetInfo:
        return DatasetInfo("segmentation", CMP_CLASSES, CMP_PALETTE, 255)

    def all_samples(self, root: Path) -> list[Sample]:
        """Every photo/label pair, base before extended, each by name."""
        out = []
        for folder in (root / name for name in _CMP_FOLDERS):
            if not folder.is_dir():
                continue
            files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.name.startswith("cmp_")]
            labels = {p.stem: p for p in files if p.suffix.lower() == ".png"}
            out += _pair_by_stem([p for p in files if p.suffix.lower() in (".jpg", ".jpeg")], labels, folder)
        return out

    def samples(self, root: Path, split: str, options: LayoutOptions = LayoutOptions()) -> list[Sample]:
        pairs = self.all_samples(root)
        sizes = cmp_split_sizes(len(pairs), options.split_sizes)
        order = np.random.default_rng(CMP_SPLIT_SEED).permutation(len(pairs))
        bounds = np.cumsum((0,) + sizes)
        i = SPLITS.index(split)
        return [pairs[k] for k in sorted(order[bounds[i] : bounds[i + 1]])]

    def read_labels(self, sample: Sample) -> np.ndarray:
        """Labels 1..12 -> 0..11; 0 and anything above 12 -> ignored (255)."""
        raw = read_index_png(Path(sample.target))
        return np.where((raw >= 1) & (raw <= len(CMP_CLASSES)), raw - 1, 255)


def cmp_split_sizes(total: int, wanted: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """Train/val/test counts: ``wanted`` (must add up to ``total``), else 500/30/76 — scaled to
    the same proportions when the folder does not hold the 606 pairs of the full dataset."""
    if wanted is not None:
        if sum(wanted) != total or min(wanted) < 0:
            raise DlcvUsageError(f"--split-sizes {'/'.join(map(str, wanted))} must add up to the {total} image pairs found")
        return tuple(int(v) for v in wanted)  # type: ignore[return-value]
    if total == sum(CMP_SPLIT):
        return CMP_SPLIT
    val = max(1, round(total * CMP_SPLIT[1] / sum(CMP_SPLIT)))
    test = max(1, round(total * CMP_SPLIT[2] / sum(CMP_SPLIT)))
    if total - val - test < 1:
        raise DlcvError(f"cmp-facade: {total} image pairs are too few for a train/val/test split")
    return total - val - test, val, test


register_format(SegmentationFolders())
register_format(LabelPrefixedFiles())
register_format(ImageFolderFormat())
register_format(CsvFormat())
register_format(LandCoverFormat())
register_format(CmpFacadeFormat())


# --- class maps ----------------------------------------------------------------------------------


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
        palette = self.palette if source.task == "segmentation" else None
        return DatasetInfo(source.task, self.class_names, palette, source.ignore_index)

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


# --- an opened dataset -------------------------------------------------------------------------


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
