"""``metrics.json``: read dlcv-infer's (or an earlier analysis's) and write the analysis's own.

Both hold ``{"task": ..., "metrics": {..., "confusion_matrix": [[...]], "class_names": [...]}}``:
the ``compute()`` result of dlcv.runtime's :class:`~dlcv.runtime.task_metrics.ConfusionMatrix` or
:class:`~dlcv.runtime.task_metrics.ClassificationMetrics` plus the class names, so a deployed run's
confusion matrix is rebuilt (:func:`~dlcv.runtime.task_metrics.confusion_from_dict`) and drawn
without PyTorch. This module imports neither torch nor matplotlib.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


from dlcv.runtime.jsonable import strict_json
from dlcv.runtime.atomic import write_text_atomic
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.task import TASKS
from dlcv.runtime.task_metrics import ConfusionMatrix, confusion_from_dict
from dlcv.runtime.version import dlcv_version

METRICS_NAME = "metrics.json"


@dataclass(frozen=True)
class MetricsRecord:
    """A metrics.json as the analysis uses it."""

    path: Path
    task: str
    class_names: tuple[str, ...]
    confusion: ConfusionMatrix = field(compare=False)
    metrics: Mapping[str, Any] = field(compare=False)
    context: Mapping[str, Any] = field(compare=False)  # the record's other keys (engine, backend, ...)


def _task(record: Mapping[str, Any], metrics: Mapping[str, Any], path: Path) -> str:
    task = record.get("task")
    if task in TASKS:
        return task
    for kind in TASKS.values():  # an older file without the key: its headline metric tells
        if kind.headline_key in metrics:
            return kind.name
    raise DlcvError(f"{path}: cannot tell the task (no 'task' key, and the metrics hold neither miou nor top1)")


def read_metrics_json(path: str | Path) -> MetricsRecord:
    """Read and check a metrics.json; errors say what is missing and how to get it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DlcvError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DlcvError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(record, dict):
        raise DlcvError(f"{path}: expected a JSON object as dlcv-infer writes")
    metrics = record.get("metrics")
    if metrics is None:
        raise DlcvError(
            f"{path}: holds no metrics; dlcv-infer writes them only when given ground truth "
            "(dlcv-infer --engine MODEL IMAGES --labels LABELS)"
        )
    if not isinstance(metrics, dict) or "confusion_matrix" not in metrics:
        raise DlcvError(f"{path}: its metrics lack 'confusion_matrix' (written by an older dlcv?); re-run dlcv-infer")
    ignore = metrics.get("ignore_index")
    confusion = confusion_from_dict(metrics, ignore_index=None if ignore is None else int(ignore),
                                    exclude=metrics.get("excluded_classes", ()))  # fmt: skip
    n = confusion.num_classes
    names = metrics.get("class_names") or record.get("class_names") or [str(i) for i in range(n)]
    if len(names) != n:
        raise DlcvError(f"{path}: {len(names)} class names for a {n}×{n} confusion matrix")
    context = {k: v for k, v in record.items() if k != "metrics"}
    return MetricsRecord(path, _task(record, metrics, path), tuple(str(c) for c in names), confusion, metrics, context)


def write_metrics_json(path: str | Path, task: str, metrics: Mapping[str, Any], class_names, **context: Any) -> Path:
    """Write ``metrics`` (a ``compute()`` result) with the class names, in dlcv-infer's layout."""
    record = {
        "dlcv_version": dlcv_version(),
        "task": task,
        **context,
        "metrics": {**metrics, "class_names": list(class_names)},
    }
    path = Path(path)
    write_text_atomic(path, json.dumps(strict_json(record), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return path
