"""The backend contract: open from a path, ``infer(batch) -> output``, checked I/O, context-managed."""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar, Mapping, Sequence

import numpy as np

from ..errors import DlcvError, MissingDependencyError, first_line
from ..metadata import ArtifactMetadata


Outputs = dict[str, np.ndarray]

# A measured win below this (p50 ratio, every batch size) is within a shared machine's spread.
MIN_PREFERENCE_SPEEDUP = 1.10


@dataclass(frozen=True)
class Preference:
    """A measured reason for a backend to be the default for files of one precision on one device,
    ahead of the suffix's default (the backend it beat, ``over``). ``record`` is the committed
    benchmark (``results.json``, relative to the repository root) whose rows of the two backends
    on the same file measured it; a test reads it, so the preference follows the measurement
    (a re-run in which ``over`` wins fails that test). ``summary`` says it in words."""

    precision: str
    device: str
    over: str
    record: str
    summary: str

    def unsupported_by(self, backend: str, records: Sequence[Mapping]) -> str | None:
        """Why the benchmark ``records`` (a ``results.json`` list) do not support making ``backend``
        the default over :attr:`over`, or None when they do: rows of both on the same file, of this
        precision and device, at one or more batch sizes, and at every one of them ``backend``'s p50
        latency at least :data:`MIN_PREFERENCE_SPEEDUP` times faster. A smaller win is within the
        run-to-run spread of a shared machine and is no reason to change a default."""
        rows = {(r["backend"], r["batch_size"]): r for r in records
                if r["precision"] == self.precision and r["device"] == self.device and r["latency_p50_ms"] is not None}  # fmt: skip
        sizes = sorted({bs for b, bs in rows if b == backend} & {bs for b, bs in rows if b == self.over})
        if not sizes:
            return f"{self.record} has no {backend} and {self.over} rows of {self.precision} files on the {self.device}"
        for bs in sizes:
            mine, theirs = rows[(backend, bs)], rows[(self.over, bs)]
            if mine["artifact"] != theirs["artifact"]:
                return f"{self.record}: {backend} and {self.over} ran different files at batch {bs}"
            speedup = theirs["latency_p50_ms"] / mine["latency_p50_ms"]
            if speedup < MIN_PREFERENCE_SPEEDUP:
                return (f"{self.record}: {backend} {self.precision} is {speedup:.2f}× {self.over} at batch {bs} "
                        f"({mine['latency_p50_ms']:.1f} vs {theirs['latency_p50_ms']:.1f} ms p50), "
                        f"below the {MIN_PREFERENCE_SPEEDUP:.2f}× a preference needs")  # fmt: skip
        return None


