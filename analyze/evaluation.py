"""The images an analysis runs on and the models it runs (PyTorch).

The evaluation split (:data:`dlcv.runtime.datasets.EVAL_SPLIT_ORDER`: val, else test, else
train) of a dataset folder or the demo data, opened as the checkpoint recorded its dataset by
:func:`dlcv.runtime.datasets.open_split` and turned into tensors by dlcv.train's
:class:`~dlcv.train.data.datasets.ImageDataset`: exactly the tensors training evaluation and
every deployment backend see (the preprocessing contract's one function, no augmentation).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dlcv.runtime.datasets import DatasetInfo, Sample, open_split
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.train.checkpoint import load_checkpoint, metadata_from_checkpoint, model_from_checkpoint
from dlcv.train.data.datasets import ImageDataset
from dlcv.train.data.demo import demo_root


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint's model in eval mode, and what the report calls it."""

    label: str
    epoch: int | None
    path: Path
    model: nn.Module


def checkpoint_info(ckpt: Mapping[str, Any]) -> DatasetInfo:
    """How the checkpoint's predictions are scored: its classes, palette, ignore index, exclusions."""
    palette = ckpt.get("palette")
    return DatasetInfo(
        ckpt["task"], tuple(ckpt["class_names"]),
        None if palette is None else tuple(tuple(int(v) for v in c) for c in palette),
        int(ckpt.get("ignore_index", 255)), tuple(int(c) for c in ckpt.get("exclude_classes", ())),
    )  # fmt: skip


def load_model(
    path: Path, device: torch.device, label: str | None = None, reference: Mapping | None = None
) -> tuple[dict, LoadedModel]:
    """Load a checkpoint and its model; with ``reference``, refuse one of another model or classes."""
    ckpt = load_checkpoint(path)
    if reference is not None:
        mine = (ckpt["arch"], ckpt["arch_kwargs"], list(ckpt["class_names"]))
        theirs = (reference["arch"], reference["arch_kwargs"], list(reference["class_names"]))
        if mine != theirs:
            raise DlcvError(
                f"{path}: is {mine[0]} {mine[1]} with {len(mine[2])} classes, but the analysed checkpoint is "
                f"{theirs[0]} {theirs[1]} with {len(theirs[2])} classes; snapshots must come from the same run"
            )
    model = model_from_checkpoint(ckpt, source=str(path)).to(device)
    epoch = ckpt.get("epoch")
    name = label or (f"epoch {epoch}" if epoch is not None else path.name)
    return ckpt, LoadedModel(name, None if epoch is None else int(epoch), Path(path), model)


@dataclass(frozen=True)
class EvalSplit:
    """The analysed split: where it came from, its samples and their model tensors."""

    root: Path
    split: str
    info: DatasetInfo
    spec: PreprocessSpec
    samples: tuple[Sample, ...]
    dataset: ImageDataset
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[index].image.name


def open_eval_split(data: str, ckpt: Mapping[str, Any], fmt: str | None = None, class_map: str | None = None) -> EvalSplit:
    """The evaluation split of ``data`` (a folder or ``"demo"``), opened as the checkpoint
    recorded its dataset (:func:`dlcv.runtime.datasets.open_split`; ``fmt`` / ``class_map``
    override the record), checked against the checkpoint's task and classes and scored by the
    checkpoint's rules."""
    root = demo_root(ckpt["task"]) if data == "demo" else Path(data)
    split = open_split(root, metadata_from_checkpoint(ckpt), None, format=fmt, class_map=class_map)
    info = checkpoint_info(ckpt)
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    dataset = ImageDataset(list(split.samples), split.dataset, info, spec)
    return EvalSplit(root, split.name, info, spec, split.samples, dataset, split.notes)


class _Indexed(Dataset):
    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        return index, x, y


def _group_by_shape(batch: list) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """(indices, inputs, targets) per input shape, in first-seen order (a batch never mixes sizes)."""
    groups: dict[tuple, list] = {}
    for index, x, y in batch:
        groups.setdefault(tuple(x.shape), []).append((index, x, y))
    out = []
    for items in groups.values():
        ys = [y for _, _, y in items]
        targets = torch.stack(ys) if torch.is_tensor(ys[0]) else torch.tensor(ys)
        out.append(([i for i, _, _ in items], torch.stack([x for _, x, _ in items]), targets))
    return out


def iterate(
    split: EvalSplit, indices: Sequence[int], batch_size: int, workers: int, desc: str, progress: bool
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Yield (sample indices, inputs, targets) over ``indices`` with a progress bar on stderr."""
    loader = DataLoader(_Indexed(split.dataset), batch_size=batch_size, sampler=list(indices), num_workers=workers,
                        collate_fn=_group_by_shape)  # fmt: skip
    with tqdm(total=len(indices), unit="img", desc=desc, file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for groups in loader:
            for group in groups:
                yield group
                bar.update(len(group[0]))


def subset(count: int, cap: int, seed: int) -> list[int]:
    """All of ``range(count)`` when it has at most ``cap`` items, else ``cap`` of them chosen at
    random with ``seed`` (sorted)."""
    if count <= cap:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, size=cap, replace=False).tolist())

