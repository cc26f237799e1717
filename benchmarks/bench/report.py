"""The outputs of a run: ``results.json`` (the flat records), ``report.md`` (tables) and PNG plots.

Every file is written atomically. Plots use matplotlib's Agg backend (no display needed):
``latency_vs_batch.png`` (per-image p50 latency and throughput against batch size, one line
per backend), ``per_class_delta.png`` (per-class IoU or accuracy delta against PyTorch
FP32 with its 95 % interval, one bar group per class) and ``e2e_split.png`` (where the
file-to-file pipeline spends its time).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from dlcv.runtime.atomic import atomic_path, write_text_atomic
from dlcv.runtime.task import get_task

from .records import E2E_STAGES

if TYPE_CHECKING:
    from .run import BenchResult

RESULTS_JSON = "results.json"
REPORT_MD = "report.md"
LATENCY_PNG = "latency_vs_batch.png"
DELTA_PNG = "per_class_delta.png"
E2E_PNG = "e2e_split.png"

NOISY_MACHINE_NOTE = (
    "All backends were measured side by side in this one run, timed in interleaved rounds (each round gives every "
    "backend its turn), so a slow spell of a shared machine slows them alike: compare the ratios (speed-up columns) "
    "rather than absolute milliseconds, which drift with the machine's load."
)


def fmt(value, digits: int = 2, percent: bool = False, sci: bool = False) -> str:
    """A table cell: None/NaN -> "–"; floats fixed-point, as a percentage, or (``sci``) in
    scientific notation when small (logit errors)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if percent:
            return f"{100 * value:.{digits}f} %"
        if sci and value != 0 and abs(value) < 0.01:
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_delta(value, low, high, scale: float = 100.0) -> str:
    """``+0.12 [−0.05, +0.30]`` in points (metric × 100)."""
    if value is None:
        return "–"
    text = f"{scale * value:+.2f}"
    if low is not None and high is not None:
        text += f" [{scale * low:+.2f}, {scale * high:+.2f}]"
    return text


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric(task: str) -> tuple[str, str, str, str]:
    """(agreement key, delta key prefix, metric title, per-class title) of a task."""
    kind = get_task(task)
    return kind.agreement_key, kind.headline_key, kind.headline_name, kind.per_class_name


def _by_label(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["label"], []).append(r)
    return out


def _first(records: list[dict], key: str):
    return next((r[key] for r in records if r.get(key) is not None), None)


def _times(value) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _agreement_cell(r: dict, agree_key: str) -> str:
    if r[agree_key] is not None:
        return fmt(r[agree_key], 3, percent=True)
    return "error" if r["error"] else "–"


def _delta_cell(r: dict, metric: str) -> str:
    return fmt_delta(r[f"{metric}_delta"], r[f"{metric}_delta_ci_low"], r[f"{metric}_delta_ci_high"])


def headline_table(result: "BenchResult") -> str:
    """Backend, precision, latency (smallest batch), throughput and speed-up over the fastest PyTorch row
    (largest batch), metric delta, agreement."""
    agree_key, m, title, _ = _metric(result.metadata.task)
    small, large = min(result.config.batch_sizes), max(result.config.batch_sizes)
    header = [
        "backend", "precision", f"latency p50 ms (batch {small})", f"throughput img/s (batch {large})",
        f"p50 speed-up vs fastest PyTorch (batch {large})", f"{title} Δ points [95% CI]", "agreement",
    ]  # fmt: skip
    rows = []
    for label, recs in _by_label(result.records).items():
        first, at = recs[0], {r["batch_size"]: r for r in recs}
        if first["skipped"]:
            continue
        backend = label.replace(f" {first['precision']}", "", 1)
        rows.append([
            backend, first["precision"], fmt(at[small]["latency_p50_ms"], 1), fmt(at[large]["throughput_img_s"], 2),
            _times(at[large]["speedup_vs_best_torch"]), _delta_cell(first, m), _agreement_cell(first, agree_key),
        ])  # fmt: skip
    return table(header, rows)


def _preference_of(backend: str, precision: str, device: str):
    """The measured preference that makes ``backend`` the default for ``precision`` files (or None)."""
    from dlcv.runtime.backends import backends

    cls = backends().get(backend)
    base = device.split(":", 1)[0]
    return next((p for p in (cls.preferred_for if cls else ()) if p.precision == precision and p.device == base), None)


