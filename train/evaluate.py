"""Evaluation of a PyTorch model with dlcv.runtime's metrics (training-time mIoU = deployment mIoU)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from dlcv.runtime.metrics import ClassificationMetrics, ConfusionMatrix

from .data.formats import DatasetInfo


def new_metrics(info: DatasetInfo):
    """The runtime metric accumulator for the dataset's task."""
    if info.task == "segmentation":
        return ConfusionMatrix(info.num_classes, info.ignore_index, info.exclude_classes)
    return ClassificationMetrics(info.num_classes)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, info: DatasetInfo, device: torch.device, criterion=None) -> dict:
    """Run ``model`` over ``loader``; returns the runtime metrics plus ``loss`` when ``criterion`` is given."""
    model.eval()
    metrics = new_metrics(info)
    loss_sum, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        if criterion is not None:
            loss_sum += float(criterion(logits, y)) * x.shape[0]
            count += x.shape[0]
        if info.task == "segmentation":
            metrics.update(y.cpu().numpy(), logits.argmax(1).cpu().numpy())
        else:
            metrics.update(y.cpu().numpy(), logits.float().cpu().numpy())
    result = metrics.compute()
    if criterion is not None:
        result["loss"] = loss_sum / max(count, 1)
    return result


def headline(result: dict, task: str) -> float:
    """The number a run is selected by: mIoU (segmentation) or top-1 (classification)."""
    value = result["miou"] if task == "segmentation" else result["top1"]
    return float("-inf") if value is None or np.isnan(value) else float(value)
