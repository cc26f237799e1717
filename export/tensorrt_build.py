"""ONNX -> TensorRT engine: ``<arch>.plan`` and its sidecar ``<arch>.plan.json`` (TensorRT Python API ≥ 10).

Precision is decided by the ONNX file (docs/architecture.md contract 5): the engine is compiled from
``<arch>.onnx``, ``<arch>.fp16.onnx`` or ``<arch>.int8.onnx`` (parsed in its signed form,
:func:`dlcv.export.int8.tensorrt_int8_file`: the file itself is written with uint8 activations
for the CPU runtimes, TensorRT accepts only signed INT8) as a *strongly typed* network
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; TensorRT 11 accepts nothing else), so the
graph's Casts and Q/DQ nodes fix every layer's type. Only where that build fails and the
installed TensorRT (< 11) still offers ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` is the same
file rebuilt weakly typed with that flag, and the sidecar records ``strongly_typed: false``.

The build: ONNX parser -> one optimisation profile for the input (:func:`profile_shapes`;
defaults from the checkpoint's input size, the rule of :mod:`dlcv.runtime.tensorrt.profile`)
-> workspace memory-pool limit -> a timing cache read from and merged back into one file
(default ``<out>/tensorrt.timing.cache``, so later builds on this GPU skip the kernel timing; a
cache TensorRT cannot use, from another version or GPU, is replaced by a new one with one
warning, as Polygraphy's ``CreateConfig`` does) -> optionally ``VERSION_COMPATIBLE`` with
``EXCLUDE_LEAN_RUNTIME``: an engine without an embedded lean runtime (which would be host code
needing ``engine_host_code_allowed``), loaded directly by the building version's full or lean
runtime and by later versions only through that version's lean runtime library
(``dlcv-infer --lean-runtime``; see :mod:`dlcv.runtime.backends.tensorrt_backend`).

The plan and its sidecar (the artifact metadata plus the :class:`EngineBinding`: GPU name,
compute capability, TensorRT version, precision, profile shapes, plan size and SHA-256) are
written under temporary names, the engine is run by the runtime's TensorRT backend against
PyTorch FP32 on the export's evaluation set, and both files are then renamed into place.

Without the TensorRT builder the ONNX files are already written; :func:`load_builder` raises
a one-line :class:`MissingDependencyError` (exit code 2) saying so and what to install.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dlcv.runtime.atomic import atomic_path, write_bytes_atomic
from dlcv.runtime.backends.tensorrt_backend import EngineBinding, make_logger, version_tuple
from dlcv.runtime.errors import DlcvError, MissingDependencyError
from dlcv.runtime.metadata import ArtifactMetadata, sidecar_path, write_sidecar
from dlcv.runtime.precision import INT8, get_precision
from dlcv.runtime.tensorrt.profile import Shape4, graph_dims, natural_size, optimisation_profile

from .config import TIMING_CACHE_NAME, ExportConfig, TensorRTConfig
from .int8 import tensorrt_int8_file
from .onnx_export import ExportResult
from .verify import ExportedArtifact, PrecisionReport, _silent, compare_precisions

Log = Callable[[str], None]
MIN_TENSORRT = (10,)
FALLBACK_FLAGS = {"fp16": "FP16", "int8": "INT8"}  # TensorRT < 11 only
INSTALL = "TensorRT >= 10 with its builder (pip install 'dlcv[tensorrt]', which also brings cuda-python)"


@dataclass(frozen=True)
class EngineResult:
    """What :func:`build_engine` wrote."""

    plan_path: Path
    sidecar: Path
    binding: EngineBinding
    build_seconds: float
    report: PrecisionReport | None

    def summary(self) -> str:
        b = self.binding
        lo, hi = ("x".join(map(str, b.profile[k])) for k in ("min", "max"))
        return (
            f"wrote {self.plan_path} ({b.plan_size_bytes / 1e6:.1f} MB, {b.precision}, TensorRT {b.tensorrt_version}, "
            f"{b.gpu_name} (sm {b.compute_capability}), profile {lo} .. {hi}) and {self.sidecar.name}"
        )


def builder_problem() -> tuple[Any, str | None]:
    """(the tensorrt module or None, why it cannot build engines or None)."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        return None, f"cannot import tensorrt ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    if not all(hasattr(trt, name) for name in ("Builder", "OnnxParser", "NetworkDefinitionCreationFlag")):
        return trt, "the installed tensorrt module has no builder (a lean/dispatch runtime or a placeholder package)"
    if version_tuple(trt.__version__)[:1] < MIN_TENSORRT:
        return trt, f"TensorRT {trt.__version__} is installed; dlcv builds with TensorRT >= 10"
    return trt, None


