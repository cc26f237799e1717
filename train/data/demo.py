"""Built-in demo data, made from scikit-learn's bundled handwritten digits (no download).

Segmentation: 64×64 RGB canvases holding 1-3 digits on textured, noisy backgrounds; 11
classes (background + digits 0-9), written in the CamVid layout (``train/`` + ``trainannot/``
index PNGs, likewise ``val`` and ``test``) with a ``classes.json``.
Classification: single digits on textured backgrounds, 10 classes, written in the
``dlcv-cls`` layout (``<split>/<label>_<index>.png``).
Generation is seeded, so every machine writes the same files; each digit instance belongs
to one split only, so the test images hold digits the model never saw.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dlcv.runtime.imageio import write_png
from dlcv.runtime.task import get_task

DEMO_VERSION = 4
SEG_CLASSES = ("background",) + tuple(f"digit_{d}" for d in range(10))
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DemoSizes:
    """Images per split (train, val, test) for each task, and the canvas size."""

    seg: tuple[int, int, int] = (1200, 150, 150)
    cls: tuple[int, int, int] = (1500, 250, 250)
    canvas: int = 64
    seed: int = 0


def demo_palette(num_classes: int) -> list[list[int]]:
    """A fixed, well-separated RGB colour per class (background black)."""
    rng = np.random.default_rng(1234)
    palette = [[0, 0, 0]]
    for c in range(1, num_classes):
        hue = int(180 * (c - 1) / max(1, num_classes - 1))
        hsv = np.uint8([[[hue, 220, 255 - 40 * (c % 2)]]])
        palette.append([int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]])
    del rng
    return palette


def default_cache_dir() -> Path:
    """``$DLCV_CACHE_DIR`` or ``~/.cache/dlcv``."""
    return Path(os.environ.get("DLCV_CACHE_DIR") or Path.home() / ".cache" / "dlcv")


def _digit_pools(seed: int) -> dict[str, list[tuple[np.ndarray, int]]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))
    n = len(order)
    bounds = {"train": order[: int(0.7 * n)], "val": order[int(0.7 * n) : int(0.85 * n)], "test": order[int(0.85 * n) :]}
    return {s: [(digits.images[i] / 16.0, int(digits.target[i])) for i in idx] for s, idx in bounds.items()}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A light, smooth random colour field with stripes (like tinted, textured paper), float32 in [0, 1]."""
    coarse = rng.uniform(0.0, 1.0, size=(4, 4, 3)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
    stripes = 0.06 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
    return np.clip(0.35 * field + 0.55 + stripes, 0, 1)


def _paste_digit(canvas, labels, digit, cls, rng, min_size, max_size):
    size = int(rng.integers(min_size, max_size + 1))
    glyph = cv2.resize(digit.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    mask = glyph > 0.35
    h, w = labels.shape
    for _ in range(20):  # prefer a spot that does not cover digits already placed
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        if np.count_nonzero(labels[top : top + size, left : left + size][mask]) <= 0.02 * mask.sum():
            break
    region = canvas[top : top + size, left : left + size]
    # Dark ink of a random hue on light paper: digits always stand out by brightness, while
    # colour and texture still vary, so the task needs shape, not a colour shortcut.
    colour = (rng.uniform(0.0, 0.35, 3)).astype(np.float32)
    alpha = np.clip(glyph * 1.5, 0, 1)[..., None]
    region[:] = alpha * colour + (1 - alpha) * region
    labels[top : top + size, left : left + size][mask] = cls


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = canvas + rng.normal(0, 0.03, canvas.shape).astype(np.float32)
    return (np.clip(noisy, 0, 1) * 255 + 0.5).astype(np.uint8)


def _write_segmentation(root: Path, pools, sizes: DemoSizes) -> None:
    for split, count in zip(SPLITS, sizes.seg):
        rng = np.random.default_rng([sizes.seed, 1, SPLITS.index(split)])
        pool = pools[split]
        for i in range(count):
            canvas = _background(rng, sizes.canvas)
            labels = np.zeros((sizes.canvas, sizes.canvas), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                digit, target = pool[int(rng.integers(len(pool)))]
                _paste_digit(canvas, labels, digit, target + 1, rng, 24, 38)
            write_png(root / split / f"{i:04d}.png", _finish(canvas, rng))
            write_png(root / f"{split}annot" / f"{i:04d}.png", labels)
    classes = {"class_names": list(SEG_CLASSES), "palette": demo_palette(len(SEG_CLASSES)), "ignore_index": 255}
    (root / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")


def _write_classification(root: Path, pools, sizes: DemoSizes) -> None:
    for split, count in zip(SPLITS, sizes.cls):
        rng = np.random.default_rng([sizes.seed, 2, SPLITS.index(split)])
        pool = pools[split]
        for i in range(count):
            canvas = _background(rng, sizes.canvas)
            digit, target = pool[int(rng.integers(len(pool)))]
            _paste_digit(canvas, np.zeros((sizes.canvas, sizes.canvas), np.uint8), digit, 1, rng, 36, 56)
            write_png(root / split / f"{target}_{i:04d}.png", _finish(canvas, rng))


def demo_root(task: str, cache_dir: Path | None = None, sizes: DemoSizes = DemoSizes()) -> Path:
    """The demo dataset folder for ``task`` ("segmentation"/"classification"), generated on first use."""
    get_task(task)  # refuses an unknown task, naming the valid ones
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = "seg" if get_task(task).per_pixel else "cls"
    counts = sizes.seg if tag == "seg" else sizes.cls
    root = base / f"demo-v{DEMO_VERSION}-{tag}-{sizes.canvas}px-{'-'.join(map(str, counts))}-s{sizes.seed}"
    if (root / ".complete").exists():
        return root
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=base))
    try:
        pools = _digit_pools(sizes.seed)
        (_write_segmentation if tag == "seg" else _write_classification)(tmp, pools, sizes)
        (tmp / ".complete").write_text("ok\n")
        if root.exists():  # an interrupted earlier attempt
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
