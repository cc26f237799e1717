"""Throughput past one process: Ray Data against the plain dlcv-infer pipeline, and the Triton
ensemble (image bytes in, mask out) for single-image and batched requests.

    python benchmarks/studies/scale.py --name scale-cpu            # after make install (tritonserver included)

Writes benchmarks/results/<name>/results.json and report.md. The model is a narrow FCN8s with
seeded random weights (the demo's width, so the numbers are comparable with the demo's), exported
to ONNX (dynamic batch and size) and to a Triton repository whose model step runs on the Python
backend (the tritonserver from nvidia-pytriton has no onnxruntime backend). The images are
synthetic BMP files of one size: their byte lengths are equal, so a batched request can carry
several encoded images in one UINT8 [B, L] tensor.

Each measurement is one run after a warm-up; fixed start-up costs (Ray's actors, the server) are
reported apart from the throughput. The machine it ran on and its CPU's ISA flags are recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def isa_flags() -> dict[str, bool]:
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        flags = set()
    return {f: f in flags for f in ISA_FLAGS}


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("onnxruntime", "ray", "tritonclient", "numpy", "opencv-python-headless"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    pytriton = Path(sys.prefix) / "triton" / "pytriton"
    versions["nvidia-pytriton"] = next((p.name.removesuffix(".dist-info").split("-")[1]
                                        for p in pytriton.glob("nvidia_pytriton-*.dist-info")), None)  # fmt: skip
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
        "cpus": os.cpu_count(),
        "isa": isa_flags(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "versions": versions,
    }


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> None:
    """Smooth random colour fields (so the decoders and the model see image-like data), BMP."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"img{i:05d}.bmp"), image)


def build_model(work: Path, arch: str, width: float, log) -> tuple[Path, Path]:
    from dlcv.bench.random_checkpoint import write_random_checkpoint
    from dlcv.export import ExportConfig, export_onnx
    from dlcv.export.triton import TritonConfig, write_repository

    ckpt = write_random_checkpoint(arch, work / f"{arch}.pt", width=width, num_classes=11)
    result = export_onnx(ExportConfig(checkpoint=ckpt, out=work, input_size=(128, 128)))
    repo = write_repository(TritonConfig(work / "repo", model_backend="python", max_batch=8, max_queue_delay_us=2000),
                            result.onnx_path)  # fmt: skip
    log(repo.summary())
    return result.onnx_path, work / "repo"


def plain(onnx_path: Path, images: Path, out: Path, batch: int, workers: int) -> dict:
    from dlcv.runtime.infer import InferConfig, run_inference

    summary = run_inference(InferConfig(engine=onnx_path, images=images, out=out, batch_size=batch, workers=workers,
                                        progress=False, overwrite=True))  # fmt: skip
    t = summary.timing
    return {"images": summary.processed, "wall_s": t["wall_s"], "throughput_img_s": t["throughput_img_s"],
            "batch_size": batch, "workers": workers}  # fmt: skip


def on_ray(onnx_path: Path, images: Path, out: Path, batch: int, startup_images: Path) -> dict:
    import ray

    from dlcv.runtime.infer import InferConfig
    from dlcv.runtime.ray_infer import RayConfig, run_ray_inference

    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    init_s = time.perf_counter() - t0
    try:
        def run(folder: Path, target: Path):
            return run_ray_inference(InferConfig(engine=onnx_path, images=folder, out=target, batch_size=batch,
                                                 progress=False, overwrite=True), RayConfig(), log=lambda m: None)  # fmt: skip

        cold = run(startup_images, out.parent / "ray-cold")  # first run: Ray's worker processes start and import
        small = run(startup_images, out.parent / "ray-small")  # a warm run's fixed cost (the actor pool starts)
        full = run(images, out)
    finally:
        ray.shutdown()
    n_small, n_full = small.processed, full.processed
    steady = (n_full - n_small) / (full.timing["wall_s"] - small.timing["wall_s"])
    return {
        "images": n_full, "ray_init_s": init_s, "actors": full.timing["ray_actors"],
        "cpus_per_actor": full.timing["ray_cpus_per_actor"], "wall_s": full.timing["wall_s"],
        "throughput_img_s": full.timing["throughput_img_s"],
        "startup_run_images": n_small, "cold_run_wall_s": cold.timing["wall_s"], "startup_run_wall_s": small.timing["wall_s"],
        "steady_throughput_img_s": steady, "batch_size": batch,
    }  # fmt: skip