def peer_sentences(result: "BenchResult") -> list[str]:
    """Per model file run on several backends: which backend was fastest at each batch size
    (p50 latency, the same input, side by side), said against dlcv's default backend for that
    file (what dlcv-infer runs it on: ``default_backend``)."""
    by_file: dict[str, list[dict]] = {}
    for r in result.records:
        if r["artifact"] and r["default_backend"] and r["latency_p50_ms"] is not None and not r["error"]:
            by_file.setdefault(r["artifact"], []).append(r)
    sentences = []
    for artifact, recs in by_file.items():
        name = artifact if "://" in artifact else Path(artifact).name
        default, precision, device = recs[0]["default_backend"], recs[0]["precision"], recs[0]["device"]
        backends_run = {r["backend"] for r in recs}
        if len(backends_run) < 2:
            continue
        preference = _preference_of(default, precision, device)
        why = f"dlcv's default for {precision} files on the {device.split(':')[0]}, by measurement" if preference else "dlcv's default"
        if default not in backends_run:
            sentences.append(f"{name}: dlcv's default backend for it, {default}, was not run (--backends).")
            continue
        wins: dict[str, list[str]] = {}
        for bs in sorted({r["batch_size"] for r in recs}):
            at = {r["backend"]: r["latency_p50_ms"] for r in recs if r["batch_size"] == bs}
            if default not in at or len(at) < 2:
                continue
            fastest = min(at, key=at.get)
            if fastest == default:
                runner_up = min((b for b in at if b != default), key=at.get)
                wins.setdefault(default, []).append(f"{at[runner_up] / at[default]:.2f}× {runner_up} at batch {bs}")
            else:
                wins.setdefault(fastest, []).append(f"{at[default] / at[fastest]:.2f}× at batch {bs}")
        for backend, parts in wins.items():
            if backend == default:
                sentences.append(f"{default} ({why}) runs {name} fastest of its backends: {'; '.join(parts)} (p50 latency).")
            else:
                note = "; this run does not confirm that preference" if preference else ""
                sentences.append(
                    f"{backend} runs {name} faster than {default} ({why}{note}): {'; '.join(parts)} (p50 latency)."
                )
    return sentences


def _latency_table(records: list[dict]) -> str:
    header = [
        "backend", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "p50 ms/img", "img/s", "p50 × eager",
        "p50 × best torch", "peak RSS MB", "open RSS MB", "GFLOP/s (INT8: GOP/s)", "compile s", "% of ceiling",
    ]  # fmt: skip
    columns = (
        ("latency_p50_ms", 1), ("latency_p90_ms", 1), ("latency_p99_ms", 1), ("latency_mean_ms", 1),
        ("latency_p50_ms_per_image", 2), ("throughput_img_s", 2), ("speedup_vs_torch_eager", 2),
        ("speedup_vs_best_torch", 2), ("peak_rss_mb", 0), ("open_rss_mb", 0), ("achieved_gflop_s", 1),
        ("compile_s", 1),
    )  # fmt: skip
    rows = [
        [r["label"], r["batch_size"], *(fmt(r[key], digits) for key, digits in columns), _ceiling_cell(r)]
        for r in records
        if r["latency_p50_ms"] is not None
    ]
    return table(header, rows)


def _ceiling_cell(r: dict) -> str:
    """``41.2 (int8)``: the share of the ceiling of the row's precision, which ceiling it is."""
    if r["ceiling_pct"] is None:
        return "–"
    return f"{r['ceiling_pct']:.1f} ({r['ceiling_kind'] or 'fp32'})"


def _parity_table(result: "BenchResult") -> str:
    agree_key, m, title, _ = _metric(result.metadata.task)
    header = [
        "backend", "images", "truth", "max abs logit err", "mean abs logit err", "agreement", "agreement mIoU",
        "disagreements", "near-tie share (margin)", f"{title} reference", f"{title} backend", f"{title} Δ points [95% CI]",
    ]  # fmt: skip
    rows = []
    for label, recs in _by_label(result.records).items():
        r = recs[0]
        if r["parity_images"] is None:
            continue
        near_tie = f"{fmt(r['near_tie_share'], 1, percent=True)} ({r['tie_margin']:g})"
        rows.append([
            label, r["parity_images"], r["parity_truth"], fmt(r["max_abs_logit_error"], 3, sci=True),
            fmt(r["mean_abs_logit_error"], 3, sci=True), fmt(r[agree_key], 4, percent=True), fmt(r["agreement_miou"], 4),
            r["disagreements"], near_tie, fmt(r[f"{m}_reference"], 4), fmt(r[f"{m}_candidate"], 4), _delta_cell(r, m),
        ])  # fmt: skip
    return table(header, rows)


