"""The training loop: per-epoch training and evaluation, checkpoints, logs, exact resume.

A run writes ``best.pt`` (best validation metric), ``last.pt`` (with everything needed to
continue: optimiser, schedule, gradient scaler, RNG states of every rank, early-stopping
counter, history), ``log.csv``, ``overlays/epoch_NNN.png``, ``tensorboard/`` and, when asked,
``epochs/epoch_NNN.pt`` snapshots. Data order and augmentation depend only on (seed, epoch),
and the RNG states are restored, so a run resumed from ``last.pt`` on the CPU ends with the
same weights as one never interrupted.
"""
from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dlcv.runtime.atomic import write_text_atomic
from dlcv.runtime.datasets import DatasetInfo, DatasetRecord, OpenDataset, open_dataset, open_split
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import read_image
from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.runtime.task import get_task

from .checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from .class_weights import class_weights, label_frequencies
from .config import TrainConfig
from .data.datasets import ImageDataset, collate_by_size
from .data.demo import demo_root
from .distributed import (
    DistContext, all_reduce_sums, barrier, gather, init_distributed, shutdown, sync_buffers, train_sampler, unwrap, wrap_model,
)  # fmt: skip
from .evaluate import eval_loader, evaluate, headline
from .optim import MixedPrecision, build_optimizer, build_scheduler, step_scheduler
from .overlays import OverlayWriter
from .device import resolve_device
from .registry import create_model, model_info, preprocess_for

LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_metric", "val_pixel_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class TrainResult:
    best: Path
    last: Path
    log: Path
    best_metric: float
    history: tuple[dict, ...]
    stopped_early: bool = False
    rank: int = 0  # under torchrun: this process's rank (rank 0 wrote the files)


def _say(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        tqdm.write(message)


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunData:
    """The opened dataset, its record (what the checkpoints carry) and the two splits a run uses."""

    dataset: OpenDataset
    spec: PreprocessSpec
    train: ImageDataset
    val: ImageDataset

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info

    @property
    def record(self) -> DatasetRecord:
        return self.dataset.record


def _data_root(cfg: TrainConfig, task: str, ctx: DistContext) -> Path:
    if cfg.data != "demo":
        return Path(cfg.data)
    if not ctx.is_main:  # rank 0 writes the demo files once; the others wait and read them
        barrier(ctx)
    root = demo_root(task)
    if ctx.is_main:
        barrier(ctx)
    return root


def prepare_data(cfg: TrainConfig, task: str, ctx: DistContext = DistContext()) -> RunData:
    """Open the dataset (layout, options, class map) and build the train and val datasets.

    The options are recorded (:class:`DatasetRecord`) and both splits are opened from that
    record with :func:`open_split`, the way export, bench and analyze reopen them later."""
    root = _data_root(cfg, task, ctx)
    opened = open_dataset(root, cfg.format, cfg.layout, cfg.class_map)
    if opened.task != task:
        raise DlcvError(f"{root}: {opened.format.name} is a {opened.task} dataset but {cfg.model} is a {task} model")
    train_split, val_split = (open_split(root, opened.record, split) for split in ("train", "val"))
    dataset = train_split.dataset
    input_size = cfg.input_size or ((64, 64) if cfg.data == "demo" and not get_task(task).per_pixel else None)
    spec = preprocess_for(cfg.model, input_size)  # the model's own, or --input-size's resize
    if not train_split.samples:
        raise DlcvError(f"{root}: the train split is empty")
    if not val_split.samples:
        raise DlcvError(f"{root}: the val split is empty; training needs one to pick best.pt")
    train_ds = ImageDataset(train_split.samples, dataset, dataset.info, spec, cfg.augment, cfg.seed)
    val_ds = ImageDataset(val_split.samples, dataset, dataset.info, spec)
    return RunData(dataset, spec, train_ds, val_ds)


# --- model, loss ---------------------------------------------------------------------------------


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device, ctx: DistContext, resuming: bool) -> nn.Module:
    """The registry model, with pretrained weights (not when resuming: last.pt has the weights)
    and the fine-tuning mode applied."""
    model = create_model(cfg.model, num_classes=num_classes, **cfg.arch_kwargs)
    if cfg.pretrained and not resuming:
        from .pretrained import load_pretrained

        report = load_pretrained(model, cfg.model, cfg.pretrained)
        _say(ctx, report.summary())
    if cfg.finetune != "all" or cfg.trainable_stages:
        from .pretrained import set_finetune

        trainable = set_finetune(model, cfg.model, cfg.finetune, trainable_stages=cfg.trainable_stages)
        _say(ctx, f"--finetune {cfg.finetune}: {trainable:,} trainable parameters")
    return model.to(device)


