"""dlcv.bench.flops, .memory and .records: FLOPs against a count by hand, the ceiling, memory peaks, record keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from dlcv.bench.flops import (
    INT8_CEILING_KEYS, Int8Probe, achieved, ceiling_fields, ceiling_probes, int8_ceiling_fields, int8_probes,
    matmul_seconds, model_flops_per_image, row_ceiling,
)  # fmt: skip
from dlcv.bench.machine import cpu_isa
from dlcv.bench import memory
from dlcv.bench.memory import current_rss_mb, peak_rss_mb, reset_peak_rss
from dlcv.bench.records import IDENTITY_KEYS, MACHINE_KEYS, TASK_PARITY_KEYS, make_record, record_keys
from dlcv.train.registry import create_model


def flops_by_hooks(model: nn.Module, shape) -> int:
    """2 × multiply-adds of every convolution and linear layer, from the shapes they see."""
    total = 0

    def conv(m, inputs, output):
        nonlocal total
        taps = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        if isinstance(m, nn.ConvTranspose2d):  # every input position scatters into every output channel
            total += 2 * taps * inputs[0].shape[2] * inputs[0].shape[3] * m.out_channels
        else:  # every output position gathers from kernel × input channels
            total += 2 * taps * output.numel()

    def linear(m, inputs, output):
        nonlocal total
        total += 2 * m.in_features * m.out_features * output.shape[0]

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape))
    return total


@pytest.mark.parametrize("arch, shape", [("vgg16_bn", (32, 32)), ("fcn8s", (24, 20))])
def test_model_flops_match_a_count_by_hand(arch, shape):
    counted = model_flops_per_image(arch, 3, {"width": 0.0625}, shape)
    model = create_model(arch, num_classes=3, width=0.0625).eval()
    assert counted == flops_by_hooks(model, shape)


def test_ceiling_and_achieved_share():
    c = ceiling_fields({p.library: matmul_seconds(p, 2) for p in ceiling_probes("cpu", 128)}, "cpu", 128)  # as dlcv-bench measures
    assert c["ceiling_fp32_gflop_s"] >= c["ceiling_fp32_gflop_s_median"] > 0
    assert c["ceiling_library"] in ("torch", "numpy") and c["ceiling_matmul_size"] == 128
    # the fastest library's best call sets the ceiling: 2·1000³ FLOPs in 0.5 s = 4 GFLOP/s
    fields = ceiling_fields({"torch": [1.0, 2.0, 3.0], "numpy": [0.5, 4.0, 4.0]}, "cpu", size=1000)
    assert fields["ceiling_library"] == "numpy"
    assert fields["ceiling_fp32_gflop_s"] == pytest.approx(4.0)
    assert fields["ceiling_fp32_gflop_s_median"] == pytest.approx(0.5)
    assert achieved(2_000_000_000, 5.0, 20.0) == {"achieved_gflop_s": 10.0, "ceiling_pct": 50.0}
    assert achieved(None, 5.0, 20.0) == {"achieved_gflop_s": None, "ceiling_pct": None}


def test_int8_ceiling_runs_integer_graphs_and_reports_positive_gop_s():
    probes = int8_probes("cpu", 128)
    c = int8_ceiling_fields({p.library: matmul_seconds(p, 2) for p in probes}, probes)  # as dlcv-bench measures
    assert c["ceiling_int8_gop_s"] >= c["ceiling_int8_gop_s_median"] > 0
    assert "U8S8" in c["ceiling_int8_types"] and c["ceiling_int8_probe"].endswith(("(QLinearMatMul)", "(QLinearConv)"))
    assert c["ceiling_int8_probes"].startswith("matmul ") and "; conv " in c["ceiling_int8_probes"]
    assert int8_probes("cuda") == []  # onnxruntime's CPU kernels say nothing about a GPU


def test_int8_probes_are_the_integer_kernels_onnxruntime_fuses_them_to(tmp_path):
    """The QDQ graphs become QLinearMatMul / QLinearConv (uint8 x int8) after onnxruntime's
    optimisations: the probes time the integer kernels, not FP32 ones."""
    import onnx
    import onnxruntime as ort

    from dlcv.bench import flops

    for build, fused in ((flops._int8_matmul, "QLinearMatMul"), (flops._int8_conv, "QLinearConv")):
        proto, feed, ops = build(64)
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        assert session.run(None, feed)[0].dtype == np.uint8
        kinds = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
        assert fused in kinds and not {"MatMul", "Conv", "DequantizeLinear"} & set(kinds), kinds
    assert Int8Probe("matmul", 64).ops == 2 * 64**3
    assert Int8Probe("conv", 64).ops == 2 * 2 * 64 * 64 * 16 * 16 * 9  # 2 layers, 64², 16 channels, 3x3


def test_int8_ceiling_is_the_fastest_probe_and_int8_rows_are_shares_of_it():
    probes = [Int8Probe("matmul", 64), Int8Probe("conv", 64)]
    ops = [p.ops for p in probes]
    fields = int8_ceiling_fields({probes[0].library: [1.0, 1.0], probes[1].library: [0.5, 2.0, 2.0]}, probes)
    assert fields["ceiling_int8_gop_s"] == pytest.approx(ops[1] / 0.5 / 1e9) and "QLinearConv" in fields["ceiling_int8_probe"]
    assert fields["ceiling_int8_gop_s_median"] == pytest.approx(ops[1] / 2.0 / 1e9)
    assert int8_ceiling_fields({}, probes) == {key: None for key in INT8_CEILING_KEYS}
    machine = {"ceiling_fp32_gflop_s": 50.0, "ceiling_int8_gop_s": 200.0}
    assert row_ceiling("int8", machine) == (200.0, "int8") and row_ceiling("fp32", machine) == (50.0, "fp32")
    assert row_ceiling("fp16", machine) == (50.0, "fp32")
    assert row_ceiling("int8", {"ceiling_fp32_gflop_s": 50.0, "ceiling_int8_gop_s": None}) == (50.0, "fp32")  # a GPU run


AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 clzero xsaveerptr arat npt nrip_save umip rdpid
"""
CASCADE_LAKE = "flags\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni\n"
SAPPHIRE_RAPIDS = ("flags\t: fpu avx fma avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16\n"
                   "bugs\t: spectre_v1\n")  # fmt: skip
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve i8mm bf16 sve2\n"


