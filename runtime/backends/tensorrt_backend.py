"""TensorRT backend: a serialized engine (``x.plan`` / ``x.engine``) with its ``x.plan.json`` sidecar.

Opening an engine checks, in this order and each with a one-line error naming the file:
the file exists and matches the size and SHA-256 its sidecar records (a truncated or
replaced plan is refused before anything touches CUDA); a TensorRT runtime can be imported
(the full ``tensorrt`` module, else the lean runtime ``tensorrt_lean_bindings`` /
``tensorrt_lean``); that runtime can load the engine (:func:`check_runtime_kind`,
:func:`check_tensorrt_version`); a CUDA GPU exists and has the compute capability the engine
was built for (another GPU model of the same capability only logs a warning). A mismatch says
how to rebuild. Only then is the plan deserialized.

Which TensorRT runs which engine (TensorRT's "Version Compatibility" and the
``IRuntime::loadRuntime`` / trtexec ``--excludeLeanRuntime`` documentation):

- an engine built without ``--version-compatible`` runs only on the TensorRT version that built
  it, and only on the full runtime (the lean runtime loads version-compatible plans only);
- ``dlcv-export --version-compatible`` builds with ``VERSION_COMPATIBLE`` and
  ``EXCLUDE_LEAN_RUNTIME``: the plan carries no lean runtime (that would be host code, which
  dlcv never allows: ``engine_host_code_allowed`` stays off). The building version (full or
  lean) loads it directly; a later TensorRT loads it only through the building version's lean
  runtime library, ``--lean-runtime PATH`` (``libnvinfer_lean.so.N`` of that version), which
  is loaded with ``Runtime.load_runtime``; an earlier TensorRT never.

Execution uses TensorRT's name-based I/O (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) on
one CUDA stream, with pinned host and device buffers (:mod:`dlcv.runtime.tensorrt.cuda_memory`)
that grow on demand and are reused across batches: copy in, execute, copy out, all enqueued
on that stream, then one synchronisation before the output is read. A batch larger than the
optimisation profile's maximum is split; one smaller than its minimum is zero-padded. A
TensorRT engine runs on the GPU whatever ``device`` says (``cuda:N`` picks the GPU).

Never imports torch or the TensorRT builder: building is :mod:`dlcv.export.tensorrt_build`.
"""
from __future__ import annotations

import hashlib
import importlib
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..tensorrt.cuda_memory import BufferPair, Cuda, GpuInfo
from ..errors import DlcvError, MissingDependencyError, first_line
from ..metadata import ArtifactMetadata, read_sidecar
from .base import Backend, Outputs, concat_outputs

log = logging.getLogger("dlcv.runtime.tensorrt")

# Import order: the full TensorRT (also what builds engines), then the lean runtime wheels.
TENSORRT_MODULES = ("tensorrt", "tensorrt_lean_bindings", "tensorrt_lean")
INSTALL_HINT = (
    "pip install 'dlcv[tensorrt]' (full TensorRT) or 'dlcv[tensorrt-lean]' "
    "(tensorrt-lean-cu13-libs + tensorrt-lean-cu13-bindings, enough for version-compatible engines); "
    "for CUDA 12 drivers the -cu12 extras"
)
# TensorRT DataType name -> numpy dtype. BF16, FP8, INT4, FP4 and E8M0 have no numpy type
# (``trt.nptype`` raises TypeError for them); such an engine gets a one-line error instead.
NUMPY_DTYPES = {
    "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
    "BOOL": np.bool_, "UINT8": np.uint8,
}  # fmt: skip


