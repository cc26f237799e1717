"""Batch inference on a Ray cluster: ``dlcv-infer --engine MODEL images/ --ray [ADDRESS]``.

The same run as :func:`dlcv.runtime.infer.run_inference`, with the images spread over Ray
actors; it writes the same files (masks or predictions.csv, errors.csv, metrics.json) plus
``manifest.csv`` (one row per image: its outputs and the actor that wrote them).

    ray.data.read_binary_files(paths, include_paths=True)            # Ray's read tasks
      -> map_batches(_InferActor, compute=ActorPoolStrategy(size=N))  # decode + preprocess +
                                                                      # infer + atomic writes

Each actor holds one :class:`~dlcv.runtime.predictor.Predictor` and runs the local pipeline's own batch code on the bytes Ray
read (:class:`dlcv.runtime.infer.InferRun`: the runtime's OpenCV decoding and preprocessing, never
Ray's image resizing; shape-grouped batches; per-file failures; atomic PNG writes). The four
steps are fused in the actor because every hand-over between Ray stages copies the images
through the object store (measured here: 39 img/s split into four stages, 106 img/s fused).

The driver decides what runs (listing, existing outputs, ``--skip-existing``, colliding
names) with the same code as a local run, writes errors.csv/predictions.csv in listing order
(Ray keeps the order: ``preserve_order``), and merges what the actors return: for
segmentation each actor call's :class:`~dlcv.runtime.label_scoring.SegmentationScorer` (its confusion
matrix and label-problem tallies), for classification the top-5 of each predictions.csv row,
which decides top-1 and top-5 exactly. So ``metrics.json`` holds the local run's metrics.

Before anything is submitted the cluster's resources are checked: actors × CPUs per actor must
leave ``read_cpus`` for Ray's read tasks (all CPUs held by actors starve the readers and the
run never ends), and GPUs asked for must exist (an actor waiting for a GPU that no node has
waits forever). One probe task opens the model where the actors will, so a model that cannot
open fails the run before any output is written.

Assumptions: on a multi-node cluster the model, the images, the labels and the output folder
are on a filesystem every node sees at the same path; the driver holds the list of image paths
(about 100 bytes per image). Ray is imported only when this module runs a job.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import pickle
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .atomic import Journal, journal_path
from .backends import choose_backend, resolve_backend
from .batching import LoadJob, load_job
from .errors import BackendLostError, DlcvError, DlcvUsageError, MissingDependencyError, first_line
from .imageio import read_image
from .infer import InferConfig, InferRun, check_run_paths, open_outputs
from .label_scoring import ClassificationScorer, SegmentationScorer, ranking_scores
from .listing import ImageFile, iter_image_files
from .metadata import ArtifactMetadata
from .predictor import load
from .infer_files import _parse_prediction, csv_line, exists_error, segmentation_output_paths
from .summary import InferSummary
from .task import get_task

logger = logging.getLogger("dlcv.runtime.ray_infer")

MANIFEST_CSV = "manifest.csv"
MANIFEST_COLUMNS = ("file", "status", "outputs", "worker")
IMAGES_PER_CALL = 4  # model batches per actor call: amortises Ray's per-call cost


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide a Ray run goes.

    ``address``: None connects to the cluster ``RAY_ADDRESS`` names or starts a local one
    (``ray.init()``'s rule; an already initialised Ray in this process is used as it is);
    otherwise ``host:port``, ``ray://host:10001`` or ``auto``. ``actors``: None = as many as
    the cluster's CPUs (and GPUs) allow after ``read_cpus``. ``cpus_per_actor`` is also the
    onnxruntime thread count of each actor. ``images_per_call``: images per actor call
    (None: 4 × the batch size).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    read_cpus: float = 1.0
    images_per_call: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.actors is not None and self.actors < 1:
            problems.append(f"--ray-actors must be at least 1, got {self.actors}")
        if not self.cpus_per_actor > 0:
            problems.append(f"CPUs per actor must be positive, got {self.cpus_per_actor}")
        if not self.gpus_per_actor >= 0:
            problems.append(f"--ray-gpus-per-actor must not be negative, got {self.gpus_per_actor}")
        if not self.read_cpus > 0:
            problems.append(f"the CPUs kept for reading must be positive, got {self.read_cpus}")
        if self.images_per_call is not None and self.images_per_call < 1:
            problems.append(f"images per actor call must be at least 1, got {self.images_per_call}")
        if problems:
            raise DlcvUsageError("; ".join(problems))


# --------------------------------------------------------------------------- cluster checks


def plan_actors(resources: dict[str, float], config: RayConfig, note: Callable[[str], None] = logger.info) -> int:
    """How many actors to start on a cluster with ``resources`` (``ray.cluster_resources()``).

    An explicit ``actors`` that would leave fewer than ``read_cpus`` CPUs, or GPUs that the
    cluster does not have, is refused; without ``actors`` the count is clamped and ``note``
    says so.
    """
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    limit = math.floor((cpus - config.read_cpus) / config.cpus_per_actor + 1e-9)
    if limit < 1:
        raise DlcvError(
            f"the Ray cluster has {cpus:g} CPUs: one actor of {config.cpus_per_actor:g} CPUs plus {config.read_cpus:g} "
            "for Ray's file-reading tasks do not fit (with every CPU held by actors the readers never run and the "
            "job waits forever); use a cluster with more CPUs"
        )
    why = f"{cpus:g} CPUs, {config.read_cpus:g} kept for reading the files, {config.cpus_per_actor:g} per actor"
    if config.gpus_per_actor > 0:
        if gpus <= 0:
            raise DlcvError(
                f"--ray-gpus-per-actor {config.gpus_per_actor:g}: the Ray cluster has no GPUs (resources: {cpus:g} CPUs), "
                "so the actors would wait for one forever; drop the option, or connect to a cluster with GPUs (--ray ADDRESS)"
            )
        by_gpu = math.floor(gpus / config.gpus_per_actor + 1e-9)
        if by_gpu < 1:
            raise DlcvError(
                f"--ray-gpus-per-actor {config.gpus_per_actor:g}: the Ray cluster has only {gpus:g} GPUs; ask for at most {gpus:g}"
            )
        if by_gpu < limit:
            limit, why = by_gpu, f"{gpus:g} GPUs, {config.gpus_per_actor:g} per actor"
    if config.actors is None:
        note(f"Ray: {_count(limit, 'actor')} ({why})")
        return limit
    if config.actors > limit:
        raise DlcvUsageError(
            f"--ray-actors {config.actors} does not fit the Ray cluster ({why}): at most {_count(limit, 'actor')} "
            f"{'leaves' if limit == 1 else 'leave'} room for Ray's read tasks; use --ray-actors {limit}"
            f"{'' if limit == 1 else ' or fewer'}"
        )
    return config.actors


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_device(config: InferConfig, ray_config: RayConfig) -> None:
    """A GPU device needs GPUs per actor (Ray hides the GPUs from actors that ask for none), and the reverse."""
    cls = resolve_backend(config.engine, config.backend, config.device)
    wants_gpu = cls.needs_gpu or config.device != "cpu"
    if wants_gpu and ray_config.gpus_per_actor <= 0:
        raise DlcvUsageError(
            f"--device {config.device} ({cls.name}) runs on a GPU, but the Ray actors ask for none (Ray hides the GPUs "
            "from them); add --ray-gpus-per-actor 1"
        )
    if not wants_gpu and ray_config.gpus_per_actor > 0:
        raise DlcvUsageError(
            f"--ray-gpus-per-actor {ray_config.gpus_per_actor:g} reserves GPUs that --device cpu does not use; "
            "add --device cuda (or drop --ray-gpus-per-actor)"
        )


def _backend_options(engine: str | Path, threads: int, backend: str | None = None) -> dict[str, Any]:
    """``threads`` for backends that take it (onnxruntime), so an actor uses the CPUs it holds;
    ``backend`` (``--backend NAME``) for :func:`~dlcv.runtime.predictor.load` when one is named."""
    options: dict[str, Any] = {"threads": threads} if "threads" in resolve_backend(engine, backend).options else {}
    return options if backend is None else {**options, "backend": backend}


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError(
            f"--ray needs Ray Data, which cannot be imported ({first_line(exc)}); install it: pip install 'dlcv[ray]'"
        ) from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Initialise Ray unless it is already; True when this call did (and so must shut it down)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DlcvError(
            f"{'--ray ' + address if address else '--ray'}: cannot connect to the Ray cluster ({first_line(exc)}); check the address, and for "
            "a cluster started with token authentication set RAY_AUTH_MODE=token (with its token) in this environment"
        ) from None
    return True


# --------------------------------------------------------------------------- the model, where the actors run


def describe_model(engine: str, device: str, options: dict[str, Any]) -> tuple[str, Any]:
    """Open the model as an actor will: ("ok", (metadata dict, backend name)) or ("error", message)."""
    try:
        with load(engine, device=device, **options) as predictor:
            return "ok", (predictor.artifact.to_dict(), predictor.name)
    except DlcvError as exc:
        return "error", str(exc)


class _Outcomes:
    """Collects an actor's per-image outcomes in place of the driver's ResultLog."""

    def __init__(self) -> None:
        self.by_seq: dict[int, tuple[str | None, tuple[str, str] | None]] = {}

    def record(self, seq: int, *, line: str | None = None, error: tuple[str, str] | None = None) -> None:
        self.by_seq[seq] = (line, error)

    def flush(self) -> None:
        pass

    backlog = 0


class _ServiceTimes(list):
    """Per-image service times of one call (the driver's LatencyStats takes them)."""

    add = list.append


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


@dataclass(frozen=True)
class _ActorSpec:
    config: InferConfig  # with absolute paths (actors do not share the driver's working folder)
    images_root: str  # absolute, as the paths Ray reads start
    shown_root: str  # the images folder as the user gave it: messages name files as a local run does
    options: dict[str, Any]
    scored: bool  # segmentation with labels: actors score their masks


class _InferActor:
    """One Ray actor: a predictor, and the local pipeline's batch code run over the bytes Ray read."""

    def __init__(self, spec: _ActorSpec):
        self.spec = spec
        config = spec.config
        self.predictor = load(config.engine, device=config.device, batch_size=config.batch_size,
                              max_pixels=config.max_pixels, **spec.options)  # fmt: skip
        self.metadata = self.predictor.artifact
        self.job = LoadJob(self.metadata.preprocess, config.max_pixels, config.labels if spec.scored else None, config.debug)
        self.run = InferRun(config, self.predictor, config.out_dir, None, _Outcomes(), None, _NoBar(), lambda _: None)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def _item(self, path: str) -> ImageFile:
        rel = PurePosixPath(Path(os.path.relpath(path, self.spec.images_root)).as_posix())
        return ImageFile(Path(self.spec.shown_root).joinpath(*rel.parts), rel)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        run, paths = self.run, [str(p) for p in batch["path"]]
        run.log = outcomes = _Outcomes()
        run.scorer = SegmentationScorer(self.metadata) if self.spec.scored else None
        run.latency = times = _ServiceTimes()
        before = dict(run.t)
        fatal = None
        try:
            for seq, (path, data) in enumerate(zip(paths, batch["bytes"])):
                run.consume(load_job(seq, self._item(path), self.job, data=data))
            run.flush()
        except DlcvError as exc:  # the model contradicts its metadata: the driver stops the run
            fatal = str(exc)
        state = {
            "scorer": run.scorer,
            "times": list(times),
            "t": {k: run.t[k] - before[k] for k in run.t},
            "fatal": fatal,
        }
        status, lines, errors = [], [], []
        for seq in range(len(paths)):
            line, error = outcomes.by_seq.get(seq, (None, ("", "not processed: the run stopped")))
            status.append("failed" if error is not None else "written")
            lines.append(line or "")
            errors.append(error[1] if error is not None else "")
        blobs = [pickle.dumps(state)] + [b""] * (len(paths) - 1)
        return {
            "path": np.array(paths, dtype=object),
            "status": np.array(status, dtype=object),
            "line": np.array(lines, dtype=object),
            "error": np.array(errors, dtype=object),
            "worker": np.array([self.worker] * len(paths), dtype=object),
            "state": np.array(blobs, dtype=object),
        }


class _ModelInfo:
    """What the driver's :class:`InferRun` needs of a predictor: the model's metadata (``artifact``)
    and backend name (the driver never runs the model)."""

    def __init__(self, artifact: ArtifactMetadata, name: str):
        self.artifact = artifact
        self.name = name


# --------------------------------------------------------------------------- the driver


def _absolute(config: InferConfig) -> InferConfig:
    engine = config.engine if isinstance(config.engine, str) else Path(os.path.abspath(config.engine))
    labels = None if config.labels is None else Path(os.path.abspath(config.labels))
    return dataclasses.replace(config, engine=engine, images=Path(os.path.abspath(config.images)),
                               out=Path(os.path.abspath(config.out_dir)), labels=labels)  # fmt: skip


class _Manifest:
    """``manifest.csv``: file, status (written | kept | failed), outputs, worker; rows as outcomes arrive."""

    def __init__(self, out_dir: Path, task: str):
        self.out_dir, self.task = out_dir, task
        self.journal = Journal(out_dir / MANIFEST_CSV)
        self.journal.write(csv_line(MANIFEST_COLUMNS))

    def add(self, item: ImageFile, status: str, worker: str = "driver") -> None:
        outputs = ""
        if status != "failed":
            if get_task(self.task).per_pixel:
                outputs = ";".join(p.relative_to(self.out_dir).as_posix() for p in segmentation_output_paths(self.out_dir, item))
            else:
                outputs = "predictions.csv"
        self.journal.write(csv_line((item.name, status, outputs, worker)))


def run_ray_inference(config: InferConfig, ray_config: RayConfig = RayConfig(), *,
                      log: Callable[[str], None] | None = None) -> InferSummary:  # fmt: skip
    """:func:`~dlcv.runtime.infer.run_inference` on a Ray cluster (see the module notes).

    Raises :class:`DlcvError` for what a local run refuses, and for a cluster that cannot run
    the job (too few CPUs for the actors and the readers, GPUs asked for that it lacks).
    """
    warn_log = log or logger.warning
    ray = _import_ray()
    out_dir = config.out_dir
    exclude = check_run_paths(config, out_dir)
    _check_device(config, ray_config)
    owned = _connect(ray, ray_config.address)
    try:
        with _ClusterWatch(ray):
            return _run(ray, config, ray_config, out_dir, exclude, warn_log)
    finally:
        if owned:
            ray.shutdown()


class _ClusterWatch:
    """Watches the cluster's GCS while a run goes. When it stops answering (connection attempts
    with back-off, :data:`BACKOFF_S`) the run is lost: Ray's own calls then block for a minute and
    end the process with its own log line, and even an interrupted driver blocks in Ray's
    clean-up, so this ends the process at once with one line (exit code 1). What the run wrote
    stays: masks are written atomically and the journals (errors, predictions, manifest) are
    flushed after each batch, so ``--skip-existing`` resumes from them."""

    BACKOFF_S = (0.5, 1.0, 2.0)  # waits between the attempts after the first failure

    def __init__(self, ray):
        self.address: str = ray.get_runtime_context().gcs_address
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dlcv-ray-watch", daemon=True)

    def _answers(self) -> bool:
        host, port = self.address.rsplit(":", 1)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
            return True
        except OSError:
            return False

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            if self._answers():
                continue
            if all(not self._stop.wait(wait) and not self._answers() for wait in self.BACKOFF_S):
                if not self._stop.is_set():
                    self._lost()

    def _lost(self) -> None:
        error = BackendLostError(
            f"lost the Ray cluster (its GCS at {self.address} stopped answering); the run stopped and the outputs "
            "written so far are kept: restart the cluster and resume with --skip-existing"
        )
        sys.stdout.flush()
        sys.stderr.write(f"error: {error}\n")
        sys.stderr.flush()
        os._exit(error.exit_code)

    def __enter__(self) -> "_ClusterWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def _run(ray, config: InferConfig, ray_config: RayConfig, out_dir: Path, exclude: list[Path],
         log: Callable[[str], None]) -> InferSummary:  # fmt: skip
    actors = plan_actors(ray.cluster_resources(), ray_config, note=log if ray_config.actors is None else logger.info)
    remote = _absolute(config)
    # chosen once, by the driver: every actor runs the same backend, named to it
    choice = choose_backend(remote.engine, config.backend, config.device, precision=config.precision)
    options = _backend_options(remote.engine, max(1, math.ceil(ray_config.cpus_per_actor)), choice.backend.name)
    if config.precision is not None:
        options["precision"] = config.precision

    load_start = time.perf_counter()
    probe = ray.remote(num_cpus=ray_config.cpus_per_actor, num_gpus=ray_config.gpus_per_actor)(describe_model)
    status, answer = ray.get(probe.remote(str(remote.engine), remote.device, options))
    if status != "ok":
        raise DlcvError(answer)
    metadata = ArtifactMetadata.from_dict(answer[0], source=str(config.engine))
    model = _ModelInfo(metadata, answer[1])
    model_load_s = time.perf_counter() - load_start

    if not (config.overwrite or config.skip_existing):
        for path in (out_dir / MANIFEST_CSV, journal_path(out_dir / MANIFEST_CSV)):
            if path.exists():
                raise exists_error(path)
    outputs = open_outputs(config, metadata, out_dir, exclude, log)
    manifest = _Manifest(out_dir, metadata.task)
    run = InferRun(config, model, out_dir, outputs.policy, outputs.results, outputs.scorer, outputs.bar, outputs.warn)
    spec = _ActorSpec(remote, str(remote.images), str(config.images), options,
                      scored=get_task(metadata.task).per_pixel and outputs.scorer is not None)  # fmt: skip
    wall_start = time.perf_counter()
    try:
        with outputs.committing(run):
            sent = _admit_all(run, config, outputs, manifest, exclude)
            if sent:
                _execute(ray, run, spec, sent, outputs, manifest, actors, ray_config)
        manifest_path = manifest.journal.commit()
    except BaseException:
        (manifest.journal.close if run.processed or run.kept else manifest.journal.discard)()
        raise
    timing = run.timing(time.perf_counter() - wall_start, model_load_s)
    timing.update(ray_actors=actors, ray_cpus_per_actor=ray_config.cpus_per_actor,
                  ray_gpus_per_actor=ray_config.gpus_per_actor)  # fmt: skip
    outputs.files["manifest_csv"] = manifest_path
    return outputs.finish(run, model.name, timing, choice.describe(config.engine))


