"""`make demo`: train a narrow FCN8s on the built-in digits data, export it, run dlcv-infer with
PyTorch and onnxruntime on the held-out test images, and print their mIoU and latency side by side.

Each step runs the real command-line tool, exactly as a user would type it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def run(args: list[str]) -> None:
    print(f"\n$ {' '.join(shlex.quote(a) for a in args)}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(BIN / args[0]), *args[1:]], check=True)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def mask_agreement(a: Path, b: Path) -> float:
    """Share of pixels on which two folders of index masks agree."""
    from dlcv.runtime.imageio import read_label_map

    same = total = 0
    for mask_a in sorted(a.glob("*.png")):
        if mask_a.stem.endswith("_color"):
            continue
        x, y = read_label_map(mask_a), read_label_map(b / mask_a.name)
        same += int(np.count_nonzero(x == y))
        total += x.size
    return same / total if total else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="fcn8s")
    p.add_argument("--width", default="0.125")
    p.add_argument("--epochs", default="7")
    p.add_argument("--lr", default="1e-3")
    p.add_argument("--batch-size", default="8")
    p.add_argument("--run", type=Path, default=Path("runs/demo-fcn8s"))
    p.add_argument("--artifacts", type=Path, default=Path("artifacts/demo-fcn8s"))
    p.add_argument("--out", type=Path, default=Path("demo-out"))
    a = p.parse_args()

    from dlcv.train.data.demo import demo_root

    t_start = time.perf_counter()
    data = demo_root("segmentation")
    print(f"demo data: {data}")
    run(["dlcv-train", a.model, "--data", "demo", "--width", a.width, "--epochs", a.epochs, "--lr", a.lr,
         "--batch-size", a.batch_size, "--scheduler", "cosine", "--model-arg", "batch_norm=true",
         "--no-tensorboard", "--out", str(a.run)])  # fmt: skip
    run(["dlcv-export", str(a.run / "best.pt"), "--out", str(a.artifacts)])
    onnx_path = a.artifacts / f"{a.model}.onnx"
    rows = []
    for name, engine in (("torch", a.run / "best.pt"), ("onnxruntime", onnx_path)):
        out = a.out / name
        run(["dlcv-infer", "--engine", str(engine), str(data / "test"), "--labels", str(data / "testannot"),
             "--out", str(out), "--overwrite", "--batch-size", "8"])  # fmt: skip
        rows.append((name, json.loads((out / "metrics.json").read_text())))

    agreement = mask_agreement(a.out / "torch", a.out / "onnxruntime")
    n_test = len(list((data / "test").glob("*.png")))
    print(f"\nHeld-out demo test images ({n_test} images, 64×64), same preprocessing, same dlcv-infer pipeline:\n")
    print(f"{'backend':<12} {'mIoU':>7} {'pixel acc':>9} {'infer ms/img':>12} {'end-to-end ms/img':>18}")
    for name, m in rows:
        t = m["timing"]
        print(f"{name:<12} {m['metrics']['miou']:>7.4f} {m['metrics']['pixel_accuracy']:>9.4f} "
              f"{t['inference_ms_per_image']:>12.3f} {1000.0 / t['throughput_img_s']:>18.3f}")  # fmt: skip
    print(f"\npixel-label agreement torch vs onnxruntime: {agreement * 100:.4f} %")
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
