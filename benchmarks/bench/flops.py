"""Work and ceilings: the model's FLOPs per image, and the machine's measured FP32 and INT8 rates.

Model FLOPs are counted once per input shape with :class:`torch.utils.flop_counter.FlopCounterMode`
on a copy of the model built on the ``meta`` device (shapes only, no arithmetic, no weights
in memory). It counts convolutions (transposed ones too) and matrix multiplies, 2 FLOPs per
multiply-add; element-wise work (ReLU, batch norm, additions) is not counted, which for
VGG/FCN models is well under 1 % of the total. An INT8 model does the same multiply-adds in
integers: the same count, read as integer operations (GOP).

The ceilings are measured in the same run: before and after the timed runs, and as participants
of the timed runs' interleaved rounds, so they meet the same load as the backends; each ceiling
is the best call of its fastest probe.

- FP32: multiplies of square FP32 matrices (2·n³ FLOPs each; ``torch.mm``, and on the CPU also
  ``numpy.matmul``, whose BLAS can be the faster).
- INT8 (CPU only): onnxruntime running integer graphs built here (:class:`Int8Probe`), in the
  types its fastest x86 kernels take: uint8 activations × int8 weights (U8S8), weights
  symmetric per output channel, as dlcv's INT8 files are. Two probes, because onnxruntime has
  two integer matrix kernels and the faster one is not the plain matrix multiply: ``matmul``, a
  QDQ MatMul of n×n matrices (fused to QLinearMatMul: MLAS's integer GEMM), and ``conv``, two
  QDQ 3×3 convolutions of n/4 channels on 64×64 (fused to QLinearConv: MLAS's symmetric
  "indirect" convolution, a GEMM over input channels × taps without im2col, which ran ~1.4×
  the GEMM's rate on a 2-core AVX512-VNNI EPYC; on 32×32 it reached only ~0.6-0.7 of its 64×64
  rate). Without the conv probe a convolutional model's INT8 rows would exceed their "ceiling".

A backend's achieved FLOP/s = model FLOPs per image × images per second; its share of the
ceiling of its precision (INT8 rows: the INT8 ceiling where one was measured; every other row:
the FP32 one) says how much of the machine it uses.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

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


def achieved(flops_per_image: int | None, throughput_img_s: float | None, ceiling_gflop_s: float | None) -> dict:
    """``achieved_gflop_s`` (GOP/s for an INT8 row: the same multiply-adds, in integers) and
    ``ceiling_pct`` of ``ceiling_gflop_s`` (None where an input is missing)."""
    if not flops_per_image or throughput_img_s is None or not ceiling_gflop_s:
        return {"achieved_gflop_s": None, "ceiling_pct": None}
    gflop_s = flops_per_image * throughput_img_s / 1e9
    return {"achieved_gflop_s": gflop_s, "ceiling_pct": 100.0 * gflop_s / ceiling_gflop_s}


# --- the INT8 ceiling (CPU, onnxruntime) ------------------------------------------------------

INT8_TYPES = "uint8 activations x int8 weights (U8S8), weights symmetric per output channel"
INT8_KINDS = ("matmul", "conv")
CONV_PROBE_LAYERS, CONV_PROBE_SIDE = 2, 64  # 512 channels on 64² ran 1.5-1.7x the rate of 32²


class Int8Probe:
    """One call of an integer graph through onnxruntime's CPU provider: the INT8 ceiling's unit of
    work (see the module docstring). ``kind`` ``matmul``: a QDQ MatMul of ``size``² uint8 by int8
    matrices; ``conv``: :data:`CONV_PROBE_LAYERS` QDQ 3×3 convolutions of ``size // 4`` channels
    on a 1×C×64×64 uint8 input. ``ops``: integer operations per call (2 per multiply-add).
    ``threads``: onnxruntime's intra-op threads, as the benchmarked backends get them."""

    device = "cpu"

    def __init__(self, kind: str = "matmul", size: int | None = None, threads: int | None = None):
        import onnxruntime as ort

        if kind not in INT8_KINDS:
            raise ValueError(f"INT8 probe kind must be one of {INT8_KINDS}, not {kind!r}")
        self.kind, self.size = kind, size or matmul_size("cpu")
        proto, feed, self.ops = (_int8_matmul if kind == "matmul" else _int8_conv)(self.size)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._feed = feed
        self.library = f"onnxruntime int8 {kind}"

    def describe(self) -> str:
        if self.kind == "matmul":
            return f"QDQ MatMul {self.size}x{self.size}x{self.size} (QLinearMatMul)"
        c = self.size // 4
        return f"{CONV_PROBE_LAYERS} QDQ 3x3 convolutions {c}->{c} channels on {CONV_PROBE_SIDE}x{CONV_PROBE_SIDE} (QLinearConv)"

    def __call__(self) -> None:
        self._session.run(None, self._feed)


