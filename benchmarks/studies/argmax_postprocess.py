"""What the in-graph ArgMax (``dlcv-export --argmax``) saves per image: full-size FCN8s at 512².

    python benchmarks/studies/argmax_postprocess.py --name argmax-512      # after make install

Builds a full-width FCN8s with seeded random weights (12 classes, the course's), exports it to ONNX
(FP32, verified against PyTorch) and appends the ArgMax head to a copy as ``dlcv-export --argmax``
does (checked against the logits file). Then, side by side in interleaved rounds (every runner takes
its turn in each round; medians), on one 512×512 image:

- postprocessing: the runtime's labels from the logits file's output (numpy's argmax over 12×512×512
  float32 values, :func:`dlcv.runtime.postprocess.predicted_labels`) against the labels the head
  returns (used as they are), and against the head alone (ArgMax + Cast as a one-node-pair graph) on
  each engine: what the same work costs where the head runs it;
- the model call itself, logits file against head file, on onnxruntime and OpenVINO (the ArgMax now
  runs inside the engine: its cost moves there);
- dlcv-infer end to end over the same image files with each file (``postprocess_write_ms_per_image``
  and ``inference_ms_per_image`` of its metrics.json), alternating the files round by round.

Writes ``benchmarks/results/<name>/results.json`` and ``report.md`` with the machine, its CPU's ISA
flags and the command. The machine may be shared: compare the side-by-side figures of one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def isa_flags() -> dict[str, bool]:
    """The CPU's vector-ISA flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return {}
    return {flag: flag in flags for flag in ISA_FLAGS}


def machine() -> dict:
    from importlib.metadata import version

    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {
        "cpu_model": model, "cpus": os.cpu_count(), "isa": isa_flags(), "load_average_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("onnxruntime", "openvino", "numpy", "torch")},
    }  # fmt: skip


def build(work: Path, size: int, classes: int, log) -> tuple[Path, Path]:
    """The logits file (dlcv-export, verified) and the same graph with the ArgMax head (checked against it)."""
    import onnx

    from dlcv.bench.random_checkpoint import write_random_checkpoint
    from dlcv.export import ExportConfig, export_onnx
    from dlcv.export.graph import save_onnx
    from dlcv.export.heads import append_head, check_head
    from dlcv.runtime.metadata import read_onnx_metadata

    ckpt = write_random_checkpoint("fcn8s", work / "fcn8s.pt", num_classes=classes)
    log(f"exporting full-width FCN8s ({classes} classes) at {size}x{size}")
    config = ExportConfig(checkpoint=ckpt, out=work / "logits", input_size=(size, size), verify_shapes=((1, size, size),))
    logits = export_onnx(config, log=log).onnx_path
    head = work / "argmax" / logits.name
    head.parent.mkdir()
    proto, _ = append_head(onnx.load(str(logits)), read_onnx_metadata(logits))
    save_onnx(proto, head)
    check_head(logits, head, [np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)])
    return logits, head


def write_images(folder: Path, count: int, size: int) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))


