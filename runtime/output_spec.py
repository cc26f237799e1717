"""What a deployed model returns: logits, or the answers of an in-graph postprocessing head.

Recorded in the artifact metadata (``outputs``; :class:`~dlcv.runtime.metadata.ArtifactMetadata`)
so every backend checks, and every consumer reads, the right tensors. Three kinds:

- ``logits`` (the exported graph; files written before the field existed are read as this):
  one float32 tensor, N×C×H×W (segmentation) or N×C (classification);
- ``labels`` (segmentation, ``dlcv-export --argmax``): ``ArgMax`` over the class axis with
  ``keepdims=0``, cast to uint8 (int32 above 256 classes): an N×H×W label map, each row a mask
  as numpy's ``argmax(axis=1)`` gives it (never N×1×H×W: nothing downstream wants the
  singleton axis). On ties the lower class index wins, as in numpy. On a GPU the copy back to
  the host shrinks from C float32 values per pixel to one byte.
- ``topk`` (classification, ``--argmax``): ``TopK`` of the logits (k = min(5, C), largest
  first, the lower index first on ties: the order of a stable sort) gives ``topk_indices``
  (int64 N×k); ``topk_scores`` (float32 N×k) are the softmax probabilities over all C
  classes gathered at those indices (``Softmax`` is in the graph: probabilities need every
  logit, which the head exists not to copy out). That is what predictions.csv writes.

The first tensor is the primary one (``ArtifactMetadata.output_name``): what
``Backend.infer`` returns and the comparator compares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import DlcvError
from .task import get_task

LOGITS, LABELS, TOPK = "logits", "labels", "topk"
KINDS = (LOGITS, LABELS, TOPK)
TOPK_K = 5  # the k of a TopK head (capped at the class count): dlcv-infer's top-5
LABELS_NAME, TOPK_INDICES_NAME, TOPK_SCORES_NAME = "labels", "topk_indices", "topk_scores"
ROLES = ("logits", "labels", "indices", "scores")


@dataclass(frozen=True)
class TensorSpec:
    """One output tensor: its graph name, numpy dtype name, and what it holds (:data:`ROLES`)."""

    name: str
    dtype: str
    role: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "dtype": self.dtype, "role": self.role}


@dataclass(frozen=True)
class OutputSpec:
    """A model's outputs: their kind (:data:`KINDS`) and tensors, the primary one first; ``k``
    for a TopK head."""

    kind: str
    tensors: tuple[TensorSpec, ...]
    k: int | None = None

    def __post_init__(self) -> None:
        roles = tuple(t.role for t in self.tensors)
        expected = {LOGITS: ("logits",), LABELS: ("labels",), TOPK: ("indices", "scores")}.get(self.kind)
        if expected is None:
            raise DlcvError(f"outputs kind must be one of {KINDS}, not {self.kind!r}")
        if roles != expected:
            raise DlcvError(f"{self.kind} outputs hold tensors of roles {list(expected)}, got {list(roles)}")
        if (self.kind == TOPK) != (self.k is not None) or (self.k is not None and self.k < 1):
            raise DlcvError(f"a {TOPK} head needs a positive k (and only it has one), got k={self.k}")
        if len({t.name for t in self.tensors}) != len(self.tensors):
            raise DlcvError(f"output tensor names must differ, got {[t.name for t in self.tensors]}")
        for t in self.tensors:
            try:
                dtype = np.dtype(t.dtype)
            except TypeError:
                raise DlcvError(f"output {t.name!r}: unknown dtype {t.dtype!r}") from None
            integer = t.role in ("labels", "indices")
            if integer != np.issubdtype(dtype, np.integer) or (not integer and dtype != np.float32):
                raise DlcvError(f"output {t.name!r} ({t.role}) cannot be {t.dtype}")

    @property
    def primary(self) -> TensorSpec:
        return self.tensors[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @property
    def is_head(self) -> bool:
        """True for an in-graph postprocessing head (labels or TopK), False for logits."""
        return self.kind != LOGITS

    def shape(self, tensor: TensorSpec, batch: int, height: int, width: int, num_classes: int, task: str) -> tuple[int, ...]:
        """The shape ``tensor`` must have for an N×3×H×W input."""
        if tensor.role == "logits":
            return get_task(task).logits_shape(batch, num_classes, height, width)
        if tensor.role == "labels":
            return (batch, height, width)
        return (batch, int(self.k or 0))

    def describe(self) -> str:
        """``labels (labels uint8)``, ``topk k=5 (topk_indices int64, topk_scores float32)``."""
        k = f" k={self.k}" if self.k is not None else ""
        return f"{self.kind}{k} (" + ", ".join(f"{t.name} {t.dtype}" for t in self.tensors) + ")"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "tensors": [t.to_dict() for t in self.tensors]}
        if self.k is not None:
            d["k"] = self.k
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OutputSpec":
        try:
            tensors = tuple(TensorSpec(str(t["name"]), str(t["dtype"]), str(t["role"])) for t in data["tensors"])
            k = data.get("k")
            return cls(str(data["kind"]), tensors, None if k is None else int(k))
        except (KeyError, TypeError, ValueError) as exc:
            raise DlcvError(f"malformed outputs record ({type(exc).__name__}: {exc})") from None


def logits_outputs(name: str = "logits") -> OutputSpec:
    """The exported graph's one float32 logits tensor."""
    return OutputSpec(LOGITS, (TensorSpec(name, "float32", "logits"),))


def labels_dtype(num_classes: int) -> np.dtype:
    """The dtype of an ArgMax head's labels: uint8 up to 256 classes, else int32 (TensorRT has
    no uint16 tensors)."""
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.int32)


def labels_outputs(num_classes: int) -> OutputSpec:
    return OutputSpec(LABELS, (TensorSpec(LABELS_NAME, labels_dtype(num_classes).name, "labels"),))


def topk_outputs(num_classes: int, k: int = TOPK_K) -> OutputSpec:
    return OutputSpec(
        TOPK,
        (TensorSpec(TOPK_INDICES_NAME, "int64", "indices"), TensorSpec(TOPK_SCORES_NAME, "float32", "scores")),
        k=min(k, num_classes),
    )


def head_outputs(task: str, num_classes: int) -> OutputSpec:
    """The outputs ``dlcv-export --argmax`` gives a model of ``task``."""
    return labels_outputs(num_classes) if get_task(task).head_kind == LABELS else topk_outputs(num_classes)
