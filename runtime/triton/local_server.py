"""A local ``tritonserver`` for tests and benchmarks, from the binary the nvidia-pytriton wheel ships.

That wheel carries a real Triton Inference Server (CPU-capable, Python backend only) but pins
numpy<2, so ``make install`` puts it where it cannot change the suite's packages:
``pip install --no-deps --target <venv>/triton/pytriton nvidia-pytriton==X`` and, for its
Python-backend stub (built against numpy 1, whose tensors arrive garbled under numpy 2),
``numpy<2`` in ``<venv>/triton/stub-numpy``. :func:`find_distribution` looks there (or in
``$DLCV_TRITON_HOME``).

:class:`LocalTritonServer` handles what running it needs (each a trap measured here):

- a backend folder with the Python backend and the stub built for this interpreter's version;
- the stub embeds libpython: ``LD_LIBRARY_PATH`` starts with this interpreter's library folder
  (else the system's libpython is taken), then the wheel's own libraries;
- the stub finds its Python environment from ``python3`` on ``PATH``: a small environment
  whose site-packages hold numpy<2 first and then this interpreter's packages (dlcv included);
- HTTP only, bound to 127.0.0.1 on a free port (gRPC and metrics off);
- readiness polled with a bound timeout, the log's tail in the error when it fails;
- stopped by its process id: SIGTERM to the server (it unloads the models and ends its stubs),
  SIGKILL after a grace period, then SIGKILL to whatever is left in its process group (the
  server starts in a session of its own, so that group is the server's and its stubs'):
  nothing is left orphaned.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path

from ..errors import DlcvError, MissingDependencyError

HOME_ENV = "DLCV_TRITON_HOME"
_ERROR_LINE = re.compile(r"^E\d{4} ")  # Triton's log lines: <severity><MMDD> <time> ...
EXIT_TIMEOUT_S = 5  # a client's open keep-alive connection holds a stopping server this long (30 s by default)


@dataclass(frozen=True)
class TritonDistribution:
    """The files of a tritonserver distribution (the nvidia-pytriton wheel's layout)."""

    binary: Path
    libraries: Path
    python_backend: Path  # folder with libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # the Python-backend stub for this interpreter's Python version
    stub_numpy: Path | None  # site folder with numpy<2 for the stub, when installed


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path(sys.prefix) / "triton")


def find_distribution(home: str | os.PathLike | None = None) -> TritonDistribution:
    """The tritonserver installed under ``home`` (default: ``$DLCV_TRITON_HOME`` or ``<venv>/triton``)."""
    home = Path(home) if home is not None else default_home()
    root = home / "pytriton" / "pytriton" / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    dist = TritonDistribution(
        binary=root / "bin" / "tritonserver",
        libraries=home / "pytriton" / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        stub_numpy=(home / "stub-numpy") if (home / "stub-numpy" / "numpy").is_dir() else None,
    )
    missing = [p for p in (dist.binary, dist.libraries, dist.python_backend / "libtriton_python.so", dist.stub) if not p.exists()]
    if missing:
        raise MissingDependencyError(
            f"no tritonserver under {home} (missing {missing[0]}); install it with make install, or "
            f"pip install --no-deps --target {home}/pytriton nvidia-pytriton, or point ${HOME_ENV} at one"
        )
    return dist


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Triton's platform names -> the backend that runs them (a config names one or the other)
_PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
              "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow", "ensemble": "ensemble"}  # fmt: skip
_BACKEND_LINE = re.compile(r'^(backend|platform)\s*:\s*"([^"]+)"', re.MULTILINE)  # top level: not indented


def repository_backends(repository: str | os.PathLike) -> dict[str, str | None]:
    """Each model of a Triton repository (a folder with a ``config.pbtxt``) -> the backend it
    needs (``ensemble`` for an ensemble; None when its config names neither)."""
    models = {}
    for config in sorted(Path(repository).glob("*/config.pbtxt")):
        found = dict((key, value) for key, value in _BACKEND_LINE.findall(config.read_text(errors="replace")))
        backend = found.get("backend") or _PLATFORMS.get(found.get("platform", ""), found.get("platform"))
        models[config.parent.name] = backend
    return models


def check_repository(repository: str | os.PathLike, backends: tuple[str, ...]) -> dict[str, str | None]:
    """The repository's models and backends (:func:`repository_backends`), refused when it has
    none or when one needs a backend that is not in ``backends`` (the server would not start)."""
    repo = Path(repository)
    if not repo.is_dir():
        raise DlcvError(f"{repo}: no such folder; write a model repository with dlcv-export CKPT --triton {repo}")
    models = repository_backends(repo)
    if not models:
        raise DlcvError(f"{repo}: no models (folders with a config.pbtxt); write one with dlcv-export CKPT --triton {repo}")
    missing = {name: backend for name, backend in models.items() if backend not in (*backends, "ensemble", None)}
    if missing:
        listed = ", ".join(f"{name} ({backend})" for name, backend in sorted(missing.items()))
        fix = (
            f"export it again with dlcv-export CKPT --triton {repo} --triton-model-backend python (the model step "
            "on dlcv's onnxruntime inside Triton's Python backend)"
        )
        if set(missing.values()) - {"onnxruntime"}:
            fix += "; a TensorRT or other native backend needs a full Triton build (the NGC container, see the README)"
        raise MissingDependencyError(
            f"{repo}: this tritonserver has only the {', '.join(backends)} backend and cannot load {listed}: {fix}"
        )
    return models


