"""The deployed model as a Python object: ``dlcv.runtime.load(model) -> Predictor``.

A :class:`Predictor` opens the file once (the backend :func:`~dlcv.runtime.backends.choose_backend`
picks, as ``dlcv-infer`` does) and joins the three steps every caller runs:

- :func:`prepare_image`: a path, encoded bytes or an array -> the model input and its
  :class:`~dlcv.runtime.preprocess.Geometry` (OpenCV decoding by :func:`~dlcv.runtime.imageio.read_image`,
  then :func:`~dlcv.runtime.preprocess.preprocess_image`);
- :meth:`Predictor.infer`: a stacked batch -> the model's outputs (checked by the backend);
- :func:`postprocess_outputs`: outputs + geometries -> one result per image at the image's own
  size (:class:`SegmentationResult`: the labels dlcv-infer writes to ``<stem>.png``;
  :class:`ClassificationResult`: the top-5 predictions.csv writes).

``dlcv-infer`` (:mod:`.infer`, :mod:`.video`), the Ray actors (:mod:`.ray_infer`) and the Triton
Python models (:mod:`.triton.python_models`) call these same functions, so a mask from
:meth:`Predictor.predict` equals dlcv-infer's for the same image bit for bit.

Arrays are taken as OpenCV gives them, H×W×3 BGR uint8 (``rgb=True``: RGB); an H×W gray
array is replicated to three channels. Colour images a result draws (:meth:`SegmentationResult.color`,
:meth:`~SegmentationResult.overlay`) come back in the input's channel order.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

import cv2
import numpy as np

from .backends import Backend, choose_backend, open_backend, parse_device
from .errors import DlcvError, DlcvUsageError
from .imageio import DEFAULT_MAX_PIXELS, read_image
from .label_scoring import TOPK  # classification results keep the top 5 (dlcv-infer's predictions.csv)
from .metadata import ArtifactMetadata
from .postprocess import colorize, palette_array, predicted_labels, predicted_topk, softmax
from .preprocess import Geometry, PreprocessSpec, preprocess_image, restore_label_map
from .task import get_task

#: what :meth:`Predictor.predict` takes per image: a file path, or a decoded uint8 array
ImageInput = Union[str, os.PathLike, np.ndarray]


def window_size(workers: int, batch_size: int) -> int:
    """How many images may be loading (submitted to the reader threads and not yet consumed):
    the bound that keeps :meth:`Predictor.predict_batches` and dlcv-infer's memory flat."""
    return 2 * workers + batch_size


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TopClass:
    """One ranked class of a classification result."""

    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class ClassificationResult:
    """One image's class: ``label`` (index), ``name``, ``topk`` (best first, softmax
    probabilities), and ``logits`` (all C values; None for a model with an in-graph TopK head)."""

    label: int
    name: str
    topk: tuple[TopClass, ...]
    logits: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """One image's segmentation at its original size.

    ``labels``: H×W class indices (uint8, uint16 above 256 classes), exactly what dlcv-infer
    writes to ``<stem>.png``. ``scores``: H×W float32 softmax probability of the chosen class
    (only when asked for, and only for models that return logits). ``image``: the input image
    (in ``rgb`` order) when it was kept for :meth:`overlay`.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]
    palette: np.ndarray  # num_classes × 3, RGB
    rgb: bool = False
    scores: np.ndarray | None = None
    image: np.ndarray | None = field(default=None, repr=False)

    def color(self) -> np.ndarray:
        """The colour mask (H×W×3 uint8, the palette's colours) in the input's channel order."""
        rgb = colorize(self.labels, self.palette)
        return rgb if self.rgb else np.ascontiguousarray(rgb[:, :, ::-1])

    def overlay(self, alpha: float = 0.5, image: np.ndarray | None = None) -> np.ndarray:
        """The colour mask blended over the image: ``alpha`` × mask + (1 - ``alpha``) × image.
        ``image`` defaults to the one predicted on (same channel order as the input)."""
        base = self.image if image is None else image
        if base is None:
            raise DlcvUsageError("overlay() needs the image: predict with keep_images=True or pass image=")
        base = _as_three_channels(np.asarray(base), "overlay image")
        if base.shape[:2] != self.labels.shape:
            raise DlcvUsageError(f"overlay image is {base.shape[1]}×{base.shape[0]}, the labels {self.labels.shape[1]}×{self.labels.shape[0]}")
        if not 0.0 <= alpha <= 1.0:
            raise DlcvUsageError(f"overlay alpha must be within 0..1, got {alpha}")
        return cv2.addWeighted(self.color(), float(alpha), base, 1.0 - float(alpha), 0.0)

    def class_name(self, index: int) -> str:
        return self.class_names[index]


Result = Union[SegmentationResult, ClassificationResult]


@dataclass(frozen=True)
class PredictorMetadata:
    """What :attr:`Predictor.metadata` says: the model (task, classes, palette as RGB triples,
    preprocessing, precision, the artifact's full ``artifact`` metadata) and where it runs
    (``backend``, ``device``, and ``backend_choice``: which backend and why)."""

    task: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    preprocess: PreprocessSpec
    precision: str
    backend: str
    device: str
    backend_choice: str
    artifact: ArtifactMetadata

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- the three steps


def _as_three_channels(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype != np.uint8:
        raise DlcvUsageError(f"{name}: images must be uint8 arrays, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DlcvUsageError(f"{name}: images must be H×W×3 (or H×W gray) uint8 arrays, got shape {image.shape}")
    return image


def image_rgb(image: ImageInput, *, rgb: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
              data: bytes | np.ndarray | None = None, name: str = "image") -> np.ndarray:  # fmt: skip
    """Any image input as RGB uint8 H×W×3: a path (or ``data``, the file's bytes, with ``image``
    naming it) decoded by :func:`~dlcv.runtime.imageio.read_image`; an array taken as BGR
    (``rgb=True``: RGB) or gray."""
    if data is not None:
        return read_image(name if isinstance(image, np.ndarray) else image, max_pixels=max_pixels, data=data)
    if not isinstance(image, np.ndarray):
        return read_image(image, max_pixels=max_pixels)
    array = _as_three_channels(image, name)
    if array.ndim == 3 and image.ndim == 2:
        return array  # gray replicated: the same in either order
    if max_pixels is not None and array.shape[0] * array.shape[1] > max_pixels:
        raise DlcvError(f"{name}: image is {array.shape[1]}×{array.shape[0]} pixels, above the limit of {max_pixels} pixels")
    return array if rgb else cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def prepare_image(image: ImageInput, spec: PreprocessSpec, *, rgb: bool = False,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, data: bytes | np.ndarray | None = None,
                  name: str = "image") -> tuple[np.ndarray, Geometry]:  # fmt: skip
    """An image (see :func:`image_rgb`) -> (float32 3×H×W model input, its geometry)."""
    return preprocess_image(image_rgb(image, rgb=rgb, max_pixels=max_pixels, data=data, name=name), spec)


def postprocess_outputs(outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], metadata: ArtifactMetadata, *,
                        palette: np.ndarray | None = None, scores: bool = False, rgb: bool = False,
                        images: Sequence[np.ndarray | None] | None = None) -> list[Result]:  # fmt: skip
    """A batch's model outputs -> one result per image, at the image's original size.

    Segmentation: :func:`~dlcv.runtime.postprocess.predicted_labels` (numpy's argmax, or an
    in-graph head's labels) and :func:`~dlcv.runtime.preprocess.restore_label_map`; with
    ``scores`` also the chosen class's softmax probability (models that return logits).
    Classification: :func:`~dlcv.runtime.postprocess.predicted_topk` (top 5).
    """
    if get_task(metadata.task).per_pixel:
        pal = palette if palette is not None else palette_array(metadata.palette, metadata.num_classes)
        labels = predicted_labels(outputs, metadata)
        probs = None
        if scores and not _is_head(metadata):
            probs = softmax(outputs[metadata.output_name], axis=1).max(axis=1).astype(np.float32)
        results: list[Result] = []
        for i, (pred, g) in enumerate(zip(labels, geometries)):
            score = None if probs is None else restore_label_map(probs[i], g)
            image = None if images is None else images[i]
            results.append(SegmentationResult(restore_label_map(pred, g), metadata.class_names, pal, rgb, score, image))
        return results
    order, probs = predicted_topk(outputs, metadata, TOPK)
    logits = None if _is_head(metadata) else outputs[metadata.output_name]
    names = metadata.class_names
    return [
        ClassificationResult(
            int(order[i, 0]), names[int(order[i, 0])],
            tuple(TopClass(int(j), names[int(j)], float(p)) for j, p in zip(order[i], probs[i])),
            None if logits is None else logits[i],
        )
        for i in range(len(order))
    ]


def _is_head(metadata: ArtifactMetadata) -> bool:
    """True when the model returns an in-graph head's answers rather than logits."""
    assert metadata.outputs is not None  # set by ArtifactMetadata.__post_init__
    return metadata.outputs.is_head


# --------------------------------------------------------------------------- the predictor


@dataclass
class _Prepared:
    tensor: np.ndarray
    geometry: Geometry
    image: np.ndarray | None  # kept for overlay()


class Predictor:
    """A deployed model opened once; :func:`load` makes one. Use it as a context manager (or
    call :meth:`close`) to release the backend."""

    def __init__(self, backend: Backend, *, batch_size: int = 4, workers: int = 2,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, device: str = "cpu", backend_choice: str | None = None):  # fmt: skip
        if batch_size < 1 or workers < 1:
            raise DlcvUsageError(f"batch_size and workers must be at least 1, got {batch_size} and {workers}")
        self.backend = backend
        self.batch_size = batch_size
        self.workers = workers
        self.max_pixels = max_pixels
        self.artifact = artifact = backend.metadata  # the file's dlcv metadata (ArtifactMetadata)
        self.palette = palette_array(artifact.palette, artifact.num_classes)
        self.metadata = PredictorMetadata(
            task=artifact.task,
            class_names=artifact.class_names,
            palette=tuple((int(r), int(g), int(b)) for r, g, b in self.palette),
            preprocess=artifact.preprocess,
            precision=artifact.precision,
            backend=backend.name,
            device=device,
            backend_choice=backend_choice or backend.name,
            artifact=artifact,
        )

    @property
    def name(self) -> str:
        """The backend's name (``onnxruntime``, ``openvino``...)."""
        return self.backend.name

    # -- the steps, for callers that run their own pipeline (dlcv-infer, Ray, Triton)

    def prepare(self, image: ImageInput, *, rgb: bool = False, data: bytes | np.ndarray | None = None,
                name: str = "image") -> tuple[np.ndarray, Geometry]:  # fmt: skip
        """One image -> (model input, geometry): :func:`prepare_image` with this model's preprocessing."""
        return prepare_image(image, self.metadata.preprocess, rgb=rgb, max_pixels=self.max_pixels, data=data, name=name)

    def check(self, batch: np.ndarray) -> None:
        """Raise :class:`DlcvError` when the model cannot take this batch (a size a static model refuses)."""
        self.backend.check_input(batch)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """A stacked N×3×H×W float32 batch -> every output by name, checked against the metadata."""
        return self.backend.infer_outputs(batch)

    def postprocess(self, outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], *, scores: bool = False,
                    rgb: bool = False, images: Sequence[np.ndarray | None] | None = None) -> list[Result]:  # fmt: skip
        """A batch's outputs -> one result per image (:func:`postprocess_outputs`)."""
        return postprocess_outputs(outputs, geometries, self.metadata.artifact, palette=self.palette, scores=scores,
                                   rgb=rgb, images=images)  # fmt: skip

    # -- whole images

    def predict(self, images: ImageInput | Iterable[ImageInput], *, rgb: bool = False, scores: bool = False,
                keep_images: bool = False) -> list[Result]:  # fmt: skip
        """Predict one image or many: always a list of results, one per image, in order.

        ``images``: a path, an array (H×W×3 BGR uint8 as OpenCV reads; ``rgb=True`` for RGB),
        or a list/iterator of either. ``scores``: segmentation results carry per-pixel
        probabilities. ``keep_images``: results keep their image for :meth:`SegmentationResult.overlay`.
        """
        return [r for batch in self.predict_batches(images, rgb=rgb, scores=scores, keep_images=keep_images) for r in batch]

    def predict_batches(self, images: ImageInput | Iterable[ImageInput], *, rgb: bool = False, scores: bool = False,
                        keep_images: bool = False) -> Iterator[list[Result]]:  # fmt: skip
        """Stream: yield the results batch by batch, in input order, with bounded memory.

        Images are read and preprocessed by ``workers`` threads through the window dlcv-infer
        uses (:func:`window_size`); consecutive images of one input size
        form a batch of up to ``batch_size``. An image that cannot be read raises
        :class:`DlcvError` naming it (the results before it have been yielded).
        """
        items = _as_items(images)
        window = window_size(self.workers, self.batch_size)

        def load(item: ImageInput) -> _Prepared:
            rgb_image = image_rgb(item, rgb=rgb, max_pixels=self.max_pixels, name=_name(item))
            tensor, geometry = preprocess_image(rgb_image, self.metadata.preprocess)
            kept = None
            if keep_images:
                kept = rgb_image if rgb else np.ascontiguousarray(rgb_image[:, :, ::-1])
            return _Prepared(tensor, geometry, kept)

        pending: deque[Future] = deque()
        group: list[_Prepared] = []
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dlcv-predict") as pool:
            try:
                for item in items:
                    pending.append(pool.submit(load, item))
                    while len(pending) >= window:
                        yield from self._take(pending.popleft().result(), group, scores, rgb)
                while pending:
                    yield from self._take(pending.popleft().result(), group, scores, rgb)
                if group:
                    yield self._run(group, scores, rgb)
            finally:
                for f in pending:
                    f.cancel()

    def _take(self, prepared: _Prepared, group: list[_Prepared], scores: bool, rgb: bool) -> Iterator[list[Result]]:
        if group and group[0].tensor.shape != prepared.tensor.shape:
            yield self._run(group, scores, rgb)
        group.append(prepared)
        if len(group) >= self.batch_size:
            yield self._run(group, scores, rgb)

    def _run(self, group: list[_Prepared], scores: bool, rgb: bool) -> list[Result]:
        batch = np.stack([p.tensor for p in group])
        outputs = self.infer(batch)
        results = self.postprocess(outputs, [p.geometry for p in group], scores=scores, rgb=rgb,
                                   images=[p.image for p in group])  # fmt: skip
        group.clear()
        return results

    # -- lifetime

    def close(self) -> None:
        """Release the backend (sessions, device memory)."""
        self.backend.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.metadata
        return f"Predictor({self.backend.path.name}, {m.task}, {m.num_classes} classes, {m.precision}, {m.backend} on {m.device})"


def _name(item: ImageInput) -> str:
    return "image array" if isinstance(item, np.ndarray) else str(item)


def _as_items(images: ImageInput | Iterable[ImageInput]) -> Iterable[ImageInput]:
    """One image, or an iterable of images (a 4-D array is a stack of images)."""
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (bytes, bytearray)):
        raise DlcvUsageError("predict takes paths or decoded arrays, not encoded bytes; decode with cv2.imdecode first")
    return images


def load(model: str | os.PathLike, *, backend: str | None = None, device: str = "cpu", batch_size: int = 4,
         workers: int = 2, max_pixels: int | None = DEFAULT_MAX_PIXELS, precision: str | None = None,
         **options: Any) -> Predictor:  # fmt: skip
    """Open a deployed model (``.onnx``, a TensorRT engine, a PyTorch checkpoint with dlcv's
    training extra, ``triton://host:port/model``) as a :class:`Predictor`.

    ``backend``: the backend's registry name (None: the one dlcv-infer would choose for this
    file and device: the suffix's default, or a measured preference). ``device``: ``cpu`` or
    ``cuda[:N]``. ``batch_size``: images per model call; ``workers``: threads that decode and
    preprocess in :meth:`Predictor.predict_batches`. ``options`` go to the backend (e.g.
    ``threads`` for onnxruntime, ``lean_runtime`` for TensorRT). ``precision``: a run precision
    (``bf16``: the FP32 file in BF16 on a backend that runs it); None runs the file's own.
    """
    device = parse_device(device)
    target: str | Path = str(model) if "://" in str(model) else Path(model)
    choice = choose_backend(target, backend, device, precision=precision)
    if precision is not None:
        options["precision"] = precision
    opened = open_backend(target, device=device, backend=choice.backend.name, **options)
    try:
        described = choice.describe(target)
        placement = opened.describe_placement()  # a TensorRT session may run part of the graph elsewhere
        if placement:
            described += f"; graph nodes: {placement}"
        return Predictor(opened, batch_size=batch_size, workers=workers, max_pixels=max_pixels, device=device,
                         backend_choice=described)  # fmt: skip
    except BaseException:
        opened.close()
        raise