@dataclass(frozen=True)
class EngineBinding:
    """What an engine is bound to; stored as the ``engine`` field of its sidecar metadata."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    profile: Mapping[str, list[int]]  # {"min": [N,C,H,W], "opt": [...], "max": [...]} of the input
    plan_size_bytes: int
    plan_sha256: str
    version_compatible: bool = False
    strongly_typed: bool = True  # False when TensorRT < 11 builder precision flags were used
    onnx: str = ""  # the ONNX file the engine was built from (name)
    checkpoint: str = ""  # the checkpoint that ONNX came from (as given to dlcv-export)
    workspace_mb: int = 0
    tf32: bool = False  # True when built with --tf32 (FP32 layers may use TF32); False: FP32 is FP32
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = {k: list(v) for k, v in self.profile.items()}
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_metadata(cls, metadata: ArtifactMetadata, source: str) -> "EngineBinding":
        data = dict(metadata.engine)
        if not data:
            raise DlcvError(f"{source}: its metadata has no engine binding (GPU, TensorRT version); rebuild it with dlcv-export --trt")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DlcvError(f"{source}: unknown engine binding keys {sorted(unknown)}; was it written by a newer dlcv?")
        try:
            binding = cls(**data)
        except TypeError as exc:
            raise DlcvError(f"{source}: incomplete engine binding in its metadata ({exc}); rebuild it with dlcv-export --trt") from None
        if set(binding.profile) != {"min", "opt", "max"} or any(len(v) != 4 for v in binding.profile.values()):
            raise DlcvError(f"{source}: the engine binding's profile needs min/opt/max shapes of four dimensions")
        return binding

    def rebuild_hint(self, version_compatible: bool | None = None) -> str:
        """The dlcv-export command that rebuilds this engine here (``--version-compatible`` when
        the engine was, or when ``version_compatible`` asks for it)."""
        source = self.checkpoint or "<checkpoint.pt>"
        flag = " --version-compatible" if (self.version_compatible if version_compatible is None else version_compatible) else ""
        return f"rebuild it on this machine: dlcv-export {source} --trt --precision {self.precision}{flag}"


def version_tuple(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> (10, 3, 0, 26); non-numeric tails are ignored."""
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:4])


def load_tensorrt() -> Any:
    """The first TensorRT module that imports (full, then lean), or MissingDependencyError."""
    errors = []
    for name in TENSORRT_MODULES:
        try:
            module = importlib.import_module(name)
        except (ImportError, OSError) as exc:  # OSError: a wheel whose shared libraries are missing
            errors.append(f"{name}: {first_line(exc, 120)}")
            continue
        if hasattr(module, "Runtime"):
            return module
        errors.append(f"{name}: has no Runtime (a placeholder package?)")
    raise MissingDependencyError(f"no TensorRT runtime can be imported ({'; '.join(errors)}); {INSTALL_HINT}")


def check_plan_file(path: Path, binding: EngineBinding) -> bytes:
    """The plan's bytes, when they are the bytes the sidecar describes."""
    data = path.read_bytes()
    if not data:
        raise DlcvError(f"{path}: empty engine file (0 bytes); rebuild it with dlcv-export --trt")
    if binding.plan_size_bytes and len(data) != binding.plan_size_bytes:
        raise DlcvError(
            f"{path}: is {len(data)} bytes but its metadata records an engine of {binding.plan_size_bytes} bytes: "
            f"the file is truncated or was replaced; {binding.rebuild_hint()}"
        )
    if binding.plan_sha256 and hashlib.sha256(data).hexdigest() != binding.plan_sha256:
        raise DlcvError(
            f"{path}: its SHA-256 differs from the one its metadata records: the file is corrupt or is "
            f"another engine than {path.name}.json describes; {binding.rebuild_hint()}"
        )
    return data


def is_lean(trt: Any) -> bool:
    """True for a lean (or dispatch) TensorRT runtime module: it has no builder."""
    return not hasattr(trt, "Builder")


def check_runtime_kind(path: Path, binding: EngineBinding, trt: Any) -> None:
    """Refuse, before deserialising, an engine the lean runtime cannot load (one built without --version-compatible)."""
    if is_lean(trt) and not binding.version_compatible:
        module = getattr(trt, "__name__", "tensorrt_lean")
        raise DlcvError(
            f"{path}: the lean TensorRT runtime ({module} {trt.__version__}) loads only version-compatible "
            f"engines, and this one was built without --version-compatible; {binding.rebuild_hint(version_compatible=True)}, "
            "or install the full TensorRT runtime (pip install 'dlcv[tensorrt]')"
        )


