"""Helpers of ``benchmarks/gpu_check.sh``: the machine's facts, which GPU rows it can run, the rows
of a dlcv-bench result, and the summary of a check.

    python -m dlcv.bench.gpu_check facts                 # versions, GPUs, providers, TensorRT (text)
    python -m dlcv.bench.gpu_check availability          # one line per GPU row kind: name, ok|skipped, reason
    python -m dlcv.bench.gpu_check rows results.json     # one steps.tsv line per row x batch size
    python -m dlcv.bench.gpu_check summary OUT_DIR       # OUT_DIR/summary.md from OUT_DIR/steps.tsv

``steps.tsv`` has four tab-separated columns: step, status (``ok``, ``failed`` or ``skipped``),
seconds, detail (for a skipped or failed step or row: the reason).
"""

from __future__ import annotations

import argparse
import importlib
import json
from importlib import metadata
import platform
import sys
from pathlib import Path

from dlcv.runtime.markdown import table

STEPS_TSV = "steps.tsv"
SUMMARY_MD = "summary.md"
ONNXRUNTIME_GPU_WHEEL_MB = 250  # onnxruntime-gpu 1.31.1, cp312 manylinux_2_28 x86-64: 255,569,273 bytes
STREAM_ROW = "real stream, fake engine"  # dlcv.bench.stream_check's row
CARRY_LIMIT_MB = 64  # what travels to a lent GPU machine with the working tree


def _version(module: str) -> str:
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # any import failure is a fact to report, not a crash
        return f"not importable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    dist = {"cv2": "opencv-python-headless", "cuda.bindings": "cuda-bindings"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(getattr(imported, "__version__", "installed"))


def facts() -> list[str]:
    """The machine's versions and devices, one ``key: value`` line each."""
    lines = [f"python: {sys.version.split()[0]} ({sys.executable})", f"platform: {platform.platform()}"]
    for module in ("numpy", "cv2", "onnx", "onnxruntime", "torch", "torchvision", "cuda.bindings", "click", "tqdm"):
        lines.append(f"{module}: {_version(module)}")
    try:
        import torch

        lines.append(f"torch CUDA: {torch.version.cuda}, available: {torch.cuda.is_available()}, "
                     f"cuDNN: {torch.backends.cudnn.version()}")  # fmt: skip
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"torch GPU {i}: {p.name}, compute capability {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB")
    except Exception as exc:
        lines.append(f"torch CUDA: {type(exc).__name__}: {exc}")
    try:
        import onnxruntime as ort

        lines.append(f"onnxruntime providers: {', '.join(ort.get_available_providers())}")
    except Exception as exc:
        lines.append(f"onnxruntime providers: {type(exc).__name__}: {exc}")
    for name, reason in availability():
        lines.append(f"{name}: {reason}")
    return lines


def availability() -> list[tuple[str, str]]:
    """(row kind, "ok" or the reason it cannot run here) for the GPU rows beyond PyTorch."""
    rows = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        build = f"onnxruntime {ort.__version__} (providers: {', '.join(providers)})"
    except Exception as exc:
        providers, build = [], f"onnxruntime is not importable ({type(exc).__name__})"
    why_not = (f"{build} is the CPU build; onnxruntime-gpu's wheel (about {ONNXRUNTIME_GPU_WHEEL_MB} MB) exceeds the "
               f"{CARRY_LIMIT_MB} MiB that can travel to this machine, which has no internet")  # fmt: skip
    rows.append(("onnxruntime-cuda", "ok" if "CUDAExecutionProvider" in providers else why_not))
    rows.append(("onnxruntime-tensorrt", (
        "present, not timed: dlcv-bench runs onnxruntime on --device cuda; dlcv-infer --device tensorrt runs this provider"
        if "TensorrtExecutionProvider" in providers else why_not)))  # fmt: skip
    from dlcv.export.tensorrt_build import builder_problem

    _, problem = builder_problem()
    if problem is None:
        rows.append(("tensorrt-engine", "ok"))
    else:
        runtime = _version("tensorrt_lean_bindings")
        lean = f"; the lean runtime is {runtime}" if not runtime.startswith("not") else "; no lean runtime either"
        rows.append(("tensorrt-engine", f"no TensorRT builder to make an engine: {problem}{lean}; the full TensorRT "
                                        "wheels (over 1 GB) cannot travel to this machine"))  # fmt: skip
    return rows


