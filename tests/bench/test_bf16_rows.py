"""dlcv-bench --precisions fp32,bf16: BF16 rows of the exported FP32 file on the backends that run it
(OpenVINO), judged against PyTorch FP32 by the BF16 gate (agreement >= 99.9 %, mIoU drop <= 0.1
point) with the verdict in the record and the report; on a CPU without BF16 instructions (simulated)
the row carries the one-line refusal and the run goes on."""

from __future__ import annotations

import json

import pytest

from dlcv.bench.report import REPORT_MD, RESULTS_JSON
from dlcv.runtime import cpu_isa
from dlcv.runtime.precision import BF16
from tests.bench.test_cli import FAST, camvid, run  # noqa: F401  (camvid is a fixture)
from tests.conftest import CPU_FLAGS, simulate_cpu

ARGS = ("--precisions", "fp32,bf16", "--backends", "torch,openvino", "--batch-sizes", "1", "--images", "2", *FAST)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_isa.bf16_flags(), reason="this CPU has no avx512_bf16/amx_bf16: BF16 cannot run")
def test_bf16_rows_run_the_fp32_file_with_the_bf16_gate(make_checkpoint, camvid, tmp_path):  # noqa: F811
    out = tmp_path / "results"
    result = run([make_checkpoint("fcn8s"), "--data", camvid, "--out", out, "--name", "seg", *ARGS])
    assert result.exit_code == 0, result.output
    records = {r["label"]: r for r in json.loads((out / "seg" / RESULTS_JSON).read_text())}
    bf16, fp32 = records["openvino bf16"], records["openvino fp32"]
    assert bf16["error"] is None and bf16["precision"] == "bf16" and bf16["latency_p50_ms"] > 0
    assert bf16["artifact"] == fp32["artifact"] and bf16["artifact"].endswith("fcn8s.onnx")  # the FP32 file
    assert bf16["default_backend"] == "openvino" and bf16["tie_margin"] == BF16.tie_margin
    assert bf16["parity_gate"] == BF16.gate.describe("mIoU") and isinstance(bf16["parity_gate_failures"], list)
    assert fp32["parity_gate"] == "agreement >= 99.9%" and fp32["parity_gate_failures"] == []
    assert 0 < bf16["max_abs_logit_error"] and bf16["max_abs_logit_error"] > fp32["max_abs_logit_error"]  # BF16 rounding
    report = (out / "seg" / REPORT_MD).read_text()
    assert "| openvino bf16 |" in report and "precision gate" in report


@pytest.mark.slow
def test_a_cpu_without_bf16_gives_the_rows_its_refusal(make_checkpoint, camvid, tmp_path, monkeypatch):  # noqa: F811
    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["vnni"])
    out = tmp_path / "results"
    result = run([make_checkpoint("fcn8s"), "--data", camvid, "--out", out, "--name", "seg", *ARGS])
    assert result.exit_code == 0, result.output
    records = {r["label"]: r for r in json.loads((out / "seg" / RESULTS_JSON).read_text())}
    bf16 = records["openvino bf16"]
    assert "--precision bf16 needs a CPU with avx512_bf16 or amx_bf16 instructions" in bf16["error"]
    assert bf16["latency_p50_ms"] is None and records["openvino fp32"]["error"] is None