# The first TensorRT whose lean runtime wheels exist for CUDA 13 (tensorrt-lean-cu13-libs on PyPI).
FIRST_CU13_LEAN = (10, 13)


def lean_runtime_hint(version: str) -> str:
    """How to get TensorRT ``version``'s lean runtime library without touching the installed
    TensorRT: pip's ``--target`` puts it in a folder of its own (installed into this environment,
    it would replace the running version's ``tensorrt_lean_libs``)."""
    numbers = version_tuple(version)
    major = numbers[0] if numbers else "N"
    cuda = "cu13" if numbers[:2] >= FIRST_CU13_LEAN else "cu12"
    return (
        f"install it into a folder of its own, never into this environment (that would replace this TensorRT's "
        f"library): pip install --no-deps --target DIR 'tensorrt-lean-{cuda}-libs=={version}', then pass "
        f"--lean-runtime DIR/tensorrt_lean_libs/libnvinfer_lean.so.{major}"
    )


def check_tensorrt_version(path: Path, binding: EngineBinding, runtime_version: str, lean_runtime: Path | None = None) -> bool:
    """Refuse an engine this TensorRT cannot run; True when it must be loaded through ``lean_runtime``.

    Not version-compatible: the exact version that built it (the build number aside).
    Version-compatible (built without an embedded lean runtime): that version directly; a
    later one only through that version's lean runtime library (``lean_runtime``); never an
    earlier one."""
    built, here = version_tuple(binding.tensorrt_version)[:3], version_tuple(runtime_version)[:3]
    prefix = f"{path}: built with TensorRT {binding.tensorrt_version}, this machine has TensorRT {runtime_version}"
    if not binding.version_compatible:
        if here != built:
            raise DlcvError(
                f"{prefix}; engines run only on the TensorRT version that built them (build with --version-compatible "
                f"to run on later versions through that version's lean runtime); {binding.rebuild_hint()}"
            )
        return False
    if here < built:
        raise DlcvError(f"{prefix}; a version-compatible engine runs on that version or later, never an earlier one; {binding.rebuild_hint()}")
    if here == built:
        return False
    major = built[0] if built else "N"
    if lean_runtime is None:
        raise DlcvError(
            f"{prefix}; this version-compatible engine carries no lean runtime, so a later TensorRT runs it only "
            f"through TensorRT {binding.tensorrt_version}'s lean runtime: {lean_runtime_hint(binding.tensorrt_version)}, "
            f"or {binding.rebuild_hint()}"
        )
    if not Path(lean_runtime).is_file():
        raise DlcvError(f"{path}: --lean-runtime {lean_runtime} is not a file; give the path of TensorRT {binding.tensorrt_version}'s libnvinfer_lean.so.{major}")
    return True


def numpy_dtype(trt_dtype: Any, path: Path, tensor: str, binding: EngineBinding) -> np.dtype:
    """The numpy dtype of a TensorRT ``DataType``, or a one-line error for those numpy has not (BF16, FP8...)."""
    name = getattr(trt_dtype, "name", str(trt_dtype)).rsplit(".", 1)[-1]
    if name not in NUMPY_DTYPES:
        raise DlcvError(
            f"{path}: tensor {tensor!r} is {name}, which has no numpy type; dlcv engines take float32 and return "
            f"float32 (or float16) logits, or integer labels / TopK indices; {binding.rebuild_hint()}"
        )
    return np.dtype(NUMPY_DTYPES[name])