def served(repo: Path, onnx_path: Path, images: Path, out: Path, batch: int) -> dict:
    import tritonclient.http as http

    from dlcv.runtime.infer import InferConfig, run_inference
    from dlcv.runtime.triton import IMAGE, MASK
    from dlcv.runtime.triton.local_server import LocalTritonServer

    name = next(p.name for p in repo.iterdir() if (p / "1" / "model.onnx").exists())
    files = sorted(images.glob("*.bmp"))
    data = [np.fromfile(f, dtype=np.uint8) for f in files]
    assert len({d.size for d in data}) == 1, "batched requests need files of one byte length"
    t0 = time.perf_counter()
    server = LocalTritonServer(repo).start()
    start_s = time.perf_counter() - t0
    results: dict = {"server_start_s": start_s, "images": len(files), "model_step": "python backend (dlcv onnxruntime)"}
    try:
        def requests(per_request: int, in_flight: int) -> dict:
            client = http.InferenceServerClient(server.url, concurrency=in_flight)
            try:
                chunks = [np.stack(data[i : i + per_request]) for i in range(0, len(data), per_request)]
                warm = http.InferInput(IMAGE, list(chunks[0].shape), "UINT8")
                warm.set_data_from_numpy(chunks[0])
                client.infer(f"{name}_ensemble", [warm])
                latencies, pending = [], []
                start = time.perf_counter()
                for chunk in chunks:
                    x = http.InferInput(IMAGE, list(chunk.shape), "UINT8")
                    x.set_data_from_numpy(chunk)
                    if in_flight == 1:
                        t = time.perf_counter()
                        client.infer(f"{name}_ensemble", [x]).as_numpy(MASK)
                        latencies.append(time.perf_counter() - t)
                    else:
                        pending.append(client.async_infer(f"{name}_ensemble", [x]))
                        if len(pending) >= in_flight:
                            pending.pop(0).get_result().as_numpy(MASK)
                for p in pending:
                    p.get_result().as_numpy(MASK)
                wall = time.perf_counter() - start
            finally:
                client.close()
            row = {"images_per_request": per_request, "requests_in_flight": in_flight, "wall_s": wall,
                   "throughput_img_s": len(data) / wall}  # fmt: skip
            if latencies:
                row["latency_p50_ms"] = 1000 * statistics.median(latencies)
            return row

        results["ensemble"] = [requests(1, 1), requests(1, 8), requests(batch, 1), requests(batch, 4)]
        stats_client = http.InferenceServerClient(server.url)
        try:
            stats = stats_client.get_inference_statistics(name)["model_stats"][0]
        finally:
            stats_client.close()
        results["model_batches"] = {str(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]}
        summary = run_inference(InferConfig(engine=f"triton://{server.url}/{name}", images=images, out=out,
                                            batch_size=batch, progress=False, overwrite=True))  # fmt: skip
        results["dlcv_infer_triton_client"] = {"wall_s": summary.timing["wall_s"],
                                               "throughput_img_s": summary.timing["throughput_img_s"]}  # fmt: skip
    finally:
        server.stop()
    return results