def _per_class_table(result: "BenchResult") -> str | None:
    _, _, _, per_class = _metric(result.metadata.task)
    key = f"per_class_{get_task(result.metadata.task).per_class_key}_delta"
    columns = [(label, recs[0]) for label, recs in _by_label(result.records).items() if recs[0][key] is not None]
    columns = [(label, r) for label, r in columns if not (r["backend"] == "torch" and r["variant"] == "eager")]
    if not columns:
        return None
    names = result.metadata.class_names
    scored = _scored_classes([r for _, r in columns], key)
    rows = [
        [f"{i} {names[i]}"] + [fmt_delta(r[key][i], r[key + "_ci_low"][i], r[key + "_ci_high"][i]) for _, r in columns]
        for i in scored
    ]
    header = ["class"] + [f"{label}: {per_class} Δ points [95% CI]" for label, _ in columns]
    unscored = len(names) - len(scored)
    note = f"\n\n{unscored} classes occur neither in the truth nor in any prediction and have no Δ." if unscored else ""
    return table(header, rows) + note


def _scored_classes(records: list[dict], key: str) -> list[int]:
    """Classes with a per-class delta in at least one record (the others occur nowhere)."""
    return [i for i in range(len(records[0][key])) if any(r[key][i] is not None for r in records)]


def _e2e_table(records: list[dict]) -> str | None:
    rows = []
    for r in records:
        total = r["e2e_total_ms_per_image"]
        if total is None:
            continue
        share = r["e2e_inference_ms_per_image"] / total if total else None
        stages = [fmt(r[f"e2e_{s}_ms_per_image"], 2) for s in E2E_STAGES]
        rows.append([
            r["label"], r["e2e_batch_size"], r["e2e_images"], *stages, fmt(total, 2), fmt(r["e2e_throughput_img_s"], 2),
            fmt(share, 0, percent=True),
        ])  # fmt: skip
    if not rows:
        return None
    header = [
        "backend",
        "batch",
        "images",
        *(f"{s} ms/img" for s in E2E_STAGES),
        "total ms/img",
        "img/s",
        "inference share",
    ]
    return table(header, rows)


def _problems(records: list[dict]) -> list[str]:
    out = []
    for label, recs in _by_label(records).items():
        if recs[0]["skipped"]:
            out.append(f"- **{label}**: skipped: {recs[0]['skipped']}")
        for r in recs:
            if r["error"]:
                out.append(f"- **{label}** (batch {r['batch_size']}): error: {r['error']}")
    return out


VERSION_KEYS = (
    "torch_version", "torchvision_version", "onnxruntime_version", "onnx_version", "opencv_version", "numpy_version",
    "tensorrt_version", "dlcv_version", "python_version", "os", "torch_threads",
)  # fmt: skip


def _introduction(result: "BenchResult") -> list[str]:
    md, cfg, mach = result.metadata, result.config, result.machine
    h, w = result.shape
    gpu = f"{mach['gpu']} (driver {mach['gpu_driver']}, CUDA {mach['cuda_version']})" if mach.get("gpu") else "no GPU"
    cores = f"{mach['cpu_cores']} cores, {mach['cpu_cores_usable']} usable, {mach['memory_gb']} GB"
    parts = [
        f"# dlcv-bench: {result.name}",
        "",
        f"{md.arch} ({md.task}, {md.num_classes} classes) from `{cfg.checkpoint}`; input {h}×{w}, device `{cfg.device}`. "
        f"Measured {mach['measured_at_utc']} on {mach['cpu_model']} ({cores}), {gpu}; "
        f"load average at the start {mach['load_average_1min']}.",
        "",
        f"CPU instruction sets: {mach.get('cpu_isa') or 'unknown'}; fastest INT8 multiply-add: "
        f"{mach.get('cpu_int8_dot') or 'unknown'}.",
        "",
        f"> {NOISY_MACHINE_NOTE}",
        "",
        f"Images: {result.images}. Timing: {cfg.warmup} warm-up calls, then {cfg.iters} timed calls per backend and "
        f"batch size in {cfg.rounds_used} interleaved rounds; latency is one `infer(batch)` call, numpy in and out "
        "(host-device copies included on a GPU).",
    ]
    return parts


def _delta_explanation(result: "BenchResult") -> str:
    cfg = result.config
    _, _, title, _ = _metric(result.metadata.task)
    if _first(result.records, "parity_truth") == "labels":
        truth = "Truth: the dataset's labels."
    else:
        truth = "No labels: the reference's own labels are the truth, so Δ is the loss of agreement (≤ 0)."
    return (
        f"Δ is the backend's {title} minus PyTorch FP32's on the same images, in points (×100), with a paired "
        f"bootstrap 95 % interval over images ({cfg.bootstrap} resamples, seed {cfg.seed}). {truth}"
    )


