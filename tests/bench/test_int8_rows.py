"""dlcv-bench with an INT8 file: the machine's instruction sets and INT8 ceiling in every record and the
report header, and each INT8 row's share of the INT8 ceiling (FP32 rows keep theirs of the FP32 one)."""

from __future__ import annotations

import json

import pytest

from dlcv.bench.report import REPORT_MD, RESULTS_JSON
from tests.bench.test_cli import FAST, camvid, run  # noqa: F401  (camvid is a fixture)


@pytest.mark.slow
def test_int8_rows_are_shares_of_the_int8_ceiling(make_checkpoint, camvid, tmp_path):  # noqa: F811
    out = tmp_path / "results"
    result = run([make_checkpoint("fcn8s"), "--data", camvid, "--precisions", "fp32,int8", "--backends", "onnxruntime",
                  "--batch-sizes", "1", "--images", "2", "--out", out, "--name", "seg", *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    records = {r["label"]: r for r in json.loads((out / "seg" / RESULTS_JSON).read_text())}
    int8, fp32 = records["onnxruntime int8"], records["onnxruntime fp32"]
    for r in records.values():
        assert r["cpu_isa"] and r["cpu_int8_dot"] and r["ceiling_int8_gop_s"] > 0 and "U8S8" in r["ceiling_int8_types"]
    assert int8["error"] is None and int8["ceiling_kind"] == "int8"
    assert int8["ceiling_pct"] == pytest.approx(100 * int8["achieved_gflop_s"] / int8["ceiling_int8_gop_s"])
    assert fp32["ceiling_kind"] == "fp32"
    assert fp32["ceiling_pct"] == pytest.approx(100 * fp32["achieved_gflop_s"] / fp32["ceiling_fp32_gflop_s"])
    report = (out / "seg" / REPORT_MD).read_text()
    assert f"CPU instruction sets: {int8['cpu_isa']}; fastest INT8 multiply-add: {int8['cpu_int8_dot']}" in report
    assert "INT8 ceiling, measured alongside" in report and " (int8) |" in report and " (fp32) |" in report
    assert "INT8 ceiling:" in result.output  # logged when measured
