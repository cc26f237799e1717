"""The backend registry: built from the classes' own identity (entry points), read without loading
any engine library, defaults by suffix, ``backend=NAME`` apart from it, and one-line errors."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from dlcv.runtime.backends import (
    Backend, all_devices, backend_names, backends, backends_for, deployed_suffixes, get_backend, open_backend, parse_device,
    resolve_backend,
)  # fmt: skip
from dlcv.runtime.backends import registry
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.errors import DlcvError, DlcvUsageError, MissingDependencyError

ENGINE_MODULES = (
    "onnxruntime", "openvino", "tensorrt", "tensorrt_lean", "tensorrt_lean_bindings", "tritonclient", "ray", "torch", "torchvision",
)

_READ_REGISTRY = """
import json, sys
from dlcv.runtime.backends import backends
identity = {name: [list(c.suffixes), list(c.schemes), list(c.devices), c.needs_gpu, c.extra, c.deployed]
            for name, c in backends().items()}
print(json.dumps({"identity": identity, "loaded": [m for m in %r if m in sys.modules]}))
""" % (ENGINE_MODULES,)


def test_reading_every_backend_identity_loads_no_engine_library():
    proc = subprocess.run([sys.executable, "-c", _READ_REGISTRY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["loaded"] == []
    identity = out["identity"]
    assert {"onnxruntime", "tensorrt", "torch"} <= set(identity)
    assert identity["torch"][5] is False and identity["onnxruntime"][5] is True  # checkpoints are not deployed models
    assert identity["tensorrt"][3] is True and identity["tensorrt"][4] == "tensorrt"


def test_the_suffix_names_the_default_backend():
    assert resolve_backend("m.onnx") is OnnxRuntimeBackend
    assert resolve_backend("M.ONNX").name == "onnxruntime"
    assert resolve_backend("m.plan").name == resolve_backend("m.engine").name == "tensorrt"
    assert resolve_backend("best.pt").name == "torch"
    assert backends_for("m.onnx")[0] is OnnxRuntimeBackend
    assert {".onnx", ".plan", ".engine"} <= set(deployed_suffixes()) and ".pt" not in deployed_suffixes()
    assert list(backends()) == list(backend_names())
    priorities = [c.priority for c in backends().values()]
    assert priorities == sorted(priorities)


def test_devices_are_the_union_the_backends_declare():
    declared = {d for c in backends().values() for d in c.devices}
    assert set(all_devices()) == declared and {"cpu", "cuda"} <= declared


def test_unknown_backend_name_lists_the_registered_ones():
    with pytest.raises(DlcvUsageError) as info:
        get_backend("onnxrt")
    message = str(info.value)
    assert "did you mean 'onnxruntime'" in message and all(name in message for name in backend_names())
    assert "\n" not in message


def test_a_named_backend_must_open_that_kind_of_file(seg_model):
    with pytest.raises(DlcvUsageError) as info:
        open_backend(seg_model, backend="tensorrt")
    message = str(info.value)
    assert "tensorrt backend does not open .onnx models" in message and ".plan" in message and "\n" not in message
    with pytest.raises(DlcvUsageError, match="does not open .pt models"):
        resolve_backend("best.pt", "onnxruntime")


def test_named_backend_is_the_one_opened(seg_model):
    with open_backend(seg_model, backend="onnxruntime") as backend:
        assert isinstance(backend, OnnxRuntimeBackend) and backend.name == "onnxruntime"


def test_unknown_suffix_is_one_line():
    with pytest.raises(DlcvError) as info:
        resolve_backend("model.h5")
    assert "unknown model file type '.h5'" in str(info.value) and ".onnx" in str(info.value)


def test_device_a_backend_does_not_declare_is_a_usage_error(seg_model):
    with pytest.raises(DlcvUsageError, match="--device npu is not a device of the onnxruntime backend"):
        open_backend(seg_model, device="npu")


def test_missing_engine_library_names_the_extra(seg_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MissingDependencyError) as info:
        open_backend(seg_model)
    assert "onnxruntime" in str(info.value) and "pip install" in str(info.value) and info.value.exit_code == 2
    assert OnnxRuntimeBackend.library_version() is None

    class Extra(Backend):
        name, extra = "extra", "openvino"

        def _run(self, batch):  # pragma: no cover
            return batch

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'dlcv\[openvino\]'"):
        Extra.import_library("openvino")


@pytest.fixture
def fresh_registry():
    registry._registry.cache_clear()
    yield
    registry._registry.cache_clear()


def test_a_broken_entry_point_fails_only_when_asked_for(monkeypatch, fresh_registry, seg_model):
    real = list(registry.entry_points(group=registry.ENTRY_POINT_GROUP))
    broken = EntryPoint("broken", "dlcv.runtime.backends.no_such_module:Nothing", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real, broken])
    assert "broken" not in backend_names()
    with open_backend(seg_model) as backend:
        assert backend.name == "onnxruntime"
    with pytest.raises(MissingDependencyError, match="'broken'.*cannot be imported"):
        get_backend("broken")


def test_an_entry_point_must_carry_the_class_name(monkeypatch, fresh_registry):
    wrong = EntryPoint("ort", "dlcv.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [wrong])
    with pytest.raises(DlcvError, match="entry point 'ort' names the backend 'onnxruntime'"):
        backends()


@pytest.mark.parametrize("text, device", [("cpu", "cpu"), ("CUDA", "cuda"), ("cuda:1", "cuda:1"), (" tensorrt:0 ", "tensorrt:0")])
def test_devices_with_a_gpu_index_are_accepted(text, device):
    assert parse_device(text) == device


@pytest.mark.parametrize("text", ["cpu:0", "cuda:", "cuda:x", "cuda:-1", "npu", "gpu:0", ""])
def test_malformed_devices_are_a_usage_error_naming_the_forms(text):
    with pytest.raises(DlcvUsageError, match=r"use cpu or cuda\[:N\]"):
        parse_device(text)


def test_dlcv_infer_takes_a_gpu_index_and_refuses_a_malformed_device(seg_model, tmp_path):
    from click.testing import CliRunner

    from dlcv.runtime.cli import main

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"")
    bad = CliRunner().invoke(main, [str(images), "--engine", str(seg_model), "--device", "cpu:1", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "--device 'cpu:1': use cpu or cuda[:N]" in bad.stderr and not (tmp_path / "o").exists()
    indexed = CliRunner().invoke(main, [str(images), "--engine", str(seg_model), "--device", "cuda:1", "--out", str(tmp_path / "o")])
    # accepted as a device: onnxruntime (CPU build) then says it has no CUDA provider, without falling back to the CPU
    assert indexed.exit_code != 0 and "cuda" in indexed.stderr.lower() and "use cpu or cuda[:N]" not in indexed.stderr


def test_each_backend_declares_the_options_its_constructor_takes():
    """Callers pass ``threads`` (and the like) only to a backend whose ``options`` name it."""
    for cls in backends().values():
        taken = tuple(inspect.signature(cls.__init__).parameters)[3:]  # after self, the target and device
        assert taken == cls.options, cls.name
