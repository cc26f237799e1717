"""The runtime's CUDA memory layer on a real GPU: pinned buffers and asynchronous copies on a real stream.

    python -m dlcv.bench.cuda_check --out cuda_memory.json

For each size, a pinned host buffer is filled, copied to the device and back into a second
pinned buffer on one stream (:mod:`dlcv.runtime.tensorrt.cuda_memory`, the TensorRT backend's memory
layer), and the result compared with the original; before the stream is synchronised, a view
of the destination must be refused. The copies are timed (host-to-device and device-to-host
separately, enqueue to synchronise, best of ``repeats``). Without a usable GPU the JSON holds
``skipped`` with the reason and the command exits 0, so a dry run on a CPU machine completes.

The same JSON holds ``stream_check``: the TensorRT backend itself on a real stream with a
simulated engine that launches PyTorch kernels on it (:mod:`dlcv.bench.stream_check`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dlcv.runtime.tensorrt.cuda_memory import BufferPair, Cuda, bindings_version
from dlcv.runtime.errors import DlcvError

from .stream_check import check_stream

DEFAULT_SIZES_MB = (1, 64, 256)


def _timed_copy(cuda: Cuda, copy, dst: int, src: int, nbytes: int, stream) -> float:
    start = time.perf_counter()
    copy(dst, src, nbytes, stream)
    cuda.synchronize(stream)
    return time.perf_counter() - start


def round_trip(cuda: Cuda, stream, nbytes: int, repeats: int, seed: int = 0) -> dict:
    """One size: host -> device -> host through pinned buffers; equality, the unsynchronised-read
    guard, and the best copy times."""
    src, dst = BufferPair(cuda), BufferPair(cuda)
    try:
        src.reserve(nbytes)
        dst.reserve(nbytes)
        count = nbytes // 4
        data = np.random.default_rng(seed).standard_normal(count, dtype=np.float32)
        src.host.view((count,), np.float32)[...] = data
        dst.host.view((count,), np.float32)[...] = np.nan
        cuda.copy_to_device(src.device.ptr, src.host.ptr, nbytes, stream)
        cuda.copy_to_host(dst.host.ptr, src.device.ptr, nbytes, stream)
        try:
            dst.host.view((count,), np.float32)
            refused = False
        except DlcvError:
            refused = True
        cuda.synchronize(stream)
        equal = bool(np.array_equal(dst.host.view((count,), np.float32), data))
        h2d = min(_timed_copy(cuda, cuda.copy_to_device, src.device.ptr, src.host.ptr, nbytes, stream) for _ in range(repeats))
        d2h = min(_timed_copy(cuda, cuda.copy_to_host, dst.host.ptr, src.device.ptr, nbytes, stream) for _ in range(repeats))
        return {
            "size_mb": nbytes / 2**20, "round_trip_equal": equal, "read_before_sync_refused": refused,
            "h2d_best_ms": h2d * 1e3, "d2h_best_ms": d2h * 1e3, "h2d_gb_s": nbytes / h2d / 1e9, "d2h_gb_s": nbytes / d2h / 1e9,
        }  # fmt: skip
    finally:
        src.free()
        dst.free()


def check_cuda_memory(device: int = 0, sizes_mb: tuple[int, ...] = DEFAULT_SIZES_MB, repeats: int = 5) -> dict:
    """Every size's round trip on one stream, with the GPU's identity; ``skipped`` when there is no usable GPU."""
    report: dict = {"device": device, "cuda_python": bindings_version()}
    try:
        cuda = Cuda(device)
        gpu = cuda.gpu()
    except DlcvError as exc:
        report["skipped"] = str(exc)
        return report
    report.update(gpu=gpu.name, compute_capability=gpu.compute_capability, total_memory_gb=gpu.total_memory_bytes / 1e9)
    stream = cuda.create_stream()
    try:
        report["sizes"] = [round_trip(cuda, stream, int(mb * 2**20), repeats) for mb in sizes_mb]
    finally:
        cuda.destroy_stream(stream)
    report["passed"] = all(s["round_trip_equal"] and s["read_before_sync_refused"] for s in report["sizes"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--sizes-mb", default=",".join(map(str, DEFAULT_SIZES_MB)))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes_mb.split(",") if s.strip())
    report = check_cuda_memory(args.device, sizes, args.repeats)
    if "skipped" not in report:
        report["stream_check"] = check_stream(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "sizes"}))
    stream = report.get("stream_check", {})
    return 0 if report.get("passed", "skipped" in report) and stream.get("passed", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