def check_output_dtype(path: Path, tensor, dtype: np.dtype, binding: EngineBinding) -> None:
    """An engine output's type must hold what the metadata declares: float32/float16 for logits
    and scores, an integer type for labels and TopK indices (TensorRT gives INT32 indices where
    the graph said INT64; :meth:`Backend.infer_outputs` widens them)."""
    integer = tensor.role in ("labels", "indices")
    ok = np.issubdtype(dtype, np.integer) if integer else dtype in (np.float32, np.float16)
    if not ok:
        want = "an integer type" if integer else "float32 (or float16)"
        raise DlcvError(
            f"{path}: engine output {tensor.name!r} ({tensor.role}) is {dtype}, the metadata needs {want}; "
            f"{binding.rebuild_hint()}"
        )


def check_gpu(path: Path, binding: EngineBinding, gpu: GpuInfo) -> None:
    """Refuse an engine built for another compute capability; warn about another GPU model."""
    if gpu.compute_capability != binding.compute_capability:
        raise DlcvError(
            f"{path}: built for {binding.gpu_name} (compute capability {binding.compute_capability}), this machine "
            f"has {gpu.name} (compute capability {gpu.compute_capability}); {binding.rebuild_hint()}"
        )
    if gpu.name != binding.gpu_name:
        log.warning("%s: built on %s, running on %s (same compute capability %s); rebuild for best performance",
                    path.name, binding.gpu_name, gpu.name, gpu.compute_capability)  # fmt: skip


def device_index(device: str) -> int:
    """``cuda`` / ``cpu`` / ``tensorrt`` -> 0, ``cuda:N`` / ``tensorrt:N`` -> N."""
    m = re.fullmatch(r"(?:cuda|gpu|tensorrt)(?::(\d+))?|cpu", str(device).strip().lower())
    if not m:
        raise DlcvError(f"unknown device {device!r} for a TensorRT engine; use cuda or cuda:N")
    return int(m.group(1) or 0)


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps the error messages of the current operation (for one-line
    errors) and logs warnings. Call ``clear()`` before each operation, so a failure reports its
    own error, not one an earlier operation logged."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def clear(self) -> None:
            """Forget the errors of earlier operations."""
            self.errors.clear()

        def log(self, severity, msg) -> None:  # called by TensorRT
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)

        def first_error(self, default: str) -> str:
            """The first line of the first error TensorRT reported since ``clear()`` (``default`` when none)."""
            lines = [line.strip() for line in "\n".join(self.errors).splitlines() if line.strip()]
            return lines[0][:300] if lines else default

    return CollectingLogger()


