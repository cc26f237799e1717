"""Video and camera input for ``dlcv-infer``: ``dlcv-infer --engine MODEL clip.mp4 --out DIR [--overlay]``.

Three threads, so inference never waits on the decoder nor on the encoders:

- the *reader* (:class:`FrameReader`) decodes frames with OpenCV's ``VideoCapture`` (any file
  it opens, or a camera) and preprocesses them with the predictor's ``prepare``, into a queue
  of at most ``2 * batch_size`` frames;
- the main thread batches consecutive frames and runs :meth:`Predictor.infer
  <dlcv.runtime.predictor.Predictor.infer>` and ``postprocess`` (the path ``predict`` and the
  image runs take, so a frame's labels equal ``predict`` on the decoded frame);
- the *writer* (one thread, so frames stay in order) writes what a frame leaves behind, at most
  ``2 * batch_size`` frames behind the model.

Outputs, in ``DIR/<video stem>/`` (``<stem>`` is ``camera<N>`` for ``--camera N``):

- segmentation: ``frame_NNNNNN.png`` per frame, the class indices as lossless index PNGs (the
  same files ``<stem>.png`` are for images; ``--labels`` scores them against a folder of
  ``frame_NNNNNN.png`` masks); with ``--overlay`` ``overlay.mp4``, the colour mask blended over
  the frames at the source's frame rate;
- classification: one ``frames.csv`` row per frame holds the top-5 as predictions.csv does;
- ``frames.csv`` (``frame,timestamp_ms,...``: the decoder's timestamp of every frame, so
  variable-rate video keeps its timing) and ``metrics.json`` (counts, frames/s, the timing split,
  metrics with ``--labels``).

Every file is written atomically (frame PNGs by rename, ``frames.csv`` as a journal, the overlay
video under a hidden name renamed at the end). A video that ends before the frame count its
header promised, or whose frame cannot be decoded, stops the run with a message saying where;
the frames before are written and the run-level files committed, so they are all kept. A file
OpenCV cannot open (an unsupported codec, a container cut before its index) stops before any
output is written. ``--overwrite`` replaces a video's outputs: its old label frames are removed
once the video is open and the model loaded.
"""
from __future__ import annotations

import json
import queue
import re
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from .atomic import Journal, atomic_path, journal_path, remove_stale_temporaries, write_text_atomic
from .errors import DlcvError, DlcvUsageError
from .imageio import read_label_map, write_png
from .infer_files import csv_line, prediction_fields
from .jsonable import strict_json
from .label_scoring import SegmentationScorer
from .predictor import ClassificationResult, Predictor, SegmentationResult, load
from .preprocess import Geometry
from .task import get_task
from .version import dlcv_version

#: suffixes dlcv-infer takes as a video (anything else that is a file is refused as before)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ts")
FRAMES_CSV = "frames.csv"
OVERLAY_VIDEO = "overlay.mp4"
OVERLAY_FOURCC = "mp4v"
FRAME_NAME = "frame_{:06d}.png"
FRAME_PATTERN = re.compile(r"frame_\d{6,}\.png")
SEG_COLUMNS = ("frame", "timestamp_ms", "labels")
CLS_COLUMNS = ("frame", "timestamp_ms", "label", "class_name", "top5_labels", "top5_scores")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoConfig:
    """One video run. ``source``: a video file, or a camera index (``--camera N``). ``out``: the
    folder that gets ``<stem>/`` (None: beside the video, ``<stem>_pred``; the current folder's
    ``camera<N>_pred`` for a camera). ``max_frames``: stop after this many (a camera runs until
    interrupted otherwise). ``alpha``: the overlay's mask weight."""

    engine: Path | str
    source: Path | int
    out: Path | None = None
    labels: Path | None = None
    overlay: bool = False
    batch_size: int = 4
    device: str = "cpu"
    backend: str | None = None
    overwrite: bool = False
    progress: bool | None = None
    max_frames: int | None = None
    alpha: float = 0.5
    lean_runtime: Path | None = None

    def __post_init__(self) -> None:
        for name in ("source", "out", "labels", "lean_runtime"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (Path, int)):
                object.__setattr__(self, name, Path(value))
        if "://" not in str(self.engine) and not isinstance(self.engine, Path):
            object.__setattr__(self, "engine", Path(self.engine))
        if self.batch_size < 1:
            raise DlcvUsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_frames is not None and self.max_frames < 1:
            raise DlcvUsageError(f"--max-frames must be at least 1, got {self.max_frames}")
        if not 0.0 <= self.alpha <= 1.0:
            raise DlcvUsageError(f"the overlay alpha must be within 0..1, got {self.alpha}")

    @property
    def stem(self) -> str:
        return f"camera{self.source}" if isinstance(self.source, int) else Path(self.source).stem

    @property
    def out_dir(self) -> Path:
        """``DIR/<stem>``: where this video's files go."""
        if self.out is not None:
            return self.out / self.stem
        base = Path.cwd() if isinstance(self.source, int) else Path(self.source).resolve().parent
        return base / f"{self.stem}_pred" / self.stem

    def describe_source(self) -> str:
        return f"camera {self.source}" if isinstance(self.source, int) else str(self.source)


