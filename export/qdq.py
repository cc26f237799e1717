"""Rewrites of the graphs around INT8 quantization: exact FP32 rewrites before it, and edits of the
QDQ graph after it. Each is one function on an ``onnx.ModelProto``, in place, returning what it did.

- :func:`pad_input_channels` (FP32, exact): a convolution whose input channel count is not a
  multiple of 4 (the first one, on RGB) gets zero channels appended to its input (a ``Pad``
  node) and to its weights. onnxruntime's fast x86 INT8 convolution (the symmetric "indirect"
  kernel of MLAS, the one with the AVX2/AVX-VNNI/AVX512-VNNI code paths) needs the input
  channels in groups of 4; with 3 it falls back to im2col and a generic integer GEMM, which
  measured 12 GOP/s against ~50 after padding, on a layer that is 1.5 % of the model's work
  but was 8 % of its INT8 time (full-size FCN8s at 256², onnxruntime 1.32, AVX512-VNNI).
- :func:`transposed_as_conv` (FP32 layers of the QDQ graph, exact): a ConvTranspose whose
  kernel is a whole number m of strides s becomes an m×m Conv with s²× the output channels and
  a DepthToSpace. onnxruntime's ConvTranspose is im2col-free but slow (col2im scatter); the
  Conv path ran FCN8s' final 8× upsampling (the logits layer, kept FP32) 1.8× faster.
- :func:`keep_fp32` (QDQ): chosen layers computed in FP32: their original FP32 weights back,
  their input read before its QuantizeLinear (the Q/DQ pair is dropped where nothing else
  uses it). What follows them still reads their quantized output.
- :func:`tensorrt_qdq` (QDQ): the CPU graph in the form TensorRT's explicit quantization
  accepts (signed INT8, zero point 0); see its docstring.

Layers are named by their weight (:func:`layer_names`): the PyTorch module path the exporter
gave the weight initializer (``features.0``, ``fc6``, ``upscore8``), stable across exports of
one architecture and readable in a sensitivity table.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CHANNEL_MULTIPLE = 4


def _initializers(proto: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in proto.graph.initializer}


def _producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in proto.graph.node for o in n.output}


def _unique(proto: onnx.ModelProto, stem: str) -> str:
    taken = {t.name for t in proto.graph.initializer} | {o for n in proto.graph.node for o in n.output}
    taken |= {n.name for n in proto.graph.node}
    name, k = stem, 1
    while name in taken:
        name, k = f"{stem}_{k}", k + 1
    return name


def _weight_name(proto: onnx.ModelProto, node: onnx.NodeProto) -> str | None:
    """The FP32 weight initializer a weighted node reads, directly or through a DequantizeLinear."""
    if len(node.input) < 2:
        return None
    inits, producer = _initializers(proto), _producers(proto)
    name = node.input[1]
    if name in inits:
        return name
    dq = producer.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
        return dq.input[0]
    return None


def _layer_name(weight: str) -> str:
    for suffix in ("_quantized", ".weight"):
        if weight.endswith(suffix):
            weight = weight[: -len(suffix)]
    return weight


def layer_names(proto: onnx.ModelProto) -> dict[str, str]:
    """Node name -> layer name (its weight's module path) for every weighted node, FP32 or QDQ graph."""
    names = {}
    for node in proto.graph.node:
        if node.op_type in WEIGHTED_OPS:
            weight = _weight_name(proto, node)
            names[node.name] = _layer_name(weight) if weight else node.name
    return names


def logits_layers(proto: onnx.ModelProto) -> tuple[str, ...]:
    """The weighted layers whose results reach a graph output through unweighted ops only (crops,
    reshapes, resizes, additions): the layers that compute the logits. For FCN8s the final
    upsampling ``upscore8``; for a classifier its last fully connected layer."""
    producer, names = _producers(proto), layer_names(proto)
    found: list[str] = []
    stack, seen = [o.name for o in proto.graph.output], set()
    while stack:
        tensor = stack.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in WEIGHTED_OPS:
            found.append(names[node.name])
            continue
        stack.extend(i for i in node.input if i in producer)
    return tuple(dict.fromkeys(sorted(found)))


def pad_input_channels(proto: onnx.ModelProto, multiple: int = CHANNEL_MULTIPLE) -> list[str]:
    """Give every 2-D convolution whose input channel count is not a multiple of ``multiple``
    zero input channels up to the next multiple: a ``Pad`` of its input on the channel axis and
    zero weights for the new channels. Exact in FP32 (zero times zero). Returns the layers padded."""
    inits = _initializers(proto)
    graph = proto.graph
    padded = []
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = numpy_helper.to_array(inits[node.input[1]])
        if group != 1 or weight.ndim != 4 or weight.shape[1] % multiple == 0:
            continue
        extra = multiple - weight.shape[1] % multiple
        zeros = np.zeros((weight.shape[0], extra, *weight.shape[2:]), weight.dtype)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.concatenate([weight, zeros], axis=1), node.input[1]))
        for info in [v for v in graph.value_info if v.name == node.input[1]]:  # the exporter's shape of the old weight
            graph.value_info.remove(info)
        pads_name = _unique(proto, f"{node.name}_channel_pads")
        graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), pads_name))
        out = _unique(proto, f"{node.input[0]}_channels_{weight.shape[1] + extra}")
        pad = helper.make_node("Pad", [node.input[0], pads_name], [out], name=_unique(proto, f"{node.name}_channel_pad"))
        node.input[0] = out
        graph.node.insert(list(graph.node).index(node), pad)
        padded.append(_layer_name(node.input[1]))
    return padded