def _ceiling_explanation(result: "BenchResult") -> str | None:
    mach = result.machine
    ceiling = mach.get("ceiling_fp32_gflop_s")
    if not ceiling:
        return None
    text = (
        f"Machine ceiling, measured in this run (before, during, interleaved with the backends, and after the "
        f"timed calls): FP32 matrix multiply ({mach['ceiling_matmul_size']}² on {mach['ceiling_device']}, fastest "
        f"library {mach['ceiling_library']}) {ceiling:.1f} GFLOP/s best call, "
        f"{mach['ceiling_fp32_gflop_s_median']:.1f} median. "
    )
    flops = _first(result.records, "model_gflop_per_image")
    if flops:
        text += (
            f"Model: {flops:.2f} GFLOP per image at {result.shape[0]}×{result.shape[1]} (convolutions and matrix "
            "multiplies, counted once by torch.utils.flop_counter). "
        )
    int8 = mach.get("ceiling_int8_gop_s")
    if int8:
        text += (
            f"INT8 ceiling, measured alongside: onnxruntime integer graphs built in code, "
            f"{mach['ceiling_int8_types']}; best {int8:.1f} GOP/s ({mach['ceiling_int8_probe']}), "
            f"{mach['ceiling_int8_gop_s_median']:.1f} median; each probe's best: {mach['ceiling_int8_probes']}. "
        )
    return text + (
        "GFLOP/s = model FLOPs × images/s (an INT8 row does the same multiply-adds in integers: GOP/s); % of ceiling = "
        "that over the ceiling of the row's precision (INT8 rows: the INT8 ceiling where one was measured, every "
        "other row: the FP32 one). The ceilings are measured, not theoretical: FP16 rows (and INT8 rows without an "
        "INT8 ceiling) can exceed 100 %, and on a loaded machine a row can come out slightly above its ceiling."
    )


PEERS_EXPLANATION = (
    "dlcv's default is the backend `dlcv-infer --engine FILE` runs the file on without `--backend` (the suffix's "
    "default, or a backend a committed measurement prefers for the file's precision where it is installed: "
    "`dlcv.runtime.backends.choose_backend`). Ratios are p50 latencies of the same input in this run's "
    "interleaved rounds."
)

E2E_EXPLANATION = (
    "The runtime's own functions on image files, one thread, stage by stage (decode: read_image; preprocess: "
    "preprocess_image; inference: backend.infer; postprocess: labels restored and colourised, or top-5; write: "
    "PNGs or prediction lines). dlcv-infer overlaps decoding with inference in worker threads."
)


def render_report(result: "BenchResult", plots: dict[str, Path]) -> str:
    """The Markdown report."""
    recs = result.records
    _, _, _, per_class = _metric(result.metadata.task)
    parts = _introduction(result)
    parts += ["", "## Headline", "", headline_table(result), "", _delta_explanation(result)]
    peers = peer_sentences(result)
    if peers:
        parts += ["", "## Peers: which backend for which file", "", *(f"- {p}" for p in peers), "",
                  PEERS_EXPLANATION]  # fmt: skip
    parts += ["", "## Latency", "", _latency_table(recs), ""]
    ceiling = _ceiling_explanation(result)
    if ceiling:
        parts += [ceiling, ""]
    if LATENCY_PNG in plots:
        parts += [f"![latency vs batch size]({plots[LATENCY_PNG].name})", ""]
    parts += ["## Parity against PyTorch eager FP32", "", _parity_table(result), ""]
    per_class_table = _per_class_table(result)
    if per_class_table:
        parts += [f"### Per-class {per_class} Δ", "", per_class_table, ""]
    if DELTA_PNG in plots:
        parts += [f"![per-class delta]({plots[DELTA_PNG].name})", ""]
    e2e = _e2e_table(recs)
    if e2e:
        parts += ["## End-to-end split", "", E2E_EXPLANATION, "", e2e, ""]
        if E2E_PNG in plots:
            parts += [f"![end-to-end split]({plots[E2E_PNG].name})", ""]
    problems = _problems(recs)
    if problems:
        parts += ["## Skipped and failed", "", *problems, ""]
    if result.notes:
        parts += ["## Notes", "", *(f"- {n}" for n in result.notes), ""]
    versions = [[k, fmt(result.machine.get(k))] for k in VERSION_KEYS]
    parts += ["## Machine and versions", "", table(["", "value"], versions), ""]
    if result.command:
        parts += ["## Command", "", "```", result.command, "```", ""]
    return "\n".join(parts)


