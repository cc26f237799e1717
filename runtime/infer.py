"""Batch inference over an image folder with a deployed model: the library behind ``dlcv-infer``.

``run_inference(InferConfig(engine=..., images=...))`` opens the model as a
:class:`~dlcv.runtime.predictor.Predictor` (:func:`~dlcv.runtime.predictor.load`) on the backend
:func:`~dlcv.runtime.backends.choose_backend` picks (the one ``backend`` names, else a measured
preference for the file's precision where that backend is installed, else the suffix's
default; the summary and metrics.json say which and why) and takes everything else (task,
classes, palette, preprocessing, ignore index, excluded classes) from the artifact's metadata.

The run, one job per module:

- :mod:`.listing` streams the folder (sorted, optionally recursive, symlink loops cut);
- :mod:`.infer_files` decides what may be written (existing outputs, ``--skip-existing``,
  colliding names) and writes the run-level files in listing order, atomically;
- :mod:`.batching` loads images in worker threads through a bounded window and groups them by
  shape (a batch never mixes sizes);
- :mod:`.label_scoring` scores predictions against ground truth by documented rules (the
  classification ground truth is read by :mod:`.datasets.ground_truth`);
- :class:`~dlcv.runtime.predictor.Predictor` runs each batch: its ``prepare`` (in the loaders),
  ``infer`` and ``postprocess`` are the steps ``Predictor.predict`` runs, so a mask written
  here equals ``predict``'s for the same image;
- this module drives them: it runs the batches, writes the per-image outputs and
  ``metrics.json``, and returns an :class:`~dlcv.runtime.summary.InferSummary`.
  :mod:`.ray_infer` runs the same :class:`InferRun` in Ray actors and shares :func:`open_outputs`
  (:class:`RunOutputs`), so both write the same files.

Memory stays flat over any number of images: jobs in flight and tensors waiting for a batch
are bounded (:mod:`.batching`), outcomes are written as they complete, latency percentiles
come from a fixed-size sample, and label-problem lists keep their first 1000 names.

Per-file robustness: an image that cannot be read (empty, truncated, not an image, too
large), whose outputs would collide with another image's, that the model refuses (a size a
static model or an engine profile does not take), or whose outputs cannot be written is
listed in ``errors.csv`` and the run goes on. A model whose answer to the first batch is
wrong for its metadata (e.g. a different class count) stops the run before anything is
written. A backend that is lost during the run (:class:`~dlcv.runtime.errors.BackendLostError`:
a served model whose server stays unreachable after bounded retries) stops it too: what was
written stays, the journals stay for ``--skip-existing``, and no metrics.json is written. :attr:`InferSummary.exit_code` is 0 when at least one image has its outputs, 1 when
none does or (``strict``) when any failed.

Resuming (``skip_existing``): images whose outputs all exist are not run again. With labels
their metrics still count: a segmentation mask written earlier is read back and scored (masks
are lossless and written atomically, so it is exactly what that run predicted); a
classification image is scored from the top-5 classes its predictions.csv row records, which
decide top-1 and top-5 exactly.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from .atomic import remove_stale_temporaries, write_text_atomic
from .backends import get_backend, parse_device
from .batching import Loaded, LoadJob, ShapeBatcher, load_job, window_size
from .datasets.ground_truth import ClassificationLabels
from .errors import BackendLostError, DlcvError, DlcvUsageError, first_line
from .imageio import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, write_png
from .jsonable import strict_json
from .listing import ImageFile, ListingStats, has_subfolders, iter_image_files
from .metadata import ArtifactMetadata
from .infer_files import (
    METRICS_JSON,
    OutputPolicy,
    ResultLog,
    csv_line,
    output_collision,
    prediction_fields,
    segmentation_output_paths,
)
from .precision import RUN_PRECISION_NAMES
from .predictor import ClassificationResult, Predictor, SegmentationResult, load
from .label_scoring import ClassificationScorer, SegmentationScorer, ranking_scores
from .summary import InferSummary, LatencyStats
from .task import get_task
from .version import dlcv_version

logger = logging.getLogger("dlcv.runtime.infer")


@dataclass(frozen=True)
class InferConfig:
    """One ``dlcv-infer`` run. Paths may be given as strings; they are stored as :class:`Path`.

    ``backend``: the backend's registry name (None: the default for the engine's suffix).
    ``device``: one of the devices the registered backends declare (``cuda:N`` for a GPU).
    ``out``: output folder (None: ``<images>_pred`` beside the images folder).
    ``labels``: segmentation: a folder of index-PNG masks named like the images
    (``<stem>.png``, same sub-folders); classification: a CSV ``image_name,label`` or a folder
    of ``<label>_<index>.<ext>`` files. ``overwrite`` replaces existing outputs;
    ``skip_existing`` resumes (the two exclude each other). ``progress``: None shows the bar
    only on a terminal. ``debug`` adds tracebacks to unexpected per-file failures.
    """

    engine: Path | str  # a model file, or a URL such as triton://host:8000/model
    images: Path
    out: Path | None = None
    labels: Path | None = None
    batch_size: int = 4
    device: str = "cpu"
    backend: str | None = None
    workers: int = 2
    recursive: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    strict: bool = False
    progress: bool | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    debug: bool = False
    lean_runtime: Path | None = None  # TensorRT engines: the building version's lean runtime library
    trt_max_size: tuple[int, int] | None = None  # --device tensorrt on ONNX: widen the provider's profile to (H, W)
    precision: str | None = None  # a run precision (bf16: the FP32 file in BF16); None: the file's own

    def __post_init__(self) -> None:
        for name in ("engine", "images", "out", "labels", "lean_runtime"):
            value = getattr(self, name)
            if name == "engine" and "://" in str(value):
                object.__setattr__(self, name, str(value))  # a served model (triton://host:port/name) stays a URL
            elif value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        problems = []
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 1:
            problems.append(f"--workers must be at least 1, got {self.workers}")
        try:
            object.__setattr__(self, "device", parse_device(self.device))
        except DlcvUsageError as e:
            problems.append(str(e))
        if self.max_pixels is not None and self.max_pixels < 1:
            problems.append(f"--max-pixels must be positive, got {self.max_pixels}")
        engine_suffixes = get_backend("tensorrt").suffixes
        if self.lean_runtime is not None and Path(str(self.engine)).suffix.lower() not in engine_suffixes:
            problems.append(f"--lean-runtime applies to TensorRT engines ({', '.join(engine_suffixes)}), not {self.engine}")
        if self.trt_max_size is not None and (not str(self.device).startswith("tensorrt") or str(self.engine).endswith(engine_suffixes)):
            problems.append(f"--trt-max-size widens onnxruntime's TensorRT profile: it needs an ONNX model and --device tensorrt, "
                            f"got {self.engine} on {self.device} (an engine's profile is fixed when it is built: dlcv-export --trt --max-shape)")  # fmt: skip
        if self.precision is not None and self.precision not in RUN_PRECISION_NAMES:
            problems.append(f"--precision takes {', '.join(RUN_PRECISION_NAMES)} (a file's own precision needs no option), "
                            f"not {self.precision!r}")  # fmt: skip
        if self.overwrite and self.skip_existing:
            problems.append("--overwrite and --skip-existing exclude each other: replace all outputs, or keep the finished ones")
        if problems:
            raise DlcvUsageError("; ".join(problems))
        if self.backend is not None:
            get_backend(self.backend)  # an unknown name is answered with the registered ones

    @property
    def out_dir(self) -> Path:
        if self.out is not None:
            return self.out
        images = Path(os.path.abspath(self.images))
        return images.parent / f"{images.name}_pred"


# --------------------------------------------------------------------------- the run


class InferRun:
    """The state of one run: counters, timers, scorer, outputs; the main thread drives it."""

    def __init__(self, config: InferConfig, predictor: Predictor, out_dir: Path, policy: OutputPolicy,
                 log: ResultLog, scorer: SegmentationScorer | ClassificationScorer | None, bar: tqdm,
                 warn: Callable[[str], None]):
        self.config = config
        self.predictor = predictor  # the Ray driver passes a stand-in with ``artifact`` only: it never runs the model
        self.metadata = predictor.artifact
        self.task = self.metadata.task
        self.out_dir = out_dir
        self.policy = policy
        self.log = log
        self.scorer = scorer
        self.bar = bar
        self.warn = warn
        self.batcher = ShapeBatcher(config.batch_size)
        self.processed = 0
        self.kept = 0
        self.answered = False  # has the model answered a batch yet?
        self.latency = LatencyStats()
        self.t = {"decode_preprocess_s": 0.0, "inference_s": 0.0, "postprocess_write_s": 0.0, "load_wait_s": 0.0}

    # -- outcomes

    def fail(self, seq: int, name: str, reason: str) -> None:
        """Record a failed image; errors.csv gets the reason's first line, the warning all of it
        (a traceback with ``debug``)."""
        self.log.record(seq, error=(name, reason.splitlines()[0]))
        self.warn(f"warning: skipped {name}: {reason}")
        self.bar.update(1)

    def _keep(self, seq: int, line: str | None = None) -> None:
        self.log.record(seq, line=line)
        self.kept += 1
        self.bar.update(1)

    def _done(self, b: Loaded, service_s: float, line: str | None = None) -> None:
        self.log.record(b.seq, line=line)
        self.processed += 1
        self.latency.add(b.load_s + service_s)
        self.bar.update(1)

    # -- admission: what to do with a listed image

    def admit(self, seq: int, item: ImageFile) -> tuple[bool, Path | None]:
        """(submit a load job?, the earlier mask to score instead of predicting)."""
        if get_task(self.task).per_pixel:
            reason = output_collision(item)
            if reason is not None:
                self.fail(seq, item.name, reason)
                return False, None
        if not self.policy.done_before(item):
            return True, None
        if not get_task(self.task).per_pixel:
            previous = self.policy.previous.pop(item.name)
            if isinstance(self.scorer, ClassificationScorer):
                self.scorer.add(item, ranking_scores(previous.ranked, self.metadata.num_classes))
            self._keep(seq, previous.line)
            return False, None
        if self.scorer is None:
            self._keep(seq)
            return False, None
        return True, segmentation_output_paths(self.out_dir, item)[0]

    # -- loaded images

    def consume(self, loaded: Loaded) -> None:
        self.t["decode_preprocess_s"] += loaded.load_s
        if loaded.error is not None:
            self.fail(loaded.seq, loaded.item.name, loaded.error)
            return
        if loaded.previous_mask is not None:
            assert isinstance(self.scorer, SegmentationScorer)
            self.scorer.add(loaded.item.name, loaded.previous_mask, loaded.gt, loaded.gt_error, loaded.gt_missing)
            self._keep(loaded.seq)
            return
        assert loaded.tensor is not None
        for batch in self.batcher.add(loaded.tensor.shape, loaded):
            self.run_batch(batch)

    def flush(self) -> None:
        for batch in self.batcher.flush():
            self.run_batch(batch)

    def run_batch(self, batch: list[Loaded]) -> None:
        stacked = np.stack([b.tensor for b in batch])
        try:
            self.predictor.check(stacked)
        except DlcvError as exc:  # a size this (static) model or engine profile does not take
            for b in batch:
                self.fail(b.seq, b.item.name, f"inference failed: the model refuses this input ({first_line(exc)})")
            return
        start = time.perf_counter()
        try:
            outputs = self.predictor.infer(stacked)
        except BackendLostError as exc:  # the run's failure, not these images': stop, keep what is written
            raise BackendLostError(
                f"{first_line(exc)}; the run stopped after {self.processed} images (from {batch[0].item.name} on, nothing "
                "was run); the outputs written so far are kept and no metrics.json was written: bring the model back and "
                "resume with --skip-existing"
            ) from exc
        except DlcvError as exc:
            if not self.answered:
                raise DlcvError(
                    f"{first_line(exc)}; stopped at the first batch ({batch[0].item.name}) before any output was "
                    "written: the model cannot run as its metadata describes it — re-export it with dlcv-export "
                    "(or rebuild the engine) and run again"
                ) from exc
            self._fail_batch(batch, first_line(exc))
            return
        except Exception as exc:  # a backend failure (e.g. out of memory) fails this batch's images, not the run
            self._fail_batch(batch, f"{type(exc).__name__}: {first_line(exc)}")
            return
        self.answered = True
        infer_s = time.perf_counter() - start
        self.t["inference_s"] += infer_s
        share = infer_s / len(batch)
        if get_task(self.task).per_pixel:
            self._segmentation(batch, outputs, share)
        else:
            self._classification(batch, outputs, share)
        self.log.flush()

    def _fail_batch(self, batch: list[Loaded], message: str) -> None:
        for b in batch:
            self.fail(b.seq, b.item.name, f"inference failed ({message})")

    def _segmentation(self, batch: list[Loaded], outputs: dict[str, np.ndarray], share: float) -> None:
        start = time.perf_counter()
        # argmax of logits (or an in-graph head's labels), mapped back to each image's size
        results = self.predictor.postprocess(outputs, [b.geometry for b in batch], rgb=True)
        argmax_share = (time.perf_counter() - start) / len(batch)
        self.t["postprocess_write_s"] += argmax_share * len(batch)
        for b, result in zip(batch, results):
            assert isinstance(result, SegmentationResult)
            t0 = time.perf_counter()
            b.tensor = None
            try:
                mask = result.labels
                mask_path, color_path = segmentation_output_paths(self.out_dir, b.item)
                write_png(color_path, result.color(), durable=False)
                write_png(mask_path, mask, durable=False)
            except (DlcvError, OSError) as exc:
                self.fail(b.seq, b.item.name, f"cannot write its outputs ({exc})")
                continue
            if isinstance(self.scorer, SegmentationScorer):
                self.scorer.add(b.item.name, mask, b.gt, b.gt_error, b.gt_missing)
            b.gt = None
            post_s = time.perf_counter() - t0
            self.t["postprocess_write_s"] += post_s
            self._done(b, share + argmax_share + post_s)

    def _classification(self, batch: list[Loaded], outputs: dict[str, np.ndarray], share: float) -> None:
        start = time.perf_counter()
        results = self.predictor.postprocess(outputs, [b.geometry for b in batch])
        lines = []
        for b, result in zip(batch, results):
            assert isinstance(result, ClassificationResult)
            b.tensor = None
            lines.append(prediction_line(b.item.name, result))
            if isinstance(self.scorer, ClassificationScorer):
                # a TopK head's ranking decides top-1 and top-5 exactly, as a resumed run's rows do
                ranked = [c.index for c in result.topk]
                scores = result.logits if result.logits is not None else ranking_scores(ranked, self.metadata.num_classes)
                self.scorer.add(b.item, scores)
        post_share = (time.perf_counter() - start) / len(batch)
        self.t["postprocess_write_s"] += post_share * len(batch)
        for b, line in zip(batch, lines):
            self._done(b, share + post_share, line)

    def timing(self, wall_s: float, model_load_s: float) -> dict[str, float]:
        """The timing split (units in the key names).

        ``decode_preprocess_s`` is summed over the worker threads (it includes reading label
        maps), ``inference_s`` and ``postprocess_write_s`` are main-thread time, ``load_wait_s``
        is how long the main thread waited for workers, ``wall_s`` runs from the first image
        to the last output. Per-image latency (mean/p50/p95) is a service time: the image's own
        decode+preprocess, its share of its batch's inference, and its postprocess+write.
        """
        n = max(self.processed, 1)
        stats = {
            "model_load_s": model_load_s,
            **self.t,
            "wall_s": wall_s,
            "throughput_img_s": self.processed / wall_s if wall_s > 0 else float("nan"),
            "decode_preprocess_ms_per_image": 1000.0 * self.t["decode_preprocess_s"] / n,
            "inference_ms_per_image": 1000.0 * self.t["inference_s"] / n,
            "postprocess_write_ms_per_image": 1000.0 * self.t["postprocess_write_s"] / n,
            **self.latency.milliseconds(),
            "batch_size": self.config.batch_size,
            "workers": self.config.workers,
        }
        return {k: (float(v) if isinstance(v, float) else v) for k, v in stats.items()}


def prediction_line(name: str, result: ClassificationResult) -> str:
    """A predictions.csv row (:data:`~dlcv.runtime.infer_files.PREDICTION_COLUMNS`)."""
    return csv_line((name, *prediction_fields(result)))


def _check_paths(config: InferConfig, out_dir: Path) -> None:
    """Input/output folder sanity before the model is opened."""
    images = config.images
    if not images.exists():
        raise DlcvError(f"{images}: images folder not found")
    if not images.is_dir():
        raise DlcvError(f"{images}: is a file; give the folder that holds the images")
    if config.labels is not None and not config.labels.exists():
        raise DlcvError(f"{config.labels}: labels not found (--labels)")
    real_out = os.path.realpath(out_dir)
    if real_out == os.path.realpath(images):
        raise DlcvUsageError(f"--out {out_dir} is the images folder; outputs would mix with (and may replace) the inputs")
    if config.labels is not None and real_out == os.path.realpath(config.labels):
        raise DlcvUsageError(f"--out {out_dir} is the labels folder; masks written there would replace the labels")
    if out_dir.exists() and not out_dir.is_dir():
        raise DlcvError(f"--out {out_dir} is a file; give a folder")


def _survey(config: InferConfig, policy: OutputPolicy, exclude: list[Path]) -> int:
    """A names-only pass: count the images and refuse existing outputs unless allowed."""
    policy.check_run()
    count = 0
    for item in iter_image_files(config.images, recursive=config.recursive, exclude=exclude):
        count += 1
        policy.check_image(item)
    if count == 0:
        hint = "; add --recursive to include sub-folders" if not config.recursive and has_subfolders(config.images) else ""
        raise DlcvError(f"{config.images}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)}){hint}")
    return count


def _scorer(config: InferConfig, metadata: ArtifactMetadata) -> tuple[Path | None, SegmentationScorer | ClassificationScorer | None]:
    """(the segmentation masks folder, the scorer) for ``--labels``; (None, None) without."""
    if config.labels is None:
        return None, None
    if get_task(metadata.task).per_pixel:
        if not config.labels.is_dir():
            raise DlcvUsageError(
                f"--labels {config.labels}: segmentation labels are a folder of index-PNG masks named like the images"
            )
        return config.labels, SegmentationScorer(metadata)
    labels = ClassificationLabels.load(config.labels, metadata.class_names, config.recursive)
    return None, ClassificationScorer(metadata, labels)


def _stream(pool: ThreadPoolExecutor, run: InferRun, items: Iterator[ImageFile], job: LoadJob, window: int) -> None:
    """Admit each image, submit its load through a bounded window of futures, consume in order.

    Images that need no job (kept from an earlier run, colliding names) are recorded at once;
    when too many of them wait behind an image still in flight, the pipeline is drained, so
    the reorder buffer stays bounded too.
    """
    pending: deque[Future] = deque()
    backlog_limit = 4 * window

    def take() -> None:
        wait_start = time.perf_counter()
        loaded = pending.popleft().result()
        run.t["load_wait_s"] += time.perf_counter() - wait_start
        run.consume(loaded)

    try:
        for seq, item in enumerate(items):
            submit, previous_mask = run.admit(seq, item)
            if submit:
                pending.append(pool.submit(load_job, seq, item, job, previous_mask))
                if len(pending) >= window:
                    take()
            elif run.log.backlog > backlog_limit:
                while pending:
                    take()
                run.flush()
        while pending:
            take()
    except BaseException:
        for f in pending:
            f.cancel()
        raise
    run.flush()


def run_inference(config: InferConfig, *, log: Callable[[str], None] | None = None) -> InferSummary:
    """Run the model over the folder, write the outputs, return what happened.

    ``log`` receives per-file warnings (default: the ``dlcv.runtime.infer`` logger).
    Raises :class:`DlcvError` for problems with the run as a whole (missing folder, no
    images, existing outputs without ``overwrite``/``skip_existing``, a model without dlcv
    metadata or whose first answer contradicts it).
    """
    out_dir = config.out_dir
    exclude = check_run_paths(config, out_dir)

    load_start = time.perf_counter()
    with open_predictor(config) as predictor:
        model_load_s = time.perf_counter() - load_start
        metadata = predictor.artifact
        outputs = open_outputs(config, metadata, out_dir, exclude, log or logger.warning)
        run = InferRun(config, predictor, out_dir, outputs.policy, outputs.results, outputs.scorer, outputs.bar, outputs.warn)
        items = iter_image_files(config.images, recursive=config.recursive, exclude=exclude, stats=outputs.stats)
        job = LoadJob(metadata.preprocess, config.max_pixels, outputs.mask_dir, config.debug)
        wall_start = time.perf_counter()
        with outputs.committing(run):
            with ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="dlcv-load") as pool:
                _stream(pool, run, items, job, window_size(config.workers, config.batch_size))
        timing = run.timing(time.perf_counter() - wall_start, model_load_s)
        described = predictor.metadata.backend_choice
        return outputs.finish(run, predictor.name, timing, described, provider_nodes=predictor.backend.placement)


def open_predictor(config: InferConfig) -> Predictor:
    """The run's model as a :class:`~dlcv.runtime.predictor.Predictor` (:func:`~dlcv.runtime.predictor.load`)."""
    options: dict[str, Any] = {"lean_runtime": config.lean_runtime} if config.lean_runtime is not None else {}
    if config.trt_max_size is not None:
        options["trt_max_size"] = config.trt_max_size
    return load(config.engine, backend=config.backend, device=config.device, batch_size=config.batch_size,
                workers=config.workers, max_pixels=config.max_pixels, precision=config.precision, **options)  # fmt: skip


