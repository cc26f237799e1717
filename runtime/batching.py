"""The loading half of ``dlcv-infer``: worker-thread jobs and shape-grouped batches, both bounded.

:func:`load_job` runs in a worker thread: it decodes and preprocesses one image (and reads
its label map), or, for an image an earlier run finished, reads back the mask that run wrote.
:class:`ShapeBatcher` groups the loaded tensors by shape on the main thread; shapes never mix
in a batch, and the tensors waiting for partners are capped.

Memory bound: the main thread keeps at most ``2 * workers + batch_size`` jobs submitted
(:func:`window_size`) and the batcher at most ``2 * batch_size`` tensors, so at most
``2 * workers + 3 * batch_size`` images are held at once, each at most ``max_pixels`` pixels
(3 bytes per pixel decoded, 12 as float32 input), plus one batch's logits.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DlcvError, first_line
from .imageio import read_label_map
from .listing import ImageFile
from .predictor import prepare_image, window_size
from .preprocess import Geometry, PreprocessSpec

__all__ = ["LoadJob", "Loaded", "ShapeBatcher", "load_job", "window_size"]


@dataclass
class Loaded:
    """One image after its worker job: a tensor to run, a mask an earlier run wrote, or why it failed."""

    seq: int
    item: ImageFile
    tensor: np.ndarray | None = None
    geometry: Geometry | None = None
    previous_mask: np.ndarray | None = None
    error: str | None = None
    gt: np.ndarray | None = None
    gt_error: str | None = None
    gt_missing: bool = False
    load_s: float = 0.0


@dataclass(frozen=True)
class LoadJob:
    """What a worker needs besides the image: preprocessing, limits, where labels and earlier masks are."""

    spec: PreprocessSpec
    max_pixels: int | None
    mask_dir: Path | None = None
    debug: bool = False


def _unexpected(path: Path, exc: Exception, debug: bool) -> str:
    message = f"{path}: {type(exc).__name__}: {first_line(exc)}"
    if debug:
        message += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    return message


def _read_ground_truth(loaded: Loaded, job: LoadJob) -> None:
    assert job.mask_dir is not None
    item = loaded.item
    mask_path = job.mask_dir.joinpath(*item.rel.parent.parts, f"{item.rel.stem}.png")
    if not mask_path.exists():
        loaded.gt_missing = True
        return
    try:
        loaded.gt = read_label_map(mask_path, max_pixels=job.max_pixels)
    except DlcvError as exc:
        loaded.gt_error = str(exc)
    except Exception as exc:
        loaded.gt_error = _unexpected(mask_path, exc, job.debug)


def load_job(seq: int, item: ImageFile, job: LoadJob, previous_mask: Path | None = None, data: bytes | None = None) -> Loaded:
    """Worker-thread job: decode + preprocess the image (:func:`~dlcv.runtime.predictor.prepare_image`,
    the predictor's first step) (and read its label map for segmentation).

    With ``previous_mask`` (an image an earlier run finished, being scored on resume) that
    mask is read instead; when it cannot be read the image is processed again. ``data``: the
    image file's bytes when they were read already (a Ray actor gets them from Ray's reader).
    """
    start = time.perf_counter()
    loaded = Loaded(seq, item)
    if previous_mask is not None:
        try:
            loaded.previous_mask = read_label_map(previous_mask, max_pixels=job.max_pixels)
        except Exception:
            loaded.previous_mask = None  # unreadable: predict the image again
    if loaded.previous_mask is None:
        try:
            loaded.tensor, loaded.geometry = prepare_image(item.path, job.spec, max_pixels=job.max_pixels, data=data)
        except DlcvError as exc:
            loaded.error = str(exc)
        except Exception as exc:  # a per-file failure must never stop the run
            loaded.error = _unexpected(item.path, exc, job.debug)
    if loaded.error is None and job.mask_dir is not None:
        _read_ground_truth(loaded, job)
    loaded.load_s = time.perf_counter() - start
    return loaded


class ShapeBatcher:
    """Groups items by tensor shape into batches of ``batch_size``; shapes never mix.

    When more than ``max_pending`` items wait across groups, the oldest group is released
    as a partial batch, so memory stays bounded however many distinct shapes there are.
    """

    def __init__(self, batch_size: int, max_pending: int | None = None):
        self.batch_size = batch_size
        self.max_pending = max(batch_size, max_pending if max_pending is not None else 2 * batch_size)
        self.groups: dict[tuple[int, ...], list] = {}
        self.pending = 0

    def add(self, shape: tuple[int, ...], item: Any) -> list[list]:
        """Add an item; return the batches that are now ready (possibly none)."""
        group = self.groups.setdefault(shape, [])
        group.append(item)
        self.pending += 1
        ready = []
        if len(group) >= self.batch_size:
            ready.append(self._pop(shape))
        while self.pending > self.max_pending:
            ready.append(self._pop(next(iter(self.groups))))
        return ready

    def flush(self) -> list[list]:
        """The remaining partial groups, oldest first."""
        return [self._pop(shape) for shape in list(self.groups)]

    def _pop(self, shape: tuple[int, ...]) -> list:
        group = self.groups.pop(shape)
        self.pending -= len(group)
        return group
