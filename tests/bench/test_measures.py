"""dlcv.bench.flops, .memory and .records: FLOPs against a count by hand, the ceiling, memory peaks, record keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from dlcv.bench.flops import achieved, ceiling_fields, matmul_ceiling, model_flops_per_image
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
    c = matmul_ceiling("cpu", size=128, reps=2)
    assert c["ceiling_fp32_gflop_s"] >= c["ceiling_fp32_gflop_s_median"] > 0
    assert c["ceiling_library"] in ("torch", "numpy") and c["ceiling_matmul_size"] == 128
    # the fastest library's best call sets the ceiling: 2·1000³ FLOPs in 0.5 s = 4 GFLOP/s
    fields = ceiling_fields({"torch": [1.0, 2.0, 3.0], "numpy": [0.5, 4.0, 4.0]}, "cpu", size=1000)
    assert fields["ceiling_library"] == "numpy"
    assert fields["ceiling_fp32_gflop_s"] == pytest.approx(4.0)
    assert fields["ceiling_fp32_gflop_s_median"] == pytest.approx(0.5)
    assert achieved(2_000_000_000, 5.0, 20.0) == {"achieved_gflop_s": 10.0, "ceiling_pct": 50.0}
    assert achieved(None, 5.0, 20.0) == {"achieved_gflop_s": None, "ceiling_pct": None}


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
