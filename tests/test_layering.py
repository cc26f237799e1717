"""DESIGN.md's arrows: runtime/ never imports torch, train/ or export/."""
import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"


def test_runtime_sources_import_neither_torch_nor_upper_layers():
    offenders = []
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("torch", "torchvision") or name.startswith(("dlcv.train", "dlcv.export")):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
