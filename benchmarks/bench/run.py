"""The benchmark run: rows -> parity -> interleaved latency -> end-to-end split -> records -> report.

:func:`run_benchmark` is the library behind ``dlcv-bench``. The steps, each in its module:

1. the machine (:mod:`.machine`, instruction sets included) and its FP32 and INT8 ceilings
   (:mod:`.flops`), measured first;
2. the images (:mod:`.data`): a dataset split, a folder, the demo set or synthetic images;
3. the rows (:mod:`.candidates`): PyTorch eager FP32 (always: it is the reference), the other
   PyTorch baselines, and every model file given, or exported now (:mod:`.exporting`);
4. parity of every row against the reference on the same tensors (:mod:`.parity`);
5. latency per batch size, all rows timed in interleaved rounds (:mod:`.timing`, :mod:`.memory`);
6. the end-to-end split of the runtime rows on image files (:mod:`.pipeline`);
7. flat records (:mod:`.records`) and the report, JSON and plots (:mod:`.report`).

A row that fails at any step keeps its records, with ``error`` saying where and why.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from dlcv.runtime import comparator
from dlcv.runtime.backends import get_backend
from dlcv.runtime.errors import DlcvError, first_line
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.task import get_task

from . import memory
from .candidates import BenchRow, artifact_name, artifact_rows, assign_labels, backend_version, row_backends, row_device
from .config import DEFAULT_SHAPE, BenchConfig
from .data import BenchImages, latency_batch, load_images, natural_shape, parity_batches
from .exporting import export_artifacts
from .flops import (
    achieved, ceiling_fields, ceiling_probes, int8_ceiling_fields, int8_probes, matmul_seconds, model_flops_per_image,
    row_ceiling,
)  # fmt: skip
from .machine import machine_info
from .parity import ImageCellsObserver, parity_record
from .pipeline import time_pipeline
from .records import make_record
from .timing import TimingOutcome, summarize, time_interleaved

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


@dataclass
class BenchResult:
    """Everything a report needs: the records and the run's context."""

    config: BenchConfig
    name: str
    out_dir: Path
    metadata: ArtifactMetadata
    records: list[dict]
    shape: tuple[int, int]
    images: str
    machine: dict
    notes: list[str] = field(default_factory=list)
    command: str | None = None
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class _RowResults:
    """What the steps measured for one candidate."""

    parity: dict = field(default_factory=dict)
    timing: dict[int, TimingOutcome] = field(default_factory=dict)
    e2e: dict = field(default_factory=dict)
    compile_s: dict[int, float] = field(default_factory=dict)  # batch size -> torch.compile's first call at its shape


def _load_reference_metadata(checkpoint: Path) -> tuple[dict, ArtifactMetadata]:
    from dlcv.train.checkpoint import file_sha256, load_checkpoint, metadata_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    return ckpt, metadata_from_checkpoint(ckpt, source_sha256=file_sha256(checkpoint))


def _latency_shape(config: BenchConfig, md: ArtifactMetadata) -> tuple[int, int] | None:
    if config.shape is not None:
        return tuple(config.shape)  # type: ignore[return-value]
    spec = md.preprocess
    return tuple(spec.size) if spec.resize != "none" and spec.size else None  # type: ignore[return-value]


def _torch_candidates(config: BenchConfig) -> list[BenchRow]:
    from .torch_variants import TORCH_VARIANTS

    rows = []
    on_gpu = config.device.startswith("cuda")
    for v in TORCH_VARIANTS:
        if v.variant != "eager" and not (config.wants("torch") and config.wants_torch_variant(v.variant)):
            continue
        c = BenchRow("torch", v.variant, v.precision, config.device)
        if v.cpu_skip is not None and not on_gpu:
            c.skipped = f"{v.variant} {v.cpu_skip}"
        else:
            c.opener = partial(v.opener, config.checkpoint, device=config.device, threads=config.threads)
        rows.append(c)
    return rows


