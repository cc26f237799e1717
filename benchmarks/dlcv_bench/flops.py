"""Work and ceiling: the model's FLOPs per image, and the machine's measured FP32 matmul FLOP/s.

Model FLOPs are counted once per input shape with :class:`torch.utils.flop_counter.FlopCounterMode`
on a copy of the model built on the ``meta`` device (shapes only, no arithmetic, no weights
in memory). It counts convolutions (transposed ones too) and matrix multiplies, 2 FLOPs per
multiply-add; element-wise work (ReLU, batch norm, additions) is not counted, which for
VGG/FCN models is well under 1 % of the total.

The ceiling is measured in the same run: FP32 multiplies of square matrices (2·n³ FLOPs each;
``torch.mm``, and on the CPU also ``numpy.matmul``, whose BLAS can be the faster) before and
after the timed runs, and as participants of the timed runs' interleaved rounds, so they meet
the same load as the backends; the ceiling is the best call.
A backend's achieved FLOP/s = model FLOPs per image × images per second; its share of the
ceiling says how much of the machine it uses.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def model_flops_per_image(arch: str, num_classes: int, arch_kwargs: Mapping, shape: tuple[int, int]) -> int:
    """FLOPs of one forward pass on a 1×3×H×W input (see the module docstring)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dlcv.train.registry import create_model

    with torch.device("meta"):
        model = create_model(arch, num_classes=num_classes, **dict(arch_kwargs)).eval()
    x = torch.empty(1, 3, *shape, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def matmul_size(device: str) -> int:
    """Square matrix size for the ceiling: large enough to saturate the device, quick to run."""
    return 8192 if device.startswith("cuda") else 2048


class MatmulProbe:
    """One FP32 matrix multiply of ``size``² matrices per call: the ceiling's unit of work.

    ``library``: ``torch`` (``torch.mm``: MKL on the CPU, cuBLAS on a GPU) or ``numpy``
    (``np.matmul``: numpy's own BLAS, CPU only). Callers time it like a backend
    (:func:`dlcv.bench.timing.timed_call`, synchronised on CUDA); with TF32 off
    (:func:`dlcv.bench.torch_variants.use_true_fp32`) a CUDA multiply is true FP32.
    """

    def __init__(self, device: str = "cpu", size: int | None = None, library: str = "torch"):
        self.device = device
        self.size = size or matmul_size(device)
        self.library = library
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((self.size, self.size), dtype=np.float32) for _ in range(2))
        if library == "numpy":
            if device != "cpu":
                raise ValueError("the numpy matmul probe runs on the CPU only")
            self._a, self._b, self._out = a, b, np.empty_like(a)
            self._mm = np.matmul
        else:
            import torch

            self._a, self._b = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
            self._out = torch.empty_like(self._a)
            self._mm = torch.mm

    def __call__(self) -> None:
        self._mm(self._a, self._b, out=self._out)


def ceiling_probes(device: str = "cpu", size: int | None = None) -> list[MatmulProbe]:
    """The multiplies the ceiling is the best of: PyTorch's BLAS, and on the CPU also numpy's
    (a different BLAS can be the faster one on a given CPU)."""
    libraries = ("torch", "numpy") if device == "cpu" else ("torch",)
    return [MatmulProbe(device, size, library) for library in libraries]


def matmul_seconds(probe: MatmulProbe, reps: int = 8) -> list[float]:
    """Seconds of each of ``reps`` calls of ``probe`` (after one warm-up call)."""
    from .timing import timed_call

    sync = None
    if probe.device.startswith("cuda"):
        import torch

        sync = torch.cuda.synchronize
    probe()
    return [timed_call(probe, sync) for _ in range(reps)]


def ceiling_fields(seconds: dict[str, list[float]], device: str, size: int | None = None) -> dict:
    """Record fields of the FP32 matmul ceiling from timed calls per library: the best call over
    all libraries, the median of that library's calls (GFLOP/s), and which library it was."""
    n = size or matmul_size(device)
    flops = 2.0 * n**3
    library = min((lib for lib in seconds if seconds[lib]), key=lambda lib: min(seconds[lib]))
    return {
        "ceiling_device": device,
        "ceiling_matmul_size": n,
        "ceiling_library": library,
        "ceiling_fp32_gflop_s": flops / min(seconds[library]) / 1e9,
        "ceiling_fp32_gflop_s_median": flops / float(np.median(seconds[library])) / 1e9,
    }


def matmul_ceiling(device: str = "cpu", size: int | None = None, reps: int = 8) -> dict:
    """The ceiling fields of one stand-alone measurement (see :func:`ceiling_fields`)."""
    probes = ceiling_probes(device, size)
    return ceiling_fields({p.library: matmul_seconds(p, reps) for p in probes}, device, size)


def achieved(flops_per_image: int | None, throughput_img_s: float | None, ceiling_gflop_s: float | None) -> dict:
    """``achieved_gflop_s`` and ``ceiling_pct`` (None where an input is missing)."""
    if not flops_per_image or throughput_img_s is None or not ceiling_gflop_s:
        return {"achieved_gflop_s": None, "ceiling_pct": None}
    gflop_s = flops_per_image * throughput_img_s / 1e9
    return {"achieved_gflop_s": gflop_s, "ceiling_pct": 100.0 * gflop_s / ceiling_gflop_s}
