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

Memory: sorting needs every name of a folder, so a folder's names (bytes, about 50 each; never
``os.DirEntry`` objects) are held while that folder and its sub-folders are walked; nothing
else accumulates, however many images the walk yields.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Sequence

from .errors import DlcvError
from .imageio import is_image_file


@dataclass(frozen=True)
class ImageFile:
    """An image found under a root: its path and its path relative to the root.

    ``siblings`` is the listing's sorted name list of the image's folder (shared, not copied)
    and ``index`` the image's place in it, so questions about the other files of the folder
    (:func:`earlier_sibling`) need no second listing.
    """

    path: Path
    rel: PurePosixPath
    siblings: Sequence[bytes] = field(default=(), compare=False, repr=False)
    index: int = field(default=-1, compare=False, repr=False)

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


def _names(folder: str, stats: ListingStats | None = None) -> list[bytes]:
    """The non-hidden entries of ``folder``, sorted; folders (links to folders too) end with ``/``.

    Names are kept as bytes: smaller than str, and a name decoded afresh for each yielded path
    dies with that path (pathlib interns path components, so str names held by this list
    would keep the interpreter's intern table growing with the folder). Hidden files are
    counted in ``stats.skipped``; hidden folders are left out silently.
    """
    names = []
    with os.scandir(os.fsencode(folder)) as it:
        for entry in it:
            try:
                is_dir = entry.is_dir()  # follows symlinks; False for a broken link
            except OSError:
                is_dir = False
            if entry.name.startswith(b"."):
                if not is_dir and stats is not None:
                    stats.skipped += 1
                continue
            names.append(entry.name + b"/" if is_dir else entry.name)
    names.sort(key=_sort_key)
    return names


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
        top = _names(str(root), stats)
    except OSError as exc:
        raise DlcvError(f"{root}: cannot list folder ({exc.strerror or exc})") from None
    visited = {os.path.realpath(root)}
    excluded = {os.path.realpath(p) for p in exclude}
    # (folder, its path relative to root, its sorted names, the positions still to visit)
    stack: list[tuple[Path, PurePosixPath, list[bytes], Iterator[int]]] = [
        (root, PurePosixPath(), top, iter(range(len(top))))
    ]
    while stack:
        folder, rel_dir, names, positions = stack[-1]
        i = next(positions, None)
        if i is None:
            stack.pop()
            continue
        raw = names[i]
        name = os.fsdecode(raw.rstrip(b"/"))
        if not raw.endswith(b"/"):
            if is_image_file(name):
                yield ImageFile(folder / name, rel_dir / name, names, i)
            else:
                stats.skipped += 1
            continue
        if not recursive:
            continue
        path, rel = folder / name, rel_dir / name
        real = os.path.realpath(path)
        if real in excluded:
            continue
        if real in visited:
            stats.revisits.append(rel.as_posix())
            continue
        visited.add(real)
        try:
            children = _names(str(path), stats)
        except OSError as exc:
            stats.unreadable.append((rel.as_posix(), f"cannot list folder ({exc.strerror or exc})"))
            continue
        stack.append((path, rel, children, iter(range(len(children)))))


def _sort_key(name: bytes) -> bytes:
    return name.rstrip(b"/")


def earlier_sibling(item: ImageFile, stem: str) -> str | None:
    """The first image file of ``item``'s folder listed before it whose stem is ``stem`` (or None).

    Names sharing the prefix ``<stem>.`` are contiguous in the sorted listing, so this is a
    binary search and a short scan, with no memory of its own.
    """
    names = item.siblings
    prefix = os.fsencode(stem) + b"."
    for i in range(bisect.bisect_left(names, prefix, key=_sort_key), min(item.index, len(names))):
        raw = names[i]
        if not raw.startswith(prefix):
            break
        name = os.fsdecode(raw)
        if not raw.endswith(b"/") and is_image_file(name) and name.rpartition(".")[0] == stem:
            return name
    return None


def has_subfolders(root: str | os.PathLike) -> bool:
    """True when ``root`` holds at least one non-hidden folder (for a ``--recursive`` hint)."""
    try:
        return any(n.endswith(b"/") for n in _names(os.fspath(root)))
    except OSError:
        return False