def load_builder(onnx_path: Path) -> Any:
    """The full ``tensorrt`` module (≥ 10, with its builder), or MissingDependencyError naming
    the ONNX file that is already written."""
    trt, problem = builder_problem()
    if problem:
        raise MissingDependencyError(
            f"TensorRT is not available to build the engine: {problem}. The ONNX is written: {onnx_path}. To build "
            f"the engine, install {INSTALL} and run dlcv-export --trt again, or run trtexec --onnx={onnx_path} "
            "where TensorRT is installed"
        )
    return trt


def profile_shapes(result: ExportResult, config: ExportConfig, trt_config: TensorRTConfig) -> tuple[Shape4, Shape4, Shape4]:
    """(min, opt, max) input shapes of the engine: the shapes given, around the defaults of
    :func:`dlcv.runtime.tensorrt.profile.optimisation_profile` at the export's natural size
    (``--input-size``, else the preprocessing size, else 128×128)."""
    natural = natural_size(result.metadata.preprocess, config.input_size)
    return optimisation_profile(graph_dims(result.input_shape), natural, trt_config.min_shape, trt_config.opt_shape,
                                trt_config.max_shape)  # fmt: skip


def attach_timing_cache(builder_config: Any, data: bytes) -> bool:
    """Make ``data`` the config's timing cache; False when TensorRT cannot use it (then a new,
    empty cache is attached). ``create_timing_cache`` returns None or raises for a cache of
    another TensorRT version, and ``set_timing_cache`` refuses one of another GPU."""
    try:
        cache = builder_config.create_timing_cache(data)
    except Exception:  # TensorRT's bindings raise their own error types here (Polygraphy catches all, too)
        cache = None
    if cache is not None and builder_config.set_timing_cache(cache, False):
        return True
    builder_config.set_timing_cache(builder_config.create_timing_cache(b""), False)
    return not data