def _qdq_initializers(weights: Sequence[np.ndarray], axis_len: Sequence[int]):
    from onnx import numpy_helper

    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"), numpy_helper.from_array(np.array(0, np.uint8), "x_zero")]
    for i, (w, n) in enumerate(zip(weights, axis_len)):
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.full(n, 0.01, np.float32), f"w{i}_scale"),
            numpy_helper.from_array(np.zeros(n, np.int8), f"w{i}_zero"),
        ]
    return inits


def _model(nodes, inputs, outputs, inits):
    from onnx import helper

    graph = helper.make_graph(nodes, "int8_ceiling", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _int8_matmul(n: int):
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (n, n), dtype=np.int8)  # full-range int8, as real weights
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["xf"]),
        helper.make_node("DequantizeLinear", ["w0", "w0_scale", "w0_zero"], ["wf"], axis=1),
        helper.make_node("MatMul", ["xf", "wf"], ["yf"]),
        helper.make_node("QuantizeLinear", ["yf", "x_scale", "x_zero"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(name, TensorProto.UINT8, [n, n]) for name in ("x", "y")]
    proto = _model(nodes, io[:1], io[1:], _qdq_initializers([w], [n]))
    return proto, {"x": rng.integers(0, 256, (n, n), dtype=np.uint8)}, 2 * n**3


def _int8_conv(size: int):
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    c, side = max(4, size // 4 // 4 * 4), CONV_PROBE_SIDE  # channels in groups of 4 (the kernel's alignment)
    weights = [rng.integers(-127, 128, (c, c, 3, 3), dtype=np.int8) for _ in range(CONV_PROBE_LAYERS)]
    nodes, current = [], "x"
    for i in range(CONV_PROBE_LAYERS):
        last = i == CONV_PROBE_LAYERS - 1
        nodes += [
            helper.make_node("DequantizeLinear", [current, "x_scale", "x_zero"], [f"a{i}"]),
            helper.make_node("DequantizeLinear", [f"w{i}", f"w{i}_scale", f"w{i}_zero"], [f"wf{i}"], axis=0),
            helper.make_node("Conv", [f"a{i}", f"wf{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("QuantizeLinear", [f"c{i}", "x_scale", "x_zero"], ["y" if last else f"q{i}"]),
        ]
        current = f"q{i}"
    io = [helper.make_tensor_value_info(name, TensorProto.UINT8, [1, c, side, side]) for name in ("x", "y")]
    proto = _model(nodes, io[:1], io[1:], _qdq_initializers(weights, [c] * CONV_PROBE_LAYERS))
    ops = 2 * CONV_PROBE_LAYERS * side * side * c * c * 9
    return proto, {"x": rng.integers(0, 256, (1, c, side, side), dtype=np.uint8)}, ops


def int8_probes(device: str = "cpu", size: int | None = None, threads: int | None = None) -> list[Int8Probe]:
    """The INT8 ceiling's probes: both kinds on the CPU; none on a GPU or without onnxruntime."""
    if device != "cpu":
        return []
    try:
        return [Int8Probe(kind, size, threads) for kind in INT8_KINDS]
    except ImportError:
        return []


def int8_ceiling_fields(seconds: Mapping[str, Sequence[float]], probes: Sequence[Int8Probe]) -> dict:
    """Record fields of the INT8 ceiling from each probe's timed calls: the best call of the fastest
    probe (GOP/s), that probe's median, which probe it was, each probe's best, and the types.
    All None when no probe ran."""
    timed = [(p, seconds.get(p.library) or []) for p in probes]
    timed = [(p, s) for p, s in timed if s]
    if not timed:
        return {key: None for key in INT8_CEILING_KEYS}
    best, best_seconds = max(timed, key=lambda ps: ps[0].ops / min(ps[1]))
    return {
        "ceiling_int8_gop_s": best.ops / min(best_seconds) / 1e9,
        "ceiling_int8_gop_s_median": best.ops / float(np.median(best_seconds)) / 1e9,
        "ceiling_int8_probe": best.describe(),
        "ceiling_int8_probes": "; ".join(f"{p.kind} {p.ops / min(s) / 1e9:.1f} GOP/s" for p, s in timed),
        "ceiling_int8_types": INT8_TYPES,
    }


INT8_CEILING_KEYS = (
    "ceiling_int8_gop_s", "ceiling_int8_gop_s_median", "ceiling_int8_probe", "ceiling_int8_probes", "ceiling_int8_types",
)  # fmt: skip



def row_ceiling(precision: str, machine: Mapping) -> tuple[float | None, str]:
    """The ceiling a row's achieved rate is a share of, and its kind: the INT8 ceiling for an
    INT8 row where one was measured, otherwise the FP32 matmul ceiling."""
    if precision == "int8" and machine.get("ceiling_int8_gop_s"):
        return machine["ceiling_int8_gop_s"], "int8"
    return machine.get("ceiling_fp32_gflop_s"), "fp32"