@pytest.mark.parametrize("text, isa, dot", [
    (AVX2_ONLY, "avx2 fma", "AVX2 only (VPMADDUBSW + VPMADDWD, no VNNI)"),
    (CASCADE_LAKE, "avx2 fma avx512f avx512_vnni", "AVX512-VNNI (VPDPBUSD, 512-bit)"),
    (SAPPHIRE_RAPIDS, "avx2 fma avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_int8", "AMX-INT8 (tile matrix multiply)"),
    (GRAVITON3, "asimd asimddp i8mm bf16 sve sve2", "Arm I8MM (SMMLA)"),
    ("flags\t: fpu sse2\n", "none", "none of the known ones"),
    ("processor : 0\nmodel name : something\n", "unknown", "unknown"),
    ("", "unknown", "unknown"),
])  # fmt: skip
def test_instruction_sets_from_cpuinfo(text, isa, dot):
    assert cpu_isa(text) == {"cpu_isa": isa, "cpu_int8_dot": dot}


def test_peak_rss_sees_an_allocation_and_resets():
    if current_rss_mb() is None or not reset_peak_rss():
        pytest.skip("no resettable /proc peak on this system")
    # Threads left by earlier tests may free or allocate a few MB at any moment, so the block is
    # large and the margins wide: the assertions hold whatever they do within 50 MB.
    start = peak_rss_mb()
    block = np.ones(200_000_000 // 8)  # 200 MB, touched
    assert peak_rss_mb() >= start + 150
    del block
    assert reset_peak_rss()
    assert peak_rss_mb() < start + 150


def test_a_reset_the_kernel_ignores_is_reported_as_impossible(tmp_path, monkeypatch):
    """A sandbox that accepts the clear_refs write but keeps the old peak must not fool us."""
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t 1500000 kB\nVmRSS:\t 1400000 kB\n")
    monkeypatch.setattr(memory, "_STATUS", status)
    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "clear_refs")
    monkeypatch.setattr(memory, "_resettable", None)
    assert memory.reset_peak_rss() is False
    assert memory.peak_method().startswith("process peak since start")
    status.write_text("VmHWM:\t 1400500 kB\nVmRSS:\t 1400000 kB\n")
    monkeypatch.setattr(memory, "_resettable", None)
    assert memory.reset_peak_rss() is True


def test_records_have_every_documented_key():
    seg = make_record({"task": "segmentation", "backend": "onnxruntime", "batch_size": 1, "error": "open: boom"})
    assert tuple(seg) == record_keys("segmentation")
    assert seg["error"] == "open: boom" and seg["latency_p50_ms"] is None
    for key in IDENTITY_KEYS + MACHINE_KEYS + TASK_PARITY_KEYS["segmentation"]:
        assert key in seg
    cls = make_record({"task": "classification"})
    assert "top1_agreement" in cls and "pixel_agreement" not in cls and "miou_delta" not in cls
    with pytest.raises(KeyError):
        make_record({"task": "segmentation", "latency_p50": 1.0})  # a key without its unit is a bug


def test_gpu_memory_of_a_row_is_its_own_librarys_never_pytorchs_for_another(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from tests.runtime.onnx_fixtures import colour_model

    seg_model = colour_model(tmp_path / "seg.onnx")
    monkeypatch.setattr(memory, "gpu_peak_mb", lambda: 999.0)  # what PyTorch's allocator would say
    assert memory.row_gpu_mb("torch", None) == 999.0
    assert memory.row_gpu_mb("tensorrt", SimpleNamespace(gpu_memory_bytes=lambda: 3 << 20)) == 3.0
    with OnnxRuntimeBackend(seg_model) as backend:  # onnxruntime does not expose its arena: unknown, not PyTorch's
        assert memory.row_gpu_mb("onnxruntime", backend) is None
