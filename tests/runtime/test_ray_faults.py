"""A Ray cluster stopped mid-run (its processes killed): dlcv-infer --ray ends within seconds with
one line naming the lost cluster and --skip-existing, keeps what it wrote, and a resumed run on a
restarted cluster ends with the metrics of an uninterrupted run. The cluster is a real
``ray start --head`` of its own (its own temp folder; only its processes are killed)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from dlcv.runtime.imageio import read_label_map
from dlcv.runtime.infer import InferConfig, run_inference

try:
    from .onnx_fixtures import SEG_COLOURS, save_image, save_mask
except ImportError:
    from onnx_fixtures import SEG_COLOURS, save_image, save_mask  # type: ignore[no-redef]

pytest.importorskip("ray")
IMAGES = 400
BIN = Path(sys.executable).parent


class Cluster:
    """``ray start --head`` in a temp folder of its own; :meth:`kill` ends exactly its processes."""

    def __init__(self) -> None:
        from dlcv.runtime.triton.local_server import free_port

        self.temp = tempfile.mkdtemp(prefix="dlcv-ray-", dir="/tmp")  # short: Ray's socket paths must fit
        self.port = free_port()
        result = subprocess.run([str(BIN / "ray"), "start", "--head", "--port", str(self.port), "--num-cpus", "2",
                                 "--temp-dir", self.temp, "--disable-usage-stats", "--include-dashboard=false"],
                                capture_output=True, text=True, timeout=180)  # fmt: skip
        if result.returncode:
            self.kill()
            pytest.fail(f"ray start failed: {result.stderr[-2000:]}")

    def pids(self) -> list[int]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if self.temp.encode() in cmdline.read_bytes():
                    found.append(int(cmdline.parent.name))
            except (OSError, ValueError):
                continue
        return found

    def kill(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


def _infer(root: Path, cluster: Cluster, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # `ray start` enables token authentication (Ray 2.60)
    command = [str(BIN / "dlcv-infer"), str(root / "images"), "--engine", str(root / "seg.onnx"), "--out", str(out),
               "--labels", str(root / "labels"), "--batch-size", "2", "-q", "--ray", f"127.0.0.1:{cluster.port}",
               "--ray-actors", "1", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from .onnx_fixtures import colour_model

    root = tmp_path_factory.mktemp("ray_faults")
    colour_model(root / "seg.onnx")
    rng = np.random.default_rng(11)
    for i in range(IMAGES):
        save_image(root / "images" / f"im{i:03d}.png", rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
        save_mask(root / "labels" / f"im{i:03d}.png", rng.integers(0, len(SEG_COLOURS), size=(48, 64)))
    return root


@pytest.mark.slow
def test_a_ray_cluster_stopped_mid_run_stops_the_run_and_skip_existing_resumes_it(data, tmp_path):
    out = tmp_path / "ray"
    cluster = Cluster()
    try:
        run = _infer(data, cluster, out)
        deadline = time.monotonic() + 180
        while len(list(out.glob("*_color.png"))) < 10 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()
        cluster.kill()
        killed_at = time.monotonic()
        stdout, stderr = run.communicate(timeout=120)
        stopped_after_s = time.monotonic() - killed_at
    finally:
        cluster.kill()
    assert run.returncode == 1, (stdout, stderr)
    assert stopped_after_s < 30, stopped_after_s  # not Ray's own minute-long wait for its GCS
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "lost the Ray cluster" in errors[0] and "--skip-existing" in errors[0], stderr
    assert "Traceback" not in stderr
    assert not (out / "metrics.json").exists()
    masks = sorted(p for p in out.glob("im*.png") if not p.name.endswith("_color.png"))
    assert 10 <= len(masks) < IMAGES

    local = tmp_path / "local"
    run_inference(InferConfig(engine=data / "seg.onnx", images=data / "images", out=local, labels=data / "labels",
                              progress=False))  # fmt: skip
    for mask in masks:
        np.testing.assert_array_equal(read_label_map(mask), read_label_map(local / mask.name))

    cluster = Cluster()
    try:
        resumed = _infer(data, cluster, out, "--skip-existing")
        stdout, stderr = resumed.communicate(timeout=300)
    finally:
        cluster.kill()
    assert resumed.returncode == 0, (stdout, stderr)
    assert "constructor arguments in the object store" not in stderr  # Ray's error line about actor restarts
    record, reference = (json.loads((folder / "metrics.json").read_text()) for folder in (out, local))
    assert record["metrics"] == reference["metrics"]
    assert record["counts"]["processed"] + record["counts"]["kept_from_earlier_run"] == IMAGES
