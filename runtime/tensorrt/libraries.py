"""Make pip-installed TensorRT visible to onnxruntime's TensorRT provider.

onnxruntime-gpu's provider library (``libonnxruntime_providers_tensorrt.so``) needs
``libnvinfer.so.N`` (and the ONNX parser, the plugins) on the loader path, but the
``tensorrt-cuNN`` wheels put them in ``site-packages/tensorrt_libs/``, which is on no path; only
``import tensorrt`` loads them (its ``tensorrt_libs/__init__.py`` ``ctypes.CDLL``\\ s every
library in its folder). A library already loaded satisfies a later ``dlopen`` of its soname,
so :func:`preload_tensorrt_libraries` loads them before the session is created. Nothing is
imported from TensorRT itself.
"""
from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

TENSORRT_LIBS_PACKAGES = ("tensorrt_libs",)  # the tensorrt-cu13-libs / tensorrt-cu12-libs wheels
# onnxruntime's provider links the builder, its ONNX parser and the plugins; the dispatch, lean and
# builder-resource libraries are loaded by TensorRT itself from the same folder.
LIBRARY_PREFIXES = ("libnvinfer.so.", "libnvinfer_plugin.so.", "libnvonnxparser.so.")


def tensorrt_library_folder() -> Path | None:
    """The folder of the pip-installed TensorRT libraries, or None when no such wheel is installed."""
    for package in TENSORRT_LIBS_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    return None


def preload_tensorrt_libraries(folder: Path | None = None) -> list[Path]:
    """Load (``RTLD_GLOBAL``) the TensorRT libraries onnxruntime's provider links from the
    pip-installed folder; returns the ones loaded (none without the wheel). A library that
    fails to load is skipped: the provider then fails to start and the backend says why."""
    folder = folder if folder is not None else tensorrt_library_folder()
    if folder is None or not folder.is_dir():
        return []
    loaded = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(LIBRARY_PREFIXES):
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            loaded.append(path)
    return loaded
