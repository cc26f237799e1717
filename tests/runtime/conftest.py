"""Models shared by the runtime tests: built once per session; tests must not modify them."""
from __future__ import annotations

from pathlib import Path

import pytest

try:
    from .onnx_fixtures import colour_model
except ImportError:
    from onnx_fixtures import colour_model  # type: ignore[no-redef]


@pytest.fixture(scope="session")
def seg_model(tmp_path_factory) -> Path:
    """The colour-rule segmentation model; its name has a space, as users' paths do."""
    return colour_model(tmp_path_factory.mktemp("models") / "seg model.onnx")


@pytest.fixture(scope="session")
def cls_model(tmp_path_factory) -> Path:
    """The colour-rule classification model."""
    return colour_model(tmp_path_factory.mktemp("models") / "cls.onnx", "classification")
