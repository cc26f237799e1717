"""Self-describing checkpoints (docs/architecture.md contract 1): a plain dict loadable with weights_only=True.

Key ``dataset`` (written by dlcv-train; absent from older checkpoints): the
:class:`~dlcv.runtime.datasets.DatasetRecord` of the training data, which export copies into
every artifact's metadata. When present it is the source of ``ignore_index`` and
``exclude_classes``, which are written beside it for older readers.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from dlcv.runtime.atomic import atomic_path
from dlcv.runtime.backends import deployed_suffixes
from dlcv.runtime.datasets import DatasetRecord
from dlcv.runtime.errors import DlcvError, first_line
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.runtime.version import dlcv_version

from .registry import create_model, model_info

REQUIRED_KEYS = ("arch", "arch_kwargs", "task", "num_classes", "class_names", "preprocess", "state_dict")


def build_checkpoint(
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    class_names: tuple[str, ...] | list[str],
    preprocess: PreprocessSpec,
    palette=None,
    dataset: DatasetRecord | None = None,
    ignore_index: int | None = None,
    exclude_classes=None,
    metrics: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict; only plain types and tensors, so weights_only loading works.

    ``dataset``: the record of the training data; the label rules (``ignore_index``,
    ``exclude_classes``) come from it, and explicit values must agree with it. Without a record
    they default to 255 and none.
    """
    info = model_info(arch)
    ignore_index, exclude_classes = _label_rules(dataset, ignore_index, exclude_classes)
    ckpt = {
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "task": info.task,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "palette": None if palette is None else [list(map(int, c)) for c in palette],
        "ignore_index": int(ignore_index),
        "exclude_classes": [int(c) for c in exclude_classes],
        "preprocess": preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": dict(metrics or {}),
        "epoch": epoch,
        "dlcv_version": dlcv_version(),
    }
    if dataset is not None:
        ckpt["dataset"] = dataset.to_dict()
    if train_state is not None:
        ckpt["train_state"] = dict(train_state)
    return ckpt


def _label_rules(dataset: DatasetRecord | None, ignore_index, exclude_classes) -> tuple[int, tuple[int, ...]]:
    if dataset is None:
        return 255 if ignore_index is None else int(ignore_index), tuple(int(c) for c in exclude_classes or ())
    if ignore_index is not None and int(ignore_index) != dataset.ignore_index:
        raise ValueError(f"ignore_index {ignore_index} differs from the dataset record's {dataset.ignore_index}")
    if exclude_classes is not None and tuple(int(c) for c in exclude_classes) != dataset.exclude_classes:
        raise ValueError(f"exclude_classes {list(exclude_classes)} differ from the dataset record's {list(dataset.exclude_classes)}")
    return dataset.ignore_index, dataset.exclude_classes


def dataset_record(ckpt: Mapping[str, Any], source: str = "checkpoint") -> DatasetRecord | None:
    """The checkpoint's dataset record (None for checkpoints written before it existed)."""
    data = ckpt.get("dataset")
    return None if data is None else DatasetRecord.from_dict(data, source)


def save_checkpoint(path: str | os.PathLike, ckpt: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically (a killed run leaves the previous file intact)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(ckpt), tmp)
    return path


def load_weights_only(path: Path, kind: str, remedy: str) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file.

    A file that carries pickled Python objects is refused (never executed), with ``remedy``;
    a truncated or foreign file is reported as not a readable PyTorch ``kind``.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "WeightsUnpickler error" in ln), first_line(exc))
        if "Unsupported global" in detail or "GLOBAL" in detail:
            raise DlcvError(
                f"{path}: refused: the file holds pickled Python objects that weights-only loading does not run "
                f"({detail[:200]}). {remedy}"
            ) from None
        raise DlcvError(f"{path}: not a readable PyTorch {kind} ({detail[:200]})") from None
    except Exception as exc:  # zip/format errors from torch: truncated or not a torch file
        raise DlcvError(
            f"{path}: not a readable PyTorch {kind}, truncated or another format ({type(exc).__name__}: {first_line(exc, 200)})"
        ) from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a dlcv checkpoint. Pickled objects are refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: checkpoint not found")
    if path.suffix.lower() in deployed_suffixes():
        raise DlcvError(
            f"{path}: this is a deployed model ({path.suffix}), not a PyTorch checkpoint; "
            "give the .pt file that dlcv-train wrote (the artifact's source, the parity reference)"
        )
    ckpt = load_weights_only(path, "checkpoint", "Re-save it as a plain dict of tensors and values (dlcv checkpoints are).")
    if not isinstance(ckpt, dict):
        raise DlcvError(f"{path}: expected a dlcv checkpoint (a dict), found {type(ckpt).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise DlcvError(
            f"{path}: not a dlcv checkpoint (missing {', '.join(missing)}); train with dlcv-train, "
            "or build one with dlcv.train.checkpoint.build_checkpoint"
        )
    if len(ckpt["class_names"]) != ckpt["num_classes"]:
        raise DlcvError(f"{path}: num_classes={ckpt['num_classes']} but {len(ckpt['class_names'])} class names")
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    model = create_model(ckpt["arch"], num_classes=ckpt["num_classes"], **ckpt["arch_kwargs"])
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise DlcvError(f"{source}: weights do not fit {ckpt['arch']} {ckpt['arch_kwargs']} ({first_line(exc)})") from None
    return model.eval()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metadata_from_checkpoint(ckpt: Mapping[str, Any], *, source_sha256: str = "", precision: str = "fp32") -> ArtifactMetadata:
    """The artifact metadata (docs/architecture.md contract 3) of a model exported from ``ckpt``."""
    return ArtifactMetadata(
        task=ckpt["task"],
        arch=ckpt["arch"],
        num_classes=int(ckpt["num_classes"]),
        class_names=tuple(ckpt["class_names"]),
        preprocess=PreprocessSpec.from_dict(ckpt["preprocess"]),
        precision=precision,
        palette=None if ckpt.get("palette") is None else tuple(tuple(c) for c in ckpt["palette"]),
        ignore_index=int(ckpt.get("ignore_index", 255)),
        exclude_classes=tuple(int(c) for c in ckpt.get("exclude_classes", ())),
        source_checkpoint_sha256=source_sha256,
        dlcv_version=dlcv_version(),
        dataset=dataset_record(ckpt),
    )
