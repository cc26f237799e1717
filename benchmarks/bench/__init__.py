"""dlcv.bench: latency and task-level parity reports of deployed models against their PyTorch originals.

``dlcv-bench CKPT.pt [ARTIFACT ...]`` (:mod:`.cli`) is a thin command over
:func:`dlcv.bench.run.run_benchmark`; :mod:`.records` documents the keys of ``results.json``.
Imports of torch and the export happen inside the functions that need them.
"""

from .config import BenchConfig
from .records import make_record, record_keys

__all__ = ["BenchConfig", "make_record", "record_keys"]
