"""What ``dlcv-infer`` writes, where, and how it never loses or clobbers a file.

Files in the output folder:

- segmentation: ``<stem>.png`` (class indices at the original image size) and
  ``<stem>_color.png`` per image, folders mirroring the input's with ``recursive``;
- classification: ``predictions.csv`` (:data:`PREDICTION_COLUMNS`);
- always: ``errors.csv`` (``file,reason``) and ``metrics.json``.

Rules:

- Every file is written atomically (:mod:`dlcv.runtime.atomic`): per-image files through a
  hidden temporary name and a rename; ``predictions.csv`` and ``errors.csv`` as hidden journals
  (``.predictions.csv.partial``) appended in listing order while the run goes and renamed when
  it ends. A killed run leaves complete files, hidden temporaries (removed by the next run in
  that folder) and the journals (read back by ``--skip-existing``). Per-image PNGs are not
  synced to disk one by one (that costs milliseconds per file); the run-level files are.
  ``--skip-existing`` keeps an image only when its PNGs are complete (they end with their IEND
  chunk), so even a file emptied by an operating-system crash is redone.
- :class:`OutputPolicy`: without ``overwrite`` or ``skip_existing`` an existing output (or a
  journal left by a killed run) stops the run before any work. With ``skip_existing`` an image
  whose outputs all exist (segmentation: both PNGs; classification: its row in the earlier
  predictions) is not run again, and the run-level files are rewritten for the whole folder.
- :func:`output_collision`: two images whose outputs share a name (``a.jpg`` and ``a.png``,
  or ``a.png`` and ``a_color.png``) never overwrite each other: the first in listing order
  wins, the other fails with a reason. It is decided from the folder's names, so no
  per-image state is kept.
- :class:`ResultLog` writes rows in listing order (name order within a folder) through a
  reorder buffer bounded by the images in flight.
- Resuming a classification run holds the earlier run's rows in memory (about 100 bytes each)
  until their images come up in the listing; nothing else grows with the number of images.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .atomic import Journal, journal_path, read_journal_text
from .errors import DlcvError
from .imageio import is_complete_png
from .listing import ImageFile, earlier_sibling

if TYPE_CHECKING:
    from .predictor import ClassificationResult
from .task import get_task

PREDICTIONS_CSV = "predictions.csv"
METRICS_JSON = "metrics.json"
ERRORS_CSV = "errors.csv"
COLOR_SUFFIX = "_color"
PREDICTION_COLUMNS = ("image_name", "label", "class_name", "top5_labels", "top5_scores")
ERROR_COLUMNS = ("file", "reason")


def segmentation_output_names(stem: str) -> tuple[str, str]:
    """The file names an image with this stem writes: ``<stem>.png``, ``<stem>_color.png``."""
    return f"{stem}.png", f"{stem}{COLOR_SUFFIX}.png"


def segmentation_output_paths(out_dir: Path, item: ImageFile) -> tuple[Path, Path]:
    """``<out>/<rel folder>/<stem>.png`` and ``<stem>_color.png`` for an image."""
    folder = out_dir.joinpath(*item.rel.parent.parts)
    mask, colour = segmentation_output_names(item.rel.stem)
    return folder / mask, folder / colour


def run_level_outputs(task: str) -> tuple[str, ...]:
    if not get_task(task).per_pixel:
        return (PREDICTIONS_CSV, METRICS_JSON, ERRORS_CSV)
    return (METRICS_JSON, ERRORS_CSV)


def csv_line(row: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


def prediction_fields(result: "ClassificationResult") -> tuple[str, str, str, str]:
    """A classification result as predictions.csv writes it after the image's name: label,
    class name, top-5 indices and probabilities (``;``-separated, six decimals)."""
    return (
        str(result.label),
        result.name,
        ";".join(str(c.index) for c in result.topk),
        ";".join(f"{c.probability:.6f}" for c in result.topk),
    )


def exists_error(path: Path) -> DlcvError:
    return DlcvError(
        f"{path} already exists; pass --skip-existing to resume an interrupted run (finished images are kept), "
        "--overwrite to replace the outputs, or choose another --out"
    )


# --------------------------------------------------------------------------- collisions


def output_collision(item: ImageFile) -> str | None:
    """Why a segmentation image may not write its outputs (they are another image's), or None.

    The image with stem ``s`` writes ``s.png`` and ``s_color.png``. It is refused when an image
    listed before it in the same folder has the same stem (``a.jpg`` before ``a.png``), or when
    its stem is an earlier image's stem plus ``_color`` (``a_color.png`` after ``a.png``, whose
    colour mask is ``a_color.png``). Name order puts ``a.*`` before ``a_color.*``, so the
    reverse never arises. Decided from the listing's names alone: no per-image state.
    """
    stem = item.rel.stem
    mask, _ = segmentation_output_names(stem)
    winner = earlier_sibling(item, stem)
    if winner is None and stem.endswith(COLOR_SUFFIX):
        winner = earlier_sibling(item, stem[: -len(COLOR_SUFFIX)])
    if winner is None:
        return None
    return f"its output {mask} would overwrite that of {winner}; rename one of them"


# --------------------------------------------------------------------------- earlier predictions


@dataclass(frozen=True)
class PreviousPrediction:
    """A predictions.csv row written by an earlier run: the text to copy, and the ranking to score."""

    line: str
    ranked: tuple[int, ...]


def read_previous_predictions(out_dir: Path, num_classes: int) -> dict[str, PreviousPrediction]:
    """Rows of an earlier run's predictions.csv and of a killed run's journal, by image name.

    Rows that do not parse (a line cut by the kill, a hand edit, another model's classes) are
    left out, so their images are predicted again.
    """
    rows: dict[str, PreviousPrediction] = {}
    for source in (out_dir / PREDICTIONS_CSV, journal_path(out_dir / PREDICTIONS_CSV)):
        text = read_journal_text(source)
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            for row in reader:
                parsed = _parse_prediction(row, num_classes)
                if parsed is not None:
                    rows[row[0]] = parsed
        except csv.Error:
            continue
    return rows


def _parse_prediction(row: list[str], num_classes: int) -> PreviousPrediction | None:
    if len(row) != len(PREDICTION_COLUMNS) or not row[0] or tuple(row) == PREDICTION_COLUMNS:
        return None
    try:
        ranked = tuple(int(v) for v in row[3].split(";"))
        scores = [float(v) for v in row[4].split(";")]
        label = int(row[1])
    except ValueError:
        return None
    if (
        not ranked
        or len(scores) != len(ranked)
        or len(set(ranked)) != len(ranked)
        or ranked[0] != label
        or not all(0 <= i < num_classes for i in ranked)
    ):
        return None
    return PreviousPrediction(csv_line(row), ranked)


# --------------------------------------------------------------------------- the policy


class OutputPolicy:
    """Decides, per image and for the run, what may be written (see the module notes)."""

    def __init__(self, task: str, out_dir: Path, *, overwrite: bool, skip_existing: bool, num_classes: int):
        self.task = task
        self.out_dir = out_dir
        self.overwrite = overwrite
        self.skip_existing = skip_existing
        self.previous: dict[str, PreviousPrediction] = {}
        if skip_existing and not get_task(task).per_pixel and out_dir.is_dir():
            self.previous = read_previous_predictions(out_dir, num_classes)

    def check_run(self) -> None:
        """Refuse existing run-level outputs (and journals of a killed run) unless allowed."""
        if self.overwrite or self.skip_existing or not self.out_dir.is_dir():
            return
        for name in run_level_outputs(self.task):
            for path in (self.out_dir / name, journal_path(self.out_dir / name)):
                if path.exists():
                    raise exists_error(path)

    def check_image(self, item: ImageFile) -> None:
        """Refuse an image's existing outputs unless allowed (called before any work)."""
        if self.overwrite or self.skip_existing or not get_task(self.task).per_pixel:
            return
        for p in segmentation_output_paths(self.out_dir, item):
            if p.exists() or p.is_symlink():
                raise exists_error(p)

    def done_before(self, item: ImageFile) -> bool:
        """With ``skip_existing``: True when all of the image's outputs exist, complete, from an earlier run."""
        if not self.skip_existing:
            return False
        if not get_task(self.task).per_pixel:
            return item.name in self.previous
        return all(is_complete_png(p) for p in segmentation_output_paths(self.out_dir, item))


# --------------------------------------------------------------------------- ordered results


class ResultLog:
    """Writes each image's outcome (a prediction row, an error) in listing order.

    Outcomes arrive by sequence number in any order; they wait in a buffer until every
    earlier one has arrived, so the buffer holds at most the images in flight. Rows go to
    journals that :meth:`commit` renames to ``predictions.csv`` and ``errors.csv``.
    """

    def __init__(self, out_dir: Path, with_predictions: bool, keep_errors: int = 1000):
        self.errors_journal = Journal(out_dir / ERRORS_CSV)
        self.errors_journal.write(csv_line(ERROR_COLUMNS))
        self.predictions_journal = Journal(out_dir / PREDICTIONS_CSV) if with_predictions else None
        if self.predictions_journal is not None:
            self.predictions_journal.write(csv_line(PREDICTION_COLUMNS))
        self.waiting: dict[int, tuple[str | None, tuple[str, str] | None]] = {}
        self.next_seq = 0
        self.failed = 0
        self.errors: list[tuple[str, str]] = []  # the first ``keep_errors`` failures, for the summary
        self.keep_errors = keep_errors

    def record(self, seq: int, *, line: str | None = None, error: tuple[str, str] | None = None) -> None:
        """The outcome of image ``seq``: a predictions.csv line, an error (file, reason), or neither."""
        if error is not None:
            self.failed += 1
            if len(self.errors) < self.keep_errors:
                self.errors.append(error)
        self.waiting[seq] = (line, error)
        while self.next_seq in self.waiting:
            line, error = self.waiting.pop(self.next_seq)
            if line is not None and self.predictions_journal is not None:
                self.predictions_journal.write(line)
            if error is not None:
                self.errors_journal.write(csv_line(error))
            self.next_seq += 1

    @property
    def backlog(self) -> int:
        """Outcomes waiting for an earlier image to finish."""
        return len(self.waiting)

    def add_error(self, file: str, reason: str) -> None:
        """A failure outside the image sequence (an unreadable folder), written at the end."""
        self.failed += 1
        if len(self.errors) < self.keep_errors:
            self.errors.append((file, reason))
        self.errors_journal.write(csv_line((file, reason)))

    def flush(self) -> None:
        self.errors_journal.flush()
        if self.predictions_journal is not None:
            self.predictions_journal.flush()

    def commit(self) -> dict[str, Path]:
        """Rename the journals to their final names (every outcome must have arrived)."""
        if self.waiting:
            raise RuntimeError(f"outcomes of {len(self.waiting)} images arrived out of sequence")
        outputs = {"errors_csv": self.errors_journal.commit()}
        if self.predictions_journal is not None:
            outputs["predictions_csv"] = self.predictions_journal.commit()
        return outputs

    def close(self) -> None:
        """Close without committing (a run that stops leaves the journals for --skip-existing)."""
        self.errors_journal.close()
        if self.predictions_journal is not None:
            self.predictions_journal.close()

    def discard(self) -> None:
        """Close and delete the journals (a run that stopped before any image was done)."""
        self.errors_journal.discard()
        if self.predictions_journal is not None:
            self.predictions_journal.discard()
