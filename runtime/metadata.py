"""Artifact metadata: the JSON embedded in every ONNX file (key ``dlcv``) and written beside every engine.

With it, ``dlcv-infer --engine x.onnx images/`` needs no other flag: task, classes, palette,
preprocessing and tensor names all come from here. :func:`read_onnx_metadata` reads it from an
ONNX file (for every backend that runs ONNX, without an engine), :func:`read_sidecar` from
beside an engine.

``dataset`` (optional; files written before it existed load without it) is the
:class:`~dlcv.runtime.datasets.DatasetRecord` of the data the model was trained on: layout,
layout options, class map content and label rules, so that a dataset folder is reopened the
same way wherever the artifact goes. When it is present it is the source of the label rules:
``ignore_index`` and ``exclude_classes`` must equal the record's (they stay at the top level
for the scorers and for files without a record); a file where they differ is refused.

``outputs`` (:class:`~dlcv.runtime.output_spec.OutputSpec`) says what the model returns:
logits, or an in-graph head's labels (segmentation) / TopK indices and scores
(classification), with each tensor's name and dtype. ``output_name`` is its primary tensor.
Files written before the field existed are read as logits named ``output_name``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .atomic import write_text_atomic
from .datasets.record import DatasetRecord
from .errors import DlcvError
from .output_spec import LOGITS, OutputSpec, logits_outputs
from .onnx_proto import Malformed, metadata_props
from .precision import PRECISION_NAMES
from .preprocess import PreprocessSpec
from .task import TASK_NAMES, TASKS

METADATA_KEY = "dlcv"
METADATA_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ArtifactMetadata:
    """What a deployed model is and how to feed it; identical for ONNX files and engines."""

    task: str
    arch: str
    num_classes: int
    class_names: tuple[str, ...]
    preprocess: PreprocessSpec
    input_name: str = "input"
    output_name: str = "logits"
    precision: str = "fp32"
    palette: tuple[tuple[int, int, int], ...] | None = None
    ignore_index: int = 255
    exclude_classes: tuple[int, ...] = ()  # left out of mIoU (still reported per class)
    source_checkpoint_sha256: str = ""
    dlcv_version: str = ""
    schema_version: int = METADATA_SCHEMA_VERSION
    # What an engine is bound to (GPU, TensorRT version, profile shapes); empty for ONNX.
    engine: Mapping[str, Any] = field(default_factory=dict)
    # How the training data was read (None: not recorded, e.g. an older checkpoint).
    dataset: DatasetRecord | None = None
    # What the model returns (None: logits named output_name, set in __post_init__).
    outputs: OutputSpec | None = None

    def __post_init__(self) -> None:
        if self.outputs is None:
            object.__setattr__(self, "outputs", logits_outputs(self.output_name))
        problems = []
        if self.schema_version != METADATA_SCHEMA_VERSION:
            problems.append(f"schema_version {self.schema_version} is not supported (expected {METADATA_SCHEMA_VERSION})")
        if self.task not in TASKS:
            problems.append(f"task must be one of {TASK_NAMES}, not {self.task!r}")
        if self.num_classes < 1 or len(self.class_names) != self.num_classes:
            problems.append(f"num_classes={self.num_classes} but {len(self.class_names)} class names")
        if self.precision not in PRECISION_NAMES:
            problems.append(f"precision must be one of {PRECISION_NAMES}, not {self.precision!r}")
        if self.palette is not None and (
            len(self.palette) != self.num_classes or any(len(c) != 3 for c in self.palette)
        ):
            problems.append(f"palette needs {self.num_classes} RGB triples")
        if self.dataset is not None:
            problems += self._dataset_problems(self.dataset)
        problems += self._output_problems(self.outputs)
        if problems:
            raise DlcvError("invalid dlcv metadata: " + "; ".join(problems))

    def _dataset_problems(self, record: DatasetRecord) -> list[str]:
        """The record is the label rules' source: the top-level copies must agree with it."""
        problems = []
        if record.ignore_index != self.ignore_index:
            problems.append(f"ignore_index {self.ignore_index} differs from the dataset record's {record.ignore_index}")
        if tuple(record.exclude_classes) != tuple(self.exclude_classes):
            problems.append(
                f"exclude_classes {list(self.exclude_classes)} differ from the dataset record's {list(record.exclude_classes)}"
            )
        if record.class_map is not None and len(record.class_map.class_names) != self.num_classes:
            problems.append(
                f"the dataset record's class map {record.class_map.name!r} has {len(record.class_map.class_names)} "
                f"classes, the model {self.num_classes}"
            )
        return problems

    def _output_problems(self, outputs: OutputSpec) -> list[str]:
        problems = []
        if outputs.primary.name != self.output_name:
            problems.append(f"output_name {self.output_name!r} is not the primary output tensor {outputs.primary.name!r}")
        if outputs.kind != LOGITS and self.task in TASKS and TASKS[self.task].head_kind != outputs.kind:
            problems.append(f"a {self.task} model cannot have {outputs.kind} outputs")
        return problems

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every output tensor's name, the primary one first."""
        return self.outputs.names

    def with_outputs(self, outputs: OutputSpec) -> "ArtifactMetadata":
        """A copy whose model returns ``outputs`` (``output_name`` follows the primary tensor)."""
        return replace(self, outputs=outputs, output_name=outputs.primary.name)

    def with_(self, **changes: Any) -> "ArtifactMetadata":
        """A copy with some fields changed (precision, engine binding...)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["class_names"] = list(self.class_names)
        d["palette"] = None if self.palette is None else [list(c) for c in self.palette]
        d["engine"] = dict(self.engine)
        d["exclude_classes"] = list(self.exclude_classes)
        d["outputs"] = self.outputs.to_dict()
        if self.dataset is None:
            del d["dataset"]  # files without a record stay exactly as before
        else:
            d["dataset"] = self.dataset.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "metadata") -> "ArtifactMetadata":
        """Validate and build; errors name ``source`` (the file the JSON came from)."""
        if not isinstance(data, Mapping):
            raise DlcvError(f"{source}: dlcv metadata must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DlcvError(f"{source}: unknown dlcv metadata keys {sorted(unknown)}; was it written by a newer dlcv?")
        try:
            kwargs = dict(data)
            kwargs["preprocess"] = PreprocessSpec.from_dict(kwargs["preprocess"])
            kwargs["class_names"] = tuple(str(c) for c in kwargs["class_names"])
            kwargs["num_classes"] = int(kwargs["num_classes"])
            kwargs["exclude_classes"] = tuple(int(c) for c in kwargs.get("exclude_classes", ()))
            if kwargs.get("palette") is not None:
                kwargs["palette"] = tuple(tuple(int(v) for v in c) for c in kwargs["palette"])
            if kwargs.get("dataset") is not None:
                kwargs["dataset"] = DatasetRecord.from_dict(kwargs["dataset"], "dlcv metadata")
            if kwargs.get("outputs") is not None:
                kwargs["outputs"] = OutputSpec.from_dict(kwargs["outputs"])
            return cls(**kwargs)
        except KeyError as exc:
            raise DlcvError(f"{source}: dlcv metadata lacks the key {exc}") from None
        except DlcvError as exc:
            raise DlcvError(f"{source}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise DlcvError(f"{source}: malformed dlcv metadata ({exc})") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "metadata") -> "ArtifactMetadata":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DlcvError(f"{source}: dlcv metadata is not valid JSON ({exc})") from None
        return cls.from_dict(data, source)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``x.plan`` -> ``x.plan.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def write_sidecar(engine_path: str | os.PathLike, metadata: ArtifactMetadata) -> Path:
    """Write the metadata beside an engine, atomically; returns the sidecar's path."""
    path = sidecar_path(engine_path)
    write_text_atomic(path, metadata.to_json() + "\n")
    return path