class TensorRTBackend(Backend):
    """A TensorRT engine run through the full or the lean TensorRT runtime."""

    name = "tensorrt"
    suffixes = (".plan", ".engine")
    devices = ("cuda",)
    needs_gpu = True
    extra = "tensorrt"
    priority = 20
    options = ("threads", "lean_runtime")

    @classmethod
    def read_metadata(cls, path: Path) -> ArtifactMetadata:
        return read_sidecar(path)

    @classmethod
    def library_version(cls) -> str | None:
        for module_name in TENSORRT_MODULES:
            try:
                return importlib.import_module(module_name).__version__
            except ImportError:
                continue
        return None

    def __init__(self, path: str | Path, device: str = "cuda", threads: int | None = None,
                 lean_runtime: str | Path | None = None):  # fmt: skip
        path = Path(path)
        if not path.is_file():
            raise DlcvError(f"{path}: engine file not found")
        metadata = read_sidecar(path)
        super().__init__(path, metadata)
        self.binding = EngineBinding.from_metadata(metadata, str(path))
        self.runtime = self.parent_runtime = self.engine = self.context = self.stream = None
        self.buffers: dict[str, BufferPair] = {}
        plan = check_plan_file(path, self.binding)
        trt = load_tensorrt()
        self.tensorrt_version = str(trt.__version__)
        check_runtime_kind(path, self.binding, trt)
        lean = Path(lean_runtime) if lean_runtime is not None else None
        through_lean = check_tensorrt_version(path, self.binding, self.tensorrt_version, lean)
        self.cuda = Cuda(device_index(device))
        try:
            self.gpu = self.cuda.gpu()
        except DlcvError as exc:
            raise DlcvError(f"{path}: cannot run a TensorRT engine here: {exc}") from None
        check_gpu(path, self.binding, self.gpu)
        try:
            self._open(trt, plan, lean if through_lean else None)
        except BaseException:
            self.close()
            raise

    def _load_lean_runtime(self, lean_runtime: Path) -> None:
        """Swap in the building version's lean runtime (``IRuntime::loadRuntime``), keeping its parent alive."""
        self.logger.clear()
        loaded = self.runtime.load_runtime(str(lean_runtime))
        if loaded is None:
            detail = self.logger.first_error("no reason given")
            raise DlcvError(
                f"{self.path}: TensorRT {self.tensorrt_version} could not load the lean runtime {lean_runtime} "
                f"({detail}); give TensorRT {self.binding.tensorrt_version}'s libnvinfer_lean library"
            )
        self.parent_runtime, self.runtime = self.runtime, loaded

    def _open(self, trt: Any, plan: bytes, lean_runtime: Path | None) -> None:
        path, md, binding = self.path, self.metadata, self.binding
        self.logger = make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        if lean_runtime is not None:
            self._load_lean_runtime(lean_runtime)
        self.logger.clear()
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            detail = self.logger.first_error("no reason given")
            through = f" through the lean runtime {lean_runtime}" if lean_runtime is not None else ""
            raise DlcvError(
                f"{path}: TensorRT {self.tensorrt_version}{through} cannot load this engine ({detail}); the file is not a "
                f"TensorRT engine, is damaged, or was built by another TensorRT; {binding.rebuild_hint()}"
            )
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [md.input_name] or sorted(outputs) != sorted(md.output_names):
            raise DlcvError(
                f"{path}: the engine has inputs {inputs} and outputs {outputs}, its metadata names input "
                f"{md.input_name!r} and outputs {list(md.output_names)}; {binding.rebuild_hint()}"
            )
        self.input_dtype = numpy_dtype(engine.get_tensor_dtype(md.input_name), path, md.input_name, binding)
        self.output_dtypes = {t.name: numpy_dtype(engine.get_tensor_dtype(t.name), path, t.name, binding)
                              for t in md.outputs.tensors}  # fmt: skip
        if self.input_dtype != np.float32:
            raise DlcvError(f"{path}: the engine's input is {self.input_dtype}; dlcv engines take float32; {binding.rebuild_hint()}")
        for tensor in md.outputs.tensors:
            check_output_dtype(path, tensor, self.output_dtypes[tensor.name], binding)
        lo, opt, hi = engine.get_tensor_profile_shape(md.input_name, 0)
        self.profile = tuple(tuple(int(d) for d in dims) for dims in (lo, opt, hi))
        self.logger.clear()
        context = engine.create_execution_context()
        if context is None:
            detail = self.logger.first_error("out of GPU memory?")
            raise DlcvError(f"{path}: TensorRT could not create an execution context ({detail})")
        self.context = context
        self.stream = self.cuda.create_stream()
        self.buffers = {name: BufferPair(self.cuda) for name in (md.input_name, *md.output_names)}

    @property
    def max_batch(self) -> int:
        return self.profile[2][0]

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        lo, opt, hi = self.profile
        _, c, h, w = batch.shape
        if not (lo[1] <= c <= hi[1] and lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            text = lambda shape: "x".join(map(str, shape))  # noqa: E731
            if h > hi[2] or w > hi[3]:
                flag = f"--max-shape {text((hi[0], hi[1], max(h, hi[2]), max(w, hi[3])))}"
            else:
                flag = f"--min-shape {text((lo[0], lo[1], min(h, lo[2]), min(w, lo[3])))}"
            raise DlcvError(
                f"{self.path.name}: input {c}x{h}x{w} is outside the engine's optimisation profile (min {text(lo)}, "
                f"opt {text(opt)}, max {text(hi)}); {self.binding.rebuild_hint()} {flag}"
            )

    def gpu_memory_bytes(self) -> int | None:
        """The engine's activation memory (what its execution context holds) plus dlcv's device buffers."""
        engine = self.engine
        if engine is None:
            return None
        size = getattr(engine, "device_memory_size_v2", None)  # ICudaEngine::getDeviceMemorySizeV2, TensorRT >= 10.1
        if size is None:
            return None
        return int(size) + sum(pair.capacity for pair in self.buffers.values())

    def _run(self, batch: np.ndarray) -> Outputs:
        return concat_outputs([self._run_chunk(batch[i : i + self.max_batch]) for i in range(0, batch.shape[0], self.max_batch)])

    def _run_chunk(self, chunk: np.ndarray) -> Outputs:
        """Copy in, execute, copy out: all enqueued on the backend's one stream, then synchronised once."""
        count = chunk.shape[0]
        if count < self.profile[0][0]:  # below the profile's minimum batch: pad with zeros
            pad = np.zeros((self.profile[0][0] - count, *chunk.shape[1:]), dtype=np.float32)
            chunk = np.concatenate([chunk, pad])
        md, context, cuda, stream = self.metadata, self.context, self.cuda, self.stream
        # CUDA's current device is per thread: the thread that opened the engine may not be this one
        # (dlcv-infer's workers, a Ray actor), and PyTorch may have changed it since.
        cuda.select()
        self.logger.clear()
        if not context.set_input_shape(md.input_name, chunk.shape):
            detail = self.logger.first_error("no reason given")
            raise DlcvError(f"{self.path.name}: TensorRT rejected the input shape {chunk.shape} ({detail})")
        shapes = {name: tuple(int(d) for d in context.get_tensor_shape(name)) for name in md.output_names}
        sizes = {name: int(np.prod(shape)) * self.output_dtypes[name].itemsize for name, shape in shapes.items()}
        inp = self.buffers[md.input_name]
        inp.reserve(chunk.nbytes)
        for name, size in sizes.items():
            self.buffers[name].reserve(size)
        inp.host.view(chunk.shape, np.float32)[...] = chunk
        cuda.copy_to_device(inp.device.ptr, inp.host.ptr, chunk.nbytes, stream)
        context.set_tensor_address(md.input_name, inp.device.ptr)
        for name in md.output_names:
            context.set_tensor_address(name, self.buffers[name].device.ptr)
        self.logger.clear()
        if not context.execute_async_v3(int(stream)):
            self._settle()  # the copy-in may still be running: never free or refill its buffer early
            raise DlcvError(f"{self.path.name}: TensorRT execution failed ({self.logger.first_error('no reason given')})")
        for name, size in sizes.items():
            out = self.buffers[name]
            cuda.copy_to_host(out.host.ptr, out.device.ptr, size, stream)
        cuda.synchronize(stream)
        # copies: the buffers are reused by the next chunk (floating outputs as float32, see Backend.infer_outputs)
        return {name: self.buffers[name].host.view(shapes[name], self.output_dtypes[name])[:count].copy() for name in shapes}

    def _settle(self) -> None:
        """Wait for the stream after a failure (its own error is logged, not raised over the first one)."""
        try:
            self.cuda.synchronize(self.stream)
        except DlcvError as exc:
            log.warning("%s: %s", self.path.name, exc)

    def close(self) -> None:
        stream = getattr(self, "stream", None)
        if stream is not None:
            try:
                self.cuda.select()  # free on the engine's GPU, whichever thread closes
            except DlcvError as exc:
                log.warning("%s: %s", self.path.name, exc)
            self._settle()  # let enqueued copies finish before their buffers are freed
        for pair in getattr(self, "buffers", {}).values():
            pair.free()
        self.buffers = {}
        if stream is not None:
            self.cuda.destroy_stream(stream)
            self.stream = None
        # Destruction order matters to TensorRT: context, then engine, then the runtime(s) that made it.
        self.context = None
        self.engine = None
        self.runtime = None
        self.parent_runtime = None
