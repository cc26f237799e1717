"""Refuse ONNX files whose tensors keep their data outside the model's folder.

An ONNX tensor may store its bytes in another file (``external_data`` entry ``location``,
relative to the model's folder). A crafted model could name ``../../home/me/.ssh/id_rsa`` or
an absolute path and make the runtime read any file. onnxruntime rejects such paths only since
late 2025, and dlcv's runtime cannot import the ``onnx`` package, so
:func:`check_external_data` scans the protobuf wire format itself (:mod:`.onnx_proto`): every TensorProto reachable
from the model (graph initializers, sparse initializers, node attributes, subgraphs, functions,
training graphs) is visited, and each ``location`` must be a relative path that stays inside
the model's folder once symlinks are resolved.

The scan reads only field tags and lengths; the tensor bytes themselves are skipped, so it
costs little even for large models.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import DlcvError
from .onnx_proto import ENTRY_KEY, ENTRY_VALUE, LENGTH, Malformed, fields, text

_MAX_DEPTH = 64

# message -> {field number: message type of that (length-delimited) field}; onnx.proto numbering
_SCHEMA: dict[str, dict[int, str]] = {
    "Model": {7: "Graph", 20: "TrainingInfo", 25: "Function"},
    "TrainingInfo": {1: "Graph", 2: "Graph"},
    "Function": {7: "Node", 11: "Attribute"},
    "Graph": {1: "Node", 5: "Tensor", 15: "SparseTensor"},
    "Node": {5: "Attribute"},
    "Attribute": {5: "Tensor", 6: "Graph", 10: "Tensor", 11: "Graph", 22: "SparseTensor", 23: "SparseTensor"},
    "SparseTensor": {1: "Tensor", 2: "Tensor"},
    "Tensor": {},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA = 8, 13


def _locations(buf: memoryview, kind: str, depth: int = 0):
    """(tensor name, external-data location) for every tensor with one, anywhere below ``buf``."""
    if depth > _MAX_DEPTH:
        raise Malformed("messages nested too deeply")
    children = _SCHEMA[kind]
    name = ""
    for number, wire, value in fields(buf):
        if wire != LENGTH:
            continue
        if kind == "Tensor":
            if number == _TENSOR_NAME:
                name = text(value)
            elif number == _TENSOR_EXTERNAL_DATA:
                entry = {n: text(v) for n, w, v in fields(value) if w == LENGTH and n in (ENTRY_KEY, ENTRY_VALUE)}
                if entry.get(ENTRY_KEY) == "location":
                    yield name, entry.get(ENTRY_VALUE, "")
        elif number in children:
            yield from _locations(value, children[number], depth + 1)


def _escapes(location: str, folder: Path) -> bool:
    if not location or "\x00" in location:
        return True
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(location).drive:
        return True
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, location))
    return os.path.commonpath([root, target]) != root


def check_external_data(path: str | os.PathLike) -> None:
    """Raise :class:`DlcvError` when the ONNX file at ``path`` stores tensor data outside its folder.

    Also refuses a file whose protobuf structure cannot be walked (it is not a valid ONNX
    model). Models without external data pass untouched.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlcvError(f"{path}: cannot read the model ({exc.strerror or exc})") from None
    folder = path.resolve().parent
    try:
        for name, location in _locations(memoryview(data), "Model"):
            if _escapes(location, folder):
                raise DlcvError(
                    f"{path}: refused: tensor {name!r} keeps its data at {location!r}, outside the model's folder "
                    f"{folder}; external data must be a relative path inside that folder — move the data file "
                    "next to the model and re-save it (or re-export the model)"
                )
    except Malformed as exc:
        raise DlcvError(f"{path}: not a valid ONNX file ({exc}); re-export the model") from None
