"""``imagefolder``: ``split/class/image``, or Office-Home's ``domain/class/image`` split by file order."""
from __future__ import annotations

from pathlib import Path

from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import is_image_file

from .base import DETECT_SAMPLE, DatasetFormat, DatasetInfo, LayoutOptions, SPLITS, Sample
from .folders import first_entries, holds_images, images_in, split_dir, subfolders


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
        train = split_dir(root, "train")
        if train is None:
            return None
        entries = first_entries(train)
        has_classes = any(p.is_dir() and holds_images(p) for p in entries)
        return train if has_classes and not any(p.is_file() and is_image_file(p) for p in entries) else None

    def _domains(self, root: Path) -> list[Path]:
        """The domain folders of a ``<domain>/<class>/image`` layout ([] when it is not one)."""
        if split_dir(root, "train") is not None:
            return []
        domains = subfolders(root)
        if not domains:
            return []
        for domain in domains[:DETECT_SAMPLE]:
            entries = first_entries(domain)
            if any(p.is_file() and is_image_file(p) for p in entries):
                return []
            if not any(p.is_dir() and holds_images(p) for p in entries):
                return []
        return domains

    def detect(self, root: Path) -> bool:
        return self._split_layout(root) is not None or bool(self._domains(root))

    def _class_folders(self, root: Path) -> list[Path]:
        """Every class folder of every split or domain (class names are shared across them)."""
        parents = self._domains(root) or [d for s in SPLITS if (d := split_dir(root, s)) is not None]
        return [c for parent in parents for c in subfolders(parent)]

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
            folder = split_dir(root, split)
            if folder is None:
                return []
            return [Sample(p, index[c.name]) for c in subfolders(folder) for p in images_in(c)]
        chosen = self._chosen_domains(root, domains, options.domains)
        out = []
        for domain in chosen:
            for cls in subfolders(domain):
                for i, p in enumerate(images_in(cls)):
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
