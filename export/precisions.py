"""The precisions dlcv-export writes: one row per :class:`~dlcv.runtime.precision.Precision` record.

A row names the writer that turns the verified FP32 file into the precision's graph (by module
and function, imported when a file of that precision is written: the table, and the config that
validates with it, stay as light as the precision records), the option that replaces one bar of
the record's gate (``--fp16-min-agreement`` replaces FP16's label
agreement), and whether the writer calibrates on ``--calib`` images. :class:`ExportConfig
<dlcv.export.config.ExportConfig>` validates and gates with it, :mod:`dlcv.export.onnx_export`
runs its writers, the CLI makes one ``--<name>`` flag per reduced precision from it, and
dlcv-bench asks for precisions by name. Adding a precision: its record in
:mod:`dlcv.runtime.precision`, its writer module, and one row here (docs/architecture.md).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from dlcv.runtime.precision import FP16, FP32, INT8, Precision

if TYPE_CHECKING:
    import onnx

# (FP32 file, its metadata, config, log) -> the finalised graph of the precision
Writer = Callable[..., "onnx.ModelProto"]


@dataclass(frozen=True)
class GateOption:
    """An option that replaces one bar of a precision's record gate: ``bar`` is the
    :class:`~dlcv.runtime.precision.Gate` field, ``field`` the ExportConfig field holding the value."""

    bar: str
    field: str


@dataclass(frozen=True)
class ExportPrecision:
    """How dlcv-export writes one precision. ``writer``: ``"module:function"`` of its writer,
    (FP32 file, its metadata, config, log) -> the finalised graph; None for FP32, the exported
    graph itself. ``calibrated``: the writer reads ``--calib`` images."""

    record: Precision
    writer: str | None
    gate_option: GateOption | None = None
    calibrated: bool = False

    @property
    def name(self) -> str:
        return self.record.name

    def load_writer(self) -> Writer:
        """The writer function (imported now); a ValueError for FP32, which has none."""
        if self.writer is None:
            raise ValueError(f"{self.name} has no writer: it is the exported graph itself")
        module, function = self.writer.split(":")
        return getattr(importlib.import_module(module), function)


# --min-agreement is FP32's label agreement (the FP32 verification uses it too); --int8-max-drop
# replaces INT8's metric drop on labelled images (without labels the record's agreement bar stands).
EXPORT_PRECISIONS: dict[str, ExportPrecision] = {
    row.name: row
    for row in (
        ExportPrecision(FP32, None, GateOption("min_agreement", "min_agreement")),
        ExportPrecision(FP16, "dlcv.export.fp16:write_fp16", GateOption("min_agreement", "fp16_min_agreement")),
        ExportPrecision(INT8, "dlcv.export.int8_writer:write_int8", GateOption("max_metric_drop", "int8_max_drop"),
                        calibrated=True),
    )
}
REDUCED: tuple[ExportPrecision, ...] = tuple(row for row in EXPORT_PRECISIONS.values() if row.writer is not None)