def bench_rows(results: Path) -> list[tuple[str, str, str]]:
    """(row, status, detail) per record of a dlcv-bench ``results.json``."""
    rows = []
    for r in json.loads(Path(results).read_text()):
        name = f"{r['name']}: {r['label']} @ batch {r['batch_size']}"
        if r.get("skipped"):
            rows.append((name, "skipped", r["skipped"]))
        elif r.get("error"):
            rows.append((name, "failed", r["error"]))
        else:
            agreement = r.get("pixel_agreement", r.get("top1_agreement"))
            detail = (f"p50 {r['latency_p50_ms']:.2f} ms, {r['throughput_img_s']:.1f} img/s"
                      + (f", {r['speedup_vs_torch_eager']:.2f}x eager" if r.get("speedup_vs_torch_eager") else "")
                      + (f", agreement {100 * agreement:.3f} %" if agreement is not None else ""))  # fmt: skip
            rows.append((name, "ok", detail))
    return rows


def cuda_rows(report_path: Path) -> list[tuple[str, str, str]]:
    """(row, status, detail) for what ``cuda_memory.json`` holds beyond its step: the round trip when
    it was skipped, and the real-stream check of the TensorRT backend with a simulated engine."""
    report = json.loads(Path(report_path).read_text())
    rows = []
    if "skipped" in report:
        rows.append(("cuda-memory round trip", "skipped", str(report["skipped"])))
    stream = report.get("stream_check") or {}
    why = stream.get("skipped") or report.get("skipped")
    if why:
        rows.append((STREAM_ROW, "skipped", str(why)))
    elif stream:
        order = "in order" if stream.get("order_ok") else f"OUT OF ORDER: {stream.get('order')}"
        rows.append((STREAM_ROW, "ok" if stream.get("passed") else "failed",
                     f"{stream['chunks']} chunks copy-in, execute, copy-out, synchronise {order}; max abs error "
                     f"{stream['max_abs_error']:.3g}; buffer allocations {stream['buffer_allocations']}"))  # fmt: skip
    return rows


def read_steps(out_dir: Path) -> list[list[str]]:
    path = Path(out_dir) / STEPS_TSV
    if not path.is_file():
        return []
    return [(line.split("\t", 3) + ["", "", ""])[:4] for line in path.read_text().splitlines() if line.strip()]


def summary(out_dir: Path) -> Path:
    """Write ``summary.md``: the machine, then every step and row with its status and reason."""
    out_dir = Path(out_dir)
    steps = read_steps(out_dir)
    env = (out_dir / "env.txt").read_text().strip() if (out_dir / "env.txt").is_file() else "(no env.txt)"
    counts = {s: sum(1 for row in steps if row[1] == s) for s in ("ok", "failed", "skipped")}
    lines = [
        "# GPU check", "",
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
        f"(steps and benchmark rows; every skip and failure says why).", "",
        "## Machine", "", "```", env, "```", "",
        "## Steps and rows", "", table(["step or row", "status", "seconds", "detail"], steps),
    ]  # fmt: skip
    lines += ["", "Files: steps.tsv (the table above), env.txt, nvidia-smi.txt, install.log, pytest-gpu.log/.xml, "
              "cuda_memory.json, bench/<name>/ (dlcv-bench reports), logs/ (each step's output)."]  # fmt: skip
    path = out_dir / SUMMARY_MD
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("facts")
    sub.add_parser("availability")
    rows = sub.add_parser("rows")
    rows.add_argument("results", type=Path)
    cuda = sub.add_parser("cuda-rows")
    cuda.add_argument("report", type=Path)
    summ = sub.add_parser("summary")
    summ.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "facts":
        print("\n".join(facts()))
    elif args.command == "availability":
        for name, reason in availability():
            print(f"{name}\t{reason}")
    elif args.command == "rows":
        for name, status, detail in bench_rows(args.results):
            print(f"{name}\t{status}\t-\t{detail}")
    elif args.command == "cuda-rows":
        for name, status, detail in cuda_rows(args.report):
            print(f"{name}\t{status}\t-\t{detail}")
    else:
        print(summary(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
