"""The PyTorch baselines: their names, the --torch-variants selection, and torch.compile on the CPU."""
from __future__ import annotations

import numpy as np
import pytest

from dlcv.bench.config import TORCH_VARIANT_NAMES, BenchConfig
from dlcv.bench.run import _torch_candidates
from dlcv.bench.torch_variants import TORCH_VARIANTS, CompiledBackend
from dlcv.runtime.errors import DlcvUsageError
from dlcv.train.torch_backend import TorchBackend


def test_the_variant_names_the_cli_accepts_are_the_variants():
    assert [v.variant for v in TORCH_VARIANTS] == ["eager", *TORCH_VARIANT_NAMES]


def test_torch_variants_selects_the_baselines_eager_always_runs(tmp_path):
    rows = _torch_candidates(BenchConfig(checkpoint=tmp_path / "m.pt", torch_variants=("compile",), device="cuda"))
    assert [c.variant for c in rows] == ["eager", "compile"] and all(c.skipped is None for c in rows)
    cpu = _torch_candidates(BenchConfig(checkpoint=tmp_path / "m.pt"))
    assert {c.variant: c.skipped is None for c in cpu} == {  # torch.compile is a CPU peer too
        "eager": True, "channels_last": True, "autocast": False, "cuda_graphs": False, "compile": True}
    assert all("CUDA" in c.skipped for c in cpu if c.skipped)
    with pytest.raises(DlcvUsageError, match="--torch-variants takes"):
        BenchConfig(checkpoint=tmp_path / "m.pt", torch_variants=("eager_but_faster",))


@pytest.mark.slow  # Inductor compiles C++ on the CPU: about a minute on 2 cores
def test_compiled_backend_matches_eager_on_the_cpu(make_checkpoint):
    checkpoint = make_checkpoint("cnn_small")
    batch = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with TorchBackend(checkpoint) as eager, CompiledBackend(checkpoint, device="cpu") as compiled:
        np.testing.assert_allclose(compiled.infer(batch), eager.infer(batch), rtol=1e-4, atol=1e-5)
