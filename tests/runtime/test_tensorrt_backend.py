"""The TensorRT backend: API names checked against the real (lean) TensorRT and cuda-python classes,
sidecar and file checks that refuse bad engines with one line, and the execution logic (split
batches, padding, pinned/device buffer reuse) run against a simulated TensorRT and CUDA."""
from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlcv.runtime.backends.tensorrt_backend as backend_module
import dlcv.runtime.tensorrt.cuda_memory as cuda_module
from dlcv.runtime.backends import open_backend
from dlcv.runtime.backends.tensorrt_backend import (
    EngineBinding, TensorRTBackend, check_gpu, check_tensorrt_version, device_index, numpy_dtype,
)  # fmt: skip
from dlcv.runtime.tensorrt.cuda_memory import CUDART_FUNCTIONS, BufferPair, Cuda, GpuInfo
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import write_png
from dlcv.runtime.metadata import ArtifactMetadata, write_sidecar
from dlcv.runtime.output_spec import labels_outputs, topk_outputs
from dlcv.runtime.preprocess import PreprocessSpec

from tests.runtime.fake_tensorrt import TOPK, FakeCudart, FakeFullTrt, FakeTrt, fake_logits, fake_plan

BACKEND_SOURCE = Path(backend_module.__file__)
CUDA_SOURCE = Path(cuda_module.__file__)
# Names the backend binds TensorRT objects to (local variables or self attributes) -> real class.
TRT_ROOTS = {"runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext"}
MUST_USE = {
    "load_runtime", "deserialize_cuda_engine", "num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype",
    "get_tensor_profile_shape", "create_execution_context", "set_input_shape", "get_tensor_shape",
    "set_tensor_address", "execute_async_v3",
}  # fmt: skip


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def attribute_chains(source: Path) -> set[tuple[str, ...]]:
    """Every maximal dotted attribute chain rooted at a name (``trt.TensorIOMode.INPUT``,
    ``self.context.execute_async_v3``), with a leading ``self`` folded into the attribute."""
    tree = ast.parse(source.read_text())
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain = _chain(node)
            if chain:
                chains.add(tuple(chain[1:] if chain[0] == "self" else chain))
    return chains


def tensorrt_names_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {"trt": set(), **{cls: set() for cls in TRT_ROOTS.values()}}
    for chain in attribute_chains(BACKEND_SOURCE):
        if chain[0] == "trt" and len(chain) > 1:
            used["trt"].add(".".join(chain[1:]))
        elif chain[0] in TRT_ROOTS and len(chain) > 1:
            used[TRT_ROOTS[chain[0]]].add(chain[1])
    return used


def test_every_tensorrt_name_the_backend_uses_exists_in_the_lean_runtime():
    trt = pytest.importorskip("tensorrt_lean_bindings")
    used = tensorrt_names_used()
    assert MUST_USE <= set().union(*used.values()), "the scan missed calls the backend is known to make"
    assert not {"Builder", "OnnxParser", "BuilderFlag"} & {n.split(".")[0] for n in used["trt"]}, "runtime must not build"
    assert "engine_host_code_allowed" not in set().union(*used.values()), "plans never get to run embedded host code"
    missing = []
    for dotted in sorted(used["trt"]):
        obj = trt
        for part in dotted.split("."):
            if not hasattr(obj, part):
                missing.append(f"trt.{dotted}")
                break
            obj = getattr(obj, part)
    for cls, names in used.items():
        if cls != "trt":
            missing += [f"trt.{cls}.{n}" for n in sorted(names) if not hasattr(getattr(trt, cls), n)]
    assert not missing, missing


