"""Reading an ONNX file's protobuf wire format without the ``onnx`` package or an engine.

The runtime cannot import ``onnx`` (a training-side dependency), yet two things must be read
from any ONNX file before an engine opens it: where its tensors keep external data
(:mod:`.external_data`) and the dlcv metadata in ``metadata_props``
(:func:`dlcv.runtime.metadata.read_onnx_metadata`, used by every backend that opens ONNX).
This module is the one reader of the wire format both use: field tags, varints and lengths;
bytes that are not needed (tensor data, the graph) are skipped, never decoded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
MODEL_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto
ENTRY_KEY, ENTRY_VALUE = 1, 2  # StringStringEntryProto.key / .value


class Malformed(Exception):
    """The bytes are not a protobuf message of the expected shape."""


def varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise Malformed("varint runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview | None]]:
    """(field number, wire type, value) for each field; length-delimited values as memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = varint(buf, pos)
        elif wire == FIXED64:
            value, pos = None, pos + 8
        elif wire == FIXED32:
            value, pos = None, pos + 4
        elif wire == LENGTH:
            length, pos = varint(buf, pos)
            if pos + length > len(buf):
                raise Malformed("field runs past the end")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise Malformed(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise Malformed("field runs past the end")
        yield number, wire, value


def text(value: memoryview) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("a string is not UTF-8") from None


def _stream_varint(f: BinaryIO) -> int | None:
    """The next varint of the file; None at a clean end of file."""
    value = shift = 0
    while True:
        byte = f.read(1)
        if not byte:
            if shift:
                raise Malformed("varint runs past the end")
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise Malformed("varint too long")


def metadata_props(path: str | os.PathLike) -> dict[str, str]:
    """The model's ``metadata_props`` (key -> value).

    Only the top-level fields are visited and everything else is seeked past, so reading the
    metadata of a 500 MB model reads a few hundred bytes. Raises :class:`Malformed` for a file
    that is not a protobuf message and OSError when it cannot be read.
    """
    props: dict[str, str] = {}
    with open(Path(path), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise Malformed("the file is empty")
        for number, wire, length in _stream_fields(f, size):
            if number == MODEL_METADATA_PROPS and wire == LENGTH:
                entry = {n: text(v) for n, w, v in fields(memoryview(f.read(length))) if w == LENGTH}
                if ENTRY_KEY in entry:
                    props[entry[ENTRY_KEY]] = entry.get(ENTRY_VALUE, "")
    return props


# ModelProto.graph -> GraphProto.input -> ValueInfoProto.name / .type -> TypeProto.tensor_type
# -> TypeProto.Tensor.shape -> TensorShapeProto.dim -> Dimension.dim_value / .dim_param (onnx.proto3)
MODEL_GRAPH, GRAPH_INPUT, VALUE_NAME, VALUE_TYPE, TYPE_TENSOR, TENSOR_SHAPE, SHAPE_DIM = 7, 11, 1, 2, 1, 2, 1
DIM_VALUE, DIM_PARAM = 1, 2


def _message(value: int | memoryview | None) -> memoryview:
    if not isinstance(value, memoryview):
        raise Malformed("a message field is not length-delimited")
    return value


def _dims(value_info: memoryview) -> tuple[str, list[int | str | None]]:
    """A ValueInfoProto's name and dims (an int, a name for a symbolic dim, None for an unnamed one)."""
    name, dims = "", []
    for number, _, value in fields(value_info):
        if number == VALUE_NAME:
            name = text(_message(value))
        elif number == VALUE_TYPE:
            for n1, _, tensor in fields(_message(value)):
                if n1 != TYPE_TENSOR:
                    continue
                for n2, _, shape in fields(_message(tensor)):
                    if n2 != TENSOR_SHAPE:
                        continue
                    for n3, _, dim in fields(_message(shape)):
                        if n3 != SHAPE_DIM:
                            continue
                        entry: int | str | None = None
                        for n4, w4, v4 in fields(_message(dim)):
                            if n4 == DIM_VALUE and w4 == VARINT:
                                entry = int(v4)  # type: ignore[arg-type]
                            elif n4 == DIM_PARAM and w4 == LENGTH:
                                entry = text(_message(v4))
                        dims.append(entry)
    return name, dims


def _stream_fields(f: BinaryIO, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, wire type, length) of each field up to file offset ``end``, the file left at
    the field's value; a value the caller does not read is seeked past before the next field."""
    while f.tell() < end:
        key = _stream_varint(f)
        if key is None:
            raise Malformed("field runs past the end")
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            if _stream_varint(f) is None:
                raise Malformed("varint runs past the end")
            continue
        if wire in (FIXED64, FIXED32):
            length = 8 if wire == FIXED64 else 4
        elif wire == LENGTH:
            length = _stream_varint(f)
            if length is None:
                raise Malformed("length runs past the end")
        else:
            raise Malformed(f"unsupported wire type {wire}")
        start = f.tell()
        if start + length > end:
            raise Malformed("field runs past the end")
        yield number, wire, length
        f.seek(start + length)


def graph_input_shapes(path: str | os.PathLike) -> dict[str, list[int | str | None]]:
    """The graph inputs' declared shapes (name -> dims), read from the file's graph; the
    initialisers and nodes are seeked past, never read."""
    shapes: dict[str, list[int | str | None]] = {}
    with open(Path(path), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise Malformed("the file is empty")
        for number, wire, length in _stream_fields(f, size):
            if number != MODEL_GRAPH or wire != LENGTH:
                continue
            for n, w, item in _stream_fields(f, f.tell() + length):
                if n == GRAPH_INPUT and w == LENGTH:
                    name, dims = _dims(memoryview(f.read(item)))
                    shapes[name] = dims
    return shapes