def head_only(path: Path, shape: tuple[int, ...], head_md) -> Path:
    """A graph of the head alone (the ArgMax and Cast dlcv-export --argmax appends), logits in."""
    import onnx
    from onnx import TensorProto, helper

    out = head_md.outputs.primary
    nodes = [helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0, select_last_index=0),
             helper.make_node("Cast", ["argmax"], [out.name], to=TensorProto.UINT8)]  # fmt: skip
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(out.name, TensorProto.UINT8, [shape[0], *shape[2:]])])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def engine_runner(backend: str, graph: Path, logits: np.ndarray):
    """One call of the head-only graph on ``backend``'s engine (onnxruntime or OpenVINO, CPU), as a runner."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"logits": logits})
    import openvino as ov

    request = ov.Core().compile_model(str(graph), "CPU", {"PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
    return lambda: request.infer({"logits": logits})


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def measure(logits_file: Path, head_file: Path, images: Path, work: Path, args, log) -> dict:
    from dlcv.bench.timing import time_interleaved
    from dlcv.runtime.backends import open_backend
    from dlcv.runtime.infer import InferConfig, run_inference
    from dlcv.runtime.postprocess import predicted_labels

    batch = np.random.default_rng(2).normal(size=(1, 3, args.size, args.size)).astype(np.float32)
    out: dict = {"postprocess": {}, "model": {}, "dlcv_infer": {}}
    opened = {(b, kind): open_backend(path, backend=b) for b in args.backends for kind, path in (("logits", logits_file), ("labels", head_file))}
    try:
        logits_md, head_md = opened[(args.backends[0], "logits")].metadata, opened[(args.backends[0], "labels")].metadata
        outputs = {kind: opened[(args.backends[0], kind)].infer_outputs(batch) for kind in ("logits", "labels")}
        out["output_bytes_per_image"] = {kind: int(sum(v.nbytes for v in o.values())) for kind, o in outputs.items()}
        logits = outputs["logits"][logits_md.output_name]
        post = {"numpy argmax of the logits": lambda: predicted_labels(outputs["logits"], logits_md),
                "labels from the head, as they are": lambda: predicted_labels(outputs["labels"], head_md)}  # fmt: skip
        graph = head_only(work / "head_only.onnx", logits.shape, head_md)
        for b in args.backends:
            post[f"the head alone (ArgMax + Cast) on {b}"] = engine_runner(b, graph, logits)
        log(f"postprocessing: {len(post)} runners, {args.post_iters} calls each in {args.rounds} interleaved rounds")
        for name, outcome in time_interleaved(post, warmup=3, iters=args.post_iters, rounds=args.rounds).items():
            out["postprocess"][name] = {"median_ms": median_ms(outcome.samples), "calls": len(outcome.samples)}
        runners = {f"{b} {kind}": (lambda backend=backend: backend.infer(batch)) for (b, kind), backend in opened.items()}
        log(f"model calls: {len(runners)} runners, {args.model_iters} calls each in {args.rounds} interleaved rounds")
        for name, outcome in time_interleaved(runners, warmup=1, iters=args.model_iters, rounds=args.rounds).items():
            if outcome.error:
                raise RuntimeError(f"{name}: {outcome.error}")
            out["model"][name] = {"median_ms": median_ms(outcome.samples), "min_ms": 1000.0 * min(outcome.samples),
                                  "max_ms": 1000.0 * max(outcome.samples), "calls": len(outcome.samples)}  # fmt: skip
    finally:
        for backend in opened.values():
            backend.close()

    runs: dict[str, list[dict]] = {"logits": [], "labels": []}
    for r in range(args.infer_rounds):
        for kind, path in (("logits", logits_file), ("labels", head_file)):
            log(f"dlcv-infer round {r + 1}/{args.infer_rounds}: {path.parent.name}/{path.name}")
            config = InferConfig(engine=path, images=images, out=work / f"out-{kind}", batch_size=1, workers=1,
                                 backend=args.backends[0], overwrite=True, progress=False)  # fmt: skip
            runs[kind].append(run_inference(config, log=lambda _: None).timing)
    for kind, timings in runs.items():
        out["dlcv_infer"][kind] = {
            key: statistics.median(t[key] for t in timings)
            for key in ("postprocess_write_ms_per_image", "inference_ms_per_image", "decode_preprocess_ms_per_image")
        }  # fmt: skip
        out["dlcv_infer"][kind]["runs"] = len(timings)
    same = all((work / "out-logits" / p.name).read_bytes() == p.read_bytes() for p in (work / "out-labels").glob("*.png"))
    out["dlcv_infer"]["masks_bit_identical"] = same
    return out


def report(result: dict) -> str:
    m, res = result["machine"], result["results"]
    post, model, e2e = res["postprocess"], res["model"], res["dlcv_infer"]
    numpy_ms, none_ms = post["numpy argmax of the logits"]["median_ms"], post["labels from the head, as they are"]["median_ms"]
    flags = ", ".join(f for f, on in m["isa"].items() if on) or "none read"
    missing = ", ".join(f for f, on in m["isa"].items() if not on) or "-"
    lines = [
        f"# In-graph ArgMax: the postprocessing saved per image ({result['size']}², FCN8s, {result['classes']} classes)",
        "",
        f"Measured {result['measured_at_utc']} on {m['cpu_model']} ({m['cpus']} CPUs; ISA flags present: {flags}; "
        f"absent: {missing}); load average at the start {m['load_average_start']:.2f}. Full-width FCN8s, seeded random "
        f"weights (dlcv.bench.random_checkpoint), FP32 ONNX from dlcv-export and the same graph with the ArgMax head "
        f"that `dlcv-export --argmax` appends. One {result['size']}×{result['size']} image per call; every figure a "
        "median of interleaved rounds.",
        "",
        "## Postprocessing per image: numpy on the host, or the head in the engine",
        "",
        "| step | median ms | calls |",
        "| --- | --- | --- |",
        *(f"| {name} | {v['median_ms']:.2f} | {v['calls']} |" for name, v in post.items()),
        "",
        f"Saved on the host: **{numpy_ms - none_ms:.2f} ms per image** (numpy's argmax over "
        f"{res['output_bytes_per_image']['logits'] / 1e6:.1f} MB of logits; the head returns "
        f"{res['output_bytes_per_image']['labels'] / 1e3:.0f} kB of labels, "
        f"{res['output_bytes_per_image']['logits'] / res['output_bytes_per_image']['labels']:.0f}× less to copy out of "
        "the engine: on a GPU, the device-to-host copy shrinks by that factor).",
        "",
        *(f"Net of the same work done by {b} inside the model (the head alone): **{numpy_ms - post[f'the head alone (ArgMax + Cast) on {b}']['median_ms']:.2f} "
          "ms per image**." for b in result["backends"] if f"the head alone (ArgMax + Cast) on {b}" in post),
        "",
        "## The model call (the ArgMax moves into the engine)",
        "",
        "| backend | logits file ms [min, max] | head file ms [min, max] | head − logits ms (medians) |",
        "| --- | --- | --- | --- |",
    ]
    for backend in result["backends"]:
        a, b = model[f"{backend} logits"], model[f"{backend} labels"]
        lines.append(f"| {backend} | {a['median_ms']:.1f} [{a['min_ms']:.1f}, {a['max_ms']:.1f}] | {b['median_ms']:.1f} "
                     f"[{b['min_ms']:.1f}, {b['max_ms']:.1f}] | {b['median_ms'] - a['median_ms']:+.1f} |")  # fmt: skip
    lines += [
        "",
        "The head file's call includes the ArgMax the engine now runs; where the difference of the medians is smaller than "
        "the spread of either column, this run cannot tell the ArgMax's cost inside the engine from the noise.",
        "",
        f"## dlcv-infer end to end ({e2e['logits']['runs']} runs each, alternating; batch 1, one worker)",
        "",
        "| file | postprocess+write ms/img | inference ms/img | decode+preprocess ms/img |",
        "| --- | --- | --- | --- |",
        *(f"| {kind} | {v['postprocess_write_ms_per_image']:.1f} | {v['inference_ms_per_image']:.1f} | "
          f"{v['decode_preprocess_ms_per_image']:.1f} |" for kind, v in ((k, e2e[k]) for k in ("logits", "labels"))),  # fmt: skip
        "",
        f"postprocess+write saved: {e2e['logits']['postprocess_write_ms_per_image'] - e2e['labels']['postprocess_write_ms_per_image']:.1f} "
        f"ms per image; masks bit-identical: {e2e['masks_bit_identical']}.",
        "",
        "## Command",
        "",
        "```",
        result["command"],
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="argmax-512")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--post-iters", type=int, default=50)
    parser.add_argument("--model-iters", type=int, default=5)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--infer-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    info = machine()
    with tempfile.TemporaryDirectory(prefix="dlcv-argmax-") as tmp:
        work = Path(tmp)
        logits_file, head_file = build(work, args.size, args.classes, log)
        write_images(work / "images", args.images, args.size)
        results = measure(logits_file, head_file, work / "images", work, args, log)
    result = {
        "name": args.name, "size": args.size, "classes": args.classes, "backends": args.backends, "machine": info,
        "measured_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results,
        "load_average_end": os.getloadavg()[0],
        "command": shlex.join(["python", "benchmarks/studies/argmax_postprocess.py", *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    folder = args.out / args.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (folder / "report.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