@dataclass
class _Sent:
    """The images handed to Ray, in listing order: absolute paths and listing sequence numbers."""

    paths: list[str] = dataclasses.field(default_factory=list)
    seqs: list[int] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def _admit_all(run: InferRun, config: InferConfig, outputs, manifest: _Manifest, exclude: list[Path]) -> _Sent:
    """The local run's admission for every listed image: collisions fail, finished images are
    kept (and scored from their earlier outputs), files that cannot be opened fail here (a
    file Ray's readers cannot open fails their task and the job), the rest go to Ray."""
    sent = _Sent()
    job = LoadJob(run.metadata.preprocess, config.max_pixels, outputs.mask_dir, config.debug)
    items = iter_image_files(config.images, recursive=config.recursive, exclude=exclude, stats=outputs.stats)
    for seq, item in enumerate(items):
        kept, failed = run.kept, run.log.failed
        submit, previous_mask = run.admit(seq, item)
        if submit and previous_mask is not None:  # resumed segmentation with labels: score the earlier mask here
            loaded = load_job(seq, item, job, previous_mask)
            if loaded.error is not None or loaded.previous_mask is not None:
                run.consume(loaded)
                submit = False
        if submit and not os.access(item.path, os.R_OK):  # Ray's readers would fail the whole job on it
            try:
                read_image(item.path, max_pixels=config.max_pixels)
            except DlcvError as exc:  # the local run's message (a broken link: "file not found")
                run.fail(seq, item.name, str(exc))
                submit = False
        if submit:
            sent.paths.append(os.path.abspath(item.path))
            sent.seqs.append(seq)
        elif run.kept > kept:
            manifest.add(item, "kept")
        elif run.log.failed > failed:
            manifest.add(item, "failed")
    return sent