class LocalTritonServer:
    """``with LocalTritonServer(repo) as server: server.url`` -> ``"127.0.0.1:<port>"``."""

    BACKENDS = ("python",)  # what the nvidia-pytriton build carries (ensembles are built in)

    def __init__(self, repository: str | os.PathLike, *, home: str | os.PathLike | None = None,
                 ready_timeout_s: float = 120.0, log_verbose: int = 0, http_port: int | None = None,
                 http_address: str = "127.0.0.1", exit_on_error: bool = True):  # fmt: skip
        self.repository = Path(os.path.abspath(repository))  # the server runs in a folder of its own
        self.distribution = find_distribution(home)
        self.ready_timeout_s = ready_timeout_s
        self.log_verbose = log_verbose
        self.http_port = http_port  # None: a free port
        self.http_address = http_address
        self.exit_on_error = exit_on_error  # False: serve the models that load, report the others
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.http_address in ("0.0.0.0", "::") else self.http_address
        return f"{host}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "tritonserver.log"

    def log_tail(self, lines: int = 30) -> str:
        """The log's error lines (Triton starts them with ``E``: a model's load failure names its
        cause there, often far above the end) and then its last ``lines`` lines."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = text[-lines:]
        errors = [line for line in text[:-lines] if _ERROR_LINE.match(line)]
        return "\n".join(errors + (["..."] if errors else []) + tail)

    # -- the environment the server and its stubs run in

    def _backends(self, workdir: Path) -> Path:
        folder = workdir / "backends" / "python"
        folder.mkdir(parents=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(self.distribution.python_backend / name, folder / name)
        shutil.copy2(self.distribution.stub, folder / "triton_python_backend_stub")
        return workdir / "backends"

    def _stub_environment(self, workdir: Path) -> Path:
        """A venv whose ``python3`` the stub finds on PATH: numpy<2 first, then this interpreter's packages."""
        env = workdir / "stub-env"
        venv.EnvBuilder(with_pip=False, symlinks=True).create(env)
        site_dir = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
        lines = [str(self.distribution.stub_numpy)] if self.distribution.stub_numpy is not None else []
        lines += [f"import site; site.addsitedir({p!r})" for p in dict.fromkeys(_site_dirs())]
        (site_dir / "00-dlcv-stub.pth").write_text("\n".join(lines) + "\n")
        return env

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = dict(os.environ)
        stub_env = self._stub_environment(workdir)
        env["PATH"] = f"{stub_env / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        libs = [sysconfig.get_config_var("LIBDIR") or "", str(self.distribution.libraries), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env.pop("PYTHONPATH", None)
        return env

    # -- start / stop

    def start(self) -> "LocalTritonServer":
        if self.distribution.stub_numpy is None and _numpy_major() >= 2:
            raise MissingDependencyError(
                "this tritonserver's Python-backend stub needs numpy<2 in its environment (with numpy 2 its tensors "
                f"arrive garbled); install one where the suite cannot see it: pip install --no-deps --target "
                f"{default_home()}/stub-numpy 'numpy<2' (make install does)"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="dlcv-triton-"))
        backends = self._backends(self.workdir)
        env = self._environment(self.workdir)
        self.port = self.http_port or free_port()
        strict = "true" if self.exit_on_error else "false"
        command = [
            str(self.distribution.binary), f"--model-repository={self.repository}", f"--backend-directory={backends}",
            f"--http-address={self.http_address}", f"--http-port={self.port}", "--allow-grpc=false",
            "--allow-metrics=false", f"--exit-on-error={strict}", f"--strict-readiness={strict}",
            f"--log-verbose={self.log_verbose}", f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.workdir, start_new_session=True)  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        ready = f"http://{self.url}/v2/health/ready"
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise DlcvError(f"tritonserver exited with code {code} before it was ready:\n{self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise DlcvError(f"tritonserver was not ready after {self.ready_timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def wait(self) -> int:
        """Block until the server exits on its own; its exit code."""
        assert self.process is not None, "start() first"
        return self.process.wait()

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the server by its process id (SIGTERM: it unloads the models and ends its stubs),
        SIGKILL after ``grace_s``; then anything left in its process group; remove the work folder."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=grace_s)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # stubs that outlived the server (its own session)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (a venv's own first)."""
    import site

    dirs = [p for p in site.getsitepackages() if os.path.isdir(p)]
    return dirs or [sysconfig.get_path("purelib")]


def _numpy_major() -> int:
    import numpy

    return int(numpy.__version__.split(".")[0])
