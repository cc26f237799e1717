"""Serving with Triton Inference Server: what the repository's models exchange, and the code its
Python-backend models run (:mod:`.python_models`, dlcv's own preprocessing and postprocessing).

``dlcv-export CKPT --triton REPO`` writes the repository (:mod:`dlcv.export.triton`);
``dlcv-infer --engine triton://HOST:PORT/NAME`` is its client
(:mod:`dlcv.runtime.backends.triton_backend`). Nothing here imports tritonclient or Triton's
``triton_python_backend_utils`` at module level.
"""
from __future__ import annotations

#: config parameter that holds the dlcv metadata JSON in every generated model's config.pbtxt
METADATA_PARAMETER = "dlcv"

# Tensors of the ensemble and its pre/post models (the model's own names come from its metadata).
IMAGE = "IMAGE"  # encoded PNG/JPEG/... file bytes, UINT8 [-1] (the layout Triton's image examples use)
GEOMETRY = "GEOMETRY"  # INT32 [8]: where the image sits in the model input (dlcv.runtime.preprocess.Geometry)
MASK = "MASK"  # segmentation: class indices at the image's original size, UINT8 (UINT16 above 256 classes)
TOP_CLASSES = "TOP_CLASSES"  # classification: INT32 [k], best first
TOP_SCORES = "TOP_SCORES"  # classification: FP32 [k], softmax probabilities
TOP_NAMES = "TOP_NAMES"  # classification: BYTES [k], class names
TOPK = 5

# Suffixes of the models written beside ``<name>``.
PREPROCESS_SUFFIX = "_preprocess"
POSTPROCESS_SUFFIX = "_postprocess"
ENSEMBLE_SUFFIX = "_ensemble"
