"""INT8 on the CPU (issue 14, items 1-2): the machine's INT8 ceiling, where dlcv's INT8 file spends its
time, what each change of the INT8 writer bought, and what it costs in mIoU.

    python benchmarks/studies/int8_study.py                       # ~40 min on 2 busy cores
    python benchmarks/studies/int8_study.py --quick --out /tmp/s  # a narrow model at 64², to check the script

Writes ``<out>/results.json`` and ``<out>/report.md`` (default ``benchmarks/results/int8-study``).

Speed (the full-size course FCN8s, 12 classes, seeded random weights from
``dlcv.bench.random_checkpoint``; 256² and 512², batch 1 and 4): onnxruntime FP32 (dlcv's
default), dlcv's INT8 file before this change and after it, each on onnxruntime and on OpenVINO
(dlcv's backends), and the ceiling probes of :mod:`dlcv.bench.flops`, all timed in interleaved
rounds (every runner takes its turn in each round, so the load of a shared machine hits them
alike); medians. The INT8 files are calibrated on 64 demo images (``--calib-count``). "Before" is
the writer of main before this change, rebuilt here with the same onnxruntime options
(:func:`legacy_int8`): int8 symmetric activations and weights, Q/DQ on Conv/ConvTranspose only.
An ablation at 256² and 512², batch 1, adds the changes one at a time.

Profiles: onnxruntime's profiler (``SessionOptions.enable_profiling``) on the before and after
files, time by op type and the top layers with their GOP/s.

Accuracy (the trained demo FCN8s: ``--demo-checkpoint``, and the reference demo run where it
exists): every calibration method x (before, after with every layer INT8, after as written,
after in TensorRT's signed form run on onnxruntime, after on OpenVINO), against PyTorch FP32 on
the 150 demo val images, calibrated on 64 demo train images as the README does; and the
per-layer sensitivity sweep (``dlcv-export --int8-sensitivity``) for the default method.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from dlcv.runtime.markdown import table

DEMO_CHECKPOINT = Path("runs/demo-fcn8s/best.pt")  # what `make demo` trains
SHAPES = ((256, 1), (256, 4), (512, 1), (512, 4))
ABLATION_SHAPES = ((256, 1), (512, 1))


# --------------------------------------------------------------------------- the graphs


def legacy_int8(fp32_path: Path, md, tensors, method: str = "percentile", activations: str = "int8") -> onnx.ModelProto:
    """main's INT8 writer before issue 14 (activations ``int8``: signed symmetric), or the same
    graph with only the types changed (``uint8``: asymmetric activations)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from dlcv.export.graph import finalize_graph
    from dlcv.export.int8 import _reader

    signed = activations == "int8"
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    options = {"ActivationSymmetric": signed, "WeightSymmetric": True, "QuantizeBias": False,
               "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1}, "CalibPercentile": 99.999,
               "CalibTensorRangeSymmetric": signed, "CalibStridedMinMax": 1}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        out = Path(tmp) / "legacy.onnx"
        quantize_static(str(fp32_path), str(out), _reader(tensors, md.input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "ConvTranspose"],
                        calibrate_method=methods[method], extra_options=options)  # fmt: skip
        proto = onnx.load(str(out))
    return finalize_graph(proto, md.with_(precision="int8"))


def export_fp32(checkpoint: Path, out: Path):
    from dlcv.export import ExportConfig, export_onnx

    result = export_onnx(ExportConfig(checkpoint=checkpoint, out=out))
    return result.onnx_path, result.metadata


def calibration(md, count: int, plain_folder: bool):
    from dlcv.export.int8 import calibration_paths, calibration_tensors
    from dlcv.train.data.demo import demo_root

    root = demo_root("segmentation")
    paths, _ = calibration_paths(root / "train" if plain_folder else root, count, None if plain_folder else md.dataset)
    return calibration_tensors(paths, md)