def build_criterion(cfg: TrainConfig, data: RunData, device: torch.device) -> nn.Module:
    """Cross-entropy with the dataset's ignore index and the optional class weights."""
    info = data.info
    weights = None
    if cfg.class_weighting != "none":
        weights = class_weights(label_frequencies(data.train.samples, data.dataset, info), cfg.class_weighting)
    ignore = info.ignore_index if get_task(info.task).per_pixel else -100
    return nn.CrossEntropyLoss(ignore_index=ignore, weight=None if weights is None else torch.from_numpy(weights).to(device))


# --- one epoch -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trainer:
    """What a training epoch needs, built once per run."""

    model: nn.Module  # DDP-wrapped when distributed
    loader: DataLoader
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    precision: MixedPrecision
    device: torch.device
    ctx: DistContext

    def epoch(self, epoch: int, total_epochs: int, progress: bool) -> float:
        """Train one epoch; returns the mean training loss over every rank's images."""
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        self.loader.dataset.set_epoch(epoch)
        total, count = 0.0, 0
        bar = tqdm(self.loader, desc=f"epoch {epoch}/{total_epochs}", leave=False, disable=not (progress and self.ctx.is_main), unit="batch")
        for groups in bar:
            batch_total, batch_count = self._step(groups, epoch)
            total, count = total + batch_total, count + batch_count
            bar.set_postfix(loss=f"{total / count:.4f}")
        total, count = all_reduce_sums([total, count], self.ctx, self.device)
        return total / max(count, 1)

    def _step(self, groups: list, epoch: int) -> tuple[float, int]:
        """One optimiser step over a batch; images of different sizes come as separate groups whose
        losses are weighted by their share of the batch (one gradient sync per step under DDP)."""
        n = sum(x.shape[0] for x, _ in groups)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, (x, y) in enumerate(groups):
            x, y = x.to(self.device), y.to(self.device)
            last = i == len(groups) - 1
            with self._no_sync(not last):
                with self.precision.autocast():
                    loss = self.criterion(self.model(x), y)
                if not torch.isfinite(loss):
                    raise DlcvError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower --lr")
                self.precision.backward(loss * (x.shape[0] / n))
            total += loss.item() * x.shape[0]
        self.precision.step(self.optimizer)
        return total, n

    def _no_sync(self, skip: bool):
        if skip and isinstance(self.model, nn.parallel.DistributedDataParallel):
            return self.model.no_sync()
        return contextlib.nullcontext()


def _train_loader(data: RunData, cfg: TrainConfig, ctx: DistContext) -> DataLoader:
    sampler = train_sampler(data.train, ctx, cfg.seed)
    return DataLoader(
        data.train, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        drop_last=len(sampler) > cfg.batch_size, collate_fn=collate_by_size,
    )  # fmt: skip


# --- logs ----------------------------------------------------------------------------------------


