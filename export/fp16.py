"""FP32 ONNX -> ``<arch>.fp16.onnx``: FP16 weights and activations, FP32 inputs and outputs.

TensorRT 11 builds only strongly typed networks, so the graph's types are the engine's types
(docs/architecture.md contract 5). The conversion is onnxruntime's ``float16.convert_float_to_float16``
with ``keep_io_types=True`` (a Cast after the input and before the output, so callers keep
feeding and reading float32) and an op block list: the converter's own list (ops without
FP16 kernels) plus :data:`FP32_OPS`, the ops whose FP16 versions fail by range (below).
Blocked nodes get Casts around them and run in FP32.

Which ops stay FP32, and why (decided by measurement, onnxruntime 1.31 on the CPU against
PyTorch FP32; the commands are in the issue-4 report):

- For the FCN and VGG models (FCN8s/FCN32s/VGG16-BN) none has to: their graphs hold only
  Conv, ConvTranspose, Gemm, ReLU, MaxPool, Add and integer shape arithmetic, and FP16
  everywhere met the FP16 gate (narrow FCN8s, random weights: 99.95 % pixel agreement, max
  logit error 1.7e-2 on logits up to 15). Keeping Conv/ConvTranspose/Gemm/Add in FP32 too
  bought only 0.005 points of agreement (max error 1.5e-2), so they run FP16, where TensorRT
  gains the most.
- :data:`FP32_OPS` covers the failures FP16 has by *range*, which other registry models
  (ConvNeXt's LayerNorm, EfficientNet's and ResNet's global average pooling, any exported
  variance or exponential) can hit: ``Pow``/``ReduceMean``/``Sqrt`` of a variance overflow
  once activations pass 256 (256² = 65536 > 65504, the largest FP16 number: a decomposed
  LayerNorm on activations of ~300 squares them to inf in FP16 arithmetic, see
  ``tests/export/test_precision.py``), ``ReduceSum``/``ReduceSumSquare`` likewise, ``Exp``
  overflows above 11.1 (and ``Log`` of its underflow is -inf), and ``LayerNormalization`` is
  what TensorRT itself warns about in FP16. onnxruntime's CPU provider cannot show these
  failures (it runs ops without FP16 kernels in FP32 and drops the Casts between them), so
  the CPU parity check is a bound on FP16 *storage* error, and TensorRT's engine is checked
  again on the GPU. On the narrow models measured (ConvNeXt with its initial weights: logits
  of 0.06) both choices agreed 100 %, so for them the list costs nothing measurable.

The graph's integer shape arithmetic (the FCN crops) is untouched.
"""
from __future__ import annotations

import collections
import os
from typing import Callable

import onnx

from dlcv.runtime.errors import DlcvError, first_line
from dlcv.runtime.metadata import ArtifactMetadata

from .config import ExportConfig
from .graph import finalize_graph

FP32_OPS = ("LayerNormalization", "ReduceMean", "ReduceSum", "ReduceSumSquare", "Pow", "Sqrt", "Exp", "Log")


def block_list(keep_fp32: tuple[str, ...] = FP32_OPS) -> list[str]:
    """The converter's default block list plus ``keep_fp32`` (no duplicates, stable order)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return list(dict.fromkeys([*DEFAULT_OP_BLOCK_LIST, *keep_fp32]))


def convert_to_fp16(proto: onnx.ModelProto, metadata: ArtifactMetadata, keep_fp32: tuple[str, ...] = FP32_OPS) -> onnx.ModelProto:
    """An FP16 copy of the FP32 graph ``proto`` (FP32 I/O; ``keep_fp32`` op types stay FP32),
    finalised with ``metadata`` (precision fp16)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted = convert_float_to_float16(
            proto, keep_io_types=True, op_block_list=block_list(keep_fp32), disable_shape_infer=False,
        )  # fmt: skip
    except Exception as exc:  # the converter raises assorted types on graphs it cannot handle
        raise DlcvError(f"{metadata.arch}: FP16 conversion failed ({type(exc).__name__}: {first_line(exc)})") from None
    repair_casts(converted.graph)
    return finalize_graph(converted, metadata.with_(precision="fp16"))