# --- plots ------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically and close it (pyplot keeps every open figure alive)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def plot_latency(records: list[dict], path: Path, title: str) -> Path | None:
    """Per-image p50 latency and throughput against batch size, one line per backend."""
    series = {label: [r for r in recs if r["latency_p50_ms"] is not None] for label, recs in _by_label(records).items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, recs in series.items():
        bs = [r["batch_size"] for r in recs]
        left.plot(bs, [r["latency_p50_ms_per_image"] for r in recs], marker="o", label=label)
        right.plot(bs, [r["throughput_img_s"] for r in recs], marker="o", label=label)
    for ax, ylabel in ((left, "p50 latency per image (ms)"), (right, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ticks = sorted({r["batch_size"] for recs in series.values() for r in recs})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    left.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_per_class_delta(
    records: list[dict], class_names: Sequence[str], task: str, path: Path, title: str
) -> Path | None:
    """Per-class delta bars with 95 % intervals, one bar per backend within each class group."""
    key = f"per_class_{get_task(task).per_class_key}_delta"
    rows = [
        recs[0] for recs in _by_label(records).values()
        if recs[0][key] is not None and not (recs[0]["backend"] == "torch" and recs[0]["variant"] == "eager")
    ]  # fmt: skip
    if not rows:
        return None
    plt = _pyplot()
    classes = _scored_classes(rows, key)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * n * max(1, len(rows)) ** 0.5 + 2), 4.2))
    width = 0.8 / len(rows)
    for j, r in enumerate(rows):
        xs = [k - 0.4 + width * (j + 0.5) for k in range(n)]
        values, low, high = [], [], []
        for c in classes:
            v, lo, hi = r[key][c], r[key + "_ci_low"][c], r[key + "_ci_high"][c]
            values.append(float("nan") if v is None else 100 * v)
            low.append(0.0 if v is None or lo is None else 100 * (v - lo))
            high.append(0.0 if v is None or hi is None else 100 * (hi - v))
        ax.bar(xs, values, width=width, yerr=[low, high], capsize=2, label=r["label"])
    ax.axhline(0.0, color="black", linewidth=0.8)
    names = [class_names[c] for c in classes]
    ax.set_xticks(range(n), names, rotation=60 if n > 8 else 0, ha="right" if n > 8 else "center", fontsize=8)
    metric = get_task(task).per_class_name
    truth = "dataset labels" if rows[0]["parity_truth"] == "labels" else "PyTorch labels as truth"
    ax.set_ylabel(f"{metric} Δ vs PyTorch FP32 (points)\n95 % bootstrap CI; {truth}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_e2e(records: list[dict], path: Path, title: str) -> Path | None:
    """Stacked per-image milliseconds of each pipeline stage, one bar per backend."""
    rows = [r for r in records if r["e2e_total_ms_per_image"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    left = [0.0] * len(rows)
    for stage in E2E_STAGES:
        values = [r[f"e2e_{stage}_ms_per_image"] for r in rows]
        ax.barh([r["label"] for r in rows], values, left=left, label=stage)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("milliseconds per image")
    ax.legend(fontsize=8, ncol=len(E2E_STAGES), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_title(title)
    return _save(fig, path)


def write_outputs(result: "BenchResult") -> dict[str, Path]:
    """results.json, the plots and report.md under ``result.out_dir``; returns the paths by file name."""
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    records = [_json_safe(r) for r in result.records]
    write_text_atomic(out / RESULTS_JSON, json.dumps(records, indent=1, allow_nan=False, default=_json_default) + "\n")
    files[RESULTS_JSON] = out / RESULTS_JSON
    title = f"{result.name} ({result.machine['cpu_model'] if not result.machine.get('gpu') else result.machine['gpu']})"
    for name, made in (
        (LATENCY_PNG, plot_latency(result.records, out / LATENCY_PNG, title)),
        (
            DELTA_PNG,
            plot_per_class_delta(
                result.records, result.metadata.class_names, result.metadata.task, out / DELTA_PNG, title
            ),
        ),
        (E2E_PNG, plot_e2e(result.records, out / E2E_PNG, title)),
    ):
        if made is not None:
            files[name] = made
        elif (out / name).exists():
            (out / name).unlink()  # a stale plot of an earlier run would contradict this report
    write_text_atomic(out / REPORT_MD, render_report(result, files) + "\n")
    files[REPORT_MD] = out / REPORT_MD
    return files


def _json_safe(value):
    """NaN and infinities (not JSON) become None, inside lists too."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
