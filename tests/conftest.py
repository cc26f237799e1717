"""Shared fixtures. torch is imported lazily: the runtime tests run without it."""
from __future__ import annotations

from pathlib import Path

import pytest

from dlcv.runtime.backends import Preference

NARROW = 0.0625  # width of the test models: every channel count / 16


def write_test_checkpoint(
    path: Path,
    arch: str,
    *,
    width: float = NARROW,
    num_classes: int = 3,
    preprocess=None,
    seed: int = 0,
    std: float = 0.1,
) -> Path:
    """A narrow, untrained dlcv checkpoint with every parameter drawn from N(0, std²), so the
    logits are non-trivial (the FCN score layers are zero-initialised otherwise)."""
    import torch

    from dlcv.runtime.preprocess import PreprocessSpec
    from dlcv.train.checkpoint import build_checkpoint, save_checkpoint
    from dlcv.train.registry import create_model, model_info

    task = model_info(arch).task
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=num_classes, width=width)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    if preprocess is None:
        preprocess = PreprocessSpec() if task == "segmentation" else PreprocessSpec(resize="resize", size=(32, 32))
    palette = [[(37 * c) % 256, (91 * c) % 256, (151 * c) % 256] for c in range(num_classes)] if task == "segmentation" else None
    ckpt = build_checkpoint(
        model, arch=arch, arch_kwargs={"width": width}, class_names=[f"class_{c}" for c in range(num_classes)],
        preprocess=preprocess, palette=palette, metrics={"val": {"note": "untrained test checkpoint"}},
    )  # fmt: skip
    return save_checkpoint(path, ckpt)


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """``make_checkpoint(arch, **kwargs) -> Path``: a cached narrow checkpoint file (do not modify it)."""
    cache: dict = {}

    def make(arch: str, **kwargs) -> Path:
        key = (arch, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{arch}.pt", arch, **kwargs)
        return cache[key]

    return make


# A preference the tests declare, independent of the shipped one (OpenVINO for INT8 on AMX CPUs).
# Measured on a CPU class of its own, so it holds whatever CPU runs the tests (they name the class).
TEST_CPU_CLASS = "AMX-INT8 (tile matrix multiply)"
INT8_ON_OPENVINO = Preference("int8", "cpu", over="onnxruntime", record="benchmarks/results/example/results.json",
                              summary="a test's preference", cpu_class=TEST_CPU_CLASS)  # fmt: skip


def with_openvino_class(monkeypatch, cls):
    """The backend registry with ``cls`` in place of the OpenVINO backend class."""
    from dlcv.runtime.backends import backends, registry

    real = registry._registry()
    classes = {name: (cls if name == "openvino" else c) for name, c in real.classes.items()}
    monkeypatch.setattr(registry, "_registry", lambda: registry._Registry(classes, dict(real.broken)))
    assert backends()["openvino"] is cls


# /proc/cpuinfo flag lines of one CPU of each class (what the tests simulate)
CPU_FLAGS = {
    "amx": "fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8",
    "vnni": "fpu sse2 avx2 fma avx512f avx512_vnni",
    "avx2": "fpu sse2 avx2 fma",
}


def simulate_cpu(monkeypatch, folder: Path, flags: str) -> None:
    """dlcv reads a /proc/cpuinfo with these flags (dlcv.runtime.cpu_isa.CPUINFO points at it)."""
    from dlcv.runtime import cpu_isa

    path = folder / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: simulated CPU\nflags\t\t: {flags}\n")
    monkeypatch.setattr(cpu_isa, "CPUINFO", path)


@pytest.fixture
def openvino_preferred(monkeypatch, tmp_path):
    """The registry with OpenVINO declaring a preference for INT8 .onnx files on the CPU class
    TEST_CPU_CLASS, on a simulated CPU of that class."""
    from dlcv.runtime.backends.openvino_backend import OpenVINOBackend

    simulate_cpu(monkeypatch, tmp_path, CPU_FLAGS["amx"])

    class PreferredOpenVINO(OpenVINOBackend):
        preferred_for = (INT8_ON_OPENVINO,)

    with_openvino_class(monkeypatch, PreferredOpenVINO)
    return PreferredOpenVINO
