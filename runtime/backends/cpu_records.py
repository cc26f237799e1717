"""The CPU classes the committed dlcv-bench records were measured on, and those records.

A CPU of a class listed here runs the suffix's default unless a preference of that class says
otherwise (the records measured no backend faster by the margin a preference needs); on a class
not listed nothing was measured, and :func:`~dlcv.runtime.backends.choose_backend`'s summary says
so. A test compares this table with ``benchmarks/results/*/results.json``, so a committed record
of a new class (an AMX machine's) must be added here, with its preference if it measured one.
"""
from __future__ import annotations

# cpu_int8_dot (dlcv.runtime.cpu_isa.INT8_DOT_PRODUCTS) -> the committed records of CPU rows measured on it
MEASURED_CPU_CLASSES: dict[str, tuple[str, ...]] = {
    "AVX512-VNNI (VPDPBUSD, 512-bit)": (
        "benchmarks/results/demo-fcn8s-cpu/results.json",
        "benchmarks/results/fcn8s-256-cpu/results.json",
        "benchmarks/results/fcn8s-512-cpu/results.json",
        "benchmarks/results/vgg16_bn-224-cpu/results.json",
    ),
}
