"""An INT8 peer users already know (issue 18, item 4): NNCF's post-training quantization
(``nncf.quantize`` on dlcv's FP32 ONNX file, the same calibration images dlcv-export uses) beside
dlcv's own INT8 file, on onnxruntime and OpenVINO: accuracy on the trained demo model, speed on it
and on the full-size FCN8s.

    make demo && pip install ".[nncf]"
    python benchmarks/studies/nncf_peer.py                                # demo accuracy + full-size 256² speed
    python benchmarks/studies/nncf_peer.py --quick --out /tmp/nncf-peer   # few images, narrow speed model: checks the script

Each part is one ``dlcv-bench`` run over the three files (FP32, dlcv's INT8, NNCF's INT8) on
``--backends torch,onnxruntime,openvino``: parity against PyTorch FP32 (mIoU Δ with bootstrap 95 %
CIs, label agreement) and interleaved latency, as every dlcv benchmark. The NNCF file carries
dlcv's metadata (the FP32 file's, precision int8), so every dlcv tool runs it. Writes
``<out>/report.md`` (the side-by-side table) and the two dlcv-bench result folders under ``<out>``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx

DEMO_CHECKPOINT = Path("runs/demo-fcn8s/best.pt")  # what `make demo` trains
BIN = Path(sys.executable).parent


def nncf_int8(fp32: Path, out: Path, calib_root: Path, calib_count: int) -> Path:
    """``nncf.quantize`` of the FP32 file on the calibration images dlcv-export would take from
    ``calib_root`` (same selection, same preprocessing), saved at ``out`` with dlcv's metadata."""
    import nncf

    from dlcv.export.int8 import calibration_paths, calibration_tensors
    from dlcv.runtime.metadata import METADATA_KEY, read_onnx_metadata

    md = read_onnx_metadata(fp32)
    paths, _ = calibration_paths(calib_root, calib_count, md.dataset)
    tensors = calibration_tensors(paths, md)
    dataset = nncf.Dataset(tensors, lambda t: {md.input_name: t[None]})
    quantized = nncf.quantize(onnx.load(str(fp32)), dataset, subset_size=len(tensors), target_device=nncf.TargetDevice.CPU)
    for prop in quantized.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = md.with_(precision="int8").to_json()
            break
    else:
        onnx.helper.set_model_props(quantized, {METADATA_KEY: md.with_(precision="int8").to_json()})
    onnx.save_model(quantized, str(out))
    return out


def run(args: list) -> None:
    args = [str(a) for a in args]
    print(f"$ {' '.join(shlex.quote(a) for a in args)}", flush=True)
    subprocess.run([str(BIN / args[0]), *args[1:]], check=True)


def files_for(checkpoint: Path, work: Path, calib_root: Path, calib_count: int, plain: bool) -> list[Path]:
    """FP32 and dlcv's INT8 file by dlcv-export, NNCF's INT8 file of the same FP32 file."""
    calib = calib_root / "train" if plain else calib_root
    run(["dlcv-export", checkpoint, "--out", work, "--int8", "--calib", calib, "--calib-count", calib_count])
    from dlcv.runtime.metadata import read_onnx_metadata

    arch = read_onnx_metadata(next(work.glob("*.int8.onnx"))).arch
    fp32, int8 = work / f"{arch}.onnx", work / f"{arch}.int8.onnx"
    print("nncf.quantize on the same calibration images", flush=True)
    return [fp32, int8, nncf_int8(fp32, work / f"{arch}.nncf-int8.onnx", calib, calib_count)]


