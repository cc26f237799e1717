"""The runtime without --ray or a triton:// model imports neither Ray nor tritonclient (they are
optional extras, and heavy: Ray alone adds seconds to every start)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

try:
    from .onnx_fixtures import save_image
except ImportError:
    from onnx_fixtures import save_image  # type: ignore[no-redef]

CHECK = """
import sys
from dlcv.runtime.backends import backends
from dlcv.runtime.cli import main
assert "triton" in backends()  # the registry holds the Triton client backend's class
main([sys.argv[1], "--engine", sys.argv[2], "--out", sys.argv[3], "-q"], standalone_mode=False)
print(sorted({m.split(".")[0] for m in sys.modules} & {"ray", "tritonclient", "gevent", "geventhttpclient", "pyarrow"}))
"""


def test_a_local_run_imports_neither_ray_nor_tritonclient(seg_model, tmp_path):
    save_image(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), dtype=np.uint8))
    done = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "images"), str(seg_model), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "a.png").is_file()