def save(proto: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(proto, str(path))
    return path


def speed_files(fp32: Path, md, tensors, work: Path, log) -> dict[str, Path]:
    """The INT8 files of the speed part: before, the ablation steps, after (the file dlcv writes)."""
    from dlcv.export.int8 import quantize_all

    files = {}
    log("  before (int8 symmetric activations, Conv/ConvTranspose only)")
    files["before"] = save(legacy_int8(fp32, md, tensors, "minmax", "int8"), work / "before.onnx")
    log("  + uint8 activations (types only)")
    files["+ U8S8 types"] = save(legacy_int8(fp32, md, tensors, "minmax", "uint8"), work / "u8.onnx")
    log("  + ReLU/MaxPool/Add quantized, weighted layers' outputs left to their consumers (every layer INT8)")
    unpadded = quantize_all(fp32, md, tensors, method="minmax", pad_channels=False)
    files["+ integer ReLU/pool/add chain"] = save(unpadded.finish(md, (), transposed_as_conv=False), work / "ops.onnx")
    log("  + first convolution's input padded to 4 channels")
    after = quantize_all(fp32, md, tensors, method="minmax")
    files["+ 4-channel input pad"] = save(after.finish(md, (), transposed_as_conv=False), work / "pad.onnx")
    files["+ logits layer FP32"] = save(after.finish(md, transposed_as_conv=False), work / "logits.onnx")
    files["after"] = save(after.finish(md), work / "after.onnx")  # + FP32 ConvTranspose as Conv + DepthToSpace
    return files


# --------------------------------------------------------------------------- speed


def mosaic(side: int, batch: int, md) -> np.ndarray:
    """``batch`` preprocessed side×side images tiled from the 64² demo val images (natural digit scale)."""
    from dlcv.runtime.imageio import read_image
    from dlcv.runtime.preprocess import preprocess_image
    from dlcv.train.data.demo import demo_root

    paths = sorted((demo_root("segmentation") / "val").glob("*.png"))
    tiles = side // 64 + 1
    out, k = [], 0
    for _ in range(batch):
        canvas = np.zeros((tiles * 64, tiles * 64, 3), np.uint8)
        for i in range(tiles):
            for j in range(tiles):
                canvas[i * 64 : (i + 1) * 64, j * 64 : (j + 1) * 64] = read_image(paths[k % len(paths)])
                k += 1
        out.append(preprocess_image(np.ascontiguousarray(canvas[:side, :side]), md.preprocess)[0])
    return np.stack(out)


def time_rows(runners: dict, probes: list, batch: np.ndarray, iters: int, rounds: int, log) -> tuple[dict, dict]:
    """Median seconds per runner (runners: label -> backend) and the probes' samples, interleaved."""
    from dlcv.bench.timing import time_interleaved

    calls = {label: (lambda b=backend: b.infer(batch)) for label, backend in runners.items()}
    calls.update({("probe", p.library): p for p in probes})
    outcomes = time_interleaved(calls, warmup=1, iters=iters, rounds=rounds)
    errors = {k: o.error for k, o in outcomes.items() if o.error}
    if errors:
        log(f"  errors: {errors}")
    medians = {k: float(np.median(o.samples)) for k, o in outcomes.items() if isinstance(k, str) and o.samples}
    probe_samples = {k[1]: o.samples for k, o in outcomes.items() if not isinstance(k, str)}
    return medians, probe_samples


def speed(checkpoint: Path, fp32: Path, files: dict[str, Path], md, shapes, ablation_shapes, iters, rounds, log) -> dict:
    from dlcv.bench.flops import ceiling_fields, ceiling_probes, int8_ceiling_fields, int8_probes, model_flops_per_image
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dlcv.runtime.backends.openvino_backend import OpenVINOBackend
    from dlcv.train.checkpoint import load_checkpoint

    kwargs = load_checkpoint(checkpoint)["arch_kwargs"]
    fp32_probes, i8_probes = ceiling_probes("cpu"), int8_probes("cpu")
    probe_seconds: dict[str, list] = collections.defaultdict(list)
    records = []
    plans = [("headline", s, b, {"onnxruntime fp32": ("ort", fp32), "onnxruntime int8 before": ("ort", files["before"]),
                                  "onnxruntime int8 after": ("ort", files["after"]), "openvino int8 before": ("ov", files["before"]),
                                  "openvino int8 after": ("ov", files["after"])}) for s, b in shapes]  # fmt: skip
    ablation = {"onnxruntime fp32": ("ort", fp32)}
    for name, path in files.items():
        ablation[f"onnxruntime {name}"] = ("ort", path)
        if name in ("before", "after"):
            ablation[f"openvino {name}"] = ("ov", path)
    plans += [("ablation", s, b, ablation) for s, b in ablation_shapes]
    for part, side, bs, rows in plans:
        log(f"{part}: {side}x{side} batch {bs}, {len(rows)} rows + {len(fp32_probes) + len(i8_probes)} ceiling probes")
        flops = model_flops_per_image(md.arch, md.num_classes, kwargs, (side, side))
        batch = mosaic(side, bs, md)
        opened = {label: (OnnxRuntimeBackend(p) if kind == "ort" else OpenVINOBackend(p)) for label, (kind, p) in rows.items()}
        try:
            labels = {label: b.infer(batch).argmax(1) for label, b in opened.items()}
            medians, samples = time_rows(opened, fp32_probes + i8_probes, batch, iters, rounds, log)
        finally:
            for b in opened.values():
                b.close()
        for library, s in samples.items():
            probe_seconds[library] += s
        base = medians.get("onnxruntime fp32")
        for label in rows:
            if label not in medians:
                continue
            records.append({
                "part": part, "shape": side, "batch": bs, "row": label, "file": rows[label][1].name,
                "precision": "fp32" if label.endswith("fp32") else "int8", "p50_ms": 1000 * medians[label],
                "speedup_vs_onnxruntime_fp32": base / medians[label] if base else None,
                "gop_s": flops * bs / medians[label] / 1e9,
                "agreement_vs_onnxruntime_fp32": float((labels[label] == labels["onnxruntime fp32"]).mean()),
            })  # fmt: skip
            log(f"    {label:45s} {1000 * medians[label]:9.1f} ms  x{records[-1]['speedup_vs_onnxruntime_fp32']:.2f}")
    machine_ceilings = ceiling_fields({p.library: probe_seconds[p.library] for p in fp32_probes}, "cpu")
    machine_ceilings.update(int8_ceiling_fields(probe_seconds, i8_probes))
    for r in records:
        kind = "int8" if r["precision"] == "int8" else "fp32"
        best = machine_ceilings["ceiling_int8_gop_s" if kind == "int8" else "ceiling_fp32_gflop_s"]
        median = machine_ceilings["ceiling_int8_gop_s_median" if kind == "int8" else "ceiling_fp32_gflop_s_median"]
        r["ceiling_kind"] = kind
        r["ceiling_pct"] = 100 * r["gop_s"] / best if best else None  # of the best call, as dlcv-bench reports it
        r["ceiling_pct_of_median"] = 100 * r["gop_s"] / median if median else None  # medians on both sides
    return {"records": records, "ceilings": machine_ceilings}


# --------------------------------------------------------------------------- profiles


def conv_macs(fp32_path: Path, batch: int, side: int) -> dict[str, int]:
    """Layer name -> multiply-adds of every Conv/ConvTranspose of the FP32 graph at batch×3×side×side."""
    from dlcv.export.qdq import layer_names

    m = onnx.load(str(fp32_path))
    names = layer_names(m)
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, (batch, 3, side, side)):
        d.ClearField("dim_param")
        d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    weights = {t.name: list(t.dims) for t in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvTranspose") and n.input[1] in weights:
            pixels = shapes.get(n.output[0] if n.op_type == "Conv" else n.input[0])
            if pixels and all(pixels):
                out[names[n.name]] = int(np.prod(pixels)) * int(np.prod(weights[n.input[1]][1:]))
    return out


def profile(path: Path, fp32: Path, side: int, bs: int, md, runs: int = 3, configure=None) -> dict:
    """onnxruntime's profiler on ``path``: share of kernel time by op type, and the top layers.
    ``configure``: called with the ``SessionOptions`` before the session opens (a study's variant)."""
    import onnxruntime as ort

    from dlcv.export.qdq import layer_names

    names = layer_names(onnx.load(str(path), load_external_data=False))
    macs = conv_macs(fp32, bs, side)
    options = ort.SessionOptions()
    options.enable_profiling, options.log_severity_level = True, 3
    if configure is not None:
        configure(options)
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = mosaic(side, bs, md)
        session.run(None, {md.input_name: x})
        for _ in range(runs):
            session.run(None, {md.input_name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op, by_node = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            by_op[e["args"]["op_name"]] += e["dur"]
            by_node[(e["args"]["op_name"], node)] += e["dur"]
    total = sum(by_op.values())
    layers = []
    for (op, node), us in by_node.most_common(12):
        layer = names.get(node.split("_token_")[0], node)  # fused nodes keep their name + "_token_N"
        seconds = us / 1e6 / (runs + 1)
        layers.append({"op": op, "node": node, "layer": layer, "share": us / total,
                       "gop_s": 2 * macs[layer] / seconds / 1e9 if layer in macs and "Conv" in op else None})  # fmt: skip
    return {"file": path.name, "shape": side, "batch": bs, "kernel_ms_per_run": total / 1000 / (runs + 1),
            "ops": [{"op": op, "share": us / total} for op, us in by_op.most_common(10)], "layers": layers}  # fmt: skip


# --------------------------------------------------------------------------- accuracy


def accuracy(checkpoint: Path, work: Path, calib_count: int, eval_count: int, methods, log) -> dict:
    from dlcv.export.int8 import quantize_all
    from dlcv.export.int8_sensitivity import sensitivity
    from dlcv.export.qdq import tensorrt_qdq
    from dlcv.export.verify import ExportedArtifact, compare_precisions, eval_set_from_dataset
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dlcv.runtime.backends.openvino_backend import OpenVINOBackend
    from dlcv.runtime.precision import INT8
    from dlcv.train.data.demo import demo_root
    from dlcv.train.torch_backend import TorchBackend

    fp32, md = export_fp32(checkpoint, work)
    tensors = calibration(md, calib_count, plain_folder=False)
    eval_set = eval_set_from_dataset(demo_root("segmentation"), md, eval_count)
    artifacts, quantized = [], {}
    for method in methods:
        log(f"  {checkpoint.name}: {method}")
        q = quantized[method] = quantize_all(fp32, md, tensors, method=method)
        trt = q.finish(md)
        tensorrt_qdq(trt)
        graphs = {"before": legacy_int8(fp32, md, tensors, method), "after, every layer INT8": q.finish(md, ()),
                  "after (as written)": q.finish(md), "after, TensorRT form (on onnxruntime)": trt}  # fmt: skip
        for variant, proto in graphs.items():
            path = save(proto, work / f"{method}-{len(artifacts)}.onnx")
            artifacts.append(ExportedArtifact(f"{method} | {variant}", path.name, lambda p=path: OnnxRuntimeBackend(p), INT8))
            if variant == "after (as written)":
                artifacts.append(ExportedArtifact(f"{method} | after (as written) on OpenVINO", path.name,
                                                  lambda p=path: OpenVINOBackend(p), INT8))  # fmt: skip
    with TorchBackend(checkpoint) as reference:
        report = compare_precisions(reference, artifacts, eval_set)
        default = "minmax" if "minmax" in quantized else methods[0]
        log(f"  {checkpoint.name}: sensitivity sweep ({default})")
        sweep = sensitivity(quantized[default], md, reference, eval_set)
    rows = [{"method": r.label.split(" | ")[0], "variant": r.label.split(" | ")[1], "metric_delta": r.metric_delta,
             "metric": r.metric, "reference_metric": r.reference_metric, "agreement": r.stats["agreement"],
             "max_abs_logit_error": r.stats["max_abs_logit_error"], "mean_abs_logit_error": r.stats["mean_abs_logit_error"]}
            for r in report.rows]  # fmt: skip
    return {"checkpoint": str(checkpoint), "eval_source": eval_set.source, "rows": rows, "sensitivity": sweep.to_dict(),
            "sensitivity_table": sweep.table()}  # fmt: skip


# --------------------------------------------------------------------------- report


def _table(header, rows) -> list[str]:
    return table(header, rows).splitlines()


def _pct(v, digits=1) -> str:
    return "–" if v is None else f"{v:.{digits}f} %"


def render(results: dict) -> str:
    m, c = results["machine"], results["speed"]["ceilings"]
    lines = [
        "# INT8 on the CPU: the machine's INT8 ceiling, the INT8 file before and after (issue 14, items 1-2)", "",
        f"Measured {m['measured_at_utc']} on {m['cpu_model']} ({m['cpu_cores']} cores, {m['memory_gb']} GB), load average "
        f"at the start {m['load_average_1min']} (a shared machine: compare ratios within a table, all rows of which were "
        "timed side by side in interleaved rounds; medians).", "",
        f"**CPU instruction sets** (/proc/cpuinfo): `{m['cpu_isa']}`; fastest INT8 multiply-add: {m['cpu_int8_dot']}. "
        f"onnxruntime {m['onnxruntime_version']}, OpenVINO {results['openvino_version']}, torch {m['torch_version']}.", "",
        f"**Ceilings** (best call of each probe over all the rounds below): FP32 matmul {c['ceiling_fp32_gflop_s']:.1f} GFLOP/s "
        f"({c['ceiling_library']}, {c['ceiling_matmul_size']}²); INT8 {c['ceiling_int8_gop_s']:.1f} GOP/s "
        f"({c['ceiling_int8_probe']}; {c['ceiling_int8_types']}; each probe's best: {c['ceiling_int8_probes']}).", "",
        "## Speed: full-size FCN8s (12 classes, seeded random weights)", "",
        "Speed-up = onnxruntime FP32 median / row median, same shape and batch, same rounds. GOP/s = the model's "
        "multiply-adds × 2 × batch / median latency; % of ceiling: INT8 rows of the INT8 ceiling, FP32 of the FP32 one, "
        "as dlcv-bench reports it (of the probe's best call) and of the probe's median over the same rounds. "
        "Agreement: pixel labels equal to onnxruntime FP32's on the timed batch (demo val images tiled to the size; "
        "random weights have small top-2 margins, so this is a lower bound of what a trained model gets).", "",
    ]
    recs = results["speed"]["records"]
    head = [r for r in recs if r["part"] == "headline"]
    rows = []
    for r in head:
        rows.append([f"{r['shape']}² b{r['batch']}", r["row"], f"{r['p50_ms']:.0f}", f"{r['speedup_vs_onnxruntime_fp32']:.2f}×",
                     f"{r['gop_s']:.0f}", _pct(r["ceiling_pct"]), _pct(r["ceiling_pct_of_median"]),
                     _pct(100 * r["agreement_vs_onnxruntime_fp32"], 2)])  # fmt: skip
    lines += _table(["shape", "runner", "p50 ms", "speed-up vs onnxruntime FP32", "GOP/s", "% of ceiling (best call)",
                     "% of ceiling (median)", "agreement"], rows)  # fmt: skip
    lines += ["", "### Which change mattered (ablation, one change added per row)", ""]
    rows = [[f"{r['shape']}² b{r['batch']}", r["row"], f"{r['p50_ms']:.0f}", f"{r['speedup_vs_onnxruntime_fp32']:.2f}×",
             f"{r['gop_s']:.0f}", _pct(r["ceiling_pct"]), _pct(r["ceiling_pct_of_median"])]
            for r in recs if r["part"] == "ablation"]  # fmt: skip
    lines += _table(["shape", "file", "p50 ms", "speed-up vs onnxruntime FP32", "GOP/s", "% of ceiling (best call)",
                     "% of ceiling (median)"], rows)  # fmt: skip
    lines += ["", "## Where the INT8 time goes (onnxruntime profiler)", ""]
    for p in results["profiles"]:
        lines += [f"**{p['label']}** ({p['file']}, {p['shape']}² batch {p['batch']}, {p['kernel_ms_per_run']:.0f} ms of kernels per run): "
                  + ", ".join(f"{o['op']} {100 * o['share']:.1f} %" for o in p["ops"][:7]), ""]
        lines += _table(["layer", "op", "share", "GOP/s"],
                        [[x["layer"], x["op"], f"{100 * x['share']:.1f} %", "–" if x["gop_s"] is None else f"{x['gop_s']:.0f}"]
                         for x in p["layers"][:8]])  # fmt: skip
        lines.append("")
    for a in results["accuracy"]:
        lines += [f"## Accuracy: {Path(a['checkpoint']).name} on {a['eval_source']}", "",
                  "Against PyTorch FP32, calibrated on 64 demo train images; mIoU Δ in points.", ""]
        rows = [[r["method"], r["variant"], f"{100 * r['metric_delta']:+.2f}", _pct(100 * r["agreement"], 3),
                 f"{r['max_abs_logit_error']:.3f}", f"{r['mean_abs_logit_error']:.4f}"] for r in a["rows"]]  # fmt: skip
        lines += _table(["calibration", "file", "mIoU Δ", "pixel agreement", "max abs logit err", "mean abs logit err"], rows)
        lines += ["", "Per-layer sensitivity (one calibration; each row: that one layer in FP32, the rest INT8):", "", "```",
                  a["sensitivity_table"], "```", ""]
    lines += ["## Command", "", "```", results["command"], "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8-study"))
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--eval-count", type=int, default=150)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="a narrow model at 64², few calls: checks the script")
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help=f"a trained checkpoint whose data the accuracy part scores (repeatable; default {DEMO_CHECKPOINT})")
    parser.add_argument("--parts", default="speed,accuracy",
                        help="speed, accuracy or both; a part left out is kept from <out>/results.json")  # fmt: skip
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    demos = args.checkpoint or [DEMO_CHECKPOINT]
    missing = [str(d) for d in demos if not d.is_file()]
    if "accuracy" in parts and missing:
        parser.error(f"no checkpoint {', '.join(missing)}: run `make demo` to train the demo model, "
                     "give --checkpoint PATH, or --parts speed")

    import openvino

    from dlcv.bench.machine import machine_info
    from dlcv.bench.random_checkpoint import write_random_checkpoint

    def log(text: str) -> None:
        print(text, flush=True)

    previous = json.loads((args.out / "results.json").read_text()) if parts != {"speed", "accuracy"} else {}
    results = {"command": " ".join(["python", *map(shlex.quote, sys.argv)]), "machine": machine_info("cpu"),
               "openvino_version": openvino.get_version()}  # fmt: skip
    if "speed" not in parts:
        results.update({k: previous[k] for k in ("machine", "profiles", "speed", "command")})
        results["command"] += " ; " + " ".join(["python", *map(shlex.quote, sys.argv)])
    log(f"machine: {results['machine']['cpu_model']}; {results['machine']['cpu_isa']}")
    shapes, ablation_shapes = (((64, 1), (64, 2)), ((64, 1),)) if args.quick else (SHAPES, ABLATION_SHAPES)
    with tempfile.TemporaryDirectory(prefix="dlcv-int8-study-") as tmp:
        work = Path(tmp)
        if "accuracy" not in parts:
            results["accuracy"] = previous["accuracy"]
        else:
            results["accuracy"] = []
            for demo in demos[:1] if args.quick else demos:
                results["accuracy"].append(accuracy(demo, work / demo.stem, args.calib_count, 16 if args.quick else args.eval_count,
                                                    ["minmax"] if args.quick else ["minmax", "percentile", "entropy"], log))  # fmt: skip
        if "speed" not in parts:
            return _write(args.out, results, log)
        checkpoint = write_random_checkpoint("fcn8s", work / "fcn8s-random.pt", num_classes=12, width=0.125 if args.quick else 1.0)
        log("exporting the random FCN8s and writing the INT8 files")
        fp32, md = export_fp32(checkpoint, work / "speed")
        files = speed_files(fp32, md, calibration(md, args.calib_count, plain_folder=True), work / "speed", log)
        results["profiles"] = []
        for label, name in (("before", "before"), ("after", "after")):
            for side, bs in shapes[:1] + shapes[2:3]:
                results["profiles"].append({"label": label, **profile(files[name], fp32, side, bs, md)})
        results["speed"] = speed(checkpoint, fp32, files, md, shapes, ablation_shapes,
                                 2 if args.quick else args.iters, 1 if args.quick else args.rounds, log)  # fmt: skip
    return _write(args.out, results, log)


def _write(out: Path, results: dict, log) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "report.md").write_text(render(results))
    log(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
