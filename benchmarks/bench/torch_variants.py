"""PyTorch baselines behind the Backend contract: eager FP32 (the reference), channels_last,
FP16 autocast, CUDA graphs and torch.compile, so a deployed backend's speed-up is claimed
against the strongest PyTorch, not the weakest.

Each variant takes and returns numpy arrays like every backend (host-to-device and back
included in its latency, as for onnxruntime and TensorRT). Autocast and CUDA graphs need a
CUDA GPU: on the CPU they are skipped with that reason (CPU autocast is bfloat16, another
precision). channels_last runs on both (oneDNN on the CPU, cuDNN on the GPU). torch.compile
(:class:`CompiledBackend`) runs on both devices: it compiles once per input shape (Inductor,
static shapes), and the time of each shape's first call is kept apart (``compile_seconds``),
so the benchmark reports it as ``compile_s`` and never times it as latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dlcv.runtime.errors import DlcvError
from dlcv.train.torch_backend import TorchBackend


def use_true_fp32() -> None:
    """Switch TF32 off, so "FP32" rows on an Ampere-or-newer GPU really compute in FP32."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


class ChannelsLastBackend(TorchBackend):
    """Eager FP32 with weights and inputs in channels_last (NHWC) memory format."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        super().__init__(path, device=device, threads=threads)
        self.model = self.model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        return self.model(x).float().contiguous().cpu().numpy()


def _need_cuda(device: torch.device, what: str) -> None:
    if device.type != "cuda":
        raise DlcvError(f"{what} needs a CUDA GPU (--device cuda)")


class AutocastBackend(TorchBackend):
    """Eager with ``torch.autocast(cuda, float16)``: FP16 convolutions and matmuls, FP32 logits."""

    def __init__(self, path: str | Path, device: str = "cuda", threads: int | None = None):
        super().__init__(path, device=device, threads=threads)
        _need_cuda(self.device, "FP16 autocast")

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            out = self.model(x)
        return out.float().cpu().numpy()


class CudaGraphsBackend(TorchBackend):
    """Eager FP32 captured once per input shape into a CUDA graph and replayed.

    The input is copied into the graph's static input tensor and the output copied out, so
    results never alias between calls.
    """

    def __init__(self, path: str | Path, device: str = "cuda", threads: int | None = None):
        super().__init__(path, device=device, threads=threads)
        _need_cuda(self.device, "CUDA graphs")
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, batch: np.ndarray):
        static_input = torch.from_numpy(batch).to(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # let cuDNN pick its algorithms before capture
                self.model(static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.model(static_input)
        return graph, static_input, static_output

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        key = tuple(batch.shape)
        if key not in self._graphs:
            self._graphs[key] = self._capture(batch)
        graph, static_input, static_output = self._graphs[key]
        static_input.copy_(torch.from_numpy(batch))
        graph.replay()
        return static_output.float().cpu().numpy()

    def close(self) -> None:
        self._graphs.clear()
        super().close()


class CompiledBackend(TorchBackend):
    """Eager FP32 through ``torch.compile`` (Inductor, default mode, static shapes): one graph is
    compiled per input shape on its first call, on the CPU or a GPU alike.

    ``compile_seconds``: per input shape (N, 3, H, W), the seconds of its first call
    (compilation plus one run), which the benchmark reports as ``compile_s``; later calls at
    that shape are plain runs of the compiled graph.
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None):
        super().__init__(path, device=device, threads=threads)
        self.compiled = torch.compile(self.model, dynamic=False)
        self.compile_seconds: dict[tuple[int, ...], float] = {}

    @torch.no_grad()
    def _run(self, batch: np.ndarray) -> np.ndarray:
        shape = tuple(batch.shape)
        first = shape not in self.compile_seconds
        start = time.perf_counter()
        out = self.compiled(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
        if first:
            self.compile_seconds[shape] = time.perf_counter() - start
        return out

    def close(self) -> None:
        self.compiled = None
        super().close()


@dataclass(frozen=True)
class TorchVariant:
    """A PyTorch baseline row: its name, precision, opener, and why it does not run in a CPU
    benchmark (None: it does)."""

    variant: str
    precision: str
    opener: Callable[..., TorchBackend]
    cpu_skip: str | None = None

    @property
    def cuda_only(self) -> bool:
        return self.cpu_skip is not None


_NEEDS_CUDA = "needs a CUDA GPU; this run is on the CPU (--device cuda on a GPU machine runs it)"
TORCH_VARIANTS = (
    TorchVariant("eager", "fp32", TorchBackend),
    TorchVariant("channels_last", "fp32", ChannelsLastBackend),
    TorchVariant("autocast", "fp16", AutocastBackend, _NEEDS_CUDA),
    TorchVariant("cuda_graphs", "fp32", CudaGraphsBackend, _NEEDS_CUDA),
    TorchVariant("compile", "fp32", CompiledBackend),
)
