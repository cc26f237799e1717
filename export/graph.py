"""Graph finishing, shared by every precision's writer: the tensor names and output dims the
metadata promises, the metadata embedded under ``metadata_props["dlcv"]`` (docs/architecture.md contract 3),
and the saved file checked by onnx.checker.

:func:`finalize_graph` runs on each writer's ModelProto (FP32 export, FP16 conversion, INT8
quantization); :func:`save_onnx` writes one self-contained file (external data only above
~1.8 GB of weights, protobuf's 2 GB limit).
"""
from __future__ import annotations

from pathlib import Path

import onnx

from dlcv.runtime.errors import DlcvError, first_line
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.task import get_task

# Above this many bytes of weights the model is saved with external data (protobuf's 2 GB limit).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    return tuple(d.dim_param if d.HasField("dim_param") else d.dim_value for d in value_info.type.tensor_type.shape.dim)


def graph_io(proto: onnx.ModelProto, metadata: ArtifactMetadata) -> tuple[tuple[int | str, ...], tuple[int | str, ...]]:
    """Shapes (ints for fixed dims, names for dynamic ones) of the metadata's input and output."""
    inputs = {i.name: i for i in proto.graph.input}
    outputs = {o.name: o for o in proto.graph.output}
    if metadata.input_name not in inputs or not set(metadata.output_names) <= set(outputs):
        raise DlcvError(
            f"the exported graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}, expected "
            f"{metadata.input_name!r} and {list(metadata.output_names)}"
        )
    return _dims(inputs[metadata.input_name]), _dims(outputs[metadata.output_name])


# output role -> (input axis, output axis) pairs that share a size: logits N×C(×H×W), labels N×H×W, TopK N×k
_SHARED_AXES = {"logits": ((0, 0), (2, 2), (3, 3)), "labels": ((0, 0), (2, 1), (3, 2)), "indices": ((0, 0),), "scores": ((0, 0),)}


def name_output_dims(proto: onnx.ModelProto, metadata: ArtifactMetadata) -> None:
    """Give each output's dynamic dims the input's names (the contract: logits are N×C(×H×W),
    labels N×H×W of the input's N, H, W, TopK N×k), replacing exporter expressions such as
    ``Min(height + 31, ...) - 31``. Verification at several sizes then checks the claim."""
    inp = next(i for i in proto.graph.input if i.name == metadata.input_name)
    in_dims = inp.type.tensor_type.shape.dim
    for tensor in metadata.outputs.tensors:
        out = next(o for o in proto.graph.output if o.name == tensor.name)
        out_dims = out.type.tensor_type.shape.dim
        pairs = _SHARED_AXES[tensor.role]
        if not get_task(metadata.task).per_pixel or len(out_dims) < 3:
            pairs = pairs[:1]
        for src, dst in pairs:
            if dst < len(out_dims) and in_dims[src].HasField("dim_param"):
                out_dims[dst].Clear()
                out_dims[dst].dim_param = in_dims[src].dim_param


def embed_metadata(proto: onnx.ModelProto, metadata: ArtifactMetadata) -> None:
    """Set ``metadata_props[dlcv]`` to the metadata JSON (other keys are kept)."""
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()


def finalize_graph(proto: onnx.ModelProto, metadata: ArtifactMetadata) -> onnx.ModelProto:
    """Check the tensor names, name the output dims, embed the metadata; returns ``proto``."""
    graph_io(proto, metadata)
    name_output_dims(proto, metadata)
    embed_metadata(proto, metadata)
    proto.doc_string = f"dlcv {metadata.arch} ({metadata.task}, {metadata.num_classes} classes, {metadata.precision})"
    return proto


def default_opset(proto: onnx.ModelProto) -> int:
    """The ai.onnx opset version the graph declares."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def weights_bytes(proto: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for t in proto.graph.initializer)


def save_onnx(proto: onnx.ModelProto, path: Path, final_name: str | None = None) -> None:
    """Write ``proto`` to ``path`` and run onnx.checker on the file. One self-contained file,
    except above ~1.8 GB of weights, where they go to ``<final_name>.data`` beside it."""
    if weights_bytes(proto) > EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(
            proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=f"{final_name or path.name}.data", size_threshold=1024,
        )  # fmt: skip
    else:
        onnx.save_model(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise DlcvError(f"{final_name or path.name}: the exported graph fails onnx.checker ({type(exc).__name__}: {first_line(exc)})") from None
