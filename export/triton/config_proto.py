"""Parse a ``config.pbtxt`` with tritonclient's ``model_config_pb2`` (Triton's own schema).

tritonclient ships the schema inside ``tritonclient.grpc``, whose package import needs grpcio;
with only ``tritonclient[http]`` installed the generated module is loaded from its file.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

from dlcv.runtime.errors import DlcvError, MissingDependencyError, first_line


@functools.lru_cache(maxsize=1)
def model_config_pb2() -> ModuleType:
    """tritonclient's ``model_config_pb2`` module."""
    try:
        from tritonclient.grpc import model_config_pb2 as module  # needs grpcio

        return module
    except (ImportError, RuntimeError):
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("checking a Triton config needs tritonclient: pip install 'dlcv[triton]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    file_spec = importlib.util.spec_from_file_location("tritonclient.grpc.model_config_pb2", path)
    if file_spec is None or file_spec.loader is None:
        raise MissingDependencyError(f"tritonclient has no {path.name}; reinstall it: pip install 'dlcv[triton]'")
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def parse_model_config(text: str, source: str = "config.pbtxt"):
    """A ``inference.ModelConfig`` message from text; :class:`DlcvError` naming ``source`` when it does not parse."""
    from google.protobuf import text_format

    config = model_config_pb2().ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise DlcvError(f"{source}: not a valid Triton model config ({first_line(exc)})") from None
    return config
