"""The training loop: Adam + ReduceLROnPlateau, cross-entropy with an ignore index, per-epoch evaluation."""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from dlcv.runtime.atomic import write_text_atomic
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.preprocess import PreprocessSpec

from .checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from .class_weights import class_weights, label_frequencies
from .config import TrainConfig
from .data.datasets import ImageDataset
from .data.demo import demo_root
from .data.formats import DatasetInfo, get_format
from .evaluate import evaluate, headline
from .registry import create_model, model_info

LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_metric", "val_pixel_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class TrainResult:
    best: Path
    last: Path
    log: Path
    best_metric: float
    history: tuple[dict, ...]


def default_preprocess(task: str, input_size: tuple[int, int] | None) -> PreprocessSpec:
    """Segmentation keeps the image size (FCNs take any size); classification resizes."""
    if task == "segmentation":
        return PreprocessSpec(resize="none") if input_size is None else PreprocessSpec(resize="resize", size=input_size)
    return PreprocessSpec(resize="resize", size=input_size or (224, 224))


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DlcvError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    return torch.device(name)


def _loaders(cfg: TrainConfig, task: str):
    root = demo_root(task) if cfg.data == "demo" else Path(cfg.data)
    fmt = get_format(cfg.format, root)
    if fmt.task != task:
        raise DlcvError(f"{root}: {fmt.name} is a {fmt.task} dataset but {cfg.model} is a {task} model")
    info = fmt.info(root)
    input_size = cfg.input_size or ((64, 64) if cfg.data == "demo" and task == "classification" else None)
    spec = default_preprocess(task, input_size)
    train_samples, val_samples = fmt.samples(root, "train"), fmt.samples(root, "val")
    if not train_samples:
        raise DlcvError(f"{root}: the train split is empty")
    if not val_samples:
        raise DlcvError(f"{root}: the val split is empty; training needs one to pick best.pt")
    train_ds = ImageDataset(train_samples, fmt, info, spec, cfg.augment, cfg.seed)
    val_ds = ImageDataset(val_samples, fmt, info, spec)
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    return train_ds, val_loader, info, spec, fmt


def _train_epoch(model, train_ds, cfg, epoch, optimizer, criterion, device) -> float:
    model.train()
    train_ds.set_epoch(epoch)
    order = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # same batches on a resumed run
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=order, num_workers=cfg.num_workers, drop_last=len(train_ds) > cfg.batch_size)
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress, unit="batch")
    for x, y in bar:
        x, y = x.to(device), y.to(device)
        loss = criterion(model(x), y)
        if not torch.isfinite(loss):
            raise DlcvError(f"training diverged at epoch {epoch} (loss {loss.item()}); lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * x.shape[0]
        count += x.shape[0]
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; writes best.pt, last.pt and log.csv under ``cfg.out``."""
    info_model = model_info(cfg.model)
    task = info_model.task
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    train_ds, val_loader, info, spec, fmt = _loaders(cfg, task)

    arch_kwargs = {"width": cfg.width}
    model = create_model(cfg.model, num_classes=info.num_classes, **arch_kwargs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=cfg.plateau_patience)
    ignore = info.ignore_index if task == "segmentation" else -100
    weights = class_weights(label_frequencies(train_ds.samples, fmt, info), cfg.class_weighting) if cfg.class_weighting != "none" else None
    criterion = nn.CrossEntropyLoss(ignore_index=ignore, weight=None if weights is None else torch.from_numpy(weights).to(device))

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    best_path, last_path, log_path = out / "best.pt", out / "last.pt", out / "log.csv"
    history: list[dict] = []
    best_metric, start_epoch = float("-inf"), 1
    if resume is not None:
        start_epoch, best_metric, history = _restore(resume, cfg, model, optimizer, scheduler)

    def checkpoint(metrics: dict, epoch: int, with_state: bool) -> dict:
        state = None
        if with_state:
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "best_metric": best_metric,
                "history": history,
                "config": {"model": cfg.model, "width": cfg.width, "seed": cfg.seed, "batch_size": cfg.batch_size},
            }
        return build_checkpoint(
            model, arch=cfg.model, arch_kwargs=arch_kwargs, class_names=info.class_names, preprocess=spec,
            palette=info.palette, ignore_index=info.ignore_index, exclude_classes=info.exclude_classes,
            metrics=metrics, epoch=epoch, train_state=state,
        )  # fmt: skip

    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        train_loss = _train_epoch(model, train_ds, cfg, epoch, optimizer, criterion, device)
        val = evaluate(model, val_loader, info, device, criterion)
        metric = headline(val, task)
        scheduler.step(metric if math.isfinite(metric) else 0.0)
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "val_loss": round(val["loss"], 6),
            "val_metric": round(metric, 6),
            "val_pixel_accuracy": round(val.get("pixel_accuracy", val.get("top1", float("nan"))), 6),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        history.append(row)
        name = "mIoU" if task == "segmentation" else "top-1"
        if cfg.progress:
            tqdm.write(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.4f}  val loss {val['loss']:.4f}  val {name} {metric:.4f}  ({row['seconds']}s)")
        metrics = {"val": {k: v for k, v in val.items()}, "epoch": epoch}
        if metric > best_metric:
            best_metric = metric
            save_checkpoint(best_path, checkpoint(metrics, epoch, with_state=False))
        save_checkpoint(last_path, checkpoint(metrics, epoch, with_state=True))
        _write_log(log_path, history)
    if not best_path.exists():
        raise DlcvError(f"no epoch was trained (start epoch {start_epoch} > --epochs {cfg.epochs})")
    return TrainResult(best_path, last_path, log_path, best_metric, tuple(history))


def _restore(path, cfg: TrainConfig, model, optimizer, scheduler):
    ckpt = load_checkpoint(path)
    state = ckpt.get("train_state")
    if state is None:
        raise DlcvError(f"{path}: has no training state to resume from; resume from the run's last.pt")
    saved = state["config"]
    mismatched = {k: (saved[k], getattr(cfg, k)) for k in saved if getattr(cfg, k) != saved[k]}
    if mismatched:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
        raise DlcvError(f"{path}: cannot resume with different settings ({detail})")
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(ckpt["epoch"]) + 1, float(state["best_metric"]), list(state["history"])