@dataclass
class Frame:
    """A decoded frame: its index, the decoder's timestamp, the BGR pixels, the model input."""

    index: int
    timestamp_ms: float
    image: np.ndarray
    tensor: np.ndarray
    geometry: Geometry


@dataclass
class _End:
    frames: int
    problem: str | None = None  # why decoding stopped before the end, or None


def open_capture(config: VideoConfig) -> tuple[cv2.VideoCapture, int | None, float]:
    """(the capture, the frame count the header promises or None, frames/s) or a clear error."""
    if isinstance(config.source, int):
        capture = cv2.VideoCapture(config.source)
        if not capture.isOpened():
            raise DlcvError(f"camera {config.source} cannot be opened (no such device, or it is busy); check --camera")
        fps = capture.get(cv2.CAP_PROP_FPS)
        return capture, None, fps if fps > 0 else 30.0
    path = Path(config.source)
    if not path.exists():
        raise DlcvError(f"{path}: video not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DlcvError(
            f"{path}: OpenCV cannot open this video (an unsupported codec or container, a file cut before its index, "
            f"or not a video); convert it, e.g. ffmpeg -i '{path.name}' -c:v libx264 '{path.stem}.h264.mp4'"
        )
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture, count if count > 0 else None, fps if fps > 0 else 30.0