def check_run_paths(config: InferConfig, out_dir: Path) -> list[Path]:
    """Check the input and output folders before the model is opened; the folders the listing
    must not enter (the output folder, a labels folder inside the images)."""
    _check_paths(config, out_dir)
    return [out_dir] + ([config.labels] if config.labels is not None and config.labels.is_dir() else [])


@dataclass
class RunOutputs:
    """What a run writes into, set up before its first image (:func:`open_outputs`); shared by
    the local pipeline and :mod:`dlcv.runtime.ray_infer`, so both write the same files."""

    config: InferConfig
    metadata: ArtifactMetadata
    out_dir: Path
    total: int
    mask_dir: Path | None
    scorer: SegmentationScorer | ClassificationScorer | None
    policy: OutputPolicy
    results: ResultLog
    stats: ListingStats
    bar: tqdm
    warn: Callable[[str], None]
    files: dict[str, Path] | None = None

    @contextlib.contextmanager
    def committing(self, run: "InferRun") -> Iterator[None]:
        """Around the images: on success write the folder errors and rename the journals; on
        failure keep them for --skip-existing (or delete them when nothing was done)."""
        try:
            yield
            for folder, reason in self.stats.unreadable:
                self.results.add_error(folder + "/", reason)
            self.files = {"out_dir": self.out_dir, "metrics_json": self.out_dir / METRICS_JSON, **self.results.commit()}
        except BaseException as exc:
            if run.processed or run.kept:
                self.results.close()  # keep the journals: --skip-existing resumes from them
            else:
                self.results.discard()
            if isinstance(exc, OSError):  # the output folder itself failed (disk full, permissions)
                raise _write_error(self.out_dir, exc) from exc
            raise
        finally:
            self.bar.close()

    def finish(self, run: "InferRun", backend_name: str, timing: dict[str, Any], backend_choice: str | None = None,
               provider_nodes: dict[str, int] | None = None) -> InferSummary:  # fmt: skip
        """Score, write metrics.json and return the summary (after :meth:`committing`).
        ``backend_choice``: which backend ran and why (:meth:`~dlcv.runtime.backends.Choice.describe`);
        ``provider_nodes``: graph nodes per onnxruntime execution provider (:attr:`Backend.placement`)."""
        assert self.files is not None, "finish() follows a successful committing()"
        config, metadata, results, stats = self.config, self.metadata, self.results, self.stats
        metrics = report = None
        if self.scorer is not None:
            metrics, report = self.scorer.result()
        summary = InferSummary(
            task=metadata.task,
            out_dir=self.out_dir,
            found=self.total,
            processed=run.processed,
            kept=run.kept,
            failed=results.failed,
            skipped=stats.skipped,
            errors=sorted(results.errors),
            timing=timing,
            outputs=self.files,
            metrics=metrics,
            label_report=report,
            strict=config.strict,
            backend=backend_choice or backend_name,
        )
        record = {
            "dlcv_version": dlcv_version(),
            "task": metadata.task,
            "engine": str(config.engine),
            "backend": backend_name,
            "backend_choice": backend_choice or backend_name,
            "provider_nodes": provider_nodes,
            "outputs": metadata.outputs.kind,
            "device": config.device,
            "precision": config.precision or metadata.precision,
            "images": str(config.images),
            "labels": None if config.labels is None else str(config.labels),
            "counts": {
                "found": self.total,
                "processed": run.processed,
                "kept_from_earlier_run": run.kept,
                "failed": results.failed,
                "skipped_not_images": stats.skipped,
                "folders_not_reentered": stats.revisits,
            },
            "timing": timing,
            "metrics": metrics,
            "label_report": report,
        }
        try:
            write_text_atomic(self.files["metrics_json"], json.dumps(strict_json(record), indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise _write_error(self.out_dir, exc) from exc
        return summary


def open_outputs(config: InferConfig, metadata: ArtifactMetadata, out_dir: Path, exclude: list[Path],
                 log: Callable[[str], None]) -> RunOutputs:
    """Scorer, output policy, the names-only survey (existing outputs refused unless allowed),
    the output folder and its journals, the progress bar."""
    mask_dir, scorer = _scorer(config, metadata)
    policy = OutputPolicy(metadata.task, out_dir, overwrite=config.overwrite, skip_existing=config.skip_existing,
                          num_classes=metadata.num_classes)
    total = _survey(config, policy, exclude)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir, recursive=config.recursive)
        results = ResultLog(out_dir, with_predictions=not get_task(metadata.task).per_pixel)
    except OSError as exc:
        raise DlcvError(f"--out {out_dir}: cannot write there ({exc.strerror or exc}); choose another folder") from None

    show = config.progress if config.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=total, unit="img", file=sys.stderr, disable=not show, dynamic_ncols=True, desc="dlcv-infer")

    def warn(message: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            log(message)

    return RunOutputs(config, metadata, out_dir, total, mask_dir, scorer, policy, results, ListingStats(), bar, warn)


def _write_error(out_dir: Path, exc: OSError) -> DlcvError:
    return DlcvError(
        f"{out_dir}: cannot write the outputs ({exc.strerror or exc}); free space or fix the permissions, "
        "then resume with --skip-existing"
    )