class Backend(ABC):
    """A deployed model. ``infer`` takes float32 N×3×H×W and returns the model's primary output:
    float32 logits (N×C×H×W for segmentation, N×C for classification), or for a model with an
    in-graph head (``metadata.outputs``, :mod:`dlcv.runtime.output_spec`) its labels
    (N×H×W) or TopK indices (N×k). ``infer_outputs`` returns every output by name (a TopK
    head's scores too). Each output is checked against the metadata: name, shape, dtype.

    Each backend class owns its identity (docs/architecture.md contract 4); the registry
    (:mod:`dlcv.runtime.backends.registry`) is built from these attributes and nothing else
    lists backends. A backend module must not import its engine library at module level
    (import it in ``__init__`` or :meth:`library_version`), so the registry can read every
    class's identity without loading onnxruntime, TensorRT, OpenVINO or torch.
    """

    #: the backend's name: ``--backend NAME``, report rows ("onnxruntime", "tensorrt", "torch")
    name: ClassVar[str] = "backend"
    #: file suffixes it opens (lower case, with the dot); the first backend by ``priority``
    #: that claims a suffix is that suffix's default
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: URL schemes it opens instead of files (``triton`` for ``triton://host:port/model``)
    schemes: ClassVar[tuple[str, ...]] = ()
    #: the devices ``--device`` may name for it (``cuda:N`` is accepted wherever ``cuda`` is)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: True when it runs only on a GPU whatever ``--device`` says (TensorRT engines)
    needs_gpu: ClassVar[bool] = False
    #: the pip extra that installs its library (for error messages), e.g. "openvino"
    extra: ClassVar[str | None] = None
    #: lower runs first when several backends claim a suffix (the suffix's default)
    priority: ClassVar[int] = 100
    #: True when its files are deployed models (what dlcv-export writes); False for the
    #: PyTorch checkpoint backend, whose files are the models' source
    deployed: ClassVar[bool] = True
    #: where it is the default ahead of the suffix's (by measurement, :class:`Preference`); the
    #: registry takes it only when this backend is installed and runs on the device
    preferred_for: ClassVar[tuple[Preference, ...]] = ()

    @classmethod
    def read_metadata(cls, path: Path) -> ArtifactMetadata | None:
        """The metadata of a model file, read without opening an engine (None when this backend
        has no such reader); the registry reads a file's precision with it."""
        return None

    @classmethod
    def library_version(cls) -> str | None:
        """The version of the library it runs on, or None when that library is not installed."""
        return None

    @classmethod
    def install_hint(cls) -> str:
        """How to install this backend's library: ``pip install 'dlcv[openvino]'``."""
        return f"pip install 'dlcv[{cls.extra}]'" if cls.extra else "pip install dlcv (a core dependency is missing)"

    @classmethod
    def import_library(cls, module: str) -> ModuleType:
        """Import the engine library ``module`` when a model is opened (never at module level);
        a :class:`MissingDependencyError` naming the extra to install when it is absent."""
        try:
            return importlib.import_module(module)
        except (ImportError, OSError) as exc:  # OSError: a wheel whose shared libraries are missing
            raise MissingDependencyError(
                f"the {cls.name} backend needs the {module} package, which cannot be imported ({first_line(exc, 160)}); "
                f"install it: {cls.install_hint()}"
            ) from None

    def __init__(self, path: Path, metadata: ArtifactMetadata):
        self.path = Path(path)
        self.metadata = metadata

    @property
    def precision(self) -> str:
        return self.metadata.precision

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a preprocessed batch; its primary output (logits, labels or TopK
        indices). Input and outputs are checked."""
        return self.infer_outputs(batch)[self.metadata.output_name]

    def infer_outputs(self, batch: np.ndarray) -> Outputs:
        """Run the model on a preprocessed batch; every output by name, each checked against the
        metadata (floating outputs as float32, integer ones in their declared dtype)."""
        self.check_input(batch)
        raw = self._run(np.ascontiguousarray(batch, dtype=np.float32))
        outputs = dict(raw) if isinstance(raw, Mapping) else {self.metadata.output_name: raw}
        outputs = {name: _as_declared(value, self._declared_dtypes.get(name)) for name, value in outputs.items()}
        self.check_outputs(batch, outputs)
        return outputs

    @property
    def _declared_dtypes(self) -> dict[str, np.dtype]:
        return {t.name: np.dtype(t.dtype) for t in self.metadata.outputs.tensors}

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray | Mapping[str, np.ndarray]:
        """Backend-specific execution on a checked, contiguous float32 batch: the primary output,
        or every output (``metadata.output_names``) by name."""

    def check_input(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3:
            shape = getattr(batch, "shape", None)
            raise DlcvError(f"{self.path.name}: input must be a float32 N×3×H×W array, got shape {shape}")
        if batch.dtype != np.float32:
            raise DlcvError(f"{self.path.name}: input dtype must be float32, got {batch.dtype}")
        if batch.shape[0] < 1:
            raise DlcvError(f"{self.path.name}: empty batch")

    def check_outputs(self, batch: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        """Every output the metadata declares is there, with the shape its kind implies for this
        batch and its declared dtype (:meth:`OutputSpec.shape <dlcv.runtime.output_spec.OutputSpec.shape>`)."""
        n, _, h, w = batch.shape
        md = self.metadata
        spec = md.outputs
        for tensor in spec.tensors:
            if tensor.name not in outputs:
                raise DlcvError(f"{self.path.name}: the model returned {sorted(outputs)}, not the output {tensor.name!r} "
                                f"its metadata declares ({spec.describe()})")  # fmt: skip
            value = outputs[tensor.name]
            expected = spec.shape(tensor, n, h, w, md.num_classes, md.task)
            if tuple(value.shape) != expected:
                raise DlcvError(
                    f"{self.path.name}: output {tensor.name!r} has shape {tuple(value.shape)}, "
                    f"expected {expected} from the metadata ({md.task}, {md.num_classes} classes, {spec.kind})"
                )
            if value.dtype != np.dtype(tensor.dtype):
                raise DlcvError(
                    f"{self.path.name}: output {tensor.name!r} is {value.dtype}, expected {tensor.dtype} from the "
                    f"metadata ({spec.kind} outputs); re-export the model"
                )

    def close(self) -> None:
        """Release the backend's resources (sessions, device memory)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_declared(value: np.ndarray, declared: np.dtype | None) -> np.ndarray:
    """An engine's output in the declared dtype where only the width differs: floating outputs as
    float32 (FP16 logits from a TensorRT engine), integers widened (TensorRT's INT32 TopK
    indices as int64). Anything else (floats for labels, labels wider than declared) is left for
    :meth:`Backend.check_outputs` to refuse."""
    value = np.asarray(value)
    if declared is None or value.dtype == declared:
        return value
    floats = np.issubdtype(value.dtype, np.floating) and np.issubdtype(declared, np.floating)
    widened = np.issubdtype(value.dtype, np.integer) and np.issubdtype(declared, np.integer) and np.can_cast(value.dtype, declared, "safe")
    return value.astype(declared) if floats or widened else value


def concat_outputs(parts: Sequence[Mapping[str, np.ndarray]]) -> Outputs:
    """Per-chunk outputs joined along the batch axis, name by name."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
