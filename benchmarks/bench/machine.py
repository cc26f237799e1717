"""The machine a benchmark ran on: CPU, its instruction-set extensions, cores, memory, GPU, driver,
library versions, load.

The instruction sets decide what the CPU can reach, INT8 above all: with AVX512-VNNI (or
AVX-VNNI, AMX) an 8-bit multiply-add is one instruction step, on AVX2 alone it takes three
(and risks saturation), so the same INT8 file runs ~1.5x or ~3x FP32 depending on the machine.
They are read from ``/proc/cpuinfo`` by :mod:`dlcv.runtime.cpu_isa` (one reader for records and
for the runtime's backend choice); elsewhere they are ``unknown``."""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata as _metadata
from pathlib import Path

from dlcv.runtime.cpu_isa import cpu_isa
from dlcv.runtime.version import dlcv_version

# distribution names whose versions every record carries (first installed name wins)
_DISTRIBUTIONS = {
    "numpy_version": ("numpy",),
    "torch_version": ("torch",),
    "torchvision_version": ("torchvision",),
    "onnx_version": ("onnx",),
    "onnxruntime_version": ("onnxruntime-gpu", "onnxruntime"),
    "opencv_version": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
}
_TENSORRT_MODULES = ("tensorrt", "tensorrt_lean_bindings", "tensorrt_lean")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(float(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return None


def _tensorrt_version() -> str | None:
    for name in _TENSORRT_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception:  # absent, or present without its CUDA libraries
            continue
        return f"{getattr(module, '__version__', '?')} ({name})"
    return None


def _nvidia_smi(query: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    return lines[0] if out.returncode == 0 and lines else None


def _gpu(device: str) -> tuple[str | None, str | None]:
    """(GPU name, CUDA version of PyTorch) for a CUDA run; (None, None) on the CPU."""
    if not device.startswith("cuda"):
        return None, None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        index = int(device.split(":")[1]) if ":" in device else 0
        return torch.cuda.get_device_name(index), torch.version.cuda
    return _nvidia_smi("name"), None


def machine_info(device: str = "cpu") -> dict:
    """Flat record of the machine and library versions (keys merged into every result record)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu, cuda = _gpu(device)
    torch = sys.modules.get("torch")
    info = {
        "cpu_model": _cpu_model(),
        **cpu_isa(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "memory_gb": _memory_gb(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "gpu": gpu,
        "gpu_driver": _nvidia_smi("driver_version") if gpu else None,
        "cuda_version": cuda,
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "dlcv_version": dlcv_version(),
        "tensorrt_version": _tensorrt_version(),
        "measured_at_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    info.update({key: _version(names) for key, names in _DISTRIBUTIONS.items()})
    return info
