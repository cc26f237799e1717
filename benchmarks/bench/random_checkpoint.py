"""An untrained dlcv checkpoint with random, well-scaled weights, for latency benchmarks of full-size models.

    python -m dlcv.bench.random_checkpoint fcn8s --out /tmp/fcn8s-random.pt

Every convolution and linear layer gets He-normal weights (fan-in, so activations keep their
scale through the network and the logits are of order 1, with real top-2 margins) and zero
biases; batch norm keeps its identity statistics, and the FCN's bilinear upsampling kernels
are kept. The registry's own initialisation zeroes the FCN score layers (all logits equal),
which would make parity meaningless. Seeded: the same file on every machine.
"""

from __future__ import annotations

import argparse
from dlcv.runtime.task import get_task
from pathlib import Path

NOTE = "untrained: random He-normal weights (dlcv.bench.random_checkpoint); latency is meaningful, task metrics are not"


def write_random_checkpoint(
    arch: str, path: Path, *, num_classes: int | None = None, width: float = 1.0, seed: int = 0
) -> Path:
    """Build ``arch`` with random weights and save it as a self-describing checkpoint at ``path``."""
    import torch
    import torch.nn as nn

    from dlcv.train.checkpoint import build_checkpoint, save_checkpoint
    from dlcv.train.registry import create_model, model_info

    info = model_info(arch)
    n = num_classes or info.default_num_classes
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=n, width=width).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    palette = None
    if get_task(info.task).per_pixel:
        from dlcv.runtime.postprocess import default_palette

        palette = default_palette(n).tolist()
    ckpt = build_checkpoint(
        model, arch=arch, arch_kwargs={"width": width}, class_names=[f"class_{c}" for c in range(n)],
        preprocess=info.config.preprocess, palette=palette, metrics={"note": NOTE},
    )  # fmt: skip
    return save_checkpoint(path, ckpt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_random_checkpoint(args.arch, args.out, num_classes=args.num_classes, width=args.width, seed=args.seed)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