def read_sidecar(engine_path: str | os.PathLike) -> ArtifactMetadata:
    """Read the metadata written beside an engine (``x.plan.json``)."""
    path = sidecar_path(engine_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DlcvError(
            f"{engine_path}: metadata file {path.name} is missing beside the engine; "
            "rebuild the engine with dlcv-export --trt, which writes both"
        ) from None
    return ArtifactMetadata.from_json(text, source=str(path))


def read_onnx_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    """The dlcv metadata embedded in an ONNX file (``metadata_props`` key ``dlcv``).

    Read from the file itself (:func:`dlcv.runtime.onnx_proto.metadata_props`), so any backend
    that runs ONNX (onnxruntime, OpenVINO) reads it the same way, before its engine loads.
    """
    try:
        props = metadata_props(path)
    except OSError as exc:
        raise DlcvError(f"{path}: cannot read the model ({exc.strerror or exc})") from None
    except Malformed as exc:
        raise DlcvError(f"{path}: not a valid ONNX file ({exc}); re-export the model") from None
    if METADATA_KEY not in props:
        raise DlcvError(
            f"{path}: carries no dlcv metadata (metadata_props key {METADATA_KEY!r}); "
            "export it with dlcv-export, which records task, classes and preprocessing"
        )
    return ArtifactMetadata.from_json(props[METADATA_KEY], source=str(path))
