"""Every CPU peer in one dlcv-bench run: by default each exported file on every installed backend that
opens it (onnxruntime and OpenVINO), beside PyTorch eager, channels_last and torch.compile (its
compilation kept apart as compile_s, never timed), each with parity; the report says in words where
a peer beats dlcv's default backend for a file."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.bench.cli import main
from dlcv.bench.report import REPORT_MD, RESULTS_JSON, peer_sentences
from dlcv.bench.run import BenchmarkRun, _RowResults
from dlcv.bench.candidates import BenchRow
from dlcv.runtime.backends import backends
from dlcv.runtime.cpu_isa import running_cpu_class
from ..conftest import TEST_CPU_CLASS

FAST = ["--shape", "32x32", "--batch-sizes", "1,2", "--images", "4", "--iters", "2", "--warmup", "0", "--rounds", "2",
        "--bootstrap", "20", "--e2e-images", "2", "--ceiling-size", "128"]  # fmt: skip
ONNX_PEERS = {f"{backend} {p}" for backend in ("onnxruntime", "openvino") for p in ("fp32", "fp16", "int8")}


def run_peers(checkpoint, out, *extra) -> list[dict]:
    result = CliRunner().invoke(main, [str(a) for a in (checkpoint, *FAST, "--out", out, "--name", "peers", *extra)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "peers" / RESULTS_JSON).read_text()), result


def check_peers(records, result, out, torch_rows):
    ran = {r["label"] for r in records if r["skipped"] is None}
    assert ran == ONNX_PEERS | torch_rows
    for r in records:
        if r["skipped"] is None:
            assert r["error"] is None and r["latency_p50_ms"] > 0 and r["pixel_agreement"] is not None, (r["label"], r["error"])
    onnx_rows = [r for r in records if r["artifact"]]
    for r in onnx_rows:  # the declared preferences of this CPU's class (OpenVINO for INT8 on AMX), else onnxruntime
        preferred = [cls.name for cls in backends().values() for p in cls.preferred_for
                     if p.applies(r["precision"], "cpu", running_cpu_class())]
        assert r["default_backend"] == (preferred[0] if preferred else "onnxruntime"), r["label"]
    report = (out / "peers" / REPORT_MD).read_text()
    assert "## Peers: which backend for which file" in report
    sentences = [line for line in report.splitlines() if line.startswith("- ") and " runs fcn8s" in line]
    assert {s.split(" runs ")[1].split()[0] for s in sentences} == {"fcn8s.onnx", "fcn8s.fp16.onnx", "fcn8s.int8.onnx"}
    assert all(s in result.stdout for s in (line[2:] for line in sentences))  # printed after the headline too


def test_one_run_times_every_onnx_peer_beside_the_pytorch_baselines(make_checkpoint, tmp_path):
    records, result = run_peers(make_checkpoint("fcn8s"), tmp_path, "--torch-variants", "channels_last")
    check_peers(records, result, tmp_path, {"torch eager fp32", "torch channels_last fp32"})
    assert all(r["compile_s"] is None for r in records)


@pytest.mark.slow  # torch.compile compiles the narrow FCN8s per input shape: 20-30 s each on 2 busy cores
def test_the_default_cpu_run_includes_torch_compile_with_its_compile_time_apart(make_checkpoint, tmp_path):
    records, result = run_peers(make_checkpoint("fcn8s"), tmp_path)  # no --backends, no --torch-variants
    check_peers(records, result, tmp_path, {"torch eager fp32", "torch channels_last fp32", "torch compile fp32"})
    compiled = [r for r in records if r["variant"] == "compile"]
    assert all(r["compile_s"] > 0 and r["timed_calls"] == 2 for r in compiled)
    assert compiled[0]["pixel_agreement"] == 1.0
    assert "compiled once per input shape" in (tmp_path / "peers" / REPORT_MD).read_text()


class CompilingStub:
    """A backend that compiles per input shape, logging every call."""

    def __init__(self, log):
        self.log, self.compile_seconds = log, {}

    def infer(self, batch):
        first = batch.shape not in self.compile_seconds
        self.log.append("compile" if first else "run")
        self.compile_seconds.setdefault(batch.shape, 12.5)
        return batch


def test_compilation_happens_before_the_timed_calls_even_without_warm_up(tmp_path):
    from dlcv.bench.config import BenchConfig

    calls: list[str] = []
    row = BenchRow("torch", "compile", "fp32", "cpu", instance=CompilingStub(calls), label="torch compile fp32")
    run = BenchmarkRun(BenchConfig(checkpoint=tmp_path / "m.pt", warmup=0), None, None, (4, 4), tmp_path, calls.append, [])
    run.rows, run.results = [row], {row.label: _RowResults()}
    batch = np.zeros((2, 3, 4, 4), np.float32)
    run._compile([row], batch, 2)
    run._compile([row], batch, 2)  # already compiled at that shape: not called again
    assert calls == ["compiling torch compile fp32 for 2x3x4x4 (once per input shape)", "compile"]
    assert run.results[row.label].compile_s == {2: 12.5}
    assert "2x3x4x4 12.5 s" in run.compile_note()


def _record(backend, artifact, bs, p50, default="onnxruntime", precision="fp32"):
    return {"artifact": artifact, "default_backend": default, "backend": backend, "batch_size": bs, "latency_p50_ms": p50,
            "error": None, "precision": precision, "device": "cpu", "cpu_int8_dot": TEST_CPU_CLASS}  # fmt: skip


def test_the_report_says_where_a_peer_beats_dlcvs_default(openvino_preferred):
    records = [
        _record("onnxruntime", "/a/fcn8s.onnx", 1, 100.0), _record("openvino", "/a/fcn8s.onnx", 1, 125.0),
        _record("onnxruntime", "/a/fcn8s.onnx", 2, 180.0), _record("openvino", "/a/fcn8s.onnx", 2, 200.0),
        _record("onnxruntime", "/a/fcn8s.int8.onnx", 1, 130.0, "openvino", "int8"),
        _record("openvino", "/a/fcn8s.int8.onnx", 1, 100.0, "openvino", "int8"),
        _record("onnxruntime", "/a/fcn8s.fp16.onnx", 1, 150.0), _record("openvino", "/a/fcn8s.fp16.onnx", 1, 100.0),
        {**_record("torch", None, 1, 50.0), "default_backend": None},
    ]  # fmt: skip
    sentences = peer_sentences(SimpleNamespace(records=records))
    assert sentences == [
        "onnxruntime (dlcv's default) runs fcn8s.onnx fastest of its backends: 1.25× openvino at batch 1; "
        "1.11× openvino at batch 2 (p50 latency).",
        f"openvino (dlcv's default for int8 files on the cpu ({TEST_CPU_CLASS}), by measurement) runs fcn8s.int8.onnx fastest of its "
        "backends: 1.30× onnxruntime at batch 1 (p50 latency).",
        "openvino runs fcn8s.fp16.onnx faster than onnxruntime (dlcv's default): 1.50× at batch 1 (p50 latency).",
    ]
