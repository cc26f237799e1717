"""The running CPU's instruction-set extensions and its *class*: its fastest INT8 multiply-add.

The class (``cpu_int8_dot``) decides what the CPU can reach with INT8, and so which backend is
fastest for a file: with AVX512-VNNI (or AVX-VNNI, AMX) an 8-bit multiply-add is one instruction
step, on AVX2 alone it takes three, and AMX multiplies whole tiles. dlcv-bench records it with
every result and :func:`dlcv.runtime.backends.choose_backend` reads it, so a backend preference
(:class:`~dlcv.runtime.backends.base.Preference`) holds on the class it was measured on.

The flags are read from ``/proc/cpuinfo`` (the x86 ``flags`` line, the Arm ``Features`` line);
elsewhere the class is ``unknown``.
"""
from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# /proc/cpuinfo flags that decide FP32/BF16/INT8 throughput, in order of appearance in records
ISA_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",  # x86-64
    "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2",  # Arm64 (dot product, int8 matrix multiply)
)  # fmt: skip
# The CPU's fastest 8-bit multiply-add, best first: (flag, class). The class text is what
# benchmark records hold under ``cpu_int8_dot``; changing it orphans the committed records.
AMX_INT8 = "AMX-INT8 (tile matrix multiply)"
AVX512_VNNI = "AVX512-VNNI (VPDPBUSD, 512-bit)"
INT8_DOT_PRODUCTS = (
    ("amx_int8", AMX_INT8),
    ("avx512_vnni", AVX512_VNNI),
    ("avx_vnni", "AVX-VNNI (VPDPBUSD, 256-bit)"),
    ("i8mm", "Arm I8MM (SMMLA)"),
    ("asimddp", "Arm dot product (SDOT/UDOT)"),
    ("avx2", "AVX2 only (VPMADDUBSW + VPMADDWD, no VNNI)"),
)
NO_KNOWN_DOT_PRODUCT = "none of the known ones"
# x86 flags of a BF16 dot product or tile multiply (Arm's ``bf16`` is not run by OpenVINO's CPU plugin)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
UNKNOWN = "unknown"


def read_cpuinfo() -> str:
    """The text of :data:`CPUINFO` ("" where it cannot be read)."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The flags of the first CPU in ``cpuinfo`` (read when None); None where it has no flag line."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    line = next((ln for ln in text.splitlines() if ln.split(":", 1)[0].strip().lower() in ("flags", "features")), None)
    if line is None or ":" not in line:
        return None
    return frozenset(line.split(":", 1)[1].split())


def cpu_isa(cpuinfo: str | None = None) -> dict:
    """``cpu_isa``: the :data:`ISA_FLAGS` the CPU has, space-separated (``none`` when it has none
    of them), and ``cpu_int8_dot``: its class, its fastest INT8 multiply-add (:data:`INT8_DOT_PRODUCTS`);
    both ``unknown`` where ``cpuinfo`` (read when None) has no flag line."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return {"cpu_isa": UNKNOWN, "cpu_int8_dot": UNKNOWN}
    present = [f for f in ISA_FLAGS if f in flags]
    return {"cpu_isa": " ".join(present) or "none", "cpu_int8_dot": int8_class(flags)}


def int8_class(flags: frozenset[str] | set[str]) -> str:
    """The class of a CPU with ``flags``: its fastest INT8 multiply-add."""
    return next((text for flag, text in INT8_DOT_PRODUCTS if flag in flags), NO_KNOWN_DOT_PRODUCT)


def running_cpu_class() -> str:
    """The class (``cpu_int8_dot``) of the CPU this process runs on."""
    return cpu_isa()["cpu_int8_dot"]


def bf16_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The BF16 instruction-set flags (:data:`BF16_FLAGS`) of the CPU; empty when it has none."""
    flags = cpu_flags(cpuinfo) or frozenset()
    return tuple(f for f in BF16_FLAGS if f in flags)
