"""The default backend follows the measurement: a backend's declared preference (OpenVINO for INT8
.onnx files on the CPU) wins over the suffix's default only where that backend is installed, the
committed benchmark it cites still measures it faster, ``--backend`` overrides it, and dlcv-infer
says which backend ran and why."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dlcv.runtime.backends import backends, choose_backend, get_backend, open_backend, registry, resolve_backend
from dlcv.runtime.backends.openvino_backend import OpenVINOBackend
from dlcv.runtime.cli import main
from dlcv.runtime.metadata import METADATA_KEY, read_onnx_metadata

from .onnx_fixtures import colour_model, save_image

ROOT = Path(__file__).resolve().parents[2]


def with_precision(path: Path, precision: str) -> Path:
    """The same graph, its metadata saying ``precision`` (a file's precision is what its metadata says)."""
    model = onnx.load(str(path))
    md = read_onnx_metadata(path).with_(precision=precision)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = md.to_json()
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pref")
    models = {p: with_precision(colour_model(root / f"m.{p}.onnx"), p) for p in ("fp32", "fp16", "int8")}
    images = root / "images"
    rng = np.random.default_rng(0)
    for i in range(3):
        save_image(images / f"im{i}.png", rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8))
    return models, images


@pytest.fixture
def openvino_not_installed(monkeypatch):
    """The registry as it is on a machine without OpenVINO: the same classes, OpenVINO's library absent."""

    class AbsentOpenVINO(OpenVINOBackend):
        @classmethod
        def library_version(cls):
            return None

    real = registry._registry()
    classes = {name: (AbsentOpenVINO if name == "openvino" else cls) for name, cls in real.classes.items()}
    monkeypatch.setattr(registry, "_registry", lambda: registry._Registry(classes, dict(real.broken)))
    assert backends()["openvino"] is AbsentOpenVINO


def test_an_int8_onnx_defaults_to_openvino_where_it_is_installed(files):
    models, _ = files
    choice = choose_backend(models["int8"])
    assert choice.backend is OpenVINOBackend and choice.reason == "preferred"
    assert choice.preference.over == "onnxruntime" and choice.preference.record.endswith("results.json")
    for precision in ("fp32", "fp16"):  # measured slower (FP32) or not measured faster: the suffix's default
        assert choose_backend(models[precision]) == registry.Choice(get_backend("onnxruntime"), "suffix")
    with open_backend(models["int8"]) as opened:
        assert opened.name == "openvino"


def test_without_openvino_the_int8_file_falls_back_to_the_suffix_default(files, openvino_not_installed, tmp_path):
    models, images = files
    assert choose_backend(models["int8"]).backend.name == "onnxruntime"
    result = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    assert "backend: onnxruntime (the default for .onnx models)" in result.stdout
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["backend"] == "onnxruntime"


def test_the_preference_applies_only_on_its_device_and_to_readable_files(files, tmp_path):
    models, _ = files
    assert resolve_backend(models["int8"], device="cuda").name == "onnxruntime"  # OpenVINO runs on the CPU only
    assert resolve_backend(tmp_path / "missing.onnx").name == "onnxruntime"  # opening it says the file is missing
    assert resolve_backend("triton://localhost:8000/m").name == "triton"


def test_dlcv_infer_says_which_backend_ran_and_why_and_backend_overrides(files, tmp_path):
    models, images = files
    ran = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--out", str(tmp_path / "default"), "-q"])
    assert ran.exit_code == 0, ran.output
    line = next(ln for ln in ran.stdout.splitlines() if ln.startswith("backend: "))
    assert line.startswith("backend: openvino (the default for int8 .onnx files on the cpu where it is installed")
    assert "--backend onnxruntime runs it on onnxruntime" in line and "fcn8s-256-cpu" in line
    record = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert record["backend"] == "openvino" and record["backend_choice"] == line[len("backend: "):]

    named = CliRunner().invoke(main, [str(images), "--engine", str(models["int8"]), "--backend", "onnxruntime",
                                      "--out", str(tmp_path / "named"), "-q"])  # fmt: skip
    assert named.exit_code == 0, named.output
    assert "backend: onnxruntime (--backend)" in named.stdout
    assert json.loads((tmp_path / "named" / "metrics.json").read_text())["backend"] == "onnxruntime"
    for name in ("im0.png", "im1.png", "im2.png"):  # the same answers either way
        assert (tmp_path / "named" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()


def test_every_preference_is_what_its_committed_benchmark_measured():
    """A preference cites a committed dlcv-bench record in which the preferred backend ran the same files
    faster (p50, every batch size) than the one it displaces. When a re-run of that benchmark measures
    otherwise, this fails: the default follows the measurement, so change or drop the preference."""
    cited = 0
    for cls in backends().values():
        for p in cls.preferred_for:
            cited += 1
            records = json.loads((ROOT / p.record).read_text())
            rows = {(r["backend"], r["batch_size"]): r for r in records
                    if r["precision"] == p.precision and r["latency_p50_ms"] is not None and r["device"] == p.device}  # fmt: skip
            sizes = sorted({bs for (backend, bs) in rows if backend == cls.name} & {bs for (backend, bs) in rows if backend == p.over})
            assert sizes, f"{p.record} has no {cls.name} and {p.over} rows of {p.precision} files to support the preference"
            for bs in sizes:
                mine, theirs = rows[(cls.name, bs)], rows[(p.over, bs)]
                assert mine["artifact"] == theirs["artifact"], "measured on different files"
                assert mine["latency_p50_ms"] < theirs["latency_p50_ms"], (
                    f"{p.record}: {cls.name} {p.precision} is no faster than {p.over} at batch {bs} "
                    f"({mine['latency_p50_ms']:.1f} vs {theirs['latency_p50_ms']:.1f} ms): the measurement no longer supports "
                    f"{cls.__name__}.preferred_for; change or remove it"
                )
    assert cited >= 1
