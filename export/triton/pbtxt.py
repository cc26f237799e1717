"""Protocol-buffer text format, written from plain Python values (Triton's ``config.pbtxt``).

``to_pbtxt({"name": "m", "max_batch_size": 8, "input": [{...}], "dynamic_batching": {}})``:

- a str is a quoted string (escaped), :class:`Enum` a bare identifier (``KIND_CPU``), an
  int/float a number, a bool ``true``/``false``;
- a list of scalars is ``[a, b]``; a list of dicts is the repeated message, one block per entry;
- a dict is a message ``{ ... }``; map fields (``parameters``, ``input_map``) are lists of
  ``{"key": ..., "value": ...}`` dicts, which is how the text format writes maps.

No protobuf is needed to write; :func:`dlcv.export.triton.config_proto.parse_model_config`
parses the result with tritonclient's ``model_config_pb2`` (the tests do, for every config).
"""
from __future__ import annotations

from typing import Any


class Enum(str):
    """An enum value, written without quotes."""


def quote(text: str) -> str:
    """A text-format string literal (ASCII only: other characters as octal UTF-8 escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as a protobuf text scalar")


def _fields(message: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            lines += [f"{pad}{key} {{", *_fields(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                lines += [f"{pad}{key} {{", *_fields(entry, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def to_pbtxt(message: dict[str, Any]) -> str:
    """The text format of ``message`` (see the module notes), ending with a newline."""
    return "\n".join(_fields(message, 0)) + "\n"
