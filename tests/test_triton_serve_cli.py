"""``dlcv-serve REPO`` as the README tells a user to run it: a relative repository path, the
default ``--triton`` export refused with the flag that fits, the Python-backend export served
to ``dlcv-infer``, SIGTERM stops it, a server killed under it ends the command and its stubs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlcv.runtime.errors import MissingDependencyError
from dlcv.runtime.triton.local_server import find_distribution, free_port

from .runtime.onnx_fixtures import save_image

pytest.importorskip("tritonclient.http")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory, make_checkpoint):
    """``dlcv-export CKPT --triton`` twice, as the README shows: the default (onnxruntime) repository
    and the one with ``--triton-model-backend python``; a few images."""
    try:
        find_distribution()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("serve")
    checkpoint = make_checkpoint("fcn8s", num_classes=5)
    for repo, extra in (("repo-default", []), ("repo", ["--triton-model-backend", "python"])):
        result = subprocess.run([str(BIN / "dlcv-export"), str(checkpoint), "--out", "art", "--triton", repo, *extra],
                                cwd=root, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(0)
    for i in range(6):
        save_image(root / "images" / f"im{i}.png", rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8))
    return root


def _serve(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "dlcv-serve"), *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def _ready_line(process: subprocess.Popen, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("serving "):
            return line
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"dlcv-serve did not start: {process.communicate()}")


def _group_members(group: int) -> list[str]:
    """Living (not zombie) processes of a process group, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(text.split(")")[0] + ")")
    return found


def _server_pid(serve_pid: int) -> int:
    children = Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split()
    (pid,) = [int(p) for p in children if "tritonserver" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    return pid


def test_the_default_export_is_refused_with_the_flag_that_fits(exported):
    result = subprocess.run([str(BIN / "dlcv-serve"), "repo-default"], cwd=exported, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "fcn8s (onnxruntime)" in result.stderr and "--triton-model-backend python" in result.stderr


def test_serves_a_relative_repository_to_dlcv_infer_until_sigterm(exported):
    port = free_port()
    serve = _serve(exported, "repo", "--http-port", str(port))
    try:
        line = _ready_line(serve)
        assert f"127.0.0.1:{port}" in line and "fcn8s_ensemble" in line
        result = subprocess.run([str(BIN / "dlcv-infer"), "images", "--engine", f"triton://127.0.0.1:{port}/fcn8s",
                                 "--out", "served", "-q"], cwd=exported, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "6 processed" in result.stdout
        local = subprocess.run([str(BIN / "dlcv-infer"), "images", "--engine", "art/fcn8s.onnx", "--out", "local", "-q"],
                               cwd=exported, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert local.returncode == 0, local.stderr
        for i in range(6):
            assert (exported / "served" / f"im{i}.png").read_bytes() == (exported / "local" / f"im{i}.png").read_bytes()
        server = _server_pid(serve.pid)
        assert len(_group_members(server)) >= 2  # tritonserver and its Python-backend stubs (a group of their own)
        os.kill(serve.pid, signal.SIGTERM)
        _, stderr = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 0, stderr
    assert _group_members(server) == []


def test_a_server_killed_under_it_ends_the_command_and_its_stubs(exported):
    serve = _serve(exported, "repo", "--http-port", str(free_port()))
    try:
        _ready_line(serve)
        server = _server_pid(serve.pid)
        assert len(_group_members(server)) >= 2  # tritonserver and its Python-backend stubs
        os.kill(server, signal.SIGKILL)
        _, stderr = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 1
    assert stderr.startswith("Ctrl-C stops the server\nerror: tritonserver exited on its own (code -9)"), stderr
    assert "Traceback" not in stderr
    assert _group_members(server) == []  # no stub left running