def report(record: dict, command: str) -> str:
    m, p, r, s = record["machine"], record["plain"], record["ray"], record["triton"]
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["isa"].items())
    lines = [
        f"# {record['name']}: Ray Data and Triton against the plain pipeline",
        "",
        f"Reproduce: `{command}`",
        "",
        f"Machine: {m['cpu_model']} ({m['cpus']} CPUs; {isa}); load average at start {m['loadavg_start'][0]:.2f}, "
        f"at end {record['loadavg_end'][0]:.2f}. {machine_state(m['loadavg_start'][0], record['loadavg_end'][0], m['cpus'])}",
        f"Model: {record['model']}; {record['images']} images of {record['size']}×{record['size']} (BMP).",
        f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
        "",
        "| run | images | wall s | img/s | notes |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| plain dlcv-infer (batch {p['batch_size']}, {p['workers']} loader threads) | {p['images']} | {p['wall_s']:.2f} | "
        f"{p['throughput_img_s']:.1f} | |",
        f"| dlcv-infer --ray ({r['actors']} actor × {r['cpus_per_actor']:g} CPU, 1 CPU left for reading) | {r['images']} | "
        f"{r['wall_s']:.2f} | {r['throughput_img_s']:.1f} | steady state {r['steady_throughput_img_s']:.1f} img/s; "
        f"start-up: ray.init {r['ray_init_s']:.1f} s, a first {r['startup_run_images']}-image run {r['cold_run_wall_s']:.1f} s, "
        f"then {r['startup_run_wall_s']:.1f} s |",
        f"| dlcv-infer --engine triton://… (client backend) | {s['images']} | {s['dlcv_infer_triton_client']['wall_s']:.2f} | "
        f"{s['dlcv_infer_triton_client']['throughput_img_s']:.1f} | the model step over HTTP |",
    ]
    for row in s["ensemble"]:
        lat = f"; p50 {row['latency_p50_ms']:.1f} ms per request" if "latency_p50_ms" in row else ""
        lines.append(
            f"| Triton ensemble, {row['images_per_request']} image(s) per request, {row['requests_in_flight']} in flight | "
            f"{s['images']} | {row['wall_s']:.2f} | {row['throughput_img_s']:.1f} | encoded BMP in, mask out{lat} |"
        )
    lines += [
        "",
        f"Triton server start {s['server_start_s']:.1f} s; the model step's executions by batch size over the whole "
        f"session (dynamic batching): {s['model_batches']}.",
        "",
        "## Reading the rows",
        "",
        f"- On {m['cpus']} CPUs every process competes for the same cores: Ray (raylet, readers, actors) and Triton",
        "  (server, Python-backend stubs, the client) add processes and copies that the single-process pipeline",
        "  does not pay. They are how dlcv scales past one machine (more nodes, GPUs), not a way to run one small",
        "  machine faster: compare them with the plain row on a machine with more cores, or across nodes.",
        "- Ray's fixed costs (`ray.init`, the actor pool's start, in the Ray row's notes) are paid once per run,",
        "  so Ray pays off on large folders; its steady-state rate excludes them.",
        "- The Triton rows run the model step on the Python backend (dlcv's onnxruntime backend), the only one",
        "  nvidia-pytriton's tritonserver has; the native onnxruntime/TensorRT backends and GPU instances",
        "  could not be measured here.",
        "",
    ]
    return "\n".join(lines)


def machine_state(load_start: float, load_end: float, cpus: int) -> str:
    """One sentence on how far the figures can be trusted, from the load averages around the run."""
    if max(load_start, load_end) > cpus:
        return ("**Shared machine**: the load average exceeded the CPU count, other jobs ran beside this one, so "
                "the figures are indicative, not a quiet-machine measurement.")
    return "A quiet machine: the load average stayed at or below the CPU count (most of it this run's own work)."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="scale-cpu")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--arch", default="fcn8s")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    command = "python benchmarks/studies/scale.py " + " ".join(sys.argv[1:])
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    record: dict = {"name": args.name, "machine": machine(), "images": args.images, "size": args.size,
                    "model": f"{args.arch} width {args.width}, random weights (seeded), 11 classes"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dlcv-scale-") as tmp:
        work = Path(tmp)
        log("building the model and the Triton repository")
        onnx_path, repo = build_model(work, args.arch, args.width, log)
        make_images(work / "images", args.images, args.size)
        make_images(work / "startup", 8, args.size, seed=1)
        workers = max(1, min(4, os.cpu_count() or 1))
        plain(onnx_path, work / "startup", work / "warm", args.batch_size, workers)  # warm-up
        log("plain pipeline")
        record["plain"] = plain(onnx_path, work / "images", work / "plain", args.batch_size, workers)
        log("Ray")
        record["ray"] = on_ray(onnx_path, work / "images", work / "ray", args.batch_size, work / "startup")
        log("Triton")
        record["triton"] = served(repo, onnx_path, work / "images", work / "served", args.batch_size)
    record["loadavg_end"] = os.getloadavg()
    record["command"] = command
    out = args.results / args.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "report.md").write_text(report(record, command))
    print(report(record, command))


if __name__ == "__main__":
    main()