class FrameReader(threading.Thread):
    """Decodes and preprocesses frames into a bounded queue; ends with an :class:`_End` (or the
    exception that stopped it). :meth:`stop` ends it early."""

    def __init__(self, capture: cv2.VideoCapture, prepare: Callable[[np.ndarray], tuple[np.ndarray, Geometry]],
                 expected: int | None, max_frames: int | None, depth: int):  # fmt: skip
        super().__init__(name="dlcv-video-reader", daemon=True)
        self.capture, self.prepare, self.expected, self.max_frames = capture, prepare, expected, max_frames
        self.frames: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.busy_s = 0.0

    def _put(self, item: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.frames.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        index = 0
        try:
            while self.max_frames is None or index < self.max_frames:
                start = time.perf_counter()
                ok, image = self.capture.read()
                if not ok or image is None:
                    break
                timestamp = float(self.capture.get(cv2.CAP_PROP_POS_MSEC))
                tensor, geometry = self.prepare(image)
                self.busy_s += time.perf_counter() - start
                if not self._put(Frame(index, timestamp, image, tensor, geometry)):
                    return
                index += 1
            problem = None
            if self.expected is not None and index < self.expected and (self.max_frames is None or index < self.max_frames):
                problem = (f"the video ended after {index} of the {self.expected} frames its header promises (a truncated "
                           f"file, or a frame that cannot be decoded)")  # fmt: skip
            self._put(_End(index, problem))
        except BaseException as exc:  # handed to the main thread, which raises it
            self._put(exc)
        finally:
            self.capture.release()

    def stop(self) -> None:
        self.stopped.set()


@dataclass
class _Writer:
    """What the writer thread owns: the journal, the overlay video, the scorer, its clock."""

    config: VideoConfig
    out_dir: Path
    fps: float
    journal: Journal
    scorer: SegmentationScorer | None
    overlay_tmp: Path | None = None
    video: cv2.VideoWriter | None = None
    written: int = 0
    busy_s: float = 0.0

    def write(self, frames: list[Frame], results: list) -> None:
        start = time.perf_counter()
        for frame, result in zip(frames, results):
            if isinstance(result, SegmentationResult):
                name = FRAME_NAME.format(frame.index)
                write_png(self.out_dir / name, result.labels, durable=False)
                if self.scorer is not None:
                    self._score(name, result.labels)
                if self.overlay_tmp is not None:
                    self._overlay(result.overlay(self.config.alpha, frame.image))
                self.journal.write(csv_line((str(frame.index), f"{frame.timestamp_ms:.3f}", name)))
            else:
                assert isinstance(result, ClassificationResult)
                self.journal.write(csv_line((str(frame.index), f"{frame.timestamp_ms:.3f}", *prediction_fields(result))))
            frame.image = frame.tensor = None  # type: ignore[assignment]
            self.written += 1
        self.journal.flush()
        self.busy_s += time.perf_counter() - start

    def _score(self, name: str, labels: np.ndarray) -> None:
        assert self.scorer is not None and self.config.labels is not None
        path = self.config.labels / name
        gt, error = None, None
        if path.exists():
            try:
                gt = read_label_map(path)
            except DlcvError as exc:
                error = str(exc)
        self.scorer.add(name, labels, gt, error, not path.exists())

    def _overlay(self, image: np.ndarray) -> None:
        if self.video is None:
            assert self.overlay_tmp is not None
            h, w = image.shape[:2]
            self.video = cv2.VideoWriter(str(self.overlay_tmp), cv2.VideoWriter.fourcc(*OVERLAY_FOURCC), self.fps, (w, h))
            if not self.video.isOpened():
                raise DlcvError(f"{self.out_dir / OVERLAY_VIDEO}: OpenCV cannot write an {OVERLAY_FOURCC} video here; drop --overlay")
        self.video.write(image)


@dataclass
class VideoSummary:
    """What a video run did, and the lines the CLI prints."""

    source: str
    out_dir: Path
    task: str
    frames: int
    fps: float
    timing: dict[str, float]
    outputs: dict[str, Path]
    metrics: dict[str, Any] | None
    backend: str
    problem: str | None = None

    def lines(self) -> list[str]:
        t = self.timing
        lines = [
            f"{self.source}: {self.frames} frames -> {self.out_dir} ({self.fps:.1f} frames/s end to end)",
            f"backend: {self.backend}",
            f"time per frame: decode+preprocess {t['decode_preprocess_ms_per_frame']:.1f} ms (reader thread), inference "
            f"{t['inference_ms_per_frame']:.1f} ms, postprocess {t['postprocess_ms_per_frame']:.1f} ms, write "
            f"{t['write_ms_per_frame']:.1f} ms (writer thread); the model waited {t['frame_wait_s']:.2f} s for frames",
        ]
        if self.metrics is not None:
            lines.append("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items() if isinstance(v, float)))
        return lines


def _check_outputs(config: VideoConfig, out_dir: Path) -> None:
    """Refuse this video's existing outputs unless ``overwrite``, and label frames written into the labels."""
    if config.labels is not None and out_dir.resolve() == config.labels.resolve():
        raise DlcvUsageError(f"--out puts the label frames into the --labels folder {config.labels}; they would replace the masks")
    if config.overwrite or not out_dir.is_dir():
        return
    for name in (FRAMES_CSV, "metrics.json", OVERLAY_VIDEO, FRAME_NAME.format(0)):
        for path in (out_dir / name, journal_path(out_dir / name)):
            if path.exists():
                raise DlcvError(f"{path} already exists; pass --overwrite to replace this video's outputs, or choose another --out")


def run_video(config: VideoConfig, *, log: Callable[[str], None] | None = None) -> VideoSummary:
    """Run the model over a video file or camera and write the outputs (see the module notes).

    Raises :class:`DlcvError` for a video that cannot be opened (nothing written) and, after
    writing and committing what was decoded, for one that ended early.
    """
    out_dir = config.out_dir
    if config.labels is not None and not config.labels.is_dir():
        raise DlcvUsageError(f"--labels {config.labels}: for a video, a folder of frame_NNNNNN.png masks")
    _check_outputs(config, out_dir)
    capture, expected, fps = open_capture(config)
    try:
        load_start = time.perf_counter()
        options: dict[str, Any] = {"lean_runtime": config.lean_runtime} if config.lean_runtime is not None else {}
        predictor = load(config.engine, backend=config.backend, device=config.device, batch_size=config.batch_size,
                         max_pixels=None, **options)  # fmt: skip
    except BaseException:
        capture.release()
        raise
    with predictor:
        model_load_s = time.perf_counter() - load_start
        task = predictor.metadata.task
        per_pixel = get_task(task).per_pixel
        if not per_pixel and (config.labels is not None or config.overlay):
            capture.release()
            raise DlcvUsageError("--labels and --overlay apply to segmentation videos; this model is a classifier")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out_dir)
            if config.overwrite:  # the old label frames go: none from a longer earlier run stays beside the new ones
                for path in out_dir.iterdir():
                    if FRAME_PATTERN.fullmatch(path.name) and path.is_file():
                        path.unlink()
            journal = Journal(out_dir / FRAMES_CSV)
        except OSError as exc:
            capture.release()
            raise DlcvError(f"--out {out_dir}: cannot write there ({exc.strerror or exc}); choose another folder") from None
        journal.write(csv_line(SEG_COLUMNS if per_pixel else CLS_COLUMNS))
        scorer = SegmentationScorer(predictor.artifact) if config.labels is not None else None
        writer = _Writer(config, out_dir, fps, journal, scorer)
        limits = [x for x in (expected, config.max_frames) if x is not None]
        total = min(limits) if limits else None
        show = config.progress if config.progress is not None else sys.stderr.isatty()
        bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=not show, dynamic_ncols=True, desc="dlcv-infer")
        reader = FrameReader(capture, lambda image: predictor.prepare(image), expected, config.max_frames,
                             depth=2 * config.batch_size)  # fmt: skip
        with atomic_path(out_dir / OVERLAY_VIDEO) if config.overlay else _no_path() as overlay_tmp:
            writer.overlay_tmp = overlay_tmp
            try:
                pipeline = _Pipeline(predictor, reader, writer, bar, config.batch_size,
                                     interrupt_ends=isinstance(config.source, int))  # fmt: skip
                wall_start = time.perf_counter()
                end = pipeline.run()
                wall_s = time.perf_counter() - wall_start
                if writer.video is not None:
                    writer.video.release()
                    writer.video = None
            except BaseException:
                reader.stop()
                if writer.video is not None:
                    writer.video.release()
                (journal.close if writer.written else journal.discard)()
                bar.close()
                raise
        bar.close()
        outputs = {"frames_csv": journal.commit()}
        if config.overlay and writer.written:
            outputs["overlay"] = out_dir / OVERLAY_VIDEO
        metrics = scorer.result()[0] if scorer is not None else None
        timing = pipeline.timing(wall_s, model_load_s, reader, writer)
        summary = VideoSummary(config.describe_source(), out_dir, task, writer.written, timing["frames_per_s"], timing,
                               outputs, metrics, predictor.metadata.backend_choice, end.problem)  # fmt: skip
        _write_metrics(config, summary, predictor, expected, fps, scorer)
    if end.problem is not None:
        raise DlcvError(f"{config.describe_source()}: {end.problem}; the {end.frames} frames before it are written in {out_dir}")
    return summary


