"""Issue 6: a run killed mid-epoch resumes from its last complete epoch and ends exactly where an
uninterrupted run ends (CPU, fixed seed): same log rows, same weights, same optimiser state."""
from __future__ import annotations

import csv
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dlcv.runtime.errors import DlcvError
from dlcv.train.checkpoint import load_checkpoint
from dlcv.train.cli import main
from dlcv.train.loop import rng_state, set_rng_state

from tests.runtime.datasets.fixtures import write_camvid

# Everything that draws random numbers or carries state across epochs: dropout (FCN), random
# augmentation, AdamW moments, a cosine schedule planned over 3 epochs, class weights.
OPTIONS = [
    "fcn8s", "--width", "0.0625", "--epochs", "3", "--batch-size", "2", "--seed", "3", "--lr", "1e-3",
    "--optimizer", "adamw", "--weight-decay", "0.01", "--scheduler", "cosine", "--class-weights", "median",
    "--hflip", "--scale", "0.75,1.25", "--crop", "16x16", "--color-jitter", "0.1", "--overlays", "1",
    "--no-tensorboard", "--quiet",
]  # fmt: skip

# Runs the real CLI, but SIGKILLs the process at the second batch of epoch 3 (mid-epoch).
KILL_MID_EPOCH_3 = textwrap.dedent(
    """
    import os, signal, sys
    from dlcv.train import loop
    original, seen = loop.Trainer._step, []
    def step(self, groups, epoch):
        if epoch == 3:
            seen.append(1)
            if len(seen) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, groups, epoch)
    loop.Trainer._step = step
    from dlcv.train.cli import main
    main(sys.argv[1:], prog_name="dlcv-train")
    """
)


def _rows(run) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def _assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _optimizer_tensors(ckpt: dict) -> dict:
    state = ckpt["train_state"]["optimizer"]["state"]
    return {f"{i}.{k}": v for i, s in state.items() for k, v in s.items() if torch.is_tensor(v)}


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    data = write_camvid(tmp_path / "data", counts=(4, 2, 0))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _invoke(*OPTIONS, "--data", data, "--out", whole)

    proc = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH_3, *OPTIONS, "--data", str(data), "--out", str(killed)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [r["epoch"] for r in _rows(killed)] == ["1", "2"]
    assert load_checkpoint(killed / "last.pt")["epoch"] == 2  # the last complete epoch
    assert not [p for p in killed.iterdir() if p.name.startswith(".")]  # no half-written file left

    _invoke(*OPTIONS, "--data", data, "--resume", killed / "last.pt")  # --out: the run's folder

    assert _rows(killed) == _rows(whole) and len(_rows(whole)) == 3
    final_whole, final_resumed = load_checkpoint(whole / "last.pt"), load_checkpoint(killed / "last.pt")
    _assert_same_tensors(final_resumed["state_dict"], final_whole["state_dict"])
    _assert_same_tensors(_optimizer_tensors(final_resumed), _optimizer_tensors(final_whole))
    assert final_resumed["metrics"] == final_whole["metrics"]
    _assert_same_tensors(load_checkpoint(killed / "best.pt")["state_dict"], load_checkpoint(whole / "best.pt")["state_dict"])
    assert sorted(p.name for p in (killed / "overlays").iterdir()) == ["epoch_001.png", "epoch_002.png", "epoch_003.png"]


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    path = tmp_path / "rng.pt"
    torch.save(rng_state(), path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(path, weights_only=True))  # plain tensors and numbers only
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_resume_needs_a_last_checkpoint(tmp_path):
    data = write_camvid(tmp_path / "data", counts=(2, 1, 0))
    _invoke("fcn8s", "--width", "0.0625", "--data", data, "--epochs", 1, "--out", tmp_path / "run", "--no-tensorboard",
            "--overlays", 0, "--quiet")  # fmt: skip
    result = CliRunner().invoke(main, ["fcn8s", "--width", "0.0625", "--data", str(data), "--epochs", "2",
                                       "--resume", str(tmp_path / "run" / "best.pt"), "--quiet"])  # fmt: skip
    assert result.exit_code == 1 and "has no training state to resume from; resume from the run's last.pt" in result.output
    with pytest.raises(DlcvError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "run" / "nope.pt")