def build_serialized(
    trt: Any, onnx_path: Path, input_name: str, shapes: tuple[Shape4, Shape4, Shape4], trt_config: TensorRTConfig,
    cache_path: Path, log: Log = _silent,
) -> tuple[bytes, bool]:  # fmt: skip
    """Compile ``onnx_path``; returns the serialized engine and whether it was built strongly typed."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    attempts = [True]
    flag_name = FALLBACK_FLAGS.get(trt_config.precision)
    if flag_name and hasattr(trt.BuilderFlag, flag_name):
        attempts.append(False)
    cache_data = cache_path.read_bytes() if cache_path.is_file() else b""
    failures = []
    for strongly_typed in attempts:
        if not strongly_typed:
            log(f"warning: the strongly typed build failed ({failures[-1]}); retrying with BuilderFlag.{flag_name} "
                f"(TensorRT {trt.__version__} still offers it)")  # fmt: skip
        # A creation flag is a bit position (STRONGLY_TYPED is bit 1 in TensorRT 10, bit 0 and ignored in 11).
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        logger.clear()
        if not parser.parse_from_file(str(onnx_path)):
            errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
            detail = "; ".join(errors)[:400] or logger.first_error("no reason given")
            raise DlcvError(f"{onnx_path}: TensorRT's ONNX parser rejects it ({detail})")
        builder_config = builder.create_builder_config()
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, trt_config.workspace_mb << 20)
        if not strongly_typed:
            builder_config.set_flag(getattr(trt.BuilderFlag, flag_name))
        if trt_config.version_compatible:
            builder_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
            builder_config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, *shapes)
        builder_config.add_optimization_profile(profile)
        if attach_timing_cache(builder_config, cache_data):
            if cache_data:
                log(f"reusing the timing cache {cache_path}")
        else:
            log(f"warning: {cache_path} was made by another TensorRT version or GPU; starting a new timing cache")
            cache_data = b""  # one warning: later attempts start from the new cache directly
        logger.clear()
        serialized = builder.build_serialized_network(network, builder_config)
        if serialized is not None:
            write_bytes_atomic(cache_path, bytes(builder_config.get_timing_cache().serialize()))
            return bytes(serialized), strongly_typed
        failures.append(logger.first_error("no reason given"))
    raise DlcvError(f"{onnx_path}: TensorRT could not build an engine ({failures[-1]})")


def build_engine(result: ExportResult, config: ExportConfig, log: Log | None = None) -> EngineResult:
    """Build ``<out>/<arch>.plan`` from the ONNX of ``config.tensorrt.precision``, verify it
    against PyTorch on the export's evaluation set, and publish it with its sidecar."""
    from dlcv.runtime.backends.tensorrt_backend import TensorRTBackend
    from dlcv.runtime.tensorrt.cuda_memory import Cuda
    from dlcv.train.torch_backend import TorchBackend

    log = log or _silent
    trt_config = config.tensorrt
    if trt_config is None:
        raise DlcvError("build_engine needs config.tensorrt")
    md = result.metadata
    onnx_path = result.precision_paths[trt_config.precision]
    trt = load_builder(onnx_path)
    gpu = Cuda(0).gpu()
    shapes = profile_shapes(result, config, trt_config)
    cache_path = trt_config.timing_cache or config.out / TIMING_CACHE_NAME
    plan_path = config.out / f"{md.arch}.plan"
    log(f"building {plan_path.name} from {onnx_path.name} with TensorRT {trt.__version__} on {gpu.name}: profile "
        + " / ".join("x".join(map(str, s)) for s in shapes) + f", workspace {trt_config.workspace_mb} MB"
        + (", version-compatible" if trt_config.version_compatible else ""))  # fmt: skip
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        source = onnx_path  # an INT8 file is written for the CPU runtimes: TensorRT parses its signed form
        if trt_config.precision == INT8.name:
            source = stack.enter_context(tensorrt_int8_file(onnx_path, log))
        plan, strongly_typed = build_serialized(trt, source, md.input_name, shapes, trt_config, cache_path, log)
    seconds = time.perf_counter() - t0
    binding = EngineBinding(
        gpu_name=gpu.name, compute_capability=gpu.compute_capability, tensorrt_version=str(trt.__version__),
        precision=trt_config.precision, profile={k: list(s) for k, s in zip(("min", "opt", "max"), shapes)},
        plan_size_bytes=len(plan), plan_sha256=hashlib.sha256(plan).hexdigest(),
        version_compatible=trt_config.version_compatible, strongly_typed=strongly_typed, onnx=onnx_path.name,
        checkpoint=str(config.checkpoint), workspace_mb=trt_config.workspace_mb,
    )  # fmt: skip
    metadata: ArtifactMetadata = md.with_(precision=trt_config.precision, engine=binding.to_dict())
    log(f"built in {seconds:.1f}s ({len(plan) / 1e6:.1f} MB, {'strongly typed' if strongly_typed else 'builder precision flag'})")
    report = None
    with atomic_path(plan_path) as tmp:
        tmp.write_bytes(plan)
        try:
            write_sidecar(tmp, metadata)
            if result.eval_set is not None:
                precision = get_precision(trt_config.precision)
                engine = ExportedArtifact(f"{precision.name} engine", plan_path.name, lambda: TensorRTBackend(tmp), precision,
                                          config.gate(precision, result.eval_set.labelled), config.tie_margin)  # fmt: skip
                log(f"comparing {plan_path.name} with PyTorch FP32 on {result.eval_set.source} (TensorRT, GPU)")
                with TorchBackend(result.checkpoint or config.checkpoint) as reference:
                    report = compare_precisions(reference, [engine], result.eval_set)
                log(report.table())
                row = report.rows[0]
                if not row.passed:
                    message = f"{plan_path.name} misses its gate: {'; '.join(row.failures)}"
                    if config.strict:
                        raise DlcvError(f"{message} (--strict: not written)")
                    log(f"warning: {message}")
        finally:
            sidecar_path(tmp).unlink(missing_ok=True)
    sidecar = write_sidecar(plan_path, metadata)
    return EngineResult(plan_path, sidecar, binding, seconds, report)
