"""The backend contract: open from a path, ``infer(batch) -> logits``, checked I/O, context-managed."""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np

from ..errors import DlcvError, MissingDependencyError, first_line
from ..metadata import ArtifactMetadata


class Backend(ABC):
    """A deployed model. ``infer`` takes float32 N×3×H×W and returns float32 logits
    (N×C×H×W for segmentation, N×C for classification).

    Each backend class owns its identity (DESIGN.md contract 4); the registry
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
        """Run the model on a preprocessed batch; input and output are checked."""
        self.check_input(batch)
        logits = self._run(np.ascontiguousarray(batch, dtype=np.float32))
        self.check_output(batch, logits)
        return logits

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Backend-specific execution on a checked, contiguous float32 batch."""

    def check_input(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3:
            shape = getattr(batch, "shape", None)
            raise DlcvError(f"{self.path.name}: input must be a float32 N×3×H×W array, got shape {shape}")
        if batch.dtype != np.float32:
            raise DlcvError(f"{self.path.name}: input dtype must be float32, got {batch.dtype}")
        if batch.shape[0] < 1:
            raise DlcvError(f"{self.path.name}: empty batch")

    def check_output(self, batch: np.ndarray, logits: np.ndarray) -> None:
        n, _, h, w = batch.shape
        c = self.metadata.num_classes
        expected = (n, c, h, w) if self.metadata.task == "segmentation" else (n, c)
        if tuple(logits.shape) != expected:
            raise DlcvError(
                f"{self.path.name}: output {self.metadata.output_name!r} has shape {tuple(logits.shape)}, "
                f"expected {expected} from the metadata ({self.metadata.task}, {c} classes)"
            )

    def close(self) -> None:
        """Release the backend's resources (sessions, device memory)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