class RunLog:
    """``log.csv`` (rewritten atomically each epoch) and TensorBoard scalars when installed."""

    def __init__(self, out: Path, cfg: TrainConfig, start_epoch: int, ctx: DistContext):
        self.csv = out / "log.csv"
        self.writer = None
        if not (cfg.tensorboard and ctx.is_main):
            return
        if importlib.util.find_spec("tensorboard") is None:
            _say(ctx, "note: tensorboard is not installed (pip install tensorboard); log.csv holds the same numbers")
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch)

    def write(self, history: list[dict], val: dict, task: str, class_names: tuple[str, ...]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.csv, buf.getvalue())
        if self.writer is None:
            return
        row = history[-1]
        step = row["epoch"]
        for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("lr", "lr")):
            self.writer.add_scalar(tag, row[key], step)
        kind = get_task(task)
        self.writer.add_scalar(f"val/{kind.headline_key}", row["val_metric"], step)
        self.writer.add_scalar(f"val/{kind.secondary_key}", val.get(kind.secondary_key, float("nan")), step)
        for name, iou in zip(class_names, val.get("per_class_iou", [])):
            if iou is not None:
                self.writer.add_scalar(f"val_iou/{name}", iou, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- resume state --------------------------------------------------------------------------------


@dataclass
class Progress:
    """Where a run stands after its last complete epoch."""

    epoch: int = 0
    best_metric: float = float("-inf")
    epochs_since_best: int = 0
    history: list[dict] = field(default_factory=list)

    def record(self, metric: float) -> bool:
        """Count an epoch's metric; True when it is the best so far."""
        if metric > self.best_metric:
            self.best_metric, self.epochs_since_best = metric, 0
            return True
        self.epochs_since_best += 1
        return False


def rng_state() -> dict:
    """This process's torch (CPU and CUDA), numpy and Python RNG states as checkpoint-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _settings(cfg: TrainConfig, data: RunData) -> dict:
    return {**cfg.trajectory(), "layout": data.dataset.format.name}


def _train_state(run: "Run", progress: Progress, rng: list[dict]) -> dict:
    return {
        "optimizer": run.trainer.optimizer.state_dict(),
        "scheduler": None if run.scheduler is None else run.scheduler.state_dict(),
        "scaler": run.trainer.precision.state_dict(),
        "rng": rng,
        "best_metric": progress.best_metric,
        "epochs_since_best": progress.epochs_since_best,
        "history": progress.history,
        "settings": run.settings,
    }


def restore(path: str | Path, run: "Run") -> Progress:
    """Load ``last.pt`` into the run's model, optimiser, schedule, scaler and RNGs."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("train_state")
    if state is None or "settings" not in state:
        raise DlcvError(f"{path}: has no training state to resume from; resume from the run's last.pt")
    saved, now = state["settings"], run.settings
    changed = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
    if changed:
        detail = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in changed.items())
        raise DlcvError(f"{path}: cannot resume with different settings ({detail}); repeat the original options")
    unwrap(run.trainer.model).load_state_dict(ckpt["state_dict"])
    run.trainer.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    run.trainer.precision.load_state_dict(state["scaler"])
    rng = state["rng"]
    ctx = run.trainer.ctx
    if len(rng) != ctx.world_size:
        _say(ctx, f"note: {path} was written by {len(rng)} process(es), this run has {ctx.world_size}: "
                  "the run continues, but random draws differ from an uninterrupted run")  # fmt: skip
    set_rng_state(rng[ctx.rank % len(rng)])
    return Progress(int(ckpt["epoch"]), float(state["best_metric"]), int(state["epochs_since_best"]), list(state["history"]))


# --- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A run's fixed parts."""

    cfg: TrainConfig
    data: RunData
    trainer: Trainer
    scheduler: object
    val_loader: DataLoader
    settings: dict
    out: Path

    def checkpoint(self, metrics: dict, epoch: int, train_state: dict | None = None) -> dict:
        info = self.data.info
        return build_checkpoint(
            unwrap(self.trainer.model), arch=self.cfg.model, arch_kwargs=self.cfg.arch_kwargs,
            class_names=info.class_names, preprocess=self.data.spec, palette=info.palette,
            dataset=self.data.record, metrics=metrics, epoch=epoch,
            train_state=train_state,
        )  # fmt: skip


def _build_run(cfg: TrainConfig, ctx: DistContext, device: torch.device, resuming: bool) -> Run:
    task = model_info(cfg.model).task
    data = prepare_data(cfg, task, ctx)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.info.num_classes, device, ctx, resuming)
    torch.manual_seed(cfg.seed + ctx.rank)  # ranks draw different dropout masks
    optimizer = build_optimizer(model, cfg)
    note = MixedPrecision.unavailable_note(cfg.amp, device)
    if note:
        _say(ctx, f"note: {note}")
    trainer = Trainer(
        wrap_model(model, ctx, device), _train_loader(data, cfg, ctx), build_criterion(cfg, data, device),
        optimizer, MixedPrecision(cfg.amp, device), device, ctx,
    )  # fmt: skip
    val_loader = eval_loader(data.val, cfg.batch_size, cfg.num_workers, ctx)
    return Run(cfg, data, trainer, build_scheduler(optimizer, cfg), val_loader, _settings(cfg, data), Path(cfg.out))


