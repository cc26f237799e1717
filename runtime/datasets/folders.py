"""Folder helpers the layouts share: listing images and class folders, split folders, pairing masks."""
from __future__ import annotations

import json
from pathlib import Path

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file

from .base import DETECT_SAMPLE, SPLIT_NAMES, Sample


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def first_entries(folder: Path, limit: int = DETECT_SAMPLE) -> list[Path]:
    """Up to ``limit`` entries of ``folder`` (unsorted: enough to recognise a layout cheaply)."""
    out = []
    for entry in folder.iterdir():
        if not entry.name.startswith("."):
            out.append(entry)
            if len(out) >= limit:
                break
    return out


def holds_images(folder: Path) -> bool:
    """True when the first entries of ``folder`` include an image file."""
    return any(p.is_file() and is_image_file(p) for p in first_entries(folder))


def split_dir(root: Path, split: str, suffix: str = "") -> Path | None:
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


def read_classes_json(root: Path) -> dict | None:
    """``root/classes.json`` (with a ``class_names`` list), or None when there is none."""
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


def pair_by_stem(images: list[Path], masks: dict[str, Path], where: Path, key=lambda p: p.stem) -> list[Sample]:
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
