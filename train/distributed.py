"""Several processes (``torchrun --nproc_per_node N -m dlcv.train ...``): DDP helpers.

One process per GPU (NCCL) or per CPU worker (gloo). Training shards the data with a
DistributedSampler; evaluation shards it without padding (each image is scored once) and the
confusion matrices are summed across ranks, so the merged metric is the single-process one.
Only rank 0 writes checkpoints, logs and figures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

from dlcv.runtime.errors import DlcvError, first_line
from dlcv.runtime.task_metrics import ClassificationMetrics, ConfusionMatrix


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[DistContext, str]:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``); returns the context and this rank's device name."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if torch.cuda.device_count() <= local:
            raise DlcvError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) are visible")
        device, backend = f"cuda:{local}", "nccl"
        torch.cuda.set_device(local)
    else:
        backend = "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        except (RuntimeError, ValueError) as exc:
            raise DlcvError(f"rank {rank}: cannot join the {backend} process group ({first_line(exc)}); launch with torchrun") from None
    return DistContext(rank, world, local), device


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed (rank 0's weights are broadcast)."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), so that all ranks
    evaluate the very model rank 0 saves."""
    if not ctx.enabled:
        return
    for buf in unwrap(model).buffers():
        dist.broadcast(buf, src=0)


def train_sampler(dataset: Dataset, ctx: DistContext, seed: int) -> DistributedSampler:
    """A shuffling sampler for this rank's shard; call ``set_epoch`` every epoch (a new order each
    epoch, the same order on a resumed run). Used with one process too, so both paths are one."""
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank``: no padding, so each sample is scored once."""

    def __init__(self, length: int, ctx: DistContext):
        self.indices = list(range(ctx.rank, length, ctx.world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _backend_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sums(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (float64)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_backend_device(device))
    dist.all_reduce(t)
    return t.cpu().tolist()


def merge_metrics(metrics: ConfusionMatrix | ClassificationMetrics, ctx: DistContext, device: torch.device) -> None:
    """Sum the confusion matrix (and top-k hits, out-of-range counts) of every rank, in place."""
    if not ctx.enabled:
        return
    cm = metrics.confusion if isinstance(metrics, ClassificationMetrics) else metrics
    ks = list(metrics.topk) if isinstance(metrics, ClassificationMetrics) else []
    extra = [cm.out_of_range] + [metrics.topk_hits[k] for k in ks]
    flat = np.concatenate([cm.matrix.reshape(-1), np.asarray(extra, dtype=np.int64)])
    t = torch.from_numpy(flat).to(_backend_device(device))
    dist.all_reduce(t)
    merged = t.cpu().numpy()
    n = cm.num_classes * cm.num_classes
    cm.matrix[:] = merged[:n].reshape(cm.matrix.shape)
    cm.out_of_range = int(merged[n])
    for i, k in enumerate(ks):
        metrics.topk_hits[k] = int(merged[n + 1 + i])


def gather(obj, ctx: DistContext) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