def test_every_cuda_runtime_function_used_exists():
    from cuda.bindings import runtime as cudart

    tree = ast.parse(CUDA_SOURCE.read_text())
    called = {
        node.args[0].value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "call"
        and node.args and isinstance(node.args[0], ast.Constant)
    }  # fmt: skip
    direct = {c[1:] for c in attribute_chains(CUDA_SOURCE) if c[0] == "cudart" and len(c) > 1}
    assert {"cudaMalloc", "cudaMallocHost", "cudaMemcpyAsync", "cudaStreamCreateWithFlags"} <= called
    assert called <= set(CUDART_FUNCTIONS)
    for chain in direct:  # e.g. cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        obj = cudart
        for part in chain:
            assert hasattr(obj, part), "cudart." + ".".join(chain)
            obj = getattr(obj, part)
    missing = [n for n in sorted(set(CUDART_FUNCTIONS) | called) if not hasattr(cudart, n)]
    assert not missing, missing


# --------------------------------------------------------------------------- sidecar and file checks

TRT_LEAN_VERSION = "11.4.0.106"


def binding_for(plan: bytes, **changes) -> EngineBinding:
    fields = dict(
        gpu_name="Fake GPU", compute_capability="8.6", tensorrt_version="10.8.0.43", precision="fp16",
        profile={"min": [1, 3, 8, 8], "opt": [2, 3, 16, 16], "max": [2, 3, 32, 32]},
        plan_size_bytes=len(plan), plan_sha256=hashlib.sha256(plan).hexdigest(), checkpoint="runs/x/best.pt",
    )  # fmt: skip
    fields.update(changes)
    return EngineBinding(**fields)


def write_engine(folder: Path, plan: bytes, binding: EngineBinding, name: str = "model.plan", num_classes: int = 3) -> Path:
    path = folder / name
    path.write_bytes(plan)
    md = ArtifactMetadata(
        task="segmentation", arch="fcn8s", num_classes=num_classes, class_names=tuple(f"c{i}" for i in range(num_classes)),
        preprocess=PreprocessSpec(), precision=binding.precision, engine=binding.to_dict(),
    )  # fmt: skip
    write_sidecar(path, md)
    return path


