"""A model served by Triton Inference Server: ``dlcv-infer --engine triton://HOST:PORT/NAME images/``.

The client side of the repository ``dlcv-export --triton`` writes. ``NAME`` is the model that
takes the preprocessed tensor (``<arch>``, not the ensemble), so a served run decodes,
preprocesses, postprocesses, scores and writes exactly as a local run does; only the model
step goes over HTTP. The metadata comes from the served model's config (its ``dlcv``
parameter). A batch is split into up to ``concurrency`` requests sent at once, so Triton's
dynamic batcher can regroup them with other clients' requests.

tritonclient is imported when a model is opened (``pip install 'dlcv[triton]'``).
"""
from __future__ import annotations

import importlib.metadata
import math
import re
import time
from pathlib import Path

import numpy as np

from ..errors import BackendLostError, DlcvError, MissingDependencyError, first_line
from ..metadata import ArtifactMetadata
from ..triton import ENSEMBLE_SUFFIX, METADATA_PARAMETER, POSTPROCESS_SUFFIX, PREPROCESS_SUFFIX
from .base import Backend, Outputs, concat_outputs

_URL = re.compile(r"^triton://(?P<host>\[[^\]]+\]|[^/:]+)(?::(?P<port>\d+))?/(?P<model>[^/]+)(?:/(?P<version>\d+))?/?$")
DEFAULT_PORT = 8000
DEFAULT_CONCURRENCY = 4
RETRIES = 3  # a batch whose connection fails is sent again this many times, waiting BACKOFF_S, 2x, 4x between
BACKOFF_S = 0.5


def parse_url(url: str) -> tuple[str, str, str]:
    """``triton://host[:port]/model[/version]`` -> (``host:port``, model, version or "")."""
    m = _URL.match(str(url))
    if not m:
        raise DlcvError(f"{url}: a served model is named triton://HOST:PORT/MODEL (e.g. triton://localhost:8000/fcn8s)")
    return f"{m['host']}:{m['port'] or DEFAULT_PORT}", m["model"], m["version"] or ""


def _tritonclient_http():
    try:
        import tritonclient.http as http
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise MissingDependencyError(
            f"triton:// models need tritonclient, which cannot be imported ({first_line(exc)}); "
            "install it: pip install 'dlcv[triton]'"
        ) from None
    return http, InferenceServerException


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a dropped or refused connection raises in tritonclient's HTTP client (geventhttpclient)."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    try:
        from geventhttpclient.response import HTTPParseError  # HTTPConnectionClosed: the server went away mid-reply
    except ImportError:
        return errors
    return errors + (HTTPParseError,)


def _quiet_request_greenlets(errors: tuple[type[BaseException], ...]) -> None:
    """A failed async request is reported to us by ``get_result``; gevent's hub would also print
    its traceback to stderr (one per request: hundreds when a server dies)."""
    import gevent

    hub = gevent.get_hub()
    hub.NOT_ERROR = tuple(dict.fromkeys((*hub.NOT_ERROR, *errors)))


