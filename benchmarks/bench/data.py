"""The images a benchmark runs on: a dataset split, a plain image folder, the demo set, or
synthetic images, read and preprocessed by the runtime's own functions. A dataset is opened
as the model's metadata records it (:func:`dlcv.runtime.datasets.open_split`: layout, options,
class map, evaluation split); a folder in another layout than the recorded one is an error.

Parity tensors are the deployment tensors: ``preprocess_image(read_image(file), spec)`` with
the checkpoint's preprocessing, and segmentation labels brought to the same geometry with
``preprocess_label_map`` (as training evaluation does). Synthetic images are drawn at the
benchmark's input size and also written as PNG files, so the end-to-end split always runs
on real files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dlcv.runtime.datasets import evenly_spread, open_split, recognise_layout
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import is_image_file, read_image, write_png
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.preprocess import preprocess_image, preprocess_label_map
from dlcv.runtime.task import get_task

DEMO = "demo"


@dataclass(frozen=True)
class BenchImages:
    """Images (RGB uint8), their files, and their truth when the data has labels.

    ``labels``: per image a label map (segmentation, already in model-input geometry) or a
    class index; None when there are no usable labels (the reference's labels stand in).
    """

    description: str
    rgb: tuple[np.ndarray, ...]
    files: tuple[Path, ...]
    labels: tuple | None
    calibration_source: Path  # what an INT8 export calibrates on (a dataset root or an image folder)
    calibration_description: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParityBatch:
    """One batch of preprocessed images of equal size, with per-image truth (or None)."""

    tensor: np.ndarray
    truth: tuple | None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def synthetic_images(shape: tuple[int, int], count: int, seed: int, folder: Path) -> BenchImages:
    """``count`` deterministic synthetic images at ``shape``, also written to ``folder`` as PNG."""
    from dlcv.export.verify import synthetic_image  # the export's own test images

    rng = np.random.default_rng([seed, *shape])
    rgb = tuple(synthetic_image(shape[0], shape[1], rng) for _ in range(count))
    files = []
    for i, image in enumerate(rgb):
        path = folder / f"synthetic_{i:04d}.png"
        write_png(path, image)
        files.append(path)
    description = f"{count} synthetic images {shape[0]}×{shape[1]} (no labels: the reference's labels are the truth)"
    return BenchImages(description, rgb, tuple(files), None, folder, "the same synthetic images")


def _dataset_images(root: Path, metadata: ArtifactMetadata, count: int) -> BenchImages | None:
    """The evaluation split (:data:`~dlcv.runtime.datasets.EVAL_SPLIT_ORDER`) of a dataset,
    opened as the model's metadata records it; None when ``root`` is no dataset (a plain folder
    of images). Labels that do not fit the model are left out, with a note."""
    if recognise_layout(root, metadata) is None:
        return None
    split = open_split(root, metadata.dataset, None).subset(count)
    notes = list(split.notes)
    problem = split.mismatch(metadata)
    usable = problem is None
    if not usable:
        notes.append(f"the dataset's labels do not fit the model ({problem}); the reference's labels are the truth")
    rgb, labels = [], []
    for sample in split.samples:
        rgb.append(read_image(sample.image))
        if not usable:
            continue
        if get_task(metadata.task).per_pixel:
            labels.append(preprocess_label_map(split.read_labels(sample), metadata.preprocess, metadata.ignore_index))
        else:
            labels.append(int(sample.target))
    description = f"{len(split)} images of {split.describe()}"
    if usable:
        description += ", with their labels"
    calibration = f"the {split.record.format} dataset {root} (dlcv-export takes its train split)"
    return BenchImages(
        description, tuple(rgb), tuple(s.image for s in split.samples), tuple(labels) if usable else None, root,
        calibration, tuple(notes),
    )  # fmt: skip


def load_images(
    data: str | None, metadata: ArtifactMetadata, *, count: int, shape: tuple[int, int], seed: int, workdir: Path
) -> BenchImages:
    """The benchmark's images for ``--data`` (None: synthetic at ``shape``; see the module docstring)."""
    if data is None:
        return synthetic_images(shape, count, seed, workdir / "images")
    if data == DEMO:
        from dlcv.train.data.demo import demo_root

        root = demo_root(metadata.task)
    else:
        root = Path(data)
        if not root.is_dir():
            raise DlcvError(f"{root}: --data folder not found (give a dataset folder, a folder of images, or 'demo')")
    found = _dataset_images(root, metadata, count)
    if found is not None:
        return found
    files = evenly_spread(_image_files(root), count)
    if not files:
        raise DlcvError(f"{root}: neither a dataset in a known layout nor a folder of images (.png, .jpg, ...)")
    return BenchImages(
        f"{len(files)} images of {root} (no labels: the reference's labels are the truth)",
        tuple(read_image(p) for p in files), tuple(files), None, root, f"the images of {root}",
    )  # fmt: skip


def parity_batches(images: BenchImages, metadata: ArtifactMetadata, batch_size: int) -> Iterator[ParityBatch]:
    """The deployment tensors of ``images`` in batches of up to ``batch_size`` images of one size."""
    pending: list[np.ndarray] = []
    truth: list = []

    def flush() -> ParityBatch:
        batch = ParityBatch(np.stack(pending), tuple(truth) if images.labels is not None else None)
        pending.clear()
        truth.clear()
        return batch

    for i, rgb in enumerate(images.rgb):
        x, _ = preprocess_image(rgb, metadata.preprocess)
        if pending and (x.shape != pending[0].shape or len(pending) == batch_size):
            yield flush()
        pending.append(x)
        if images.labels is not None:
            truth.append(images.labels[i])
    if pending:
        yield flush()


def latency_batch(
    images: BenchImages, metadata: ArtifactMetadata, batch_size: int, shape: tuple[int, int], seed: int
) -> np.ndarray:
    """A ``batch_size``×3×H×W input built from the benchmark's images (resized to ``shape`` when
    the deployment preprocessing gives another size)."""
    from dlcv.export.verify import make_batch

    return make_batch(metadata.preprocess, (batch_size, *shape), seed=seed, images=list(images.rgb))


def natural_shape(images: BenchImages, metadata: ArtifactMetadata) -> tuple[int, int]:
    """The model-input size of the first image under the deployment preprocessing."""
    x, _ = preprocess_image(images.rgb[0], metadata.preprocess)
    return int(x.shape[1]), int(x.shape[2])
