"""dlcv.export.precisions: one row per precision record, and everything keyed by precision covers them all.

Adding a precision is its record, its writer module and one row; these tests fail when a record
lacks a row, a row names a config field or gate bar that does not exist, or a backend's per-precision
map misses one. The CLI's --precision list writes the same files as the per-precision flags.
"""
from __future__ import annotations

import dataclasses
import inspect

from click.testing import CliRunner

from dlcv.export.cli import main
from dlcv.export.config import ExportConfig
from dlcv.export.precisions import EXPORT_PRECISIONS, REDUCED
from dlcv.export.tensorrt_build import FALLBACK_FLAGS
from dlcv.runtime.precision import FP32, PRECISION_NAMES, PRECISIONS, Gate


def test_every_record_has_one_row_with_a_writer_unless_fp32():
    assert tuple(EXPORT_PRECISIONS) == PRECISION_NAMES
    for name, row in EXPORT_PRECISIONS.items():
        assert row.record is PRECISIONS[name]
        assert (row.writer is None) == (name == FP32.name), name
    for row in REDUCED:  # each writer resolves and takes (FP32 file, metadata, config, log)
        assert list(inspect.signature(row.load_writer()).parameters)[:4] == ["fp32_path", "metadata", "config", "log"]
    assert [r.name for r in REDUCED] == [p for p in PRECISION_NAMES if p != FP32.name]


def test_gate_options_name_real_fields():
    config_fields = {f.name for f in dataclasses.fields(ExportConfig)}
    gate_fields = {f.name for f in dataclasses.fields(Gate)}
    for row in EXPORT_PRECISIONS.values():
        if row.gate_option is not None:
            assert row.gate_option.field in config_fields and row.gate_option.bar in gate_fields, row.name


def test_backend_maps_cover_every_precision():
    assert set(FALLBACK_FLAGS) == {r.name for r in REDUCED}


def test_config_holds_the_precisions_in_the_records_order():
    config = ExportConfig(checkpoint="x.pt", precisions=("int8", "fp16", "int8"), calib="c")
    assert config.precisions == ("fp32", "fp16", "int8") == config.onnx_precisions
    assert ExportConfig(checkpoint="x.pt").precisions == ("fp32",)


def test_precision_list_writes_what_the_flags_write(make_checkpoint, tmp_path):
    ckpt = make_checkpoint("fcn32s")
    listed = CliRunner().invoke(main, [str(ckpt), "--precision", "fp16", "--out", str(tmp_path / "listed")])
    assert listed.exit_code == 0, listed.output
    flagged = CliRunner().invoke(main, [str(ckpt), "--fp16", "--out", str(tmp_path / "flagged")])
    assert flagged.exit_code == 0, flagged.output
    names = sorted(p.name for p in (tmp_path / "listed").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "flagged").iterdir()) == ["fcn32s.fp16.onnx", "fcn32s.onnx"]


def test_precision_list_usage_errors_exit_2(make_checkpoint, tmp_path):
    ckpt = make_checkpoint("fcn32s")
    for args, needle in [
        (["--precision", "bf16"], "--precision takes a comma-separated list"),
        (["--trt", "--precision", "fp16,int8"], "--trt builds one engine"),
        (["--precision", "int8"], "--int8 needs --calib DIR"),
    ]:
        result = CliRunner().invoke(main, [str(ckpt), *args, "--out", str(tmp_path)])
        assert result.exit_code == 2, result.output
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and needle in errors[0], result.stderr
    assert list(tmp_path.iterdir()) == []
