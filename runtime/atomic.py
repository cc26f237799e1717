"""Atomic file writes: a temporary name in the same folder, then a rename.

A run killed half-way leaves either the old file or the new one, never half of one. The
temporary names are hidden (``.<name>.<random>.tmp<suffix>``), so listings that skip hidden
entries never take them for outputs or inputs, and :func:`remove_stale_temporaries` can clear
the ones a killed process left behind.

:class:`Journal` is the streaming variant: lines appended to a hidden ``.<name>.partial`` file
as a run goes, renamed to ``<name>`` when the run completes. A killed run leaves the journal,
whose complete lines a resumed run can read back (:func:`read_journal_text`).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^./]*)?$")  # what atomic_path creates
JOURNAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The caller writes the file at the yielded path by any means (cv2, torch.save, onnx.save).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from other users
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically.

    ``durable`` also syncs the data to disk before the rename, so the file survives an
    operating-system crash or power loss; without it the write is still atomic for the
    processes that read it (a killed writer never leaves half a file) and much cheaper when
    many small files are written.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def is_temporary(name: str) -> bool:
    """True for a file name :func:`atomic_path` creates (a hidden ``.<name>.<random>.tmp<suffix>``)."""
    return bool(_TEMPORARY.match(name))


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (and its sub-folders with
    ``recursive``; links are not followed, entries are streamed); returns how many. Only names
    :func:`is_temporary` recognises are touched."""
    removed = 0
    folders = [os.fspath(folder)]
    while folders:
        current = folders.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            folders.append(entry.path)
                    elif is_temporary(entry.name):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            removed += 1
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return removed


def journal_path(path: str | os.PathLike) -> Path:
    """``<folder>/<name>`` -> ``<folder>/.<name>.partial``, where a :class:`Journal` collects lines."""
    target = Path(path)
    return target.with_name(f".{target.name}{JOURNAL_SUFFIX}")


class Journal:
    """Lines appended to ``.<name>.partial`` while a run goes; :meth:`commit` renames it to ``<name>``.

    Opening truncates an existing journal (read it first with :func:`read_journal_text` to
    resume). :meth:`flush` hands the written lines to the operating system, so they survive the
    process being killed; :meth:`commit` also syncs them to disk before the rename.
    """

    def __init__(self, path: str | os.PathLike):
        self.target = Path(path)
        self.path = journal_path(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8", newline="")

    def write(self, text: str) -> None:
        assert self._file is not None, "journal already closed"
        self._file.write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def commit(self) -> Path:
        """Sync, close and rename the journal to its final name; returns that path."""
        assert self._file is not None, "journal already closed"
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.path, self.target)
        return self.target

    def close(self) -> None:
        """Close without committing (the journal stays for a later resume)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Close and delete the journal (nothing in it is worth resuming)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_journal_text(path: str | os.PathLike) -> str:
    """A journal's text up to its last newline (a last line cut short by a kill is dropped).

    Returns "" when the file does not exist. Bytes that are not UTF-8 become U+FFFD.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return ""
    return data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
