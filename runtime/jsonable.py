"""One conversion of result records to strict JSON (what metrics.json, results.json and reports hold)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def strict_json(value: Any) -> Any:
    """NaN/inf -> None, numpy values -> Python, tuples -> lists, paths -> str: valid JSON for any reader."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