def _missing_backend(name: str, device: str) -> BenchRow:
    """An error row for a backend named in --backends that no model file is for."""
    c = BenchRow(name, "-", "-", device)
    kinds = ", ".join(get_backend(name).suffixes) or "a model it opens"
    c.fail("input", f"no {name} model among the artifacts; pass a file it opens ({kinds}), as dlcv-export writes them")
    return c


_EXPORTED = Path("exported.onnx")  # the kind of file the run exports when no artifact is given
_CEILING = "ceiling probe"  # runner keys (_CEILING, library) never equal a row label


@dataclass
class BenchmarkRun:
    """One benchmark run's state; each method is one step of :func:`run_benchmark`."""

    config: BenchConfig
    md: ArtifactMetadata
    images: BenchImages
    shape: tuple[int, int]
    workdir: Path
    log: Log
    notes: list[str]
    rows: list[BenchRow] = field(default_factory=list)
    results: dict[str, _RowResults] = field(default_factory=dict)

    def file_candidates(self) -> list[BenchRow]:
        """Rows for the given artifacts, or for the ONNX files exported now: each file on its
        suffix's default backend, or on every backend of ``--backends`` that opens it."""
        cfg = self.config
        rows: list[BenchRow] = []
        if cfg.artifacts:
            for path in cfg.artifacts:
                found = artifact_rows(path, cfg.backends, cfg.device, cfg.threads, self.md)
                if not found:
                    named = ",".join(cfg.backends or ())
                    self.notes.append(f"{artifact_name(path)} was not run: no backend of --backends {named} opens it.")
                rows.extend(found)
        elif row_backends(_EXPORTED, cfg.backends, cfg.device):
            rows = self._exported_candidates()
        for name in cfg.backends or ():
            if get_backend(name).deployed and not any(r.backend == name for r in rows):
                rows.append(_missing_backend(name, cfg.device))
        return rows

    def _exported_candidates(self) -> list[BenchRow]:
        cfg, source = self.config, self.images.calibration_source
        self.log(f"exporting {', '.join(cfg.precisions)} ONNX from {cfg.checkpoint} into a temporary folder")
        outcome = export_artifacts(
            cfg.checkpoint, self.md, cfg.precisions, out=self.workdir / "artifacts", shape=self.shape,
            calibration=source, calib_count=cfg.images, eval_count=min(cfg.images, 16), log=self.log,
        )  # fmt: skip
        written = ", ".join(sorted(outcome.paths)) or "none"
        self.notes.append(f"ONNX files exported by this run from the checkpoint ({written}).")
        if "int8" in outcome.paths:
            where = self.images.calibration_description
            self.notes.append(f"INT8 calibrated by dlcv-export on up to {cfg.images} images of {where}.")
        rows = []
        for p in cfg.precisions:
            if p in outcome.paths:
                rows.extend(artifact_rows(outcome.paths[p], cfg.backends, cfg.device, cfg.threads, self.md))
            else:
                for cls in row_backends(_EXPORTED, cfg.backends, cfg.device):
                    failed = BenchRow(cls.name, "onnx", p, row_device(cls, cfg.device))
                    failed.fail("export", outcome.errors[p])
                    rows.append(failed)
        return rows

    def parity(self) -> None:
        """Every runnable row against the reference (row 0) on the same preprocessed batches,
        through the runtime's comparator; per-image counts for the bootstrap from its steps."""
        cfg, md = self.config, self.md
        reference = self.rows[0].instance
        assert reference is not None
        batch_size = max(cfg.batch_sizes)
        batches = [comparator.Batch(b.tensor, b.truth) for b in parity_batches(self.images, md, batch_size)]
        labelled = self.images.labels is not None
        ignore = md.ignore_index if labelled and get_task(md.task).per_pixel else None
        rows, compared = [], []
        for c in self.rows:
            if not c.runnable:
                continue
            try:
                compared.append(comparator.Candidate(c.label, c.instance, precision=c.precision, tie_margin=cfg.tie_margin))
            except Exception as exc:  # a row's failure, not the run's
                c.fail("parity", exc)
                continue
            rows.append(c)
        self.log(f"parity: {len(rows)} backends against the reference on {len(self.images.rgb)} images ({len(batches)} batches)")
        cells = ImageCellsObserver(md.num_classes, ignore)
        comparison = comparator.compare(reference, compared, batches, md, observe=cells)
        reference_cells = cells.reference.finish()
        for c, result in zip(rows, comparison.candidates):
            try:
                if result.error is not None:
                    raise result.error
                parity = parity_record(
                    result, reference_cells, cells.candidates[c.label].finish(), md.task,
                    truth_source="labels" if labelled else "reference", exclude=md.exclude_classes,
                    resamples=cfg.bootstrap, seed=cfg.seed,
                )  # fmt: skip
            except Exception as exc:  # a row's failure, not the run's
                c.fail("parity", exc)
                continue
            self.results[c.label].parity = {**parity, "parity_batch_size": batch_size}

    def latency(self, ceiling_probes: list) -> dict[str, list[float]]:
        """All runnable rows timed in interleaved rounds, batch size by batch size, with memory peaks.

        The ``ceiling_probes`` (FP32 matmuls, INT8 graphs) take part in every round, so the ceiling meets the
        same load as the backends; returns their timed seconds by library."""
        cfg = self.config
        sync = None
        if cfg.device.startswith("cuda"):
            import torch

            sync = torch.cuda.synchronize

        def before(label) -> None:
            memory.reset_peak_rss()
            memory.reset_gpu_peak()

        def after(label, outcome: TimingOutcome) -> None:
            for key, value in (("peak_rss_mb", memory.peak_rss_mb()), ("gpu_peak_mb", memory.gpu_peak_mb())):
                if value is not None:
                    outcome.extras[key] = max(outcome.extras.get(key, 0.0), value)

        ceiling_seconds: dict[str, list[float]] = {}
        for bs in cfg.batch_sizes:
            batch = latency_batch(self.images, self.md, bs, self.shape, cfg.seed)
            active = [c for c in self.rows if c.runnable]
            self.log(
                f"latency: batch {bs}, {len(active)} backends, {cfg.warmup} warm-up + {cfg.iters} timed calls "
                f"each in {cfg.rounds_used} interleaved rounds"
            )
            self._compile(active, batch, bs)
            runners = {c.label: partial(c.instance.infer, batch) for c in active}
            runners.update({(_CEILING, p.library): p for p in ceiling_probes})
            outcomes = time_interleaved(
                runners, warmup=cfg.warmup, iters=cfg.iters, rounds=cfg.rounds, sync=sync,
                before_chunk=before, after_chunk=after,
            )  # fmt: skip
            for p in ceiling_probes:
                ceiling_seconds.setdefault(p.library, []).extend(outcomes.pop((_CEILING, p.library)).samples)
            for label, outcome in outcomes.items():
                self.results[label].timing[bs] = outcome
        return ceiling_seconds

    def _compile(self, rows: list[BenchRow], batch, bs: int) -> None:
        """Rows that compile once per input shape (torch.compile: their backend keeps
        ``compile_seconds``) are called once at this batch's shape before the warm-up, so the
        compilation is never timed as latency (even with --warmup 0); its seconds are kept
        apart as ``compile_s``."""
        for c in rows:
            seconds = getattr(c.instance, "compile_seconds", None)
            if seconds is None:
                continue
            if tuple(batch.shape) not in seconds:
                self.log(f"compiling {c.label} for {'x'.join(map(str, batch.shape))} (once per input shape)")
                try:
                    c.instance.infer(batch)
                except Exception as exc:  # a row's failure, not the run's
                    c.fail(f"compile at batch {bs}", exc)
                    continue
            self.results[c.label].compile_s[bs] = seconds[tuple(batch.shape)]

    def compile_note(self) -> str | None:
        """How long torch.compile's compilations took, kept apart from the latency."""
        for c in self.rows:
            seconds = getattr(c.instance, "compile_seconds", None)
            if seconds:
                shapes = ", ".join(f"{'x'.join(map(str, k))} {v:.1f} s" for k, v in seconds.items())
                return (f"{c.label}: compiled once per input shape (parity and latency shapes: {shapes}; first call, "
                        "compilation included); reported as compile_s, never timed as latency.")  # fmt: skip
        return None

    def end_to_end(self) -> None:
        """The pipeline split of PyTorch eager and every model-file row, at the largest batch size."""
        files = list(self.images.files[: self.config.e2e_images])
        if not files:
            return
        batch_size = min(max(self.config.batch_sizes), len(files))
        for c in self.rows:
            if not c.runnable or (c.backend == "torch" and c.variant != "eager"):
                continue
            self.log(f"end-to-end split: {c.label} on {len(files)} image files, batch {batch_size}")
            out = self.workdir / "e2e" / c.label.replace(" ", "_")
            try:
                self.results[c.label].e2e = time_pipeline(c.instance, files, batch_size, out)
            except Exception as exc:
                c.fail("end-to-end", exc)

    def records(self, name: str, machine: dict, flops: int | None) -> list[dict]:
        """One flat record per row × batch size."""
        cfg, md = self.config, self.md
        latency = self._latency_stats()
        records = []
        for c in self.rows:
            r = self.results[c.label]
            for bs in cfg.batch_sizes:
                fields = dict(
                    name=name, arch=md.arch, task=md.task, label=c.label, backend=c.backend,
                    backend_version=backend_version(c.backend), variant=c.variant,
                    precision=c.precision, artifact=str(c.artifact) if c.artifact else None,
                    default_backend=c.default_backend, device=c.device,
                    batch_size=bs, input_height=self.shape[0], input_width=self.shape[1], skipped=c.skipped,
                    open_rss_mb=c.open_rss_mb, model_gflop_per_image=flops / 1e9 if flops else None,
                )  # fmt: skip
                fields.update(machine)
                errors = list(c.errors)
                outcome = r.timing.get(bs)
                if outcome is not None and outcome.error is not None:
                    errors.append(f"latency at batch {bs}: {outcome.error}")
                stats = latency.get(bs, {}).get(c.label)
                if stats is not None:
                    fields.update(stats, warmup_calls=cfg.warmup, rounds=cfg.rounds_used)
                    fields.update(outcome.extras)
                    fields.update(self._speedups(stats, latency[bs]))
                    ceiling, kind = row_ceiling(c.precision, machine)
                    fields.update(achieved(flops, stats["throughput_img_s"], ceiling), ceiling_kind=kind)
                fields.update(r.parity)
                if bs in r.compile_s:
                    fields["compile_s"] = r.compile_s[bs]
                if r.e2e and r.e2e.get("e2e_batch_size") == bs:
                    fields.update(r.e2e)
                fields["error"] = "; ".join(errors) or None
                records.append(make_record(fields))
        return records

    def _latency_stats(self) -> dict[int, dict[str, dict]]:
        """batch size -> row label -> latency summary, for the rows timed without error."""
        out: dict[int, dict[str, dict]] = {}
        for c in self.rows:
            for bs, outcome in self.results[c.label].timing.items():
                if outcome.samples and outcome.error is None:
                    out.setdefault(bs, {})[c.label] = summarize(outcome.samples, bs)
        return out

    def _speedups(self, stats: dict, same_batch: dict[str, dict]) -> dict:
        """p50 ratios against PyTorch eager and against the fastest PyTorch row at the same batch size."""
        torch_rows = [c for c in self.rows if c.backend == "torch" and c.artifact is None and c.label in same_batch]
        eager = next((same_batch[c.label] for c in torch_rows if c.variant == "eager"), None)
        best = min((same_batch[c.label]["latency_p50_ms"] for c in torch_rows), default=None)
        p50 = stats["latency_p50_ms"]
        return {
            "speedup_vs_torch_eager": eager["latency_p50_ms"] / p50 if eager and p50 > 0 else None,
            "speedup_vs_best_torch": best / p50 if best and p50 > 0 else None,
        }


