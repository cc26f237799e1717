"""Every kind of file dlcv writes gets the mode a plain ``open()`` gives under the process umask
(0644 under umask 022), so a Triton server, a Ray worker or a web server running as another user
can read the checkpoints, ONNX files, Triton repositories, masks and metrics."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.runtime.atomic import atomic_path, write_bytes_atomic
from dlcv.runtime.cli import main as infer_main

from .conftest import write_test_checkpoint
from .runtime.onnx_fixtures import save_image, save_mask


@pytest.fixture
def umask():
    """``umask(value)`` for the test; the process umask is restored afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*")) if p.is_file()}


def _open_mode(folder: Path) -> int:
    """The mode a plain open() gives a new file here, now."""
    probe = folder / "plain-open-probe"
    with open(probe, "w"):
        pass
    mode = stat.S_IMODE(probe.stat().st_mode)
    probe.unlink()
    return mode


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_take_the_umask(umask, tmp_path, mask):
    umask(mask)
    write_bytes_atomic(tmp_path / "a.bin", b"x")
    with atomic_path(tmp_path / "b.onnx") as tmp:
        tmp.write_bytes(b"y")  # written by another library (onnx.save, torch.save, cv2) at the given path
    assert _modes(tmp_path) == {"a.bin": 0o666 & ~mask, "b.onnx": 0o666 & ~mask}
    assert _open_mode(tmp_path) == 0o666 & ~mask


def test_checkpoint_export_triton_repository_and_infer_outputs_are_0644_under_umask_022(umask, tmp_path):
    from dlcv.export.cli import main as export_main

    umask(0o022)
    checkpoint = write_test_checkpoint(tmp_path / "run" / "best.pt", "fcn8s", num_classes=3)
    result = CliRunner().invoke(export_main, [str(checkpoint), "--out", str(tmp_path / "art"), "--triton",
                                              str(tmp_path / "repo"), "--triton-model-backend", "python"])  # fmt: skip
    assert result.exit_code == 0, result.output
    onnx_file = tmp_path / "art" / "fcn8s.onnx"
    rng = np.random.default_rng(0)
    for i in range(3):
        save_image(tmp_path / "images" / f"im{i}.png", rng.integers(0, 256, size=(16, 20, 3), dtype=np.uint8))
        save_mask(tmp_path / "labels" / f"im{i}.png", rng.integers(0, 3, size=(16, 20)))
    (tmp_path / "images" / "broken.png").write_bytes(b"not an image")
    result = CliRunner().invoke(infer_main, [str(tmp_path / "images"), "--engine", str(onnx_file), "--out",
                                             str(tmp_path / "pred"), "--labels", str(tmp_path / "labels"), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output

    written = {**{f"run/{k}": v for k, v in _modes(tmp_path / "run").items()},
               **{f"art/{k}": v for k, v in _modes(tmp_path / "art").items()},
               **{f"repo/{k}": v for k, v in _modes(tmp_path / "repo").items()},
               **{f"pred/{k}": v for k, v in _modes(tmp_path / "pred").items()}}  # fmt: skip
    for expected in ("run/best.pt", "art/fcn8s.onnx", "repo/fcn8s/1/model.onnx", "repo/fcn8s/config.pbtxt",
                     "pred/im0.png", "pred/im0_color.png", "pred/metrics.json", "pred/errors.csv"):  # fmt: skip
        assert expected in written, sorted(written)
    plain = _open_mode(tmp_path)
    assert plain == 0o644
    assert {name: oct(mode) for name, mode in written.items() if mode != plain} == {}