class _no_path:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _Pipeline:
    """The main thread's loop: frames from the reader, batches through the model, results to the writer."""

    def __init__(self, predictor: Predictor, reader: FrameReader, writer: _Writer, bar: tqdm, batch_size: int,
                 interrupt_ends: bool = False):  # fmt: skip
        self.predictor, self.reader, self.writer, self.bar, self.batch_size = predictor, reader, writer, bar, batch_size
        self.interrupt_ends = interrupt_ends  # a camera: Ctrl-C is how it stops, and what was read is kept
        self.t = {"inference_s": 0.0, "postprocess_s": 0.0, "frame_wait_s": 0.0, "write_wait_s": 0.0}

    def run(self) -> _End:
        self.reader.start()
        pending: deque[Future] = deque()
        batch: list[Frame] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlcv-video-writer") as pool:
            try:
                try:
                    end = self._loop(pool, pending, batch)
                except KeyboardInterrupt:
                    if not self.interrupt_ends:
                        raise
                    self.reader.stop()
                    batch.clear()  # dropped: the batch Ctrl-C cut may be queued for writing already
                    end = _End(-1)
                if batch:
                    self._submit(pool, pending, batch[:])
                while pending:
                    self._drain(pending)
            except BaseException:
                self.reader.stop()
                for f in pending:
                    f.cancel()
                raise
        self.reader.join()
        return _End(self.writer.written) if end.frames < 0 else end

    def _loop(self, pool: ThreadPoolExecutor, pending: deque[Future], batch: list[Frame]) -> _End:
        """Frames into batches until the reader's end; ``batch`` keeps the frames not yet run."""
        while True:
            start = time.perf_counter()
            item = self.reader.frames.get()
            self.t["frame_wait_s"] += time.perf_counter() - start
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _End):
                return item
            if batch and batch[0].tensor.shape != item.tensor.shape:  # a camera that changed resolution
                self._submit(pool, pending, batch[:])
                batch.clear()
            batch.append(item)
            if len(batch) >= self.batch_size:
                self._submit(pool, pending, batch[:])
                batch.clear()

    def _submit(self, pool: ThreadPoolExecutor, pending: deque[Future], frames: list[Frame]) -> None:
        start = time.perf_counter()
        outputs = self.predictor.infer(np.stack([f.tensor for f in frames]))
        mid = time.perf_counter()
        results = self.predictor.postprocess(outputs, [f.geometry for f in frames])
        self.t["inference_s"] += mid - start
        self.t["postprocess_s"] += time.perf_counter() - mid
        pending.append(pool.submit(self.writer.write, frames, results))
        while len(pending) > 2:  # at most two batches waiting for the writer
            self._drain(pending)

    def _drain(self, pending: deque[Future]) -> None:
        start = time.perf_counter()
        future = pending.popleft()
        future.result()
        self.t["write_wait_s"] += time.perf_counter() - start
        self.bar.update(self.writer.written - self.bar.n)

    def timing(self, wall_s: float, model_load_s: float, reader: FrameReader, writer: _Writer) -> dict[str, float]:
        """The split (units in the key names): the reader's and writer's busy time are their own
        threads'; ``frame_wait_s`` is how long the model waited for decoded frames."""
        n = max(writer.written, 1)
        return {
            "model_load_s": model_load_s,
            "wall_s": wall_s,
            "frames_per_s": writer.written / wall_s if wall_s > 0 else float("nan"),
            "decode_preprocess_s": reader.busy_s,
            **self.t,
            "write_s": writer.busy_s,
            "decode_preprocess_ms_per_frame": 1000.0 * reader.busy_s / n,
            "inference_ms_per_frame": 1000.0 * self.t["inference_s"] / n,
            "postprocess_ms_per_frame": 1000.0 * self.t["postprocess_s"] / n,
            "write_ms_per_frame": 1000.0 * writer.busy_s / n,
            "batch_size": self.batch_size,
        }


def _write_metrics(config: VideoConfig, summary: VideoSummary, predictor: Predictor, expected: int | None, fps: float,
                   scorer: SegmentationScorer | None) -> None:  # fmt: skip
    record = {
        "dlcv_version": dlcv_version(),
        "task": summary.task,
        "engine": str(config.engine),
        "source": summary.source,
        "backend": predictor.name,
        "backend_choice": predictor.metadata.backend_choice,
        "device": config.device,
        "precision": predictor.metadata.precision,
        "labels": None if config.labels is None else str(config.labels),
        "counts": {"frames": summary.frames, "frames_in_header": expected},
        "source_fps": fps,
        "stopped_early": summary.problem,
        "timing": summary.timing,
        "metrics": summary.metrics,
        "label_report": scorer.result()[1] if scorer is not None else None,
    }
    path = summary.out_dir / "metrics.json"
    try:
        write_text_atomic(path, json.dumps(strict_json(record), indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise DlcvError(f"{path}: cannot write ({exc.strerror or exc}); free space or fix the permissions") from exc
    summary.outputs["metrics_json"] = path