def run_benchmark(config: BenchConfig, log: Log | None = None, command: str | None = None) -> BenchResult:
    """Measure, then write ``<out>/<name>/`` (report.md, results.json, PNG plots); see the module docstring."""
    import torch

    from .report import write_outputs
    from .torch_variants import use_true_fp32

    log = log or _silent
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise DlcvError(f"--device {config.device} was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if config.threads:
        torch.set_num_threads(config.threads)
    use_true_fp32()
    ckpt, md = _load_reference_metadata(config.checkpoint)
    notes: list[str] = []
    note = (ckpt.get("metrics") or {}).get("note")
    if note:
        notes.append(f"Checkpoint note: {note}")
    if config.note:
        notes.append(config.note)
    machine = machine_info(config.device)
    log(
        f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, GPU {machine['gpu'] or 'none'}; "
        f"load {machine['load_average_1min']}"
    )
    fp32_probes = ceiling_probes(config.device, config.ceiling_size)
    int8 = int8_probes(config.device, config.ceiling_size, config.threads)
    probes = fp32_probes + int8
    ceiling_seconds = {p.library: matmul_seconds(p) for p in probes}
    first = ceiling_fields({p.library: ceiling_seconds[p.library] for p in fp32_probes}, config.device, config.ceiling_size)
    log(f"FP32 matmul ceiling: {first['ceiling_fp32_gflop_s']:.1f} GFLOP/s; {machine['cpu_isa']}")
    if int8:
        first = int8_ceiling_fields(ceiling_seconds, int8)
        log(f"INT8 ceiling: {first['ceiling_int8_gop_s']:.1f} GOP/s ({first['ceiling_int8_probes']})")

    with tempfile.TemporaryDirectory(prefix="dlcv-bench-") as tmp:
        workdir = Path(tmp)
        shape = _latency_shape(config, md)
        images = load_images(
            config.data, md, count=config.images, shape=shape or DEFAULT_SHAPE, seed=config.seed, workdir=workdir
        )
        shape = shape or (natural_shape(images, md) if config.data is not None else DEFAULT_SHAPE)
        notes.extend(images.notes)
        name = config.name or f"{md.arch}-{shape[0]}x{shape[1]}-{config.device.replace(':', '')}"
        log(f"images: {images.description}; latency input {shape[0]}×{shape[1]}")

        run = BenchmarkRun(config, md, images, shape, workdir, log, notes)
        run.rows = _torch_candidates(config) + run.file_candidates()
        try:
            for c in run.rows:
                c.open()
            assign_labels(run.rows)
            if run.rows[0].instance is None:
                raise DlcvError(
                    f"{config.checkpoint}: the PyTorch reference cannot run ({'; '.join(run.rows[0].errors)})"
                )
            run.results = {c.label: _RowResults() for c in run.rows}
            try:
                flops = model_flops_per_image(md.arch, md.num_classes, ckpt["arch_kwargs"], shape)
            except Exception as exc:
                flops = None
                notes.append(f"FLOPs could not be counted ({type(exc).__name__}: {first_line(exc)}).")
            run.parity()
            for library, seconds in run.latency(probes).items():
                ceiling_seconds[library] += seconds
            for p in probes:
                ceiling_seconds[p.library] += matmul_seconds(p)
            run.end_to_end()
            note = run.compile_note()
            if note:
                notes.append(note)
        finally:
            for c in run.rows:
                c.close()
        machine.update(ceiling_fields({p.library: ceiling_seconds[p.library] for p in fp32_probes}, config.device, config.ceiling_size))
        machine.update(int8_ceiling_fields(ceiling_seconds, int8))
        records = run.records(name, machine, flops)

    notes.append(f"Peak memory: {memory.peak_method()}.")
    result = BenchResult(
        config=config, name=name, out_dir=config.out / name, metadata=md, records=records, shape=shape,
        images=images.description, machine=machine, notes=notes, command=command,
    )  # fmt: skip
    result.files = write_outputs(result)
    return result
