"""Fixtures of the dlcv-analyze tests: tiny demo data, narrow checkpoints, hand-made run folders."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

CLS_ARCH = dict(arch="cnn_small", num_classes=10, width=0.25)  # 32-wide penultimate layer, features that vary
SEG_ARCH = dict(arch="fcn8s", num_classes=11)
SIZE_NOTE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)\n\n\*[^*]*\* \((\d+)×(\d+) px\)")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """``{task: dataset folder}``: the demo layouts with 6 segmentation / 30 classification val images."""
    from dlcv.train.data.demo import DemoSizes, demo_root

    cache = tmp_path_factory.mktemp("demo-cache")
    sizes = DemoSizes(seg=(1, 6, 1), cls=(1, 30, 1))
    return {task: demo_root(task, cache, sizes) for task in ("segmentation", "classification")}


@pytest.fixture(scope="session")
def cls_checkpoint(make_checkpoint) -> Path:
    spec = dict(CLS_ARCH)
    return make_checkpoint(spec.pop("arch"), **spec)


@pytest.fixture(scope="session")
def seg_checkpoint(make_checkpoint) -> Path:
    spec = dict(SEG_ARCH)
    return make_checkpoint(spec.pop("arch"), **spec)


def write_epoch_checkpoint(path: Path, arch: str, epoch: int, **kwargs) -> Path:
    """A narrow checkpoint (weights seeded by ``epoch``) that records ``epoch``, as dlcv-train's do."""
    from dlcv.train.checkpoint import load_checkpoint, save_checkpoint
    from tests.conftest import write_test_checkpoint

    write_test_checkpoint(path, arch, seed=epoch, **kwargs)
    ckpt = load_checkpoint(path)
    ckpt["epoch"] = epoch
    return save_checkpoint(path, ckpt)


def write_log_csv(path: Path, epochs) -> Path:
    rows = ["epoch,train_loss,val_loss,val_metric,val_pixel_accuracy,lr,seconds"]
    rows += [f"{e},{2.0 / e:.6f},{2.5 / e:.6f},{0.1 * e:.6f},{0.2 * e:.6f},{1e-3 * 0.1 ** (e // 3)},1.25" for e in epochs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def make_run(root: Path, arch: str, epochs, *, snapshots: bool, best: int | None = None, **kwargs) -> Path:
    """A run folder: log.csv, best.pt (epoch ``best``, default the last), last.pt and, with
    ``snapshots``, ``epochs/epoch_NNN.pt`` for every epoch."""
    write_log_csv(root / "log.csv", epochs)
    write_epoch_checkpoint(root / "last.pt", arch, epochs[-1], **kwargs)
    write_epoch_checkpoint(root / "best.pt", arch, epochs[-1] if best is None else best, **kwargs)
    if snapshots:
        for e in epochs:
            write_epoch_checkpoint(root / "epochs" / f"epoch_{e:03d}.pt", arch, e, **kwargs)
    return root


def report_figures(report: Path) -> list[tuple[Path, int, int]]:
    """Every figure the report shows: (file, stated width, stated height)."""
    text = report.read_text(encoding="utf-8")
    return [(report.parent / m.group(1), int(m.group(2)), int(m.group(3))) for m in SIZE_NOTE.finditer(text)]


def assert_png(path: Path, width: int, height: int) -> None:
    """``path`` is a PNG file that decodes to ``width``×``height`` RGB pixels."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} does not decode"
    assert image.shape == (height, width, 3), f"{path}: {image.shape[1]}×{image.shape[0]}, stated {width}×{height}"


def assert_report_shows_every_png(out: Path) -> list[Path]:
    """report.md shows every PNG of ``out``, each at its stated size; returns the PNGs."""
    report = out / "report.md"
    shown = report_figures(report)
    pngs = sorted(out.glob("*.png"))
    assert sorted(p.resolve() for p, _, _ in shown) == [p.resolve() for p in pngs]
    for path, width, height in shown:
        assert_png(path, width, height)
    return pngs
