"""Which kernels onnxruntime runs dlcv's INT8 convolutions on, and what each session option or file
variant costs on this CPU class (issue 18, item 2): the question behind "onnxruntime's INT8 reaches
27 % of the AMX INT8 ceiling while its QDQ MatMul probe reaches it and OpenVINO 60 %".

    python benchmarks/studies/ort_int8_paths.py                        # full-size FCN8s, 256² and 512², batch 1
    python benchmarks/studies/ort_int8_paths.py --quick --out /tmp/p   # a narrow model at 64², to check the script

Writes ``<out>/results.json`` and ``<out>/report.md`` (default ``benchmarks/results/ort-int8-paths-<class>``,
the CPU class in the name: the answer differs between AVX2, AVX512-VNNI and AMX machines).

What onnxruntime does with dlcv's INT8 file (read from its source, MLAS ``convsym.cpp``,
``platform.cpp`` and ``qlinearconv.cc``): after the QDQ fusion every Conv is a QLinearConv with
uint8 activations and int8 per-channel weights whose zero points are all 0. Such *symmetric*
weights take MLAS's indirect "ConvSym" kernels (when the channel counts are multiples of 4 and
there are at least 16 output channels), which exist for AVX2, AVX-VNNI, AVX512 and AVX512-VNNI
only: **there is no AMX ConvSym kernel**, so on an AMX CPU these convolutions run on AVX512-VNNI.
Weights with a non-zero zero point (or a session without pre-packing) take the im2col + QGEMM
path instead, whose U8S8 dispatch on an AMX CPU is ``MlasGemmU8S8DispatchAmx``, the kernel the
QDQ MatMul ceiling probe (QLinearMatMul) runs on; that path adds an im2col copy and an int32
buffer with a separate requantisation pass, so on VNNI and AVX2 CPUs it is expected to be slower.

Variants of the same INT8 file on onnxruntime, timed in interleaved rounds with the ceiling
probes and the peers (onnxruntime FP32, OpenVINO INT8):

- ``default``: dlcv's session (``ORT_ENABLE_ALL``: QDQ fusion and the NHWC layout transform);
- ``extended``: ``ORT_ENABLE_EXTENDED`` (QDQ fusion, no NHWC transform: QLinearConv in NCHW);
- ``no prepacking``: ``session.disable_prepacking=1`` (QLinearConv cannot pack ConvSym weights:
  QGEMM on unpacked weights, AMX on AMX CPUs, packed on every call);
- ``zero point -1``: the same file with every int8 weight ``w`` stored as ``w - 1`` with zero point
  -1 (dequantises to the same values: ``(w - 1 - (-1)) * s``; symmetric weights lie in [-127, 127]
  so ``w - 1`` fits int8): QGEMM on pre-packed weights, AMX on AMX CPUs.

The INT8 ceiling probes are timed too, with a third one: the conv probe with zero point -1
weights (QGEMM instead of ConvSym at the same shapes), so the kernel-path question is answered
at a clean shape as well as on the model. Each variant's labels are compared with the default's
(the zero-point variant computes the same integers; the others only reorder the same arithmetic).
Every figure is printed with the CPU's instruction-set flags and class.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_study import calibration, export_fp32, mosaic, profile  # noqa: E402  (a sibling script)

VARIANTS = ("default", "extended", "no prepacking", "zero point -1")


# --------------------------------------------------------------------------- the file variant


def shift_weight_zero_points(model: onnx.ModelProto) -> int:
    """Store every int8 weight ``w`` of a DequantizeLinear with all-zero zero points as ``w - 1``
    with zero point -1, in place: the same dequantised values, no longer *symmetric* for
    onnxruntime's kernel choice. Returns how many weights it changed; refuses a weight holding
    -128 (it would not fit)."""
    inits = {t.name: t for t in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        w, zp = inits.get(node.input[0]), inits.get(node.input[2])
        if w is None or zp is None or w.data_type != onnx.TensorProto.INT8:
            continue
        values, zeros = numpy_helper.to_array(w), numpy_helper.to_array(zp)
        if np.any(zeros != 0):
            continue
        if values.min() == -128:
            raise ValueError(f"{node.input[0]} holds -128: not a symmetric weight, cannot shift it")
        w.CopyFrom(numpy_helper.from_array((values.astype(np.int16) - 1).astype(np.int8), w.name))
        zp.CopyFrom(numpy_helper.from_array(np.full(zeros.shape, -1, np.int8), zp.name))
        changed += 1
    return changed


def shifted_copy(path: Path, out: Path) -> tuple[Path, int]:
    model = onnx.load(str(path))
    changed = shift_weight_zero_points(model)
    onnx.save_model(model, str(out))
    return out, changed


# --------------------------------------------------------------------------- sessions


def configure(variant: str):
    """The SessionOptions change of a variant (None: dlcv's own settings)."""
    import onnxruntime as ort

    def apply(options):
        if variant == "extended":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        elif variant == "no prepacking":
            options.add_session_config_entry("session.disable_prepacking", "1")

    return apply if variant in ("extended", "no prepacking") else None


def open_session(path: Path, variant: str, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    apply = configure(variant)
    if apply is not None:
        apply(options)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ShiftedConvProbe:
    """The INT8 conv ceiling probe with zero point -1 weights: QGEMM where the probe runs ConvSym."""

    def __init__(self, size: int | None = None, threads: int | None = None):
        import onnxruntime as ort

        from dlcv.bench.flops import _int8_conv, matmul_size

        proto, self._feed, self.ops = _int8_conv(size or matmul_size("cpu"))
        shift_weight_zero_points(proto)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.library = "onnxruntime int8 conv, zero point -1 weights"

    def __call__(self) -> None:
        self._session.run(None, self._feed)


# --------------------------------------------------------------------------- the study


def measure(fp32: Path, int8: Path, shifted: Path, md, flops_per_image: int, side: int, bs: int,
            iters: int, rounds: int, threads: int | None, log) -> dict:  # fmt: skip
    from dlcv.bench.flops import int8_probes
    from dlcv.bench.timing import time_interleaved
    from dlcv.runtime.backends.openvino_backend import OpenVINOBackend

    batch = mosaic(side, bs, md)
    feed = {md.input_name: batch}
    sessions = {f"onnxruntime int8 {v}": open_session(shifted if v == "zero point -1" else int8, v, threads) for v in VARIANTS}
    sessions["onnxruntime fp32"] = open_session(fp32, "default", threads)
    openvino = OpenVINOBackend(int8, threads=threads)
    outputs = {label: s.run(None, feed)[0] for label, s in sessions.items()}
    outputs["openvino int8"] = openvino.infer(batch)
    calls = {label: (lambda s=s: s.run(None, feed)) for label, s in sessions.items()}
    calls["openvino int8"] = lambda: openvino.infer(batch)
    probes = [*int8_probes("cpu", threads=threads), ShiftedConvProbe(threads=threads)]
    calls.update({("probe", p.library): p for p in probes})
    log(f"{side}x{side} batch {bs}: {len(sessions) + 1} rows + {len(probes)} INT8 probes, {rounds} rounds of {iters}")
    outcomes = time_interleaved(calls, warmup=1, iters=iters, rounds=rounds)
    openvino.close()
    probe_gop_s = {k[1]: p.ops / min(outcomes[k].samples) / 1e9 for k, p in zip([("probe", p.library) for p in probes], probes)
                   if outcomes[k].samples}  # fmt: skip
    ceiling = max(v for k, v in probe_gop_s.items() if "zero point" not in k)  # dlcv-bench's ceiling: its own probes
    reference = outputs["onnxruntime int8 default"].argmax(1)
    base = float(np.median(outcomes["onnxruntime fp32"].samples))
    rows = []
    for label in [*sessions, "openvino int8"]:
        o = outcomes[label]
        if o.error or not o.samples:
            rows.append({"row": label, "error": o.error})
            continue
        p50 = float(np.median(o.samples))
        gop_s = flops_per_image * bs / p50 / 1e9
        rows.append({
            "row": label, "p50_ms": 1000 * p50, "speedup_vs_onnxruntime_fp32": base / p50, "gop_s": gop_s,
            "int8_ceiling_pct": 100 * gop_s / ceiling if "int8" in label else None,
            "label_agreement_vs_default_int8": float((outputs[label].argmax(1) == reference).mean()),
            "max_abs_logit_diff_vs_default_int8": float(np.abs(outputs[label] - outputs["onnxruntime int8 default"]).max()),
        })  # fmt: skip
        log(f"  {label:40s} {1000 * p50:9.1f} ms  x{base / p50:.2f}")
    return {"shape": side, "batch": bs, "probes_gop_s": probe_gop_s, "int8_ceiling_gop_s": ceiling, "rows": rows}


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# onnxruntime's INT8 kernel paths on this CPU class", "",
        f"`{results['command']}`", "",
        f"**CPU**: {m['cpu_model']}; instruction sets (/proc/cpuinfo) `{m['cpu_isa']}`; class (fastest INT8 "
        f"multiply-add): **{m['cpu_int8_dot']}**; onnxruntime {m['onnxruntime_version']}, OpenVINO {results['openvino_version']}. "
        f"Model: {results['model']}. {results['shifted_weights']} weights shifted for the zero point -1 variant.", "",
        "Medians of interleaved rounds; % of the INT8 ceiling as dlcv-bench reports it (the best call of its "
        "faster probe). One run on a machine shared with other work: a spread of ±10 % between runs is usual.", "",
    ]  # fmt: skip
    for part in results["speed"]:
        lines += [f"## {part['shape']}², batch {part['batch']}", "",
                  "INT8 probes: " + "; ".join(f"{k} {v:.1f} GOP/s" for k, v in part["probes_gop_s"].items()), "",
                  "| row | p50 ms | × onnxruntime FP32 | GOP/s | % of INT8 ceiling | labels = default INT8 | max abs logit Δ |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in part["rows"]:
            if r.get("error"):
                lines.append(f"| {r['row']} | error: {r['error']} | | | | | |")
                continue
            pct = f"{r['int8_ceiling_pct']:.0f} %" if r["int8_ceiling_pct"] is not None else "–"
            lines.append(f"| {r['row']} | {r['p50_ms']:.1f} | {r['speedup_vs_onnxruntime_fp32']:.2f}× | {r['gop_s']:.1f} | "
                         f"{pct} | {100 * r['label_agreement_vs_default_int8']:.3f} % | {r['max_abs_logit_diff_vs_default_int8']:.2g} |")  # fmt: skip
        lines.append("")
    lines += ["## Kernel time by operator (onnxruntime profiler)", "",
              "| variant | shape | kernel ms/run | top operators (share of kernel time) |", "| --- | --- | --- | --- |"]  # fmt: skip
    for p in results["profiles"]:
        ops = "; ".join(f"{o['op']} {100 * o['share']:.0f} %" for o in p["ops"][:5])
        lines.append(f"| {p['variant']} | {p['shape']}² b{p['batch']} | {p['kernel_ms_per_run']:.1f} | {ops} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sides", default="256,512", help="input sizes (square), comma-separated")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a narrow model at 64², few calls: checks the script")
    args = parser.parse_args(argv)

    import openvino

    from dlcv.bench.flops import model_flops_per_image
    from dlcv.bench.machine import machine_info
    from dlcv.bench.random_checkpoint import write_random_checkpoint
    from dlcv.export.int8 import quantize_all
    from dlcv.train.checkpoint import load_checkpoint

    def log(text: str) -> None:
        print(text, flush=True)

    machine = machine_info("cpu")
    slug = machine["cpu_int8_dot"].split(" ")[0].lower()
    out = args.out or Path(f"benchmarks/results/ort-int8-paths-{slug}")
    sides = (64,) if args.quick else tuple(int(s) for s in args.sides.split(","))
    width = 0.125 if args.quick else 1.0
    log(f"machine: {machine['cpu_model']}; {machine['cpu_isa']}; class {machine['cpu_int8_dot']}")
    results = {"command": " ".join(["python", *map(shlex.quote, sys.argv)]), "machine": machine,
               "openvino_version": openvino.get_version(), "model": f"FCN8s width {width}, 12 classes, random He-normal weights",
               "speed": [], "profiles": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dlcv-ort-int8-") as tmp:
        work = Path(tmp)
        checkpoint = write_random_checkpoint("fcn8s", work / "fcn8s.pt", num_classes=12, width=width)
        log("exporting FP32 and dlcv's INT8 file (min-max calibration, as dlcv-export writes it)")
        fp32, md = export_fp32(checkpoint, work)
        int8 = work / "fcn8s.int8.onnx"
        onnx.save_model(quantize_all(fp32, md, calibration(md, 8 if args.quick else args.calib_count, True), method="minmax").finish(md),
                        str(int8))  # fmt: skip
        shifted, results["shifted_weights"] = shifted_copy(int8, work / "fcn8s.int8.zp-1.onnx")
        kwargs = load_checkpoint(checkpoint)["arch_kwargs"]
        iters, rounds = (2, 1) if args.quick else (args.iters, args.rounds)
        for side in sides:
            flops = model_flops_per_image(md.arch, md.num_classes, kwargs, (side, side))
            results["speed"].append(measure(fp32, int8, shifted, md, flops, side, args.batch, iters, rounds, args.threads, log))
            for variant in VARIANTS:
                path = shifted if variant == "zero point -1" else int8
                results["profiles"].append({"variant": variant, **profile(path, fp32, side, args.batch, md, configure=configure(variant))})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "report.md").write_text(render(results))
    log(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
