"""Which layers INT8 hurts: the per-layer sensitivity sweep behind ``dlcv-export --int8-sensitivity``.

From one calibration (:class:`dlcv.export.int8.Quantized`) it compares with PyTorch FP32, on the
labelled evaluation images and through the export's own comparator, the graph with every layer
INT8 and, for each weighted layer, the same graph with that one layer in FP32
(:func:`dlcv.export.qdq.keep_fp32`). A layer's *recovery* is its graph's metric delta minus the
all-INT8 delta: the points that quantizing this layer costs, in the context of all the others
quantized. The layers worth keeping in FP32 (``--int8-fp32``) are the few with a large recovery;
a recovery within the noise of a few images' pixels says the layer is safe in INT8.

Each graph is one onnxruntime session; they are compared a few at a time (:data:`CHUNK`) so a
full-size model's sweep does not hold twenty sessions at once.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import onnx

from dlcv.runtime.atomic import write_text_atomic
from dlcv.runtime.backends.base import Backend
from dlcv.runtime.task import get_task
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.precision import INT8

from .config import ExportConfig
from .graph import finalize_graph
from .int8 import Quantized
from .qdq import layer_names
from .verify import EvalSet, ExportedArtifact, compare_precisions, eval_set_from_dataset

Log = Callable[[str], None]
CHUNK = 6  # graphs compared per pass over the evaluation images
ALL_INT8 = "(every layer INT8)"


@dataclass(frozen=True)
class LayerSensitivity:
    """One graph of the sweep: ``layer`` in FP32 (or :data:`ALL_INT8`), against PyTorch FP32."""

    layer: str
    op: str
    agreement: float
    max_abs_logit_error: float
    metric_delta: float | None  # metric units (0.01 = 1 point)
    recovered: float | None  # metric_delta - the all-INT8 delta


@dataclass(frozen=True)
class SensitivityReport:
    task: str
    eval_source: str
    method: str
    all_int8: LayerSensitivity
    layers: tuple[LayerSensitivity, ...]  # graph order
    default_fp32: tuple[str, ...]

    def ranked(self) -> list[LayerSensitivity]:
        """Layers by recovery, largest first (by agreement gained without labels)."""
        base = self.all_int8.agreement
        return sorted(self.layers, key=lambda r: -(r.recovered if r.recovered is not None else r.agreement - base))

    def table(self) -> str:
        name = get_task(self.task).headline_name
        header = f"{'layer in FP32':<28}{'op':<15}{'agreement':>11}{'max abs err':>13}{name + ' delta':>12}{'recovered':>11}"
        lines = [f"INT8 sensitivity ({self.method} calibration) on {self.eval_source}", header, "-" * len(header)]
        for r in [self.all_int8, *self.ranked()]:
            delta = "-" if r.metric_delta is None else f"{100 * r.metric_delta:+.2f}"
            recovered = "-" if r.recovered is None else f"{100 * r.recovered:+.2f}"
            mark = " *" if r.layer in self.default_fp32 else ""
            lines.append(f"{r.layer + mark:<28}{r.op:<15}{100 * r.agreement:>10.3f}%{r.max_abs_logit_error:>13.3e}"
                         f"{delta:>12}{recovered:>11}")  # fmt: skip
        lines.append(f"{name} delta and recovered in points; * = kept FP32 by default (the layers computing the logits)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "task": self.task, "eval_source": self.eval_source, "calibration": self.method,
            "all_int8": asdict(self.all_int8), "layers": [asdict(r) for r in self.layers],
            "default_fp32_layers": list(self.default_fp32),
        }  # fmt: skip


def sensitivity(
    quantized: Quantized, metadata: ArtifactMetadata, reference: Backend, eval_set: EvalSet,
    layers: Sequence[str] | None = None, log: Log | None = None,
) -> SensitivityReport:  # fmt: skip
    """The sweep over ``layers`` (None: every weighted layer) on ``eval_set`` against ``reference``."""
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    names = layer_names(quantized.fp32)
    ops = {names[n.name]: n.op_type for n in quantized.fp32.graph.node if n.name in names}
    chosen = list(quantized.layers() if layers is None else layers)
    graphs = [(ALL_INT8, ())] + [(layer, (layer,)) for layer in chosen]
    rows: list[LayerSensitivity] = []
    md = metadata.with_(precision="int8")
    with tempfile.TemporaryDirectory(prefix="dlcv-int8-sensitivity-") as tmp:
        for start in range(0, len(graphs), CHUNK):
            artifacts = []
            for i, (label, fp32) in enumerate(graphs[start : start + CHUNK], start):
                path = Path(tmp) / f"{i}.onnx"
                onnx.save_model(finalize_graph(quantized.with_fp32(fp32), md), str(path))
                artifacts.append(ExportedArtifact(label, path.name, lambda path=path: OnnxRuntimeBackend(path), INT8))
            if log:
                log(f"  sensitivity: graphs {start + 1}-{start + len(artifacts)} of {len(graphs)}")
            report = compare_precisions(reference, artifacts, eval_set)
            for row in report.rows:
                rows.append(LayerSensitivity(row.label, ops.get(row.label, "-"), row.stats["agreement"],
                                             row.stats["max_abs_logit_error"], row.metric_delta, None))  # fmt: skip
    base = rows[0]
    layers_rows = tuple(
        LayerSensitivity(r.layer, r.op, r.agreement, r.max_abs_logit_error, r.metric_delta,
                         None if r.metric_delta is None or base.metric_delta is None else r.metric_delta - base.metric_delta)
        for r in rows[1:]
    )  # fmt: skip
    return SensitivityReport(metadata.task, eval_set.source, quantized.method, base, layers_rows, quantized.default_fp32_layers())


def sensitivity_path(config: ExportConfig, metadata: ArtifactMetadata) -> Path:
    return config.out / f"{metadata.arch}{INT8.file_suffix}.sensitivity.json"


def write_sensitivity(quantized: Quantized, metadata: ArtifactMetadata, config: ExportConfig, log: Log) -> SensitivityReport:
    """The sweep on ``config.val`` (up to ``eval_count`` images) against the checkpoint in PyTorch;
    logs the table and writes it as JSON beside the INT8 file."""
    import json

    from dlcv.train.torch_backend import TorchBackend

    assert config.val is not None  # ExportConfig requires --val with --int8-sensitivity
    eval_set = eval_set_from_dataset(config.val, metadata, config.eval_count, log)
    log(f"INT8 sensitivity: {len(quantized.layers()) + 1} graphs from one calibration, on {eval_set.source}")
    with TorchBackend(config.checkpoint) as reference:
        report = sensitivity(quantized, metadata, reference, eval_set, log=log)
    log(report.table())
    path = sensitivity_path(config, metadata)
    config.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(report.to_dict(), indent=1) + "\n")
    log(f"wrote {path}")
    return report
