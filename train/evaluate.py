"""Evaluation of a PyTorch model with dlcv.runtime's metrics (training-time mIoU = deployment mIoU)."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from dlcv.runtime.datasets import DatasetInfo
from dlcv.runtime.task import get_task
from dlcv.runtime.task_metrics import ClassificationMetrics, ConfusionMatrix

from .data.datasets import collate_by_size
from .distributed import DistContext, ShardSampler, all_reduce_sums, merge_metrics


def new_metrics(info: DatasetInfo):
    """The runtime metric accumulator for the dataset's task."""
    if get_task(info.task).per_pixel:
        return ConfusionMatrix(info.num_classes, info.ignore_index, info.exclude_classes)
    return ClassificationMetrics(info.num_classes)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, ctx: DistContext = DistContext()) -> DataLoader:
    """A loader of ``collate_by_size`` batches over this rank's share of ``dataset``, in order."""
    sampler = ShardSampler(len(dataset), ctx) if ctx.enabled else None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_by_size)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    info: DatasetInfo,
    device: torch.device,
    criterion=None,
    *,
    ctx: DistContext = DistContext(),
    autocast=contextlib.nullcontext,
) -> dict:
    """Run ``model`` over an :func:`eval_loader`; returns the runtime metrics (merged over the
    ranks when distributed) plus ``loss`` when ``criterion`` is given."""
    model.eval()
    metrics = new_metrics(info)
    loss_sum, count = 0.0, 0
    for groups in loader:
        for x, y in groups:
            x, y = x.to(device), y.to(device)
            with autocast():
                logits = model(x)
            if criterion is not None:
                loss_sum += float(criterion(logits.float(), y)) * x.shape[0]
                count += x.shape[0]
            if get_task(info.task).per_pixel:
                metrics.update(y.cpu().numpy(), logits.argmax(1).cpu().numpy())
            else:
                metrics.update(y.cpu().numpy(), logits.float().cpu().numpy())
    merge_metrics(metrics, ctx, device)
    result = metrics.compute()
    if criterion is not None:
        loss_sum, count = all_reduce_sums([loss_sum, count], ctx, device)
        result["loss"] = loss_sum / max(count, 1)
    return result


def headline(result: dict, task: str) -> float:
    """The number a run is selected by: mIoU (segmentation) or top-1 (classification)."""
    value = get_task(task).headline(result)
    return float("-inf") if value is None or np.isnan(value) else float(value)
