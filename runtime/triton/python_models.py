"""The code of the Python-backend models in a dlcv Triton repository.

Each generated ``model.py`` is one import line (``from dlcv.runtime.triton.python_models import
PreprocessModel as TritonPythonModel``), so the server runs dlcv's own functions, not copies:

Each runs one step of :class:`~dlcv.runtime.predictor.Predictor`, the object ``dlcv-infer`` and
``dlcv.runtime.load`` use, so a served mask equals dlcv-infer's:

- :class:`PreprocessModel`: encoded image bytes -> :func:`~dlcv.runtime.predictor.prepare_image`
  (OpenCV decoding, the runtime's rules and size limit, then the preprocessing) -> the model
  input and the image's geometry;
- :class:`OnnxModel`: the model step on Triton's Python backend, a predictor on dlcv's onnxruntime
  backend (:meth:`Predictor.infer <dlcv.runtime.predictor.Predictor.infer>`; for Triton builds
  without the onnxruntime backend, e.g. CPU-only ones);
- :class:`PostprocessModel`: the model's outputs (logits, or an in-graph head's labels / TopK,
  :mod:`dlcv.runtime.output_spec`) -> :func:`~dlcv.runtime.predictor.postprocess_outputs` (the
  mask at the image's size, or the top classes with their names).

Every model reads the artifact metadata from its config's ``dlcv`` parameter. A request that
fails (an unreadable image, a size the model refuses) gets an error response naming the
reason; the other requests of the batch are answered. The server's Python stub provides
``triton_python_backend_utils``; it is imported when a model is initialised.
"""
from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DlcvError, first_line
from ..imageio import DEFAULT_MAX_PIXELS
from ..metadata import ArtifactMetadata
from ..predictor import ClassificationResult, SegmentationResult, postprocess_outputs, prepare_image
from ..preprocess import Geometry
from . import GEOMETRY, IMAGE, MASK, METADATA_PARAMETER, TOP_CLASSES, TOP_NAMES, TOP_SCORES, TOPK
from ..task import get_task

ONNX_FILE = "model.onnx"
MAX_PIXELS_PARAMETER = "max_pixels"


def config_parameter(model_config: dict[str, Any], key: str) -> str | None:
    """A ``parameters`` entry of a model config (as Triton hands it to ``initialize``)."""
    entry = model_config.get("parameters", {}).get(key)
    return None if entry is None else entry.get("string_value")


def config_metadata(model_config: dict[str, Any]) -> ArtifactMetadata:
    """The dlcv metadata a generated config carries."""
    text = config_parameter(model_config, METADATA_PARAMETER)
    name = model_config.get("name", "model")
    if text is None:
        raise DlcvError(f"Triton model {name!r}: its config has no {METADATA_PARAMETER!r} parameter; write the repository with dlcv-export --triton")
    return ArtifactMetadata.from_json(text, source=f"Triton model {name!r} config")


def geometry_row(g: Geometry) -> np.ndarray:
    return np.array(dataclasses.astuple(g), dtype=np.int32)


def geometry_from_row(row: np.ndarray) -> Geometry:
    return Geometry(*(int(v) for v in np.asarray(row).reshape(-1)))