def _epoch_row(epoch: int, train_loss: float, val: dict, metric: float, lr: float, seconds: float) -> dict:
    return {
        "epoch": epoch,
        "train_loss": round(train_loss, 6),
        "val_loss": round(val["loss"], 6),
        "val_metric": round(metric, 6),
        "val_pixel_accuracy": round(val.get("pixel_accuracy", val.get("top1", float("nan"))), 6),
        "lr": lr,
        "seconds": round(seconds, 2),
    }


def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; writes best.pt, last.pt, log.csv, overlays/ and
    tensorboard/ under ``cfg.out``. Under torchrun every rank calls this; rank 0 writes."""
    ctx, device_name = init_distributed(cfg.device)
    try:
        return _train(cfg, resume, ctx, resolve_device(device_name))
    finally:
        shutdown(ctx)


def _train(cfg: TrainConfig, resume, ctx: DistContext, device: torch.device) -> TrainResult:
    run = _build_run(cfg, ctx, device, resuming=resume is not None)
    out = run.out
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    progress = restore(resume, run) if resume is not None else Progress()
    if progress.epoch >= cfg.epochs:
        _say(ctx, f"nothing to train: the run has finished {progress.epoch} of --epochs {cfg.epochs}")
    overlays = OverlayWriter(run.data.val, out / "overlays", cfg.overlays) if ctx.is_main else None
    log = RunLog(out, cfg, progress.epoch + 1, ctx)
    stopped = False
    try:
        for epoch in range(progress.epoch + 1, cfg.epochs + 1):
            if cfg.patience is not None and progress.epochs_since_best >= cfg.patience:
                _say(ctx, f"early stop: no better validation metric in {cfg.patience} epochs (best {progress.best_metric:.4f})")
                stopped = True
                break
            _run_epoch(run, epoch, progress, overlays, log)
    finally:
        log.close()
    best = out / "best.pt"
    if ctx.is_main and not best.exists():
        raise DlcvError(f"no epoch was trained (start epoch {progress.epoch + 1} > --epochs {cfg.epochs})")
    return TrainResult(best, out / "last.pt", out / "log.csv", progress.best_metric, tuple(progress.history), stopped, ctx.rank)


def _run_epoch(run: Run, epoch: int, progress: Progress, overlays: OverlayWriter | None, log: RunLog) -> None:
    cfg, trainer, ctx, task = run.cfg, run.trainer, run.trainer.ctx, run.data.info.task
    t0 = time.perf_counter()
    train_loss = trainer.epoch(epoch, cfg.epochs, cfg.progress)
    sync_buffers(trainer.model, ctx)  # BatchNorm statistics as rank 0 has them, on every rank
    model = unwrap(trainer.model)
    val = evaluate(model, run.val_loader, run.data.info, trainer.device, trainer.criterion, ctx=ctx, autocast=trainer.precision.autocast)
    metric = headline(val, task)
    step_scheduler(run.scheduler, metric)
    row = _epoch_row(epoch, train_loss, val, metric, trainer.optimizer.param_groups[0]["lr"], time.perf_counter() - t0)
    progress.history.append(row)
    progress.epoch = epoch
    improved = progress.record(metric)
    if overlays is not None:
        figure = overlays.write(model, epoch, trainer.device)
        if figure is not None and log.writer is not None:
            log.writer.add_image("overlays", read_image(figure), epoch, dataformats="HWC")
    rng = gather(rng_state(), ctx)  # after every random draw of the epoch
    if not ctx.is_main:
        return
    name = get_task(task).headline_name
    if cfg.progress:
        tqdm.write(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f}  val loss {val['loss']:.4f}  val {name} {metric:.4f}  ({row['seconds']}s)")
    metrics = {"val": dict(val), "epoch": epoch}
    if improved:
        save_checkpoint(run.out / "best.pt", run.checkpoint(metrics, epoch))
    if cfg.snapshot_every and (epoch % cfg.snapshot_every == 0 or epoch == cfg.epochs):
        save_checkpoint(run.out / "epochs" / f"epoch_{epoch:03d}.pt", run.checkpoint(metrics, epoch))
    save_checkpoint(run.out / "last.pt", run.checkpoint(metrics, epoch, _train_state(run, progress, rng)))
    log.write(progress.history, val, task, run.data.info.class_names)
