"""A served run under faults, against the real tritonserver ``make install-triton`` installs: a
server killed mid-run stops dlcv-infer (one line, non-zero, no traceback, outputs kept) and a
resumed run after a restart ends with the metrics of an uninterrupted run; why a model is not
available comes from the server's repository index."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlcv.export.triton import TritonConfig, write_repository
from dlcv.runtime.errors import DlcvError, MissingDependencyError
from dlcv.runtime.imageio import read_label_map
from dlcv.runtime.infer import InferConfig, run_inference
from dlcv.runtime.triton.local_server import LocalTritonServer, find_distribution

from .runtime.onnx_fixtures import colour_model, save_image, save_mask

pytest.importorskip("tritonclient.http")

IMAGES = 300


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    try:
        find_distribution()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("faults")
    model = colour_model(root / "seg.onnx")
    write_repository(TritonConfig(root / "repo", name="seg", model_backend="python", max_queue_delay_us=0), model)
    rng = np.random.default_rng(5)
    for i in range(IMAGES):
        save_image(root / "images" / f"im{i:03d}.png", rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
        save_mask(root / "labels" / f"im{i:03d}.png", rng.integers(0, 5, size=(12, 16)))
    return root


def _infer(root: Path, url: str, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "dlcv.runtime.cli", str(root / "images"), "--engine", url, "--out", str(out),
               "--labels", str(root / "labels"), "--batch-size", "2", "-q", *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_server_killed_mid_run_stops_the_run_and_skip_existing_resumes_it(repository, tmp_path):
    root, out = repository, tmp_path / "served"
    server = LocalTritonServer(root / "repo").start()
    try:
        run = _infer(root, f"triton://{server.url}/seg", out)
        deadline = time.monotonic() + 120
        while len(list(out.glob("*_color.png"))) < 20 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, run.communicate()
        os.kill(server.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        stdout, stderr = run.communicate(timeout=60)
        stopped_after_s = time.monotonic() - killed_at
    finally:
        server.stop()
    assert run.returncode == 1, (stdout, stderr)
    assert stopped_after_s < 30  # the bounded retries (0.5 + 1 + 2 s), not one failure per remaining image
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "lost the Triton server" in lines[0] and "--skip-existing" in lines[0], lines[0]
    assert "Traceback" not in stderr and "processed" not in stdout
    assert not (out / "metrics.json").exists()  # no metrics scored on part of the images
    masks = sorted(p for p in out.glob("im*.png") if not p.name.endswith("_color.png"))
    assert 20 <= len(masks) < IMAGES
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    local = tmp_path / "local"
    run_inference(InferConfig(engine=root / "seg.onnx", images=root / "images", out=local, labels=root / "labels",
                              progress=False))  # fmt: skip
    for mask in masks:  # what was written before the kill is whole and right
        np.testing.assert_array_equal(read_label_map(mask), read_label_map(local / mask.name))

    with LocalTritonServer(root / "repo") as restarted:  # a new port: the resumed run names it
        resumed = _infer(root, f"triton://{restarted.url}/seg", out, "--skip-existing")
        stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, (stdout, stderr)
    for name, data in written.items():
        if name.startswith("im"):
            assert (out / name).read_bytes() == data
    record, reference = (json.loads((folder / "metrics.json").read_text()) for folder in (out, local))
    assert record["metrics"] == reference["metrics"]
    assert record["counts"]["processed"] + record["counts"]["kept_from_earlier_run"] == IMAGES


def _broken_repository(source: Path, target: Path) -> Path:
    """A copy of the repository with three model steps that cannot load: ``ort`` on the onnxruntime
    backend (this server has only the Python one), ``syntax`` with a config.pbtxt Triton cannot
    parse, ``badjson`` whose dlcv parameter is not JSON."""
    import shutil

    shutil.copytree(source / "repo", target)
    model = source / "seg.onnx"
    write_repository(TritonConfig(target, name="ort", model_backend="onnxruntime"), model)
    for name in ("syntax", "badjson"):
        write_repository(TritonConfig(target, name=name, model_backend="python"), model)
    for name in ("ort", "syntax", "badjson"):
        for suffix in ("_preprocess", "_postprocess", "_ensemble"):
            shutil.rmtree(target / (name + suffix))
    config = target / "syntax" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_size: :", 1))
    config = target / "badjson" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "{', 'string_value: "{broken', 1))
    return target


def test_why_a_model_is_unavailable_comes_from_the_repository_index(repository, tmp_path):
    from dlcv.runtime.backends import open_backend

    repo = _broken_repository(repository, tmp_path / "repo")
    with LocalTritonServer(repo, exit_on_error=False) as server:
        url = f"triton://{server.url}"
        with pytest.raises(DlcvError, match=r"'ort' is UNAVAILABLE on the server: .*backend 'onnxruntime'.*"
                                            r"no onnxruntime backend: export with --triton-model-backend python"):
            open_backend(f"{url}/ort")
        with pytest.raises(DlcvError, match=r"'badjson' is UNAVAILABLE on the server: .*dlcv metadata is not valid JSON"):
            open_backend(f"{url}/badjson")
        with pytest.raises(DlcvError, match=r"'syntax' is in the server's repository but was not loaded .*config\.pbtxt"):
            open_backend(f"{url}/syntax")
        with open_backend(f"{url}/seg") as backend:  # the models that load are served
            assert backend.metadata.task == "segmentation"


def test_a_server_that_cannot_load_a_model_shows_the_cause_line_of_its_log(repository, tmp_path):
    repo = _broken_repository(repository, tmp_path / "repo")
    with pytest.raises(DlcvError, match="tritonserver exited") as caught:
        LocalTritonServer(repo).start()
    message = str(caught.value)
    assert "failed to load 'badjson'" in message and "dlcv metadata is not valid JSON" in message
    assert "failed to read text proto" in message and "syntax" in message
