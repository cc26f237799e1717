"""Refuse ONNX files whose tensors keep their data outside the model's folder.

An ONNX tensor may store its bytes in another file (``external_data`` entry ``location``,
relative to the model's folder). A crafted model could name ``../../home/me/.ssh/id_rsa`` or
an absolute path and make the runtime read any file. onnxruntime rejects such paths only since
late 2025, and dlcv's runtime cannot import the ``onnx`` package, so
:func:`check_external_data` scans the protobuf wire format itself: every TensorProto reachable
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

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
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
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("varint runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value) for each field; length-delimited values as memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = None, pos + 8
        elif wire == _FIXED32:
            value, pos = None, pos + 4
        elif wire == _LENGTH:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Malformed("field runs past the end")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise _Malformed("field runs past the end")
        yield number, wire, value


def _text(value: memoryview) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a string is not UTF-8") from None


def _locations(buf: memoryview, kind: str, depth: int = 0):
    """(tensor name, external-data location) for every tensor with one, anywhere below ``buf``."""
    if depth > _MAX_DEPTH:
        raise _Malformed("messages nested too deeply")
    children = _SCHEMA[kind]
    name = ""
    for number, wire, value in _fields(buf):
        if wire != _LENGTH:
            continue
        if kind == "Tensor":
            if number == _TENSOR_NAME:
                name = _text(value)
            elif number == _TENSOR_EXTERNAL_DATA:
                entry = {n: _text(v) for n, w, v in _fields(value) if w == _LENGTH and n in (_ENTRY_KEY, _ENTRY_VALUE)}
                if entry.get(_ENTRY_KEY) == "location":
                    yield name, entry.get(_ENTRY_VALUE, "")
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
    except _Malformed as exc:
        raise DlcvError(f"{path}: not a valid ONNX file ({exc}); re-export the model") from None
