"""Shared fixtures. torch is imported lazily: the runtime tests run without it."""
from __future__ import annotations

from pathlib import Path

import pytest

NARROW = 0.0625  # width of the test models: every channel count / 16


def write_test_checkpoint(
    path: Path,
    arch: str,
    *,
    width: float = NARROW,
    num_classes: int = 3,
    preprocess=None,
    seed: int = 0,
    std: float = 0.1,
) -> Path:
    """A narrow, untrained dlcv checkpoint with every parameter drawn from N(0, std²), so the
    logits are non-trivial (the FCN score layers are zero-initialised otherwise)."""
    import torch

    from dlcv.runtime.preprocess import PreprocessSpec
    from dlcv.train.checkpoint import build_checkpoint, save_checkpoint
    from dlcv.train.registry import create_model, model_info

    task = model_info(arch).task
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes, width=width)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    if preprocess is None:
        preprocess = PreprocessSpec() if task == "segmentation" else PreprocessSpec(resize="resize", size=(32, 32))
    palette = [[(37 * c) % 256, (91 * c) % 256, (151 * c) % 256] for c in range(num_classes)] if task == "segmentation" else None
    ckpt = build_checkpoint(
        model, arch=arch, arch_kwargs={"width": width}, class_names=[f"class_{c}" for c in range(num_classes)],
        preprocess=preprocess, palette=palette, metrics={"val": {"note": "untrained test checkpoint"}},
    )  # fmt: skip
    return save_checkpoint(path, ckpt)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """``make_checkpoint(arch, **kwargs) -> Path``: a cached narrow checkpoint file (do not modify it)."""
    cache: dict = {}

    def make(arch: str, **kwargs) -> Path:
        key = (arch, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{arch}.pt", arch, **kwargs)
        return cache[key]

    return make