def one_line_error(excinfo, path: Path, *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_truncated_plan_is_refused_before_cuda(tmp_path):
    plan = b"FAKEPLAN" + bytes(range(256)) * 8
    path = write_engine(tmp_path, plan[:100], binding_for(plan))
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(path)
    one_line_error(info, path, "truncated", "dlcv-export runs/x/best.pt --trt --precision fp16")


def test_replaced_plan_is_refused_by_its_hash(tmp_path):
    plan = b"FAKEPLAN" + bytes(range(256)) * 8
    other = bytes(reversed(plan))
    path = write_engine(tmp_path, other, binding_for(plan))
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(path)
    one_line_error(info, path, "SHA-256")


def test_foreign_plan_without_recorded_hash_gives_one_line(tmp_path, make_checkpoint):
    """A file that is no engine (here an ONNX-like protobuf) with a sidecar that records no size
    or hash: refused with one line, by CUDA where no GPU exists, by TensorRT where one does."""
    pytest.importorskip("tensorrt_lean_bindings")
    path = write_engine(tmp_path, b"\x08\x07\x12\x04onnx" * 40, binding_for(b"", plan_size_bytes=0, plan_sha256="",
                                                                          tensorrt_version=TRT_LEAN_VERSION, version_compatible=True))
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(path)
    one_line_error(info, path)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(tmp_path / "absent.plan")
    one_line_error(info, tmp_path / "absent.plan", "not found")
    path = write_engine(tmp_path, b"", binding_for(b"x"))
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(path)
    one_line_error(info, path, "empty")
    lone = tmp_path / "lone.plan"
    lone.write_bytes(b"FAKEPLAN")
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(lone)
    one_line_error(info, lone, "lone.plan.json", "dlcv-export --trt")


def test_dlcv_infer_with_a_truncated_plan_prints_one_line(tmp_path):
    plan = b"FAKEPLAN" + bytes(200)
    path = write_engine(tmp_path, plan[:20], binding_for(plan))
    images = tmp_path / "images"
    write_png(images / "a.png", np.zeros((8, 8, 3), np.uint8))
    proc = subprocess.run([sys.executable, "-m", "dlcv.runtime.cli", str(images), "--engine", str(path), "-q"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_plan_and_engine_suffixes_open_the_tensorrt_backend(tmp_path):
    for name in ("m.plan", "m.engine"):
        with pytest.raises(DlcvError, match=f"{name}: engine file not found"):
            open_backend(tmp_path / name, device="cuda")


def test_version_rules():
    """Exact version for ordinary engines; for version-compatible ones (built without an embedded
    lean runtime) the same version directly, a later one only through --lean-runtime."""
    here = Path("m.plan")
    exact = binding_for(b"p", tensorrt_version="10.8.0.43")
    assert check_tensorrt_version(here, exact, "10.8.0.43") is False
    assert check_tensorrt_version(here, exact, "10.8.0.99") is False  # the build number does not matter
    with pytest.raises(DlcvError, match="built with TensorRT 10.8.0.43, this machine has TensorRT 10.9.0.1.*--version-compatible"):
        check_tensorrt_version(here, exact, "10.9.0.1")
    compatible = binding_for(b"p", tensorrt_version="10.8.0.43", version_compatible=True)
    assert check_tensorrt_version(here, compatible, "10.8.0.43") is False
    for later in ("10.9.0.1", TRT_LEAN_VERSION):  # a later minor, and a later major
        with pytest.raises(DlcvError) as info:
            check_tensorrt_version(here, compatible, later)
        message = str(info.value)
        # a folder of its own (pip --target): installed here it would replace the running TensorRT's library;
        # 10.8 has no CUDA 13 lean wheel (they start at 10.13)
        assert "pip install --no-deps --target DIR 'tensorrt-lean-cu12-libs==10.8.0.43'" in message
        assert "--lean-runtime DIR/tensorrt_lean_libs/libnvinfer_lean.so.10" in message
    recent = binding_for(b"p", tensorrt_version="10.14.1.48", version_compatible=True)
    with pytest.raises(DlcvError, match=r"--target DIR 'tensorrt-lean-cu13-libs==10\.14\.1\.48'.*DIR/tensorrt_lean_libs/libnvinfer_lean\.so\.10"):
        check_tensorrt_version(here, recent, TRT_LEAN_VERSION)
    with pytest.raises(DlcvError, match="is not a file"):
        check_tensorrt_version(here, compatible, "10.9.0.1", Path("/nonexistent/libnvinfer_lean.so.10"))
    assert check_tensorrt_version(here, compatible, "10.9.0.1", Path(__file__)) is True  # load it through the lean runtime
    with pytest.raises(DlcvError, match="that version or later, never an earlier one"):
        check_tensorrt_version(here, compatible, "10.7.0")


def test_gpu_rules(caplog):
    b = binding_for(b"p")
    check_gpu(Path("m.plan"), b, GpuInfo(0, "Fake GPU", "8.6", 1))
    with pytest.raises(DlcvError, match=r"built for Fake GPU \(compute capability 8.6\), this machine has H100 \(compute capability 9.0\); rebuild"):
        check_gpu(Path("m.plan"), b, GpuInfo(0, "H100", "9.0", 1))
    check_gpu(Path("m.plan"), b, GpuInfo(0, "Other GPU", "8.6", 1))
    assert "Other GPU" in caplog.text


def test_device_index():
    assert device_index("cuda") == device_index("cpu") == 0
    assert device_index("cuda:2") == 2 and device_index("tensorrt:1") == 1 and device_index("tensorrt") == 0
    with pytest.raises(DlcvError):
        device_index("tpu")


# --------------------------------------------------------------------------- execution, simulated


@pytest.fixture
def simulated(monkeypatch):
    """The full TensorRT runtime and CUDA, simulated (tests.runtime.fake_tensorrt); host views of
    pinned buffers are logged into the same event log as the stream's work."""
    cudart = FakeCudart()
    monkeypatch.setattr(backend_module, "load_tensorrt", lambda: FakeFullTrt)
    monkeypatch.setattr(backend_module, "Cuda", lambda device: Cuda(device, cudart=cudart))
    monkeypatch.setattr(FakeTrt, "cudart", cudart)
    monkeypatch.setattr(FakeTrt, "engines", [])
    monkeypatch.setattr(FakeTrt, "runtimes", [])
    view = cuda_module.PinnedBuffer.view

    def logged_view(self, shape, dtype):
        array = view(self, shape, dtype)
        cudart.events.append(("host-view", self.ptr))
        return array

    monkeypatch.setattr(cuda_module.PinnedBuffer, "view", logged_view)
    return cudart


def open_fake(tmp_path, profile, plan_options=None, backend_options=None, **binding_changes):
    plan = fake_plan(profile, **(plan_options or {}))
    binding = binding_for(plan, profile={k: list(v) for k, v in profile.items()}, **binding_changes)
    return TensorRTBackend(write_engine(tmp_path, plan, binding), **{"device": "cuda", **(backend_options or {})})


PROFILE = {"min": (1, 3, 8, 8), "opt": (2, 3, 16, 16), "max": (2, 3, 32, 32)}


def test_large_batches_are_split_and_buffers_reused(tmp_path, simulated):
    rng = np.random.default_rng(0)
    with open_fake(tmp_path, PROFILE) as trt_backend:
        context = FakeTrt.engines[0].contexts[0]
        batch = rng.normal(size=(5, 3, 16, 16)).astype(np.float32)
        np.testing.assert_allclose(trt_backend.infer(batch), fake_logits(batch, 3), rtol=1e-6)
        assert context.batches == [2, 2, 1]  # the profile's maximum batch is 2
        allocations = simulated.mallocs
        assert allocations == 4  # pinned + device, input + output, sized by the first chunk
        again = rng.normal(size=(2, 3, 12, 16)).astype(np.float32)  # smaller: fits the same buffers
        np.testing.assert_allclose(trt_backend.infer(again), fake_logits(again, 3), rtol=1e-6)
        assert simulated.mallocs == allocations
        bigger = rng.normal(size=(1, 3, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(trt_backend.infer(bigger), fake_logits(bigger, 3), rtol=1e-6)
        assert simulated.mallocs == allocations + 4  # grown once
    assert simulated.blocks == {}  # close() freed every buffer


def test_each_chunk_is_copied_executed_and_copied_back_on_one_stream_then_synchronised_before_reading(tmp_path, simulated):
    """The ordered event log of two chunks: fill the pinned input, copy in, execute, copy out (all
    on the stream the backend created), synchronise that stream, then read the pinned output.
    Without the synchronisation the output would be read while its copy is still queued (the
    pinned-buffer guard refuses that, and the simulated buffer still holds NaNs); with the copies
    on another stream than the execution, the log's stream identities differ."""
    batch = np.random.default_rng(2).normal(size=(3, 3, 8, 8)).astype(np.float32)
    with open_fake(tmp_path, PROFILE) as trt_backend:
        stream = int(trt_backend.stream)
        assert ("create-stream", stream) in simulated.events
        simulated.events.clear()
        out = trt_backend.infer(batch)
        events = list(simulated.events)
        host_in = trt_backend.buffers["input"].host.ptr
        host_out = trt_backend.buffers["logits"].host.ptr
    np.testing.assert_allclose(out, fake_logits(batch, 3), rtol=1e-6)
    one_chunk = [("host-view", host_in), ("copy-in", stream), ("execute", stream), ("copy-out", stream),
                 ("synchronize", stream), ("host-view", host_out)]  # fmt: skip
    assert events == one_chunk * 2  # the profile's maximum batch is 2: chunks of 2 and 1
    assert simulated.events[len(events):] == [("synchronize", stream)]  # close() waits before freeing


def test_a_pinned_buffer_cannot_be_read_or_refilled_before_its_stream_is_synchronised():
    cudart = FakeCudart()
    cuda = Cuda(0, cudart=cudart)
    stream = cuda.create_stream()
    pair = BufferPair(cuda)
    pair.reserve(64)
    pair.host.view((16,), np.float32)[...] = np.arange(16, dtype=np.float32)
    cuda.copy_to_device(pair.device.ptr, pair.host.ptr, 64, stream)
    with pytest.raises(DlcvError, match="not synchronised"):
        pair.host.view((16,), np.float32)  # refilling the input while its copy is queued
    cuda.copy_to_host(pair.host.ptr, pair.device.ptr, 64, stream)
    with pytest.raises(DlcvError, match="not synchronised"):
        pair.host.view((16,), np.float32)  # reading the output before the copy ran
    cuda.synchronize(stream)
    np.testing.assert_array_equal(pair.host.view((16,), np.float32), np.arange(16, dtype=np.float32))
    pair.free()
    cuda.destroy_stream(stream)


def test_small_batches_are_padded_to_the_profile_minimum(tmp_path, simulated):
    profile = {"min": (2, 3, 8, 8), "opt": (4, 3, 16, 16), "max": (4, 3, 16, 16)}
    batch = np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)
    with open_fake(tmp_path, profile) as trt_backend:
        out = trt_backend.infer(batch)
    assert out.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(out, fake_logits(batch, 3), rtol=1e-6)
    assert FakeTrt.engines[0].contexts[0].batches == [2]


def test_every_call_runs_on_the_engines_gpu_whichever_thread_makes_it(tmp_path, simulated):
    import threading

    simulated.gpus = 2
    with open_fake(tmp_path, PROFILE, backend_options={"device": "cuda:1"}) as trt_backend:
        x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
        results = []
        worker = threading.Thread(target=lambda: results.append(trt_backend.infer(x)))  # a thread that never chose a GPU
        worker.start()
        worker.join()
        simulated.cudaSetDevice(0)  # as PyTorch does when it works on cuda:0 in this thread
        results.append(trt_backend.infer(x))
    assert len(results) == 2 and all(np.array_equal(r, results[0]) for r in results)
    assert simulated.enqueued_on and set(simulated.enqueued_on) == {1}, simulated.enqueued_on


def test_mixed_image_sizes_do_not_reallocate_on_every_call(tmp_path, simulated):
    profile = {"min": (1, 3, 8, 8), "opt": (2, 3, 16, 16), "max": (2, 3, 64, 64)}
    with open_fake(tmp_path, profile) as trt_backend:
        for side in range(9, 41):  # 32 calls, each larger than the last
            trt_backend.infer(np.zeros((1, 3, side, side), np.float32))
        allocations = {name: pair.allocations for name, pair in trt_backend.buffers.items()}
    # exact-size buffers would be reallocated 32 times; growing by half at least, 9x9 -> 40x40 (20x the bytes) takes 9
    assert all(count <= 10 for count in allocations.values()), allocations


def test_the_engines_gpu_memory_is_its_activation_memory_and_its_buffers(tmp_path, simulated):
    with open_fake(tmp_path, PROFILE) as trt_backend:
        trt_backend.infer(np.zeros((2, 3, 16, 16), np.float32))
        buffers = sum(pair.capacity for pair in trt_backend.buffers.values())
        assert buffers > 0 and trt_backend.gpu_memory_bytes() == trt_backend.engine.device_memory_size_v2 + buffers


def test_input_outside_the_profile_is_refused_naming_the_profile_and_the_flag_that_widens_it(tmp_path, simulated):
    with open_fake(tmp_path, PROFILE) as trt_backend:
        with pytest.raises(DlcvError) as info:
            trt_backend.infer(np.zeros((1, 3, 64, 48), np.float32))
        one_line_error(info, "model.plan", "outside the engine's optimisation profile (min 1x3x8x8, opt 2x3x16x16, max 2x3x32x32)",
                       "dlcv-export runs/x/best.pt --trt --precision fp16 --max-shape 2x3x64x48")  # fmt: skip
        with pytest.raises(DlcvError, match=r"--min-shape 1x3x4x8$"):
            trt_backend.infer(np.zeros((1, 3, 4, 16), np.float32))


def test_mismatches_refused_with_a_rebuild_hint(tmp_path, simulated):
    for changes, needle in [
        ({"tensorrt_version": "10.7.0.1"}, "built with TensorRT 10.7.0.1, this machine has TensorRT 10.8.0.43"),
        ({"compute_capability": "9.0", "gpu_name": "H100"}, "built for H100 (compute capability 9.0)"),
    ]:
        with pytest.raises(DlcvError) as info:
            open_fake(tmp_path, PROFILE, **changes)
        one_line_error(info, tmp_path / "model.plan", needle, "dlcv-export runs/x/best.pt --trt")


def test_undeserializable_plan_gives_tensorrt_reason(tmp_path, simulated):
    plan = b"NOTAPLAN" * 20
    path = write_engine(tmp_path, plan, binding_for(plan))
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(path)
    one_line_error(info, path, "cannot load this engine (Serialization assertion magicTagRead")


def test_the_lean_runtime_refuses_an_engine_that_is_not_version_compatible_before_deserialising(tmp_path, simulated, monkeypatch):
    monkeypatch.setattr(backend_module, "load_tensorrt", lambda: FakeTrt)  # the lean runtime: no Builder
    with pytest.raises(DlcvError) as info:
        open_fake(tmp_path, PROFILE)
    one_line_error(info, tmp_path / "model.plan", "loads only version-compatible engines",
                   "dlcv-export runs/x/best.pt --trt --precision fp16 --version-compatible")  # fmt: skip
    assert FakeTrt.runtimes == [] and FakeTrt.engines == []  # refused before TensorRT saw the plan
    with open_fake(tmp_path, PROFILE, version_compatible=True) as trt_backend:  # the same version: loads directly
        assert trt_backend.runtime.library is None and trt_backend.parent_runtime is None


def test_a_later_tensorrt_loads_a_version_compatible_engine_only_through_the_building_versions_lean_runtime(tmp_path, simulated, monkeypatch):
    monkeypatch.setattr(FakeTrt, "__version__", "11.4.0.106")  # the engine says 10.8.0.43
    with pytest.raises(DlcvError) as info:
        open_fake(tmp_path, PROFILE, version_compatible=True)
    one_line_error(info, tmp_path / "model.plan", "carries no lean runtime", "--lean-runtime DIR/", "libnvinfer_lean.so.10")
    assert FakeTrt.engines == []
    library = tmp_path / "libnvinfer_lean.so.10"
    library.write_bytes(b"\x7fELF")
    batch = np.random.default_rng(3).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with open_fake(tmp_path, PROFILE, backend_options={"lean_runtime": library}, version_compatible=True) as trt_backend:
        bootstrap, loaded = FakeTrt.runtimes
        assert (bootstrap.library, loaded.library) == (None, str(library))
        assert trt_backend.runtime is loaded and trt_backend.parent_runtime is bootstrap
        assert bootstrap.deserialized == [] and len(loaded.deserialized) == 1  # the loaded lean runtime deserialises
        np.testing.assert_allclose(trt_backend.infer(batch), fake_logits(batch, 3), rtol=1e-6)


def test_a_failure_reports_its_own_tensorrt_error_not_an_earlier_one(tmp_path, simulated):
    """Deserialising logs a harmless error; a later execution failure must name its own."""
    with open_fake(tmp_path, PROFILE, plan_options={"noisy": True}) as trt_backend:
        FakeTrt.engines[0].contexts[0].fail_with = "CUDA error 700: an illegal memory access was encountered"
        with pytest.raises(DlcvError) as info:
            trt_backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    message = str(info.value)
    assert "illegal memory access" in message and "harmless" not in message, message


def test_dlcv_infer_lean_runtime_option_reaches_the_engine(tmp_path, simulated, monkeypatch):
    from click.testing import CliRunner

    from dlcv.runtime.cli import main

    monkeypatch.setattr(FakeTrt, "__version__", "11.4.0.106")  # later than the engine's 10.8.0.43
    plan = fake_plan(PROFILE)
    engine = write_engine(tmp_path, plan, binding_for(plan, profile={k: list(v) for k, v in PROFILE.items()}, version_compatible=True))
    images = tmp_path / "images"
    write_png(images / "a.png", np.full((8, 8, 3), 40, np.uint8))
    library = tmp_path / "libnvinfer_lean.so.10"
    library.write_bytes(b"\x7fELF")
    refused = CliRunner().invoke(main, [str(images), "--engine", str(engine), "--device", "cuda", "-q"])
    assert refused.exit_code == 1 and "--lean-runtime DIR/tensorrt_lean_libs/libnvinfer_lean.so.10" in refused.stderr
    ran = CliRunner().invoke(main, [str(images), "--engine", str(engine), "--lean-runtime", str(library), "--out",
                                    str(tmp_path / "out"), "-q"])  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "out" / "a.png").is_file() and FakeTrt.runtimes[-1].library == str(library)
    onnx_too = CliRunner().invoke(main, [str(images), "--engine", str(tmp_path / "m.onnx"), "--lean-runtime", str(library)])
    assert onnx_too.exit_code == 2 and "--lean-runtime applies to TensorRT engines" in onnx_too.stderr


def write_head_engine(folder: Path, head: int, num_classes: int = 3, name: str = "model.plan") -> Path:
    """A fake engine built from an --argmax graph: ArgMax labels (head 1, segmentation) or TopK (head 2,
    classification), with the sidecar metadata dlcv-export writes for it."""
    classify = head == 2
    plan = fake_plan(PROFILE, num_classes=num_classes, classify=classify, head=head)
    binding = binding_for(plan, profile={k: list(v) for k, v in PROFILE.items()})
    path = folder / name
    path.write_bytes(plan)
    md = ArtifactMetadata(
        task="classification" if classify else "segmentation", arch="m", num_classes=num_classes,
        class_names=tuple(f"c{i}" for i in range(num_classes)), preprocess=PreprocessSpec(), precision=binding.precision,
        engine=binding.to_dict(),
    ).with_outputs(topk_outputs(num_classes, TOPK) if classify else labels_outputs(num_classes))  # fmt: skip
    write_sidecar(path, md)
    return path


def test_an_argmax_engine_returns_uint8_labels_and_the_logits_engines_argmax(tmp_path, simulated):
    batch = np.random.default_rng(1).normal(size=(3, 3, 16, 16)).astype(np.float32)
    (tmp_path / "head").mkdir()
    with TensorRTBackend(write_head_engine(tmp_path / "head", head=1), device="cuda") as labels_engine:
        labels = labels_engine.infer(batch)  # split into chunks of the profile's max batch 2
        assert labels.dtype == np.uint8 and labels.shape == (3, 16, 16)
        assert labels_engine.infer_outputs(batch).keys() == {"labels"}
    with open_fake(tmp_path, PROFILE) as logits_engine:
        np.testing.assert_array_equal(labels, logits_engine.infer(batch).argmax(axis=1))


def test_a_topk_engine_widens_tensorrts_int32_indices_to_the_declared_int64(tmp_path, simulated):
    batch = np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with TensorRTBackend(write_head_engine(tmp_path, head=2, num_classes=4), device="cuda") as engine:
        outputs = engine.infer_outputs(batch)
    indices, scores = outputs["topk_indices"], outputs["topk_scores"]
    assert indices.dtype == np.int64 and scores.dtype == np.float32 and indices.shape == scores.shape == (2, TOPK)
    logits = fake_logits(batch, 4, classify=True)
    np.testing.assert_array_equal(indices, np.argsort(-logits, axis=1, kind="stable")[:, :TOPK])
    assert np.all(np.diff(scores, axis=1) <= 0) and np.all(scores > 0)


def test_an_engine_whose_outputs_contradict_the_metadata_is_refused(tmp_path, simulated):
    plan = fake_plan(PROFILE, head=1)  # labels out, but the sidecar says logits
    path = write_engine(tmp_path, plan, binding_for(plan, profile={k: list(v) for k, v in PROFILE.items()}))
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(path, device="cuda")
    one_line_error(info, path, "outputs ['labels']", "['logits']", "dlcv-export")


def test_dlcv_infer_masks_from_an_argmax_engine_equal_the_logits_engines(tmp_path, simulated):
    from click.testing import CliRunner

    from dlcv.runtime.cli import main

    images = tmp_path / "images"
    rng = np.random.default_rng(3)
    for i in range(3):
        write_png(images / f"im{i}.png", rng.integers(0, 256, size=(16, 12 + 4 * i, 3), dtype=np.uint8))
    (tmp_path / "head").mkdir()
    logits_plan = fake_plan(PROFILE)
    engines = {
        "logits": write_engine(tmp_path, logits_plan, binding_for(logits_plan, profile={k: list(v) for k, v in PROFILE.items()})),
        "labels": write_head_engine(tmp_path / "head", head=1),
    }
    for kind, engine in engines.items():
        ran = CliRunner().invoke(main, [str(images), "--engine", str(engine), "--out", str(tmp_path / kind), "-q"])
        assert ran.exit_code == 0, ran.output
    for i in range(3):
        for name in (f"im{i}.png", f"im{i}_color.png"):
            assert (tmp_path / "labels" / name).read_bytes() == (tmp_path / "logits" / name).read_bytes()


@pytest.mark.parametrize("dtype", ["BF16", "FP8"])
def test_an_engine_with_io_numpy_cannot_hold_gives_one_line(tmp_path, simulated, dtype):
    with pytest.raises(DlcvError) as info:
        open_fake(tmp_path, PROFILE, plan_options={"dtype": dtype})
    one_line_error(info, tmp_path / "model.plan", f"tensor 'input' is {dtype}, which has no numpy type", "--trt")


def test_the_dtype_map_covers_every_real_tensorrt_data_type():
    """Every DataType member of the installed lean bindings maps to the numpy type trt.nptype gives,
    or (where trt.nptype raises TypeError: BF16, FP8, INT4, FP4, E8M0) to a one-line DlcvError."""
    trt = pytest.importorskip("tensorrt_lean_bindings")
    binding = binding_for(b"p")
    mapped, refused = [], []
    for name, member in trt.DataType.__members__.items():
        try:
            expected = np.dtype(trt.nptype(member))
        except TypeError:
            with pytest.raises(DlcvError, match=f"is {name}, which has no numpy type"):
                numpy_dtype(member, Path("m.plan"), "input", binding)
            refused.append(name)
        else:
            assert numpy_dtype(member, Path("m.plan"), "input", binding) == expected, name
            mapped.append(name)
    assert {"FLOAT", "HALF", "INT8", "INT32", "BOOL"} <= set(mapped) and {"BF16", "FP8"} <= set(refused)


# --------------------------------------------------------------------------- real GPU


def _gpu_available() -> bool:
    try:
        trt = backend_module.load_tensorrt()
        Cuda(0).gpu()
        return trt is not None
    except DlcvError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs a CUDA GPU and TensorRT")
def test_real_engine_runs_a_truncated_copy_is_refused(tmp_path):
    pytest.importorskip("tensorrt")  # the builder, to make an engine
    from tests.export.test_tensorrt_build import build_real_engine

    plan_path, reference = build_real_engine(tmp_path)
    with TensorRTBackend(plan_path) as trt_backend:
        batch, want = reference
        got = trt_backend.infer(batch)
        assert got.shape == want.shape and (got.argmax(1) == want.argmax(1)).mean() > 0.99
    truncated = tmp_path / "copy.plan"
    truncated.write_bytes(plan_path.read_bytes()[:1000])
    (tmp_path / "copy.plan.json").write_text((tmp_path / f"{plan_path.name}.json").read_text())
    with pytest.raises(DlcvError) as info:
        TensorRTBackend(truncated)
    one_line_error(info, truncated, "truncated")