class TritonBackend(Backend):
    """The model step of a Triton-served dlcv model, over HTTP."""

    name = "triton"
    schemes = ("triton",)
    devices = ("cpu", "cuda", "tensorrt")  # the server decides where the model runs; the client is the same
    extra = "triton"
    priority = 50
    options = ("concurrency", "timeout_s")

    @classmethod
    def library_version(cls) -> str | None:
        try:
            return importlib.metadata.version("tritonclient")
        except importlib.metadata.PackageNotFoundError:
            return None

    def __init__(self, url: str | Path, device: str = "cpu", concurrency: int = DEFAULT_CONCURRENCY,
                 timeout_s: float = 60.0):  # fmt: skip
        self.url = str(url)
        address, model, version = parse_url(self.url)
        http, self._error = _tritonclient_http()
        self._http = http
        self._transport = _transport_errors()
        _quiet_request_greenlets((*self._transport, self._error))
        self.address = address
        self.model, self.version = model, version
        self.concurrency = max(1, concurrency)
        self.client = http.InferenceServerClient(address, concurrency=self.concurrency, connection_timeout=timeout_s,
                                                 network_timeout=timeout_s)  # fmt: skip
        try:
            config = self._model_config(address)
        except BaseException:
            self.client.close()
            raise
        super().__init__(Path(model), _metadata(config, self.url))
        self.device = device
        self.max_batch = int(config.get("max_batch_size", 0))
        inputs = {i["name"]: i for i in config.get("input", [])}
        md = self.metadata
        if md.input_name not in inputs or not set(md.output_names) <= {o["name"] for o in config.get("output", [])}:
            raise DlcvError(
                f"{self.url}: the served model's inputs {sorted(inputs)} do not include {md.input_name!r} (or its outputs "
                f"{list(md.output_names)}); {_model_step_hint(model)}"
            )
        dims = [int(d) for d in inputs[md.input_name].get("dims", [])]
        self.input_dims = dims if self.max_batch else dims[1:]  # without the batch axis

    def _model_config(self, address: str) -> dict:
        try:
            if not self.client.is_server_live():
                raise DlcvError(f"{self.url}: the Triton server at {address} is not live")
            if not self.client.is_model_ready(self.model, self.version):
                raise DlcvError(self._unavailable(self.client.get_model_repository_index()))
            return self.client.get_model_config(self.model, self.version)
        except DlcvError:
            raise
        except self._error as exc:
            raise DlcvError(f"{self.url}: the Triton server refused ({first_line(exc)})") from None
        except (OSError, ConnectionError) as exc:
            raise DlcvError(
                f"{self.url}: cannot reach a Triton server at {address} ({first_line(exc)}); start it, or check the "
                "host and the HTTP port (8000 by default)"
            ) from None

    def _unavailable(self, index: list[dict]) -> str:
        """Why the model is not ready, from the server's repository index (``POST v2/repository/index``:
        each model's state and the reason it failed to load)."""
        ready = sorted({m["name"] for m in index if m.get("state") == "READY"})
        entries = [m for m in index if m.get("name") == self.model and (not self.version or m.get("version") == self.version)]
        if not entries:
            return (
                f"{self.url}: the server has no model {self.model!r} in its repository (ready: {', '.join(ready) or 'none'}); "
                "check the name (the model step is <arch>, the image-in ensemble <arch>_ensemble)"
            )
        entry = entries[-1]
        state, reason = entry.get("state"), (entry.get("reason") or "").strip()
        if not state:  # found in the repository but never loaded: Triton could not read its config.pbtxt
            return (
                f"{self.url}: model {self.model!r} is in the server's repository but was not loaded (no state, no reason: "
                f"Triton could not read its config.pbtxt, e.g. a syntax error); the server's log names the cause"
            )
        reason = reason.splitlines()[0].strip() if reason else "the server gives no reason"
        hint = _load_failure_hint(reason)
        return f"{self.url}: model {self.model!r} is {state} on the server: {reason}" + (
            f"; {hint}" if hint else "; the server's log has the details"
        )

    def check_input(self, batch: np.ndarray) -> None:
        super().check_input(batch)
        for axis, (want, got) in enumerate(zip(self.input_dims, batch.shape[1:]), start=1):
            if want > 0 and want != got:
                raise DlcvError(f"{self.url}: input axis {axis} is fixed at {want} in the served model, got {got}")

    def _run(self, batch: np.ndarray) -> Outputs:
        """Send the batch; a connection error is retried :data:`RETRIES` times with back-off, then
        the server counts as lost (:class:`BackendLostError`), as does a model it no longer serves."""
        delay, waited = BACKOFF_S, 0.0
        for attempt in range(RETRIES + 1):
            try:
                return self._send(batch)
            except self._transport as exc:
                error: BaseException = exc
            except DlcvError as exc:
                if self._model_gone():
                    raise BackendLostError(
                        f"{self.url}: the server no longer serves model {self.model!r} ({first_line(exc)})"
                    ) from None
                raise
            if attempt < RETRIES:
                time.sleep(delay)
                waited += delay
                delay *= 2
        raise BackendLostError(
            f"{self.url}: lost the Triton server at {self.address} ({type(error).__name__}: {first_line(error)}; "
            f"{RETRIES + 1} tries over {waited:.1f} s)"
        )

    def _model_gone(self) -> bool:
        """After a refused request: is the model (or the whole server) gone, rather than this request bad?"""
        try:
            return not self.client.is_model_ready(self.model, self.version)
        except (self._error, *self._transport):
            return True

    def _send(self, batch: np.ndarray) -> Outputs:
        # up to ``concurrency`` requests at once; a model without a batch axis takes one image per request
        per_request = min(math.ceil(len(batch) / self.concurrency), self.max_batch) if self.max_batch else 1
        names = self.metadata.output_names
        pending = []
        for start in range(0, len(batch), per_request):
            part = batch[start : start + per_request]
            x = self._http.InferInput(self.metadata.input_name, list(part.shape), "FP32")
            x.set_data_from_numpy(np.ascontiguousarray(part), binary_data=True)
            outputs = [self._http.InferRequestedOutput(name, binary_data=True) for name in names]
            pending.append(self.client.async_infer(self.model, [x], model_version=self.version, outputs=outputs))
        results, failure = [], None
        for request in pending:  # wait for every request in flight, then report the first failure
            try:
                results.append(request.get_result())
            except (self._error, *self._transport) as exc:
                failure = failure or exc
        if isinstance(failure, self._error):
            raise DlcvError(f"{self.url}: the server failed the request ({first_line(failure)})")
        if failure is not None:
            raise failure
        return concat_outputs([{name: result.as_numpy(name) for name in names} for result in results])

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()


def _model_step_hint(model: str) -> str:
    """Which model of a dlcv repository to name instead of ``model``."""
    for suffix, role in ((ENSEMBLE_SUFFIX, "the image-in ensemble"), (PREPROCESS_SUFFIX, "the preprocessing model"),
                         (POSTPROCESS_SUFFIX, "the postprocessing model")):  # fmt: skip
        if model.endswith(suffix) and len(model) > len(suffix):
            return f"{model!r} is {role}: name the model step, {model[: -len(suffix)]!r}, which takes the preprocessed tensor"
    return "name the model step (<arch>), which takes the preprocessed tensor"


def _load_failure_hint(reason: str) -> str:
    """What to do about a load failure Triton reports, where the cause is one dlcv knows."""
    backend = re.search(r"backend library for backend '([\w-]+)'", reason)
    if backend:
        return (
            f"this server has no {backend[1]} backend: export with --triton-model-backend python (the model step on "
            "dlcv's onnxruntime inside Triton's Python backend), or serve on a Triton build that has the backend"
        )
    if "dlcv metadata" in reason:
        return "the dlcv parameter in its config.pbtxt is not valid dlcv metadata: write the repository again with dlcv-export --triton"
    return ""


def _metadata(config: dict, url: str) -> ArtifactMetadata:
    entry = config.get("parameters", {}).get(METADATA_PARAMETER)
    if not entry or "string_value" not in entry:
        raise DlcvError(
            f"{url}: the served model's config has no {METADATA_PARAMETER!r} parameter (the dlcv metadata); serve a "
            "repository written by dlcv-export --triton, or add the parameter to its config.pbtxt"
        )
    return ArtifactMetadata.from_json(entry["string_value"], source=f"{url} (config parameter {METADATA_PARAMETER!r})")