def keep_fp32(qdq: onnx.ModelProto, fp32: onnx.ModelProto, layers: Iterable[str]) -> list[str]:
    """Compute ``layers`` (names of :func:`layer_names`) of the QDQ graph ``qdq`` in FP32: their
    weights become the FP32 graph's again, their activation input skips its Quantize/Dequantize
    pair, and Q/DQ nodes left without consumers are removed. Returns the layers changed; an
    unknown name raises KeyError with the known ones."""
    wanted = list(dict.fromkeys(layers))
    names = layer_names(qdq)
    by_layer = {layer: node for node, layer in names.items()}
    unknown = [layer for layer in wanted if layer not in by_layer]
    if unknown:
        raise KeyError(f"no layer named {', '.join(unknown)}; the layers are {', '.join(by_layer)}")
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    fp32_inits = _initializers(fp32)
    producer = _producers(qdq)
    nodes = {n.name: n for n in qdq.graph.node}
    for layer in wanted:
        node = nodes[by_layer[layer]]
        original = fp32_nodes.get(node.name)
        if original is None or original.input[1] not in fp32_inits:
            raise KeyError(f"layer {layer}: node {node.name} has no FP32 weight in the FP32 graph")
        weight = fp32_inits[original.input[1]]
        name = _unique(qdq, weight.name)  # the quantizer renamed the weight it quantized: the name is free
        qdq.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(weight), name))
        node.input[1] = name
        dq = producer.get(node.input[0])
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[0] = _relu_if_clamping(qdq, q)
    remove_unused(qdq)
    return wanted


def _clamps_at_zero(proto: onnx.ModelProto, q: onnx.NodeProto) -> bool:
    """True for a uint8 QuantizeLinear with zero point 0: it maps every negative value to 0, the
    ReLU that onnxruntime's quantizer folds into it (removing the Relu node) when it can."""
    zero = _initializers(proto).get(q.input[2]) if len(q.input) > 2 else None
    return zero is not None and zero.data_type == TensorProto.UINT8 and not numpy_helper.to_array(zero).any()


def _relu_if_clamping(proto: onnx.ModelProto, q: onnx.NodeProto) -> str:
    """The FP32 tensor ``q`` quantizes, through a Relu where ``q`` clamps at zero (the folded
    ReLU must come back when a layer reads the tensor unquantized). One Relu per tensor."""
    source = q.input[0]
    if not _clamps_at_zero(proto, q):
        return source
    name = f"{source}_relu"
    if not any(name in n.output for n in proto.graph.node):
        relu = helper.make_node("Relu", [source], [name], name=_unique(proto, f"{q.name}_relu"))
        proto.graph.node.insert(list(proto.graph.node).index(q), relu)
    return name