def preprocess_encoded(images: np.ndarray, metadata: ArtifactMetadata, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """A request's encoded images (B×L uint8, one file per row) -> (B×3×H×W float32 input, B×8 geometry)."""
    tensors, rows = [], []
    for row in np.asarray(images, dtype=np.uint8).reshape(len(images), -1):
        tensor, geometry = prepare_image("image", metadata.preprocess, max_pixels=max_pixels, data=row)
        tensors.append(tensor)
        rows.append(geometry_row(geometry))
    if len({t.shape for t in tensors}) > 1:
        raise DlcvError(f"the images of one request have different sizes after preprocessing ({sorted({t.shape for t in tensors})}); send them one per request")
    return np.stack(tensors), np.stack(rows)


def postprocess_segmentation(outputs: dict[str, np.ndarray], geometry: np.ndarray, metadata: ArtifactMetadata) -> np.ndarray:
    """The model's outputs (B×C×H×W logits or B×H×W labels) and B×8 geometry -> B×h×w label maps
    at the images' original size."""
    results = postprocess_outputs(outputs, [geometry_from_row(g) for g in geometry], metadata)
    masks = [r.labels for r in results if isinstance(r, SegmentationResult)]
    if len({m.shape for m in masks}) > 1:
        raise DlcvError("the images of one request have different original sizes; send them one per request")
    return np.stack(masks)


def postprocess_classification(outputs: dict[str, np.ndarray], metadata: ArtifactMetadata,
                               k: int = TOPK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The model's outputs (B×C logits or a TopK head's) -> (B×k class indices, B×k probabilities,
    B×k class names as bytes)."""
    results = [r for r in postprocess_outputs(outputs, [], metadata) if isinstance(r, ClassificationResult)]
    top = [r.topk[:k] for r in results]
    order = np.array([[c.index for c in row] for row in top], dtype=np.int32)
    probs = np.array([[c.probability for c in row] for row in top], dtype=np.float32)
    names = np.array([[c.name.encode("utf-8") for c in row] for row in top], dtype=np.object_)
    return order, probs, names


def _pb():
    import triton_python_backend_utils as pb_utils  # provided by the server's Python stub

    return pb_utils


def _error_message(exc: Exception) -> str:
    """A request's error for the client: dlcv's own one-line message, else the exception's type and first line."""
    return str(exc) if isinstance(exc, DlcvError) else f"{type(exc).__name__}: {first_line(exc)}"


class _DlcvModel:
    """What the three models share: the metadata from the config, reading an input tensor."""

    def initialize(self, args: dict[str, str]) -> None:
        self.model_config = json.loads(args["model_config"])
        self.metadata = config_metadata(self.model_config)

    @staticmethod
    def _input(request, name: str) -> np.ndarray:
        return _pb().get_input_tensor_by_name(request, name).as_numpy()


class _PerRequestModel(_DlcvModel, ABC):
    """A model that answers each request on its own (:meth:`compute`); one request's failure is
    its own error response, never the batch's."""

    def _respond(self, request, compute: Callable[[Any], list]) -> Any:
        pb = _pb()
        try:
            return pb.InferenceResponse(output_tensors=compute(request))
        except Exception as exc:  # one request's failure must not fail the others
            return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(_error_message(exc)))

    def execute(self, requests: list) -> list:
        return [self._respond(request, self.compute) for request in requests]

    @abstractmethod
    def compute(self, request) -> list:
        """One request's output tensors."""


class PreprocessModel(_PerRequestModel):
    """``IMAGE`` (encoded bytes) -> the model input (``metadata.input_name``) and ``GEOMETRY``."""

    def initialize(self, args: dict[str, str]) -> None:
        super().initialize(args)
        limit = config_parameter(self.model_config, MAX_PIXELS_PARAMETER)
        self.max_pixels = int(limit) if limit else DEFAULT_MAX_PIXELS

    def compute(self, request) -> list:
        pb = _pb()
        tensor, geometry = preprocess_encoded(self._input(request, IMAGE), self.metadata, self.max_pixels)
        return [pb.Tensor(self.metadata.input_name, tensor), pb.Tensor(GEOMETRY, geometry)]


class OnnxModel(_DlcvModel):
    """The model step on the Python backend: ``<version>/model.onnx`` run by dlcv's onnxruntime
    backend (CUDA for a GPU instance group). Requests of the same shape run as one batch, so
    the dynamic batcher's batches reach onnxruntime whole."""

    def initialize(self, args: dict[str, str]) -> None:
        from ..predictor import load

        super().initialize(args)
        path = Path(args["model_repository"]) / args["model_version"] / ONNX_FILE
        device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        self.predictor = load(path, device=device, backend="onnxruntime")

    def execute(self, requests: list) -> list:
        pb = _pb()
        md = self.metadata
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, np.ndarray]]] = {}
        for i, request in enumerate(requests):
            x = self._input(request, md.input_name)
            groups.setdefault(x.shape[1:], []).append((i, x))
        for members in groups.values():
            batch = np.concatenate([x for _, x in members])
            try:
                outputs = self.predictor.infer(batch)
            except Exception as exc:
                for i, _ in members:
                    responses[i] = pb.InferenceResponse(output_tensors=[], error=pb.TritonError(_error_message(exc)))
                continue
            start = 0
            for i, x in members:
                parts = [pb.Tensor(name, np.ascontiguousarray(outputs[name][start : start + len(x)])) for name in md.output_names]
                responses[i] = pb.InferenceResponse(output_tensors=parts)
                start += len(x)
        return responses

    def finalize(self) -> None:
        self.predictor.close()


class PostprocessModel(_PerRequestModel):
    """The model's outputs (logits, or a head's labels / TopK) -> ``MASK`` (segmentation, needs
    ``GEOMETRY``) or ``TOP_CLASSES``/``TOP_SCORES``/``TOP_NAMES``."""

    def compute(self, request) -> list:
        pb = _pb()
        md = self.metadata
        outputs = {name: self._input(request, name) for name in md.output_names}
        if get_task(md.task).per_pixel:
            return [pb.Tensor(MASK, postprocess_segmentation(outputs, self._input(request, GEOMETRY), md))]
        classes, scores, names = postprocess_classification(outputs, md)
        return [pb.Tensor(TOP_CLASSES, classes), pb.Tensor(TOP_SCORES, scores), pb.Tensor(TOP_NAMES, names)]