def summary_rows(results_json: Path) -> list[list[str]]:
    """file, backend, precision, mIoU Δ [CI], agreement, p50 ms at the smallest batch, × onnxruntime FP32."""
    records = json.loads(results_json.read_text())
    small = min(r["batch_size"] for r in records)
    at = [r for r in records if r["batch_size"] == small and r["artifact"] and not r["error"]]
    base = next((r["latency_p50_ms"] for r in at if r["backend"] == "onnxruntime" and r["precision"] == "fp32"), None)
    rows = []
    for r in at:
        delta = "–" if r["miou_delta"] is None else (f"{100 * r['miou_delta']:+.2f} [{100 * r['miou_delta_ci_low']:+.2f}, "
                                                      f"{100 * r['miou_delta_ci_high']:+.2f}]")  # fmt: skip
        rows.append([Path(r["artifact"]).name, r["backend"], delta, f"{100 * r['pixel_agreement']:.3f} %",
                     f"{r['latency_p50_ms']:.1f}", f"{base / r['latency_p50_ms']:.2f}×" if base else "–"])  # fmt: skip
    return rows


def render(results: dict) -> str:
    m = results["machine"]
    lines = ["# NNCF post-training quantization beside dlcv's INT8 file", "", f"`{results['command']}`", "",
             f"**CPU**: {m['cpu_model']}; instruction sets `{m['cpu_isa']}`; class {m['cpu_int8_dot']}. "
             f"NNCF {results['nncf_version']}; calibration: the same {results['calib_count']} images for both INT8 files.", ""]  # fmt: skip
    for part in results["parts"]:
        lines += [f"## {part['title']}", "", f"dlcv-bench report: [{part['name']}/report.md]({part['name']}/report.md); "
                  f"Δ against PyTorch FP32, batch {part['batch']}.", "",
                  "| file | backend | mIoU Δ points [95% CI] | pixel agreement | p50 ms | × onnxruntime FP32 |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in part["rows"]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="the trained demo model (make demo)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nncf-peer"))
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--speed-side", type=int, default=256, help="input size of the full-size speed part (0: skip it)")
    parser.add_argument("--quick", action="store_true", help="few images, a narrow speed model at 64²: checks the script")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint {args.checkpoint}: run `make demo` to train the demo model, or give --checkpoint PATH")

    import nncf

    from dlcv.bench.machine import machine_info
    from dlcv.bench.random_checkpoint import write_random_checkpoint
    from dlcv.train.data.demo import demo_root

    demo = demo_root("segmentation")
    fast = ["--iters", "2", "--warmup", "1", "--rounds", "1", "--bootstrap", "50", "--e2e-images", "0"] if args.quick else []
    count = 8 if args.quick else args.calib_count
    results = {"command": " ".join(["python", *map(shlex.quote, sys.argv)]), "machine": machine_info("cpu"),
               "nncf_version": nncf.__version__, "calib_count": count, "parts": []}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dlcv-nncf-") as tmp:
        work = Path(tmp)
        files = files_for(args.checkpoint, work / "demo", demo, count, plain=False)
        run(["dlcv-bench", args.checkpoint, *files, "--data", "demo", "--backends", "torch,onnxruntime,openvino",
             "--torch-variants", "channels_last", "--batch-sizes", "1,8", "--images", 16 if args.quick else 150,
             "--out", args.out, "--name", "demo", *fast])  # fmt: skip
        results["parts"].append({"title": "Accuracy and speed: the trained demo FCN8s (64², 150 held-out images)",
                                 "name": "demo", "batch": 1, "rows": summary_rows(args.out / "demo" / "results.json")})  # fmt: skip
        if args.speed_side:
            side = 64 if args.quick else args.speed_side
            checkpoint = write_random_checkpoint("fcn8s", work / "fcn8s-random.pt", num_classes=12, width=0.125 if args.quick else 1.0)
            files = files_for(checkpoint, work / "full", demo, count, plain=True)
            run(["dlcv-bench", checkpoint, *files, "--backends", "onnxruntime,openvino", "--batch-sizes", "1",
                 "--shape", f"{side}x{side}", "--images", 4, "--out", args.out, "--name", f"fcn8s-{side}", *fast])  # fmt: skip
            results["parts"].append({"title": f"Speed: full-size FCN8s, random weights, {side}² (task metrics mean nothing)",
                                     "name": f"fcn8s-{side}", "batch": 1,
                                     "rows": summary_rows(args.out / f"fcn8s-{side}" / "results.json")})  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / "report.md").write_text(render(results))
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
