"""Streaming listings of image folders: sorted, optionally recursive, safe against symlink loops.

Rules (the README repeats them):
- Entries are visited in name order within each folder; nested folders only with ``recursive``.
- Hidden entries (names starting with ``.``) are left out, so a run's own temporary files
  never become inputs.
- Files whose suffix is not an image suffix (:data:`~dlcv.runtime.imageio.IMAGE_SUFFIXES`) are
  counted as skipped. Files with an image suffix are yielded even when their content is not
  an image; decoding them is the reader's job, and its failure is reported per file.
- Every folder is entered at most once, by its resolved path: a symlink back to an ancestor
  (a loop) or a second link to a folder already walked is noted in :class:`ListingStats` and
  not followed. Folders given in ``exclude`` (the output folder inside the input) are not
  entered either.
- An unreadable sub-folder is noted (``unreadable``) and the walk goes on; an unreadable or
  missing root is a :class:`~dlcv.runtime.errors.DlcvError`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from .errors import DlcvError
from .imageio import is_image_file


@dataclass(frozen=True)
class ImageFile:
    """An image found under a root: its path and its path relative to the root."""

    path: Path
    rel: PurePosixPath

    @property
    def name(self) -> str:
        """The relative path with ``/`` separators (the file name for a flat folder)."""
        return self.rel.as_posix()


@dataclass
class ListingStats:
    """What a walk passed over."""

    skipped: int = 0  # non-image and hidden files
    revisits: list[str] = field(default_factory=list)  # folders not re-entered (symlink loops, duplicate links)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def iter_image_files(
    root: str | os.PathLike,
    *,
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike] = (),
    stats: ListingStats | None = None,
) -> Iterator[ImageFile]:
    """Yield the image files under ``root`` one at a time (see the module notes for the rules)."""
    root = Path(root)
    if not root.exists():
        raise DlcvError(f"{root}: folder not found")
    if not root.is_dir():
        raise DlcvError(f"{root}: is a file; give the folder that holds the images")
    stats = stats if stats is not None else ListingStats()
    try:
        top = _entries(str(root))
    except OSError as exc:
        raise DlcvError(f"{root}: cannot list folder ({exc.strerror or exc})") from None
    visited = {os.path.realpath(root)}
    excluded = {os.path.realpath(p) for p in exclude}
    stack: list[tuple[PurePosixPath, Iterator[os.DirEntry]]] = [(PurePosixPath(), iter(top))]
    while stack:
        rel_dir, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            try:
                if not entry.is_dir():
                    stats.skipped += 1
            except OSError:
                stats.skipped += 1
            continue
        rel = rel_dir / entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks; False for a broken link
        except OSError:
            is_dir = False
        if not is_dir:
            if is_image_file(entry.name):
                yield ImageFile(Path(entry.path), rel)
            else:
                stats.skipped += 1
            continue
        if not recursive:
            continue
        real = os.path.realpath(entry.path)
        if real in excluded:
            continue
        if real in visited:
            stats.revisits.append(rel.as_posix())
            continue
        visited.add(real)
        try:
            children = _entries(entry.path)
        except OSError as exc:
            stats.unreadable.append((rel.as_posix(), f"cannot list folder ({exc.strerror or exc})"))
            continue
        stack.append((rel, iter(children)))


def has_subfolders(root: str | os.PathLike) -> bool:
    """True when ``root`` holds at least one non-hidden folder (for a ``--recursive`` hint)."""
    try:
        return any(e.is_dir() and not e.name.startswith(".") for e in _entries(str(root)))
    except OSError:
        return False
