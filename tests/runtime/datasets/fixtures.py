"""Tiny datasets written in exactly the layouts of the real ones (the real ones cannot be downloaded here).

Every image's colours encode its labels (segmentation: each pixel is its class's colour plus a
little noise; classification: the class's colour plus noise), so a model can learn them in an
epoch or two and tests can check that a transform kept image and mask aligned.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dlcv.runtime.imageio import write_png
from dlcv.runtime.datasets import CMP_PALETTE, LANDCOVER_COLOURS

SIZE = (16, 16)  # (h, w) of every fixture image
BLOCK = 4  # label maps are made of BLOCK×BLOCK squares of one class


def class_colours(n: int) -> np.ndarray:
    """``n`` well-separated RGB colours (uint8)."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(n, 3), dtype=np.int64).astype(np.uint8)


def block_labels(rng: np.random.Generator, classes: int, size=SIZE, block: int = BLOCK) -> np.ndarray:
    """A label map of ``block``-sized squares with random classes in ``0..classes-1``."""
    h, w = size
    coarse = rng.integers(0, classes, size=(-(-h // block), -(-w // block)))
    return np.kron(coarse, np.ones((block, block), dtype=np.int64))[:h, :w]


def paint(labels: np.ndarray, colours: np.ndarray, rng: np.random.Generator, noise: int = 6) -> np.ndarray:
    """The RGB image whose pixels are their labels' colours (plus a little noise)."""
    image = colours[np.clip(labels, 0, len(colours) - 1)].astype(np.int64)
    image += rng.integers(-noise, noise + 1, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    path.write_bytes(buf.tobytes())


def write_palette_png(path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """An indexed-colour ('P' mode) PNG, as CMP's label files are stored."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.astype(np.uint8).tobytes())
    flat = [v for c in palette for v in c]
    img.putpalette(flat + [0] * (768 - len(flat)))
    img.save(path)


# --- segmentation --------------------------------------------------------------------------------


def write_camvid(root: Path, counts=(4, 2, 2), classes: int = 11, void: int = 11, seed: int = 0) -> Path:
    """``train/ trainannot/ val/ valannot/ test/ testannot/``: PNG photos and index-PNG masks
    (CamVid's 11 classes, a few void pixels)."""
    rng = np.random.default_rng(seed)
    colours = class_colours(classes + 1)
    for split, count in zip(("train", "val", "test"), counts):
        for i in range(count):
            labels = block_labels(rng, classes)
            labels[0, :3] = void
            write_png(root / split / f"0001TP_{i:06d}.png", paint(labels, colours, rng))
            write_png(root / f"{split}annot" / f"0001TP_{i:06d}.png", labels.astype(np.uint8))
    return root


def write_landcover(root: Path, counts=(4, 2), seed: int = 0) -> Path:
    """``train/`` and ``validation/`` of ``NNNN_sat.jpg`` + ``NNNN_mask.png`` (RGB colour masks).

    Mask colours are written slightly off the pure values (e.g. 250 for 255, 3 for 0) as JPEG-
    touched real masks are, to exercise the >= 128 threshold."""
    rng = np.random.default_rng(seed)
    colours = np.asarray(LANDCOVER_COLOURS, dtype=np.uint8)
    for split, count in zip(("train", "validation"), counts):
        for i in range(count):
            labels = block_labels(rng, 7)
            mask = np.where(colours[labels] > 127, 250, 3).astype(np.uint8)
            write_jpeg(root / split / f"{i:04d}_sat.jpg", paint(labels, class_colours(7), rng))
            write_png(root / split / f"{i:04d}_mask.png", mask)
    return root


def write_cmp_facade(root: Path, base: int = 6, extended: int = 4, seed: int = 0) -> Path:
    """``base/cmp_bNNNN.{jpg,png,xml}`` and ``extended/cmp_xNNNN.{jpg,png,xml}``: photos, palette-PNG
    labels 1..12 (a few 0 = unlabelled pixels), and the rectangle XML files the real set has.
    Like the real facades, the images differ in size (every third one is 20×16)."""
    rng = np.random.default_rng(seed)
    colours = class_colours(13)
    for folder, prefix, count in (("base", "cmp_b", base), ("extended", "cmp_x", extended)):
        for i in range(1, count + 1):
            labels = block_labels(rng, 12, size=(20, 16) if i % 3 == 0 else SIZE) + 1
            labels[-1, -2:] = 0
            stem = root / folder / f"{prefix}{i:04d}"
            write_jpeg(stem.with_suffix(".jpg"), paint(labels, colours, rng))
            write_palette_png(stem.with_suffix(".png"), labels, [(0, 0, 0)] + list(CMP_PALETTE))
            stem.with_suffix(".xml").write_text("<annotation/>\n")
    return root


# --- classification ------------------------------------------------------------------------------


def _class_image(rng: np.random.Generator, label: int, colours: np.ndarray, size=SIZE) -> np.ndarray:
    return paint(np.full(size, label), colours, rng, noise=20)


def write_dlcv_cls(root: Path, classes: int = 3, per_class=(3, 2), seed: int = 0) -> Path:
    """``train_50/`` and ``val_50/`` (as the course's p1 data) of ``<label>_<index>.png``."""
    rng = np.random.default_rng(seed)
    colours = class_colours(classes)
    for split, count in zip(("train_50", "val_50"), per_class):
        for c in range(classes):
            for i in range(count):
                write_png(root / split / f"{c}_{c * 100 + i}.png", _class_image(rng, c, colours))
    return root


def write_imagefolder(root: Path, classes=("cat", "dog", "owl"), per_class=(3, 2), seed: int = 0) -> Path:
    """torchvision ImageFolder per split: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``."""
    rng = np.random.default_rng(seed)
    colours = class_colours(len(classes))
    for split, count in zip(("train", "val"), per_class):
        for c, name in enumerate(classes):
            for i in range(count):
                write_jpeg(root / split / name / f"{name}_{i:03d}.jpg", _class_image(rng, c, colours))
    return root


OFFICE_DOMAINS = ("Art", "Clipart", "Product", "Real World")


def write_office_home(root: Path, domains=OFFICE_DOMAINS[:2], classes=("Alarm_Clock", "Backpack", "Batteries"),
                      per_class: int = 10, seed: int = 0) -> Path:  # fmt: skip
    """Office-Home: ``<domain>/<class>/00001.jpg`` ... without split folders."""
    rng = np.random.default_rng(seed)
    colours = class_colours(len(classes))
    for domain in domains:
        for c, name in enumerate(classes):
            for i in range(1, per_class + 1):
                write_jpeg(root / domain / name / f"{i:05d}.jpg", _class_image(rng, c, colours))
    return root


def write_csv_layout(root: Path, classes=("Couch", "Desk", "Fan"), per_class=(3, 2), seed: int = 0) -> Path:
    """``train.csv`` + ``train/``, ``val.csv`` + ``val/``: ``id,filename,label`` with class names
    as labels (the course's Office-Home CSVs)."""
    rng = np.random.default_rng(seed)
    colours = class_colours(len(classes))
    n = 0
    for split, count in zip(("train", "val"), per_class):
        rows = []
        for c, name in enumerate(classes):
            for i in range(count):
                filename = f"{name}{i:05d}.jpg"
                write_jpeg(root / split / filename, _class_image(rng, c, colours))
                rows.append((n, filename, name))
                n += 1
        with open(root / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("id", "filename", "label"))
            writer.writerows(rows)
    return root


SEGMENTATION_FIXTURES = {"camvid": write_camvid, "landcover": write_landcover, "cmp-facade": write_cmp_facade}
CLASSIFICATION_FIXTURES = {
    "dlcv-cls": write_dlcv_cls,
    "imagefolder": write_imagefolder,
    "imagefolder-domains": write_office_home,
    "csv": write_csv_layout,
}
ALL_FIXTURES = {**SEGMENTATION_FIXTURES, **CLASSIFICATION_FIXTURES}
FORMAT_OF = {name: ("imagefolder" if name.startswith("imagefolder") else name) for name in ALL_FIXTURES}
