"""Video throughput end to end: ``dlcv-infer`` on a video against the same pipeline written by hand.

    python benchmarks/studies/video_fps.py --name video-fps-512 \\
        --model demo=artifacts/demo-fcn8s/fcn8s.onnx --fcn8s 1.0 --size 512x512 --frames 300 --batch-sizes 1,4 --rounds 3   # after make demo

Writes an MJPG test clip (``--frames`` frames of moving coloured blocks at ``--size``; or takes
``--video``), then for every model, in interleaved rounds (each pipeline takes its turn in every
round; medians and [min, max] reported), runs the whole job: decode -> preprocess -> inference ->
postprocess -> encode (a lossless label PNG per frame and an mp4v overlay video):

- **dlcv**: :func:`dlcv.runtime.video.run_video` (what ``dlcv-infer --engine MODEL clip --overlay``
  runs: a decoder thread, batches of ``--batch-size``, a writer thread), with its timing split;
- **hand-written**: the loop a user would write with OpenCV and onnxruntime, one frame at a time
  (``VideoCapture.read`` -> ``cvtColor`` + normalise -> ``InferenceSession.run`` -> ``argmax`` ->
  ``imwrite`` + ``addWeighted`` + ``VideoWriter.write``), timed stage by stage.

``--fcn8s W`` also builds an FCN8s of width W (1.0: full size) with seeded random weights
(:mod:`dlcv.bench.random_checkpoint`) and exports it with dlcv-export at the clip's size. Writes
``benchmarks/results/<name>/results.json`` and ``report.md`` with the machine and its ISA flags.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from argmax_postprocess import machine  # noqa: E402  (the studies share the machine record)


def write_clip(path: Path, frames: int, size: tuple[int, int], fps: float = 25.0) -> Path:
    """Moving coloured blocks (a new layout every 10 frames), MJPG in an AVI."""
    h, w = size
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    colours = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    grid = None
    for i in range(frames):
        if i % 10 == 0:
            grid = rng.integers(0, len(colours), (max(1, h // 64), max(1, w // 64)))
        image = cv2.resize(colours[grid], (w, h), interpolation=cv2.INTER_NEAREST)
        writer.write(np.roll(image, (4 * i) % w, axis=1))
    writer.release()
    return path


def build_fcn8s(work: Path, width: float, size: tuple[int, int], log) -> Path:
    from dlcv.bench.random_checkpoint import write_random_checkpoint
    from dlcv.export import ExportConfig, export_onnx

    ckpt = write_random_checkpoint("fcn8s", work / "fcn8s.pt", width=width)
    log(f"exporting FCN8s (width {width}) at {size[0]}x{size[1]}")
    config = ExportConfig(checkpoint=ckpt, out=work / "fcn8s", input_size=size, verify_shapes=((1, *size),))
    return export_onnx(config, log=log).onnx_path


def run_dlcv(model: Path, clip: Path, out: Path, batch_size: int) -> dict:
    from dlcv.runtime.video import VideoConfig, run_video

    summary = run_video(VideoConfig(engine=model, source=clip, out=out, overlay=True, overwrite=True,
                                    batch_size=batch_size, progress=False))  # fmt: skip
    t = summary.timing
    return {"frames": summary.frames, "frames_per_s": t["frames_per_s"], "wall_s": t["wall_s"],
            "ms_per_frame": {k: t[f"{k}_ms_per_frame"] for k in ("decode_preprocess", "inference", "postprocess", "write")},
            "model_waited_for_frames_s": t["frame_wait_s"]}  # fmt: skip


def run_by_hand(model: Path, clip: Path, out: Path) -> dict:
    """The plain loop: one frame at a time, every step on the main thread."""
    import onnxruntime as ort

    from dlcv.runtime.metadata import read_onnx_metadata
    from dlcv.runtime.postprocess import palette_array

    md = read_onnx_metadata(model)  # mean/std, size and palette; the steps themselves are written out here
    spec = md.preprocess
    if spec.resize not in ("none", "resize") or spec.color_order != "rgb":
        raise SystemExit(f"{model}: the hand-written loop does plain resizing of RGB input only, not {spec.resize}/{spec.color_order}")
    mean, std = np.array(md.preprocess.mean, np.float32), np.array(md.preprocess.std, np.float32)
    palette_bgr = palette_array(md.palette, md.num_classes)[:, ::-1].copy()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    out.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    spent = {"decode": 0.0, "preprocess": 0.0, "inference": 0.0, "postprocess": 0.0, "write": 0.0}
    frames = 0
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        ok, frame = capture.read()
        t1 = time.perf_counter()
        spent["decode"] += t1 - t0
        if not ok:
            break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if spec.resize == "resize":
            rgb = cv2.resize(rgb, (spec.size[1], spec.size[0]), interpolation=cv2.INTER_LINEAR)
        x = ((rgb.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)[None]
        t2 = time.perf_counter()
        logits = session.run(None, {input_name: np.ascontiguousarray(x)})[0]
        t3 = time.perf_counter()
        labels = logits[0].argmax(axis=0).astype(np.uint8)
        if labels.shape != frame.shape[:2]:
            labels = cv2.resize(labels, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
        overlay = cv2.addWeighted(palette_bgr[labels], 0.5, frame, 0.5, 0.0)
        t4 = time.perf_counter()
        cv2.imwrite(str(out / f"frame_{frames:06d}.png"), labels)
        if writer is None:
            writer = cv2.VideoWriter(str(out / "overlay.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(overlay)
        t5 = time.perf_counter()
        spent["preprocess"] += t2 - t1
        spent["inference"] += t3 - t2
        spent["postprocess"] += t4 - t3
        spent["write"] += t5 - t4
        frames += 1
    if writer is not None:
        writer.release()
    wall = time.perf_counter() - start
    n = max(frames, 1)
    return {"frames": frames, "frames_per_s": frames / wall, "wall_s": wall,
            "ms_per_frame": {k: 1000.0 * v / n for k, v in spent.items()}}  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    fps = [r["frames_per_s"] for r in runs]
    keys = runs[0]["ms_per_frame"]
    return {"frames": runs[0]["frames"], "frames_per_s_median": statistics.median(fps), "frames_per_s_min": min(fps),
            "frames_per_s_max": max(fps), "runs": len(runs),
            "ms_per_frame_median": {k: statistics.median(r["ms_per_frame"][k] for r in runs) for k in keys}}  # fmt: skip


def report(result: dict) -> str:
    m = result["machine"]
    flags = ", ".join(f for f, on in m["isa"].items() if on) or "none read"
    lines = [
        f"# Video throughput end to end ({result['size']}, {result['frames']} frames)",
        "",
        f"Measured {result['measured_at_utc']} on {m['cpu_model']} ({m['cpus']} CPUs; ISA flags: {flags}); load average "
        f"{m['load_average_start']:.2f} at the start, {result['load_average_end']:.2f} at the end. Decode + preprocess + "
        "inference + postprocess + encode (a lossless label PNG per frame and an mp4v overlay video); medians of "
        f"{result['rounds']} interleaved rounds, [min, max].",
        "",
        "| model | pipeline | frames/s [min, max] | ms/frame: where the time goes |",
        "| --- | --- | --- | --- |",
    ]
    for name, pipelines in result["results"].items():
        for pipeline, s in pipelines.items():
            split = ", ".join(f"{k} {v:.1f}" for k, v in s["ms_per_frame_median"].items())
            lines.append(f"| {name} | {pipeline} | {s['frames_per_s_median']:.1f} [{s['frames_per_s_min']:.1f}, "
                         f"{s['frames_per_s_max']:.1f}] | {split} |")  # fmt: skip
    lines += [
        "",
        "dlcv's split is per thread: decode+preprocess runs in the reader thread and write in the writer thread, beside "
        "inference on the main thread, so the frames/s exceed 1000 / (sum of the split) when the threads overlap; the "
        "hand-written loop runs its stages one after another.",
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
    parser.add_argument("--name", default="video-fps")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="an .onnx segmentation model")
    parser.add_argument("--fcn8s", type=float, default=None, metavar="WIDTH", help="also build an FCN8s of this width")
    parser.add_argument("--size", default="512x512", help="HxW of the generated clip")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--video", type=Path, default=None, help="a clip to use instead of the generated one")
    parser.add_argument("--batch-sizes", default="1,4", help="dlcv's batch sizes, comma-separated (the loop runs one frame at a time)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    size = (h, w)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    info = machine()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dlcv-video-fps-") as tmp:
        work = Path(tmp)
        models = {name: Path(path) for name, path in (m.split("=", 1) for m in args.model)}
        if args.fcn8s is not None:
            models[f"fcn8s width {args.fcn8s:g}"] = build_fcn8s(work, args.fcn8s, size, log)
        if not models:
            parser.error("give --model NAME=PATH and/or --fcn8s WIDTH")
        clip = args.video or write_clip(work / "clip.avi", args.frames, size)
        for name, model in models.items():
            by_hand = "hand-written OpenCV + onnxruntime loop"
            runs: dict[str, list[dict]] = {**{f"dlcv-infer on the video, batch {b}": [] for b in batch_sizes}, by_hand: []}
            for r in range(args.rounds):
                log(f"{name}: round {r + 1}/{args.rounds}")
                for b in batch_sizes:
                    runs[f"dlcv-infer on the video, batch {b}"].append(run_dlcv(model, clip, work / "dlcv", b))
                runs[by_hand].append(run_by_hand(model, clip, work / "by-hand"))
            results[name] = {pipeline: summarise(rs) for pipeline, rs in runs.items()}
    result = {
        "name": args.name, "size": f"{size[0]}x{size[1]}", "frames": args.frames, "batch_sizes": batch_sizes,
        "rounds": args.rounds, "machine": info, "measured_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results, "load_average_end": os.getloadavg()[0],
        "command": shlex.join(["python", "benchmarks/studies/video_fps.py", *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    folder = args.out / args.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (folder / "report.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
