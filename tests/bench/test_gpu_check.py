"""benchmarks/gpu_check.sh, dry-run on the CPU (GPU_CHECK_DRY=1): the layout of its one output
folder, every step and every GPU row recorded with its status and, when skipped, its reason, the
time budget, and (slow) the whole run with tiny models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ("install", "facts", "cuda-memory", "bench-fcn8s", "compile-fcn8s", "pytest-gpu", "bench-vgg16_bn", "gpu-rows")
GPU_ROW_KINDS = ("onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt-engine")


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "gpu-check"
    settings = {**os.environ, "GPU_CHECK_DRY": "1", "GPU_CHECK_OUT": str(out), "GPU_CHECK_WORK": str(tmp_path / "work"),
                "PYTHON": sys.executable, **env}  # fmt: skip
    proc = subprocess.run(["bash", str(SCRIPT)], env=settings, capture_output=True, text=True, timeout=900)
    return proc, out


def read_steps(out: Path) -> dict[str, tuple[str, str]]:
    rows = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines()]
    assert all(len(r) == 4 and r[1] in ("ok", "failed", "skipped") for r in rows), rows
    assert all(r[3].strip() for r in rows if r[1] != "ok"), "every skipped or failed row says why"
    return {r[0]: (r[1], r[3]) for r in rows}


def _gpu_rows_here() -> dict[str, bool]:
    from dlcv.bench.gpu_check import availability

    return {kind: reason == "ok" for kind, reason in availability()}


def test_dry_run_records_each_gpu_row_it_cannot_run_with_the_reason(tmp_path):
    proc, out = run_check(tmp_path, GPU_CHECK_STEPS="cuda-memory,gpu-rows")
    assert proc.returncode == 0, proc.stderr
    steps = read_steps(out)
    assert steps["cuda-memory"][0] == steps["gpu-rows"][0] == "ok" and steps["total"][0] == "ok"
    for step in set(STEPS) - {"cuda-memory", "gpu-rows"}:
        assert steps[step] == ("skipped", "not in GPU_CHECK_STEPS=cuda-memory,gpu-rows"), step
    report = json.loads((out / "cuda_memory.json").read_text())
    if "skipped" in report:  # no usable GPU here: the reason is a row of its own, the stream check's too
        assert steps["cuda-memory round trip"] == ("skipped", report["skipped"])
        assert steps["real stream, fake engine"] == ("skipped", report["skipped"])
    else:
        assert steps["real stream, fake engine"][0] in ("ok", "skipped")
    for kind, runnable in _gpu_rows_here().items():
        for precision in ("fp32", "fp16", "int8"):
            row = steps.get(f"{kind} {precision}")
            assert (row is None) if runnable else (row[0] == "skipped" and len(row[1]) > 20), (kind, precision, row)
    summary = (out / "summary.md").read_text()
    assert "| gpu-rows | ok |" in summary and "## Machine" in summary
    assert sorted(p.name for p in out.iterdir()) == ["bench", "cuda_memory.json", "logs", "steps.tsv", "summary.md"]


def test_the_default_budget_leaves_time_for_a_rerun_in_15_minutes_of_device_time():
    """15 minutes of device time, a start of up to 2 minutes each time: two runs of 300 s fit (and
    torch.compile, the least predictable step, runs on one model only)."""
    text = SCRIPT.read_text()
    assert 'BUDGET="${GPU_CHECK_BUDGET_S:-$([[ "$DRY" == 1 ]] && echo 900 || echo 300)}"' in text
    assert 2 * (300 + 120) <= 15 * 60
    assert text.count("bench_step compile-") == 1 and "compile-vgg16_bn" not in text


def test_the_stream_check_rows_say_what_ran(tmp_path):
    from dlcv.bench.gpu_check import cuda_rows

    report = tmp_path / "cuda_memory.json"
    report.write_text(json.dumps({"passed": True, "stream_check": {
        "passed": True, "order_ok": True, "chunks": 6, "max_abs_error": 0.0, "buffer_allocations": {"input": 2}}}))
    [(row, status, detail)] = cuda_rows(report)
    assert (row, status) == ("real stream, fake engine", "ok") and "6 chunks copy-in, execute, copy-out, synchronise in order" in detail
    report.write_text(json.dumps({"passed": True, "stream_check": {"skipped": "PyTorch sees no CUDA GPU"}}))
    assert cuda_rows(report) == [("real stream, fake engine", "skipped", "PyTorch sees no CUDA GPU")]


def test_steps_that_do_not_fit_the_budget_are_skipped_with_the_reason(tmp_path):
    proc, out = run_check(tmp_path, GPU_CHECK_BUDGET_S="25")  # 20 s are kept for the summary: 5 s left
    assert proc.returncode == 0, proc.stderr
    steps = read_steps(out)
    for step in STEPS:
        assert steps[step] == ("skipped", "budget: 5s of GPU_CHECK_BUDGET_S=25s left"), step
    assert (out / "summary.md").is_file()


@pytest.mark.slow  # the whole dry run: two tiny models through dlcv-bench five times, the gpu-marked tests, an export
def test_full_dry_run_writes_everything_under_one_folder(tmp_path):
    visible = lambda: sorted(p.name for p in ROOT.iterdir() if not p.name.startswith("."))  # noqa: E731
    before = visible()
    proc, out = run_check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert visible() == before  # no build/ or dlcv.egg-info left in the checkout
    steps = read_steps(out)
    assert not [name for name, (status, _) in steps.items() if status == "failed"], steps
    for step in (*STEPS, "onnxruntime-rows", "total"):
        assert steps[step][0] == "ok", (step, steps[step])
    for name in ("fcn8s-64-cpu", "vgg16_bn-32-cpu", "fcn8s-64-cpu-compile", "fcn8s-64-onnxruntime-cpu"):
        records = json.loads((out / "bench" / name / "results.json").read_text())
        assert {r["label"] for r in records if r["skipped"] is None and r["error"] is None} >= {"torch eager fp32"}, name
        for r in records:
            assert steps[f"{name}: {r['label']} @ batch {r['batch_size']}"][0] == ("skipped" if r["skipped"] else "ok")
    assert steps["fcn8s-64-cpu: torch channels_last fp32 @ batch 2"][0] == "ok"
    assert steps["fcn8s-64-cpu-compile: torch compile fp32 @ batch 1"][0] == "ok"  # torch.compile runs on the CPU too
    assert steps["fcn8s-64-onnxruntime-cpu: onnxruntime fp16 @ batch 1"][0] == "ok"
    for name in ("env.txt", "nvidia-smi.txt", "install.log", "pytest-gpu.log", "pytest-gpu.xml", "cuda_memory.json", "summary.md"):
        assert (out / name).is_file(), name
    assert "tests/bench/test_cuda_check.py" in (out / "pytest-gpu.log").read_text()
