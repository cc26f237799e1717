"""Does dlcv-infer's memory stay flat over a very large folder? Measure it.

Generates ``--count`` small PNGs (default 100,000 of 32×32) in a temporary folder, runs the
``dlcv-infer`` CLI over them in a child process, and samples the child's resident set size
(``VmRSS`` from ``/proc/<pid>/status``) every ``--interval`` seconds together with how many
images are done. Writes ``results.json`` (flat records, units in the key names) and
``report.md`` into ``--results``.

    python benchmarks/studies/flat_memory.py                          # 100,000 images, segmentation
    python benchmarks/studies/flat_memory.py --count 2000 --results /tmp/fm   # a quick try

The model is a tiny ONNX colour-template network built here with ``onnx.helper`` (a 1×1
convolution: per-pixel logits for segmentation, pooled for classification), so the run
measures dlcv's own pipeline (listing, decoding, batching, writing) rather than a network;
``--model`` runs any dlcv ONNX file instead. Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dlcv.runtime.task import get_task
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
DEFAULT_RESULTS = HERE / "results" / "flat_memory"
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
NAMES = ("background", "red", "green", "blue", "white")


def build_model(path: Path, task: str) -> Path:
    """A colour-template model with dlcv metadata (logit_c = 2 x·t_c - |t_c|²)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
    from dlcv.runtime.preprocess import PreprocessSpec

    t = COLOURS.astype(np.float32) / 255.0
    c = len(COLOURS)
    inits = [numpy_helper.from_array((2 * t).reshape(c, 3, 1, 1), "W"),
             numpy_helper.from_array(-(t**2).sum(axis=1).astype(np.float32), "B")]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    if get_task(task).per_pixel:
        nodes = [helper.make_node("Conv", ["input", "W", "B"], ["logits"])]
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c, "H", "W"])
    else:
        nodes = [helper.make_node("Conv", ["input", "W", "B"], ["p"]),
                 helper.make_node("GlobalAveragePool", ["p"], ["q"]),
                 helper.make_node("Flatten", ["q"], ["logits"], axis=1)]
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c])
    model = helper.make_model(helper.make_graph(nodes, "colours", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    md = ArtifactMetadata(task=task, arch="colour-templates", num_classes=c, class_names=NAMES,
                          preprocess=PreprocessSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    helper.set_model_props(model, {METADATA_KEY: md.to_json()})
    onnx.save(model, str(path))
    return path


def generate_images(folder: Path, count: int, size: int, seed: int = 0) -> float:
    """``count`` PNGs of ``size``×``size`` template-colour blocks (64 distinct images, repeated)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(64):
        grid = rng.integers(0, len(COLOURS), size=(4, 4))
        image = COLOURS[np.kron(grid, np.ones((size // 4, size // 4), int))]
        ok, buf = cv2.imencode(".png", image[:, :, ::-1])
        encoded.append(buf.tobytes())
    start = time.perf_counter()
    for i in range(count):
        (folder / f"img{i:06d}.png").write_bytes(encoded[i % len(encoded)])
    return time.perf_counter() - start


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _done(out: Path, task: str) -> int:
    """Images finished so far: colour masks written (segmentation) or journal rows (classification)."""
    try:
        if get_task(task).per_pixel:
            with os.scandir(out) as it:
                return sum(1 for e in it if e.name.endswith("_color.png") and not e.name.startswith("."))
        with open(out / ".predictions.csv.partial", "rb") as f:
            return max(0, f.read().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def run_and_sample(command: list[str], out: Path, task: str, interval: float) -> tuple[list[dict], dict]:
    """Run ``command``; sample (seconds, images done, RSS) until it exits. Returns samples and exit info."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[dict] = []
    status = rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss = _rss_mb(proc.pid)
        if rss is not None:
            samples.append({"time_s": round(time.perf_counter() - start, 2), "images_done": _done(out, task),
                            "rss_mb": round(rss, 1)})
            print(f"  t={samples[-1]['time_s']:8.1f} s  done={samples[-1]['images_done']:7d}  RSS={rss:7.1f} MB",
                  flush=True)
        time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.communicate()
    exit_info = {
        "exit_code": proc.returncode,
        "wall_s": time.perf_counter() - start,
        "rss_peak_mb": rusage.ru_maxrss / 1024.0,  # kilobytes on Linux
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr_tail": stderr.decode("utf-8", "replace")[-2000:],
    }
    return samples, exit_info


def summarise(samples: list[dict], exit_info: dict, count: int, record: dict) -> dict:
    """Flat figures: RSS when processing started (first sample with an image done), at 10 %, at the
    end (last sample), the peak, and the drift between 10 % and the end."""
    working = [s for s in samples if s["images_done"] > 0] or samples
    at_10 = next((s for s in working if s["images_done"] >= count // 10), working[0])
    timing = (record or {}).get("timing", {})
    return {
        "images": count,
        "exit_code": exit_info["exit_code"],
        "rss_start_mb": working[0]["rss_mb"],
        "rss_at_10pct_mb": at_10["rss_mb"],
        "rss_end_mb": working[-1]["rss_mb"],
        "rss_peak_mb": round(exit_info["rss_peak_mb"], 1),
        "rss_drift_10pct_to_end_mb": round(working[-1]["rss_mb"] - at_10["rss_mb"], 1),
        "wall_s": round(exit_info["wall_s"], 1),
        "throughput_img_s": timing.get("throughput_img_s"),
        "processed": (record or {}).get("counts", {}).get("processed"),
        "failed": (record or {}).get("counts", {}).get("failed"),
    }


def write_report(results_dir: Path, result: dict) -> None:
    s = result["summary"]
    lines = [
        "# dlcv-infer memory over a large folder",
        "",
        f"`{result['command_line']}`",
        "",
        f"{s['images']:,} generated {result['config']['image_size']}×{result['config']['image_size']} PNGs, "
        f"task {result['config']['task']}, batch size {result['config']['batch_size']}, "
        f"{result['config']['workers']} workers, on {result['machine']['cpus']} CPUs "
        f"({result['machine']['platform']}).",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| RSS when processing started | {s['rss_start_mb']:.1f} MB |",
        f"| RSS at 10 % of the images | {s['rss_at_10pct_mb']:.1f} MB |",
        f"| RSS at the end | {s['rss_end_mb']:.1f} MB |",
        f"| peak RSS (ru_maxrss) | {s['rss_peak_mb']:.1f} MB |",
        f"| drift from 10 % to the end | {s['rss_drift_10pct_to_end_mb']:+.1f} MB |",
        f"| throughput (dlcv-infer's own count) | {s['throughput_img_s']:.1f} images/s |"
        if s["throughput_img_s"] else "| throughput | n/a |",
        f"| wall time of the run | {s['wall_s']:.1f} s |",
        f"| processed / failed | {s['processed']} / {s['failed']} |",
        "",
        "RSS is sampled from `/proc/<pid>/status` (VmRSS) of the dlcv-infer process; the peak is its",
        "`ru_maxrss` over the whole run. dlcv-infer holds the folder's names (as bytes, about 50 each)",
        "for sorting from the start; nothing else grows with the number of images processed.",
        "",
        "RSS over the run (every tenth sample):",
        "",
        "| time (s) | images done | RSS (MB) |",
        "| ---: | ---: | ---: |",
    ]
    samples = result["samples"]
    step = max(1, len(samples) // 10)
    for sample in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"| {sample['time_s']:.1f} | {sample['images_done']:,} | {sample['rss_mb']:.1f} |")
    (results_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (a multiple of 4)")
    parser.add_argument("--task", choices=("segmentation", "classification"), default="segmentation")
    parser.add_argument("--model", type=Path, default=None, help="a dlcv ONNX file (default: a tiny generated one)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--workdir", type=Path, default=None, help="where the images go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated images and outputs")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="dlcv-flat-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        images, out = work / "images", work / "out"
        print(f"generating {args.count:,} images in {images} ...", flush=True)
        generate_s = generate_images(images, args.count, args.size)
        model = args.model or build_model(work / f"colours-{args.task}.onnx", args.task)
        command = [sys.executable, "-m", "dlcv.runtime.cli", "--engine", str(model), str(images), "--out", str(out),
                   "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--quiet"]
        print("running: " + " ".join(command), flush=True)
        samples, exit_info = run_and_sample(command, out, args.task, args.interval)
        metrics_path = out / "metrics.json"
        record = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
        import onnxruntime

        result = {
            "command_line": "python benchmarks/studies/flat_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "infer_command": " ".join(["dlcv-infer", *command[3:]]),
            "config": {"count": args.count, "image_size": args.size, "task": args.task, "batch_size": args.batch_size,
                       "workers": args.workers, "interval_s": args.interval, "model": str(args.model or "generated")},
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                        "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__},
            "generate_s": round(generate_s, 1),
            "summary": summarise(samples, exit_info, args.count, record),
            "samples": samples,
            "cli_stdout": exit_info["stdout"],
            "cli_stderr_tail": exit_info["stderr_tail"],
        }
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        write_report(args.results, result)
        print(json.dumps(result["summary"], indent=2))
        return 0 if exit_info["exit_code"] == 0 else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
