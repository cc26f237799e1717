"""The CPU classes the committed dlcv-bench records were measured on, and those records.

A CPU of a class listed here runs the suffix's default unless a preference of that class says
otherwise (the records measured no backend faster by the margin a preference needs); on a class
not listed nothing was measured, and :func:`~dlcv.runtime.backends.choose_backend`'s summary says
so. A test compares this table with ``benchmarks/results/*/results.json``, so a committed record
of a new class must be added here, with its preference if it measured one.
"""
from __future__ import annotations

from ..cpu_isa import AMX_INT8, AVX512_VNNI

# cpu_int8_dot (dlcv.runtime.cpu_isa.INT8_DOT_PRODUCTS) -> the committed records of CPU rows measured on it
MEASURED_CPU_CLASSES: dict[str, tuple[str, ...]] = {
    AMX_INT8: (  # Intel Xeon, 2 cores (avx512_vnni avx512_bf16 amx_bf16 amx_int8), 2026-12-06
        "benchmarks/results/demo-fcn8s-cpu-amx/results.json",
        "benchmarks/results/fcn8s-256-cpu-amx/results.json",
        "benchmarks/results/fcn8s-512-cpu-amx/results.json",
    ),
    AVX512_VNNI: (  # AMD EPYC, 2 cores (avx512_vnni avx512_bf16, no AMX), 2026-12-01
        "benchmarks/results/demo-fcn8s-cpu/results.json",
        "benchmarks/results/fcn8s-256-cpu/results.json",
        "benchmarks/results/fcn8s-512-cpu/results.json",
        "benchmarks/results/vgg16_bn-224-cpu/results.json",
    ),
}
