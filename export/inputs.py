"""The export's image inputs (``--calib``, ``--val``, ``--images``), resolved and checked before
the first slow step: ``demo`` for a dataset (``--calib``, ``--val``) is the built-in demo dataset
for the checkpoint's task (as ``dlcv-train --data demo`` and ``dlcv-analyze --data demo`` take
it), and a folder that does not
exist or holds nothing usable is refused before the FP32 export and its verification run."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata

from .config import ExportConfig
from .int8 import calibration_paths

DEMO = "demo"
_OPTIONS = {"calib": "--calib", "val": "--val", "images": "--images"}


def resolve_inputs(config: ExportConfig, metadata: ArtifactMetadata) -> ExportConfig:
    """``config`` with ``demo`` replaced by the demo dataset's folder; raises :class:`DlcvError`
    for an input folder that is missing, or a calibration folder without images."""
    changes = {}
    for name in ("calib", "val"):  # the datasets (--images is a folder of images)
        value = getattr(config, name)
        if value is not None and str(value) == DEMO:
            from dlcv.train.data.demo import demo_root  # generated on first use

            changes[name] = demo_root(metadata.task)
    config = dataclasses.replace(config, **changes) if changes else config
    for name, option in _OPTIONS.items():
        folder: Path | None = getattr(config, name)
        if folder is not None and not folder.is_dir():
            what = "not found" if not folder.exists() else "is a file, not a folder"
            raise DlcvError(f"{option} {folder}: {what}; give an existing folder" + (f" or {DEMO}" if name != "images" else ""))
    if config.calib is not None and "int8" in config.precisions:
        calibration_paths(config.calib, 1, metadata.dataset)  # a folder without images is refused now, not after FP32
    return config