def _execute(ray, run: InferRun, spec: _ActorSpec, sent: _Sent, outputs, manifest: _Manifest, actors: int,
             ray_config: RayConfig) -> None:  # fmt: skip
    """Run the images through the actor pool and record each outcome as it arrives."""
    from ray.data import DataContext

    config = spec.config
    per_call = ray_config.images_per_call or IMAGES_PER_CALL * config.batch_size
    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars, context.print_on_execution_start)
    context.execution_options.preserve_order = True  # outcomes come back in listing order
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # not "progress bars disabled"
    try:
        dataset = ray.data.read_binary_files(sent.paths, include_paths=True, ignore_missing_paths=True)
        with warnings.catch_warnings():  # max_restarts has no named parameter yet (Ray 2.60): the generic one warns
            warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
            predicted = _map_batches(dataset, spec, per_call, actors, ray_config)
        _collect(run, spec, sent, predicted.iter_batches(batch_size=None, batch_format="numpy"), outputs, manifest)
    except DlcvError:
        raise
    except Exception as exc:  # a Ray task or actor died (a file the readers cannot open, an actor killed)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise DlcvError(
            f"the Ray job failed ({lines[-1][:300]}); the outputs written so far are kept: fix the cause and resume "
            "with --skip-existing"
        ) from exc
    finally:
        (context.execution_options.preserve_order, context.enable_progress_bars,
         context.print_on_execution_start) = saved  # fmt: skip


