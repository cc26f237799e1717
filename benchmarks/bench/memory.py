"""Process memory: resident set size and its peak (Linux ``/proc``), and GPU memory: PyTorch's
allocator peak for PyTorch rows, the engine's own device memory for TensorRT rows (PyTorch's
allocator never sees what TensorRT or onnxruntime allocate; :func:`row_gpu_mb`).

The peak resident set size (``VmHWM``) is reset before each measured stretch by writing
``5`` to ``/proc/self/clear_refs`` (Linux 4.0+), so a backend's peak is its own stretch's,
not the whole run's. Where that is impossible the peak is the process's since it started
(``getrusage``), and :func:`peak_method` says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_resettable: bool | None = None
_RESET_SLACK_KB = 4096


def _status_fields_kb(*fields: str) -> dict[str, float]:
    """The named ``/proc/self/status`` fields in KB, read in one go (absent fields left out)."""
    found: dict[str, float] = {}
    try:
        for line in _STATUS.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                found[name] = float(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return found


def _status_kb(field: str) -> float | None:
    return _status_fields_kb(field).get(field)


def current_rss_mb() -> float | None:
    """Resident set size now, in MB (None where /proc is absent)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS; False where the kernel does not allow it.

    Some kernels and sandboxes (gVisor, for one) accept the write to ``clear_refs`` and
    ignore it, so the reset counts only when the peak is seen to fall to the current RSS.
    """
    global _resettable
    if _resettable is False:
        return False
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        _resettable = False
        return False
    now = _status_fields_kb("VmHWM", "VmRSS")
    # 4 MB of slack: the process may grow between the write and the read
    _resettable = len(now) == 2 and now["VmHWM"] <= now["VmRSS"] + _RESET_SLACK_KB
    return _resettable


def peak_rss_mb() -> float:
    """Peak RSS in MB since the last :func:`reset_peak_rss` (or since the process started)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, KB on Linux


def peak_method() -> str:
    """How peaks are measured on this machine (for the report)."""
    if reset_peak_rss():
        return "VmHWM, reset per measured stretch (/proc/self/clear_refs)"
    return "process peak since start (getrusage); not reset between backends"


def _torch_cuda():
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


def reset_gpu_peak() -> None:
    """Reset PyTorch's CUDA allocator peak (no-op without CUDA)."""
    cuda = _torch_cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def gpu_peak_mb() -> float | None:
    """PyTorch's CUDA allocator peak since :func:`reset_gpu_peak`, in MB; None without CUDA.

    Memory that onnxruntime or TensorRT allocate themselves is not seen here.
    """
    cuda = _torch_cuda()
    return None if cuda is None else cuda.max_memory_allocated() / 2**20


def row_gpu_mb(backend: str, instance: object) -> float | None:
    """A row's GPU memory in MB: PyTorch's allocator peak for ``torch`` rows; for other rows what
    the backend reports of its own device memory (:meth:`dlcv.runtime.backends.Backend.gpu_memory_bytes`:
    a TensorRT engine's activation memory plus dlcv's buffers), None when it cannot say
    (onnxruntime's CUDA arena is not exposed): never PyTorch's figure for another library."""
    if backend == "torch":
        return gpu_peak_mb()
    read = getattr(instance, "gpu_memory_bytes", None)
    value = read() if read is not None else None
    return None if value is None else value / 2**20
