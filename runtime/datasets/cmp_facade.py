"""``cmp-facade``: ``base/ [extended/]`` of ``cmp_bNNNN.jpg`` + ``.png``, the notebook's 500/30/76 split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcv.runtime.errors import DlcvError, DlcvUsageError, MissingDependencyError, first_line
from dlcv.runtime.imageio import read_label_map

from .base import DatasetFormat, DatasetInfo, LayoutOptions, SPLITS, Sample
from .folders import first_entries, pair_by_stem


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

    OpenCV expands palette PNGs to colours, so palette files are read with Pillow (imported
    here only: the rest of the runtime does without it) to keep their indices.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingDependencyError(
            f"{path}: CMP facade masks are palette PNGs, read with Pillow; install it (pip install pillow)"
        ) from None

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
        return base.is_dir() and any(p.name.startswith("cmp_") and p.suffix.lower() == ".jpg" for p in first_entries(base))

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
            out += pair_by_stem([p for p in files if p.suffix.lower() in (".jpg", ".jpeg")], labels, folder)
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