def _map_batches(dataset, spec: _ActorSpec, per_call: int, actors: int, ray_config: RayConfig):
    """The actor pool stage: decode, preprocess, infer and write, fused in :class:`_InferActor`."""
    from ray.data import ActorPoolStrategy

    return dataset.map_batches(
        _InferActor,
        fn_constructor_kwargs={"spec": spec},
        batch_size=per_call,
        compute=ActorPoolStrategy(size=actors),
        num_cpus=ray_config.cpus_per_actor,
        num_gpus=ray_config.gpus_per_actor or None,
        batch_format="numpy",
        # an actor that dies ends the run (resumed with --skip-existing) instead of being restarted: Ray cannot
        # restart an actor whose constructor arguments are in the object store (ray-project/ray#53727) and says
        # so in an error line on every run when restarts are on
        max_restarts=0,
    )


def _collect(run: InferRun, spec: _ActorSpec, sent: _Sent, batches, outputs, manifest: _Manifest) -> None:
    scorer = outputs.scorer
    position = 0

    def item_at(i: int) -> ImageFile:
        rel = PurePosixPath(Path(os.path.relpath(sent.paths[i], spec.images_root)).as_posix())
        return ImageFile(Path(spec.shown_root).joinpath(*rel.parts), rel)

    def vanished(i: int) -> None:  # Ray's reader skipped it: the file was deleted after the listing
        item = item_at(i)
        run.fail(sent.seqs[i], item.name, f"{item.path}: file not found (removed during the run)")
        manifest.add(item, "failed")

    for batch in batches:
        for blob in batch["state"]:
            if not blob:
                continue
            state = pickle.loads(blob)
            if state["fatal"]:
                raise DlcvError(state["fatal"])
            for key, seconds in state["t"].items():
                run.t[key] += seconds
            for seconds in state["times"]:
                run.latency.add(seconds)
            if state["scorer"] is not None:
                scorer.merge(state["scorer"])
        for path, status, line, error, worker in zip(batch["path"], batch["status"], batch["line"], batch["error"], batch["worker"]):
            while position < len(sent) and sent.paths[position] != path:
                vanished(position)
                position += 1
            if position == len(sent):
                raise DlcvError(f"Ray returned an image that was not sent ({path}); the run is inconsistent, run it again")
            item, seq = item_at(position), sent.seqs[position]
            position += 1
            if status == "failed":
                run.fail(seq, item.name, error)
                manifest.add(item, "failed", worker)
                continue
            run.log.record(seq, line=line or None)
            run.processed += 1
            run.bar.update(1)
            manifest.add(item, "written", worker)
            if isinstance(scorer, ClassificationScorer):
                parsed = _parse_prediction(next(csv.reader(io.StringIO(line))), run.metadata.num_classes)
                scorer.add(item, ranking_scores(parsed.ranked, run.metadata.num_classes))
        run.log.flush()
        manifest.journal.flush()
    while position < len(sent):
        vanished(position)
        position += 1