def transposed_as_conv(proto: onnx.ModelProto) -> list[str]:
    """Rewrite every FP32 ConvTranspose (weight an FP32 initializer, not dequantized) with equal
    strides s, kernels m·s, no padding, dilation or output padding, and group 1, as
    ``Conv(m×m, pads m-1) -> DepthToSpace(s, CRD)``: output pixel (s·i + a, s·j + b) of channel c
    is conv channel c·s² + a·s + b at (i, j), whose weights are the transposed kernel's taps
    a + s·(m-1-u), b + s·(m-1-v). Exact (the same products, summed in another order). Returns the
    layers rewritten."""
    inits = _initializers(proto)
    graph = proto.graph
    done = []
    for node in list(graph.node):
        if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = numpy_helper.to_array(inits[node.input[1]])
        if weight.ndim != 4 or attrs.get("group", 1) != 1 or "output_shape" in attrs:
            continue
        strides = list(attrs.get("strides", [1, 1]))
        if len(set(strides)) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        if any(attrs.get("pads", [0] * 4)) or any(attrs.get("output_padding", [0, 0])) or set(attrs.get("dilations", [1, 1])) != {1}:
            continue
        s, (c_in, c_out, kh, kw) = strides[0], weight.shape
        if s < 2 or kh != kw or kh % s:
            continue
        m = kh // s
        flipped = weight[:, :, ::-1, ::-1].reshape(c_in, c_out, m, s, m, s)  # [ci, co, u, a', v, b'] with a' = s-1-a
        conv_weight = flipped[:, :, :, ::-1, :, ::-1].transpose(1, 3, 5, 0, 2, 4).reshape(c_out * s * s, c_in, m, m)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(conv_weight), node.input[1]))
        inputs = list(node.input[:2])
        if len(node.input) > 2 and node.input[2]:
            bias_name = _unique(proto, f"{node.input[2]}_per_phase")
            graph.initializer.append(numpy_helper.from_array(np.repeat(numpy_helper.to_array(inits[node.input[2]]), s * s), bias_name))
            inputs.append(bias_name)
        phases = _unique(proto, f"{node.output[0]}_phases")
        conv = helper.make_node("Conv", inputs, [phases], name=node.name, kernel_shape=[m, m], pads=[m - 1] * 4)
        shuffle = helper.make_node("DepthToSpace", [phases], list(node.output), name=_unique(proto, f"{node.name}_depth_to_space"),
                                   blocksize=s, mode="CRD")  # fmt: skip
        at = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(at, shuffle)
        graph.node.insert(at, conv)
        for info in [v for v in graph.value_info if v.name == node.input[1]]:
            graph.value_info.remove(info)
        done.append(_layer_name(node.input[1]))
    remove_unused(proto)
    return done


def remove_unused(proto: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nothing reads (and no graph output names), then unused initializers."""
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input} | outputs
    for t in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(t)


def tensorrt_qdq(proto: onnx.ModelProto) -> int:
    """Rewrite the CPU INT8 graph (uint8 activations with zero points, int8 symmetric weights)
    into TensorRT's explicit-quantization form: every uint8 Quantize/Dequantize pair becomes
    int8 with zero point 0 and a scale covering the same real range on the wider side
    (``max(z, 255 - z) * s / 127``), and where the uint8 zero point was 0, so that quantizing
    clamped negative values to 0 (the ReLU onnxruntime's quantizer folds into it), a ``Relu``
    is put back before the QuantizeLinear. Weights are already int8 with zero point 0. Returns
    the number of pairs rewritten.

    Why two forms: onnxruntime on x86 runs uint8 activations x int8 weights (U8S8) on its
    fastest kernels and fuses nothing with int8 activations (its QDQ selectors reject them on
    x86, and the S8->U8 conversion it attempts is skipped wherever a QuantizeLinear feeds two
    consumers, which left FCN8s' pool3/pool4 convolutions in FP32), while TensorRT accepts only
    signed, symmetric INT8. One calibration serves both: the ranges are the same, only their
    encoding differs (the signed form has one bit less resolution on non-negative tensors,
    exactly what a symmetric calibration gives them)."""
    inits = _initializers(proto)
    rewritten: dict[tuple[str, str], tuple[str, str]] = {}
    count = 0
    for node in list(proto.graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        zero = inits.get(zero_name)
        if zero is None or zero.data_type != TensorProto.UINT8:
            continue
        z = numpy_helper.to_array(zero).astype(np.float32)
        clamps_at_zero = node.op_type == "QuantizeLinear" and _clamps_at_zero(proto, node)
        key = (scale_name, zero_name)
        if key not in rewritten:
            s = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
            new_scale, new_zero = _unique(proto, f"{scale_name}_s8"), _unique(proto, f"{zero_name}_s8")
            proto.graph.initializer.append(numpy_helper.from_array((np.maximum(z, 255 - z) * s / 127).astype(np.float32), new_scale))
            proto.graph.initializer.append(numpy_helper.from_array(np.zeros(z.shape, np.int8), new_zero))
            rewritten[key] = (new_scale, new_zero)
        node.input[1], node.input[2] = rewritten[key]
        if node.op_type == "QuantizeLinear":
            count += 1
            if clamps_at_zero:
                relu_out = _unique(proto, f"{node.input[0]}_relu")
                relu = helper.make_node("Relu", [node.input[0]], [relu_out], name=_unique(proto, f"{node.name}_relu"))
                node.input[0] = relu_out
                proto.graph.node.insert(list(proto.graph.node).index(node), relu)
    remove_unused(proto)
    return count


def qdq_types(proto: onnx.ModelProto) -> Mapping[str, int]:
    """Count of Q/DQ zero points by element type name (``UINT8``, ``INT8``): a summary for logs and tests."""
    inits = _initializers(proto)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in inits:
            kind = TensorProto.DataType.Name(inits[node.input[2]].data_type)
            counts[kind] = counts.get(kind, 0) + 1
    return counts