def write_fp16(fp32_path: str | os.PathLike, metadata: ArtifactMetadata, config: ExportConfig,
               log: Callable[[str], None]) -> onnx.ModelProto:  # fmt: skip
    """The FP16 writer: the FP32 file's graph converted by :func:`convert_to_fp16`."""
    return convert_to_fp16(onnx.load(str(fp32_path)), metadata)


def repair_casts(graph: onnx.GraphProto) -> None:
    """Fix three defects of the converter's output in place: a tensor feeding several blocked
    nodes gets one identical Cast per consumer (same output name: invalid SSA); a blocked node
    feeding another blocked node goes through FP16 between them (FP32 -> FP16 -> FP32, which
    overflows exactly where keeping them FP32 was meant to help); and the Casts are appended
    after their consumers (ONNX and TensorRT's parser need topological order)."""
    seen: set[tuple[str, ...]] = set()
    unique = []
    for node in graph.node:
        key = (node.op_type, *node.input, "->", *node.output) if node.op_type == "Cast" else None
        if key is not None and key in seen:
            continue
        seen.add(key)
        unique.append(node)
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    unique = drop_round_trip_casts(unique, {o.name for o in graph.output}, types)
    ordered = topological_order(unique, {i.name for i in graph.input} | {t.name for t in graph.initializer})
    del graph.node[:]
    graph.node.extend(ordered)


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def drop_round_trip_casts(nodes: list[onnx.NodeProto], graph_outputs: set[str], types: dict[str, int]) -> list[onnx.NodeProto]:
    """Remove ``x(FP32) -> Cast(FP16) -> Cast(FP32) -> z``: z's consumers read x itself. ``types``
    maps tensor names to ONNX element types (x must be known FP32). The FP16 Cast stays while
    anything else (an FP16 node, a graph output) reads its output."""
    producer = {out: n for n in nodes for out in n.output}
    rename: dict[str, str] = {}
    dropped: set[int] = set()
    for node in nodes:
        if _cast_to(node) != onnx.TensorProto.FLOAT or node.output[0] in graph_outputs:
            continue
        half = producer.get(node.input[0])
        if half is None or _cast_to(half) != onnx.TensorProto.FLOAT16:
            continue
        if types.get(half.input[0]) != onnx.TensorProto.FLOAT:
            continue
        rename[node.output[0]] = half.input[0]
        dropped.add(id(node))
    kept = [n for n in nodes if id(n) not in dropped]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    used = {name for n in kept for name in n.input} | graph_outputs
    return [n for n in kept if not (_cast_to(n) == onnx.TensorProto.FLOAT16 and n.output[0] not in used)]


def topological_order(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` ordered so every input is produced before it is used (stable where possible).
    Names produced by no node (graph inputs, initialisers, outer scopes) count as available."""
    produced = {out for n in nodes for out in n.output if out}
    waiting = collections.defaultdict(list)  # tensor name -> indices of nodes waiting for it
    missing = []
    for i, node in enumerate(nodes):
        need = {x for x in node.input if x and x in produced and x not in available}
        missing.append(len(need))
        for x in need:
            waiting[x].append(i)
    ready = collections.deque(i for i, m in enumerate(missing) if m == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(nodes[i])
        for out in nodes[i].output:
            for j in waiting.pop(out, ()):
                missing[j] -= 1
                if missing[j] == 0:
                    ready.append(j)
    if len(order) != len(nodes):
        raise DlcvError("FP16 conversion produced a graph with a cycle or an unproduced input; cannot order its nodes")
    return order


def precision_summary(proto: onnx.ModelProto) -> dict:
    """What the graph holds: floating-point initialisers by type, op counts, Q/DQ and Cast nodes."""
    dtypes = collections.Counter(
        onnx.TensorProto.DataType.Name(t.data_type) for t in proto.graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8)
    )  # fmt: skip
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    io = {
        v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
        for v in list(proto.graph.input) + list(proto.graph.output)
    }
    return {"initializers": dict(dtypes), "ops": dict(ops), "io": io}
