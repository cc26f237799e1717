"""In-graph postprocessing: ``dlcv-export --argmax`` appends an ArgMax (segmentation) or TopK
(classification) head to every ONNX file it writes, so the engine returns answers, not logits.

What the head computes, and why, is :mod:`dlcv.runtime.output_spec`: segmentation gets
``labels`` (``ArgMax(axis=1, keepdims=0)`` cast to uint8: N×H×W); classification gets
``topk_indices`` (``TopK`` of the logits, k = min(5, C): int64 N×k) and ``topk_scores`` (the
``Softmax`` of all logits gathered at those indices: float32 N×k). The head reads the graph's
float32 logits output (after the FP16 graph's output Cast, after the INT8 graph's last
DequantizeLinear), so it ranks exactly the values the logits file returns.

:func:`append_head` rewrites a finalised logits graph; :func:`check_head` proves on given
batches that the head file answers exactly what the runtime's own postprocessing of the
logits file answers (labels bit-identical; TopK indices identical, probabilities within
:data:`SCORE_TOLERANCE`), so the head changes nothing but where the work is done.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.output_spec import LABELS, head_outputs
from dlcv.runtime.postprocess import predicted_labels, predicted_topk
from dlcv.runtime.task import get_task

from .graph import finalize_graph

# float32 softmax in the graph against the runtime's float64 softmax of the same logits
SCORE_TOLERANCE = 1e-5
_PREFIX = "dlcv_head"
_ONNX_TYPES = {"uint8": TensorProto.UINT8, "int32": TensorProto.INT32, "int64": TensorProto.INT64, "float32": TensorProto.FLOAT}


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value or None) for d in value.type.tensor_type.shape.dim]


def append_head(proto: onnx.ModelProto, metadata: ArtifactMetadata) -> tuple[onnx.ModelProto, ArtifactMetadata]:
    """``proto`` (a finalised logits graph described by ``metadata``) with the task's head in place
    of its logits output; returns it, finalised, and the metadata that now describes it."""
    if metadata.outputs.is_head:
        raise DlcvError(f"{metadata.arch}: the graph already ends in a {metadata.outputs.kind} head")
    graph = proto.graph
    logits_name = metadata.output_name
    logits = next(o for o in graph.output if o.name == logits_name)
    dims = _dims(logits)
    spec = head_outputs(metadata.task, metadata.num_classes)
    if spec.kind == LABELS:
        (tensor,) = spec.tensors
        nodes = [
            helper.make_node("ArgMax", [logits_name], [f"{_PREFIX}/argmax"], axis=1, keepdims=0, select_last_index=0),
            helper.make_node("Cast", [f"{_PREFIX}/argmax"], [tensor.name], to=_ONNX_TYPES[tensor.dtype]),
        ]
        shapes = {tensor.name: [dims[0], *dims[2:]]}
    else:
        indices, scores = spec.tensors
        graph.initializer.append(numpy_helper.from_array(np.array([spec.k], dtype=np.int64), f"{_PREFIX}/k"))
        nodes = [
            helper.make_node("TopK", [logits_name, f"{_PREFIX}/k"], [f"{_PREFIX}/top_logits", indices.name],
                             axis=1, largest=1, sorted=1),
            helper.make_node("Softmax", [logits_name], [f"{_PREFIX}/probabilities"], axis=1),
            helper.make_node("GatherElements", [f"{_PREFIX}/probabilities", indices.name], [scores.name], axis=1),
        ]  # fmt: skip
        shapes = {indices.name: [dims[0], spec.k], scores.name: [dims[0], spec.k]}
    graph.node.extend(nodes)
    graph.output.remove(logits)
    for tensor in spec.tensors:
        graph.output.append(helper.make_tensor_value_info(tensor.name, _ONNX_TYPES[tensor.dtype], shapes[tensor.name]))
    head_metadata = metadata.with_outputs(spec)
    return finalize_graph(proto, head_metadata), head_metadata


def check_head(logits_file: Path, head_file: Path, batches: Sequence[np.ndarray]) -> None:
    """Both files on onnxruntime (CPU) over ``batches``: the head's answers must be the runtime's
    postprocessing of the logits file's (see the module notes); a DlcvError says where not."""
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(logits_file) as plain, OnnxRuntimeBackend(head_file) as head:
        md, head_md = plain.metadata, head.metadata
        for batch in batches:
            expected, got = plain.infer_outputs(batch), head.infer_outputs(batch)
            shape = "x".join(map(str, batch.shape))
            if get_task(md.task).per_pixel:
                differ = int(np.count_nonzero(predicted_labels(expected, md) != predicted_labels(got, head_md)))
                if differ:
                    raise DlcvError(f"{head_file.name}: the ArgMax head's labels differ from the logits' argmax on {differ} pixels at {shape}")
                continue
            want_idx, want_p = predicted_topk(expected, md, head_md.outputs.k)
            got_idx, got_p = predicted_topk(got, head_md, head_md.outputs.k)
            if not np.array_equal(want_idx, got_idx):
                raise DlcvError(f"{head_file.name}: the TopK head ranks the classes differently from the logits at {shape}")
            error = float(np.max(np.abs(want_p - got_p)))
            if error > SCORE_TOLERANCE:
                raise DlcvError(f"{head_file.name}: the TopK head's probabilities differ by {error:.2e} (> {SCORE_TOLERANCE:g}) at {shape}")
