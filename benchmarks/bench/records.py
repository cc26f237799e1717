"""The flat result record: one per backend × batch size, units in the key names.

Every record of a run has the same keys (None where a value does not apply or was not
measured): identity (``default_backend``: the backend dlcv-infer would run the row's file on,
:func:`dlcv.runtime.backends.choose_backend`), status (``error`` for a backend that failed, ``skipped`` with the
reason for one that cannot run here), latency, memory, FLOPs, parity, the end-to-end split
(on the one batch size it was measured at) and the machine. Parity is measured once per
backend and repeated on each of its batch-size records.
"""

from __future__ import annotations

from .flops import INT8_CEILING_KEYS

IDENTITY_KEYS = (
    "name", "arch", "task", "label", "backend", "backend_version", "variant", "precision", "artifact", "default_backend",
    "device", "batch_size", "input_height", "input_width",
)  # fmt: skip
STATUS_KEYS = ("error", "skipped")
LATENCY_KEYS = (
    "warmup_calls", "timed_calls", "rounds",
    "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
    "latency_std_ms", "latency_min_ms", "latency_max_ms",
    "latency_p50_ms_per_image", "latency_p90_ms_per_image", "latency_p99_ms_per_image", "latency_mean_ms_per_image",
    "throughput_img_s", "speedup_vs_torch_eager", "speedup_vs_best_torch", "compile_s",
)  # fmt: skip
MEMORY_KEYS = ("open_rss_mb", "peak_rss_mb", "gpu_peak_mb")
FLOP_KEYS = ("model_gflop_per_image", "achieved_gflop_s", "ceiling_pct", "ceiling_kind")
PARITY_KEYS = (
    "parity_images", "parity_batch_size", "parity_truth", "tie_margin",
    "max_abs_logit_error", "mean_abs_logit_error", "max_abs_reference_logit", "nonfinite_logits",
    "agreement_miou", "disagreements", "near_tie_disagreements", "near_tie_share", "bootstrap_resamples",
    "parity_gate", "parity_gate_failures",  # the row's precision gate (dlcv.runtime.precision) and how it missed it
)  # fmt: skip
TASK_PARITY_KEYS = {
    "segmentation": (
        "pixel_agreement", "miou_reference", "miou_candidate", "miou_delta", "miou_delta_ci_low", "miou_delta_ci_high",
        "per_class_iou_delta", "per_class_iou_delta_ci_low", "per_class_iou_delta_ci_high",
    ),
    "classification": (
        "top1_agreement", "top1_reference", "top1_candidate", "top1_delta", "top1_delta_ci_low", "top1_delta_ci_high",
        "per_class_accuracy_delta", "per_class_accuracy_delta_ci_low", "per_class_accuracy_delta_ci_high",
    ),
}  # fmt: skip
E2E_STAGES = ("decode", "preprocess", "inference", "postprocess", "write")
E2E_KEYS = (
    "e2e_batch_size", "e2e_images",
    *(f"e2e_{stage}_ms_per_image" for stage in E2E_STAGES),
    "e2e_total_ms_per_image", "e2e_throughput_img_s",
)  # fmt: skip
MACHINE_KEYS = (
    "cpu_model", "cpu_isa", "cpu_int8_dot", "cpu_cores", "cpu_cores_usable", "memory_gb", "load_average_1min", "torch_threads",
    "gpu", "gpu_driver", "cuda_version", "os", "python_version", "dlcv_version",
    "numpy_version", "torch_version", "torchvision_version", "onnx_version", "onnxruntime_version", "opencv_version",
    "tensorrt_version", "measured_at_utc",
    "ceiling_device", "ceiling_matmul_size", "ceiling_library", "ceiling_fp32_gflop_s", "ceiling_fp32_gflop_s_median",
    *INT8_CEILING_KEYS,
)  # fmt: skip


def record_keys(task: str) -> tuple[str, ...]:
    """Every key of a ``task`` record, in order."""
    return (
        IDENTITY_KEYS + STATUS_KEYS + LATENCY_KEYS + MEMORY_KEYS + FLOP_KEYS
        + PARITY_KEYS + TASK_PARITY_KEYS[task] + E2E_KEYS + MACHINE_KEYS
    )  # fmt: skip


def make_record(fields: dict) -> dict:
    """A record with every key of its task (``fields["task"]``), None where not given; unknown keys are a bug."""
    keys = record_keys(fields["task"])
    unknown = sorted(set(fields) - set(keys))
    if unknown:
        raise KeyError(f"not record keys: {unknown}")
    return {key: fields.get(key) for key in keys}
