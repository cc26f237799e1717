"""The arrows of docs/architecture.md, "Layers", checked twice.

Statically: every import in every source file of a package, function-level and relative ones
included, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name.
At run time: a fresh interpreter imports every module of the package (and, for the runtime,
opens an ONNX model through the backend registry and runs a batch), then lists ``sys.modules``;
that catches what no import statement shows (names built at run time, a dependency's imports).

The rules: the runtime never loads torch, torchvision or any upper dlcv package; train never
loads export, analyze or bench; export never loads analyze or bench; analyze and bench, both
at the top, never load each other. One exception at run time: the modules that register
backends through the ``dlcv.backends`` entry points (``dlcv.train.torch_backend``), which the
backend registry imports to read their identity; nothing they would import is exempt.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from .runtime.onnx_fixtures import colour_model

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "dlcv.runtime": REPO / "runtime",
    "dlcv.train": REPO / "train",
    "dlcv.export": REPO / "export",
    "dlcv.analyze": REPO / "analyze",
    "dlcv.bench": REPO / "benchmarks" / "bench",
}
UPPER = ("dlcv.train", "dlcv.export", "dlcv.analyze", "dlcv.bench")
FORBIDDEN = {
    "dlcv.runtime": ("torch", "torchvision", *UPPER),
    "dlcv.train": ("dlcv.export", "dlcv.analyze", "dlcv.bench"),
    "dlcv.export": ("dlcv.analyze", "dlcv.bench"),
    "dlcv.analyze": ("dlcv.bench",),
    "dlcv.bench": ("dlcv.analyze",),
}
IMPORT_FUNCTIONS = ("import_module", "__import__")


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# ---------------------------------------------------------------------------------------------
# the static scan


def module_name(package: str, folder: Path, path: Path) -> str:
    parts = path.relative_to(folder).with_suffix("").parts
    return ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) for each import in ``tree``, at any depth."""
    here = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
                if not anchor:  # above the top-level package: not one of ours
                    continue
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in IMPORT_FUNCTIONS and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def static_offenders(package: str, folder: Path, forbidden) -> list[str]:
    offenders = []
    for path in sorted(folder.rglob("*.py")):
        module = module_name(package, folder, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in imported_names(tree, module, path.name == "__init__.py"):
            if _under(name, forbidden):
                offenders.append(f"{path.relative_to(folder.parent)}:{line}: {name}")
    return offenders


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_source_file_imports_an_upper_layer(package):
    assert not static_offenders(package, FOLDERS[package], FORBIDDEN[package])


# ---------------------------------------------------------------------------------------------
# what a fresh interpreter really loads

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    package, use = sys.argv[1], sys.argv[2]
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if not info.name.endswith(".__main__"):  # running it would start the CLI
            importlib.import_module(info.name)
    exec(use)
    print(json.dumps(sorted(sys.modules)))
    """
)


def loaded_modules(package: str, use: str = "", *, path: Path | None = None) -> set[str]:
    """The modules a fresh interpreter holds after importing every module of ``package`` and running ``use``."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", PROBE, package, use], capture_output=True, text=True, env=env,
                          cwd=path or tempfile.gettempdir(), timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def backend_plugins() -> set[str]:
    """The modules named by ``dlcv.backends`` entry points, and their packages: the backend
    registry imports each to read the class's identity (name, suffixes, devices). The torch
    backend's module (``dlcv.train.torch_backend``) is one; it must not import torch or
    anything else of dlcv.train at module level, and the check below holds it to that."""
    modules = set()
    for ep in entry_points(group="dlcv.backends"):
        parts = ep.module.split(".")
        modules |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return modules


def runtime_offenders(package: str, use: str = "", *, forbidden=None, allowed=frozenset(), path=None) -> list[str]:
    forbidden = FORBIDDEN[package] if forbidden is None else forbidden
    return sorted(m for m in loaded_modules(package, use, path=path) if _under(m, forbidden) and m not in allowed)


RUN_A_MODEL = """
import numpy as np
from dlcv.runtime.backends import open_backend
with open_backend({path!r}) as backend:  # the registry loads every registered backend's identity
    assert backend.infer(np.zeros((2, 3, 8, 8), np.float32)).shape == (2, 5, 8, 8)
"""


def test_the_runtime_loads_no_torch_and_no_upper_layer_when_it_runs_a_model(tmp_path):
    model = colour_model(tmp_path / "seg.onnx")  # 5 classes, any input size
    use = RUN_A_MODEL.format(path=str(model))
    assert runtime_offenders("dlcv.runtime", use, allowed=backend_plugins()) == []


@pytest.mark.parametrize("package", [p for p in sorted(FORBIDDEN) if p != "dlcv.runtime"])
def test_importing_a_package_loads_no_forbidden_layer(package):
    assert runtime_offenders(package) == []


# ---------------------------------------------------------------------------------------------
# the checks can fail: a planted tree outside the real sources


def plant(root: Path, modules: dict[str, str]) -> Path:
    for name, source in modules.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def test_the_checks_catch_lazy_and_string_imports_of_torch(tmp_path):
    tree = plant(tmp_path, {
        "torch.__init__": "",  # a stand-in, first on the path: the check looks at names, and this one loads at once
        "planted.__init__": "",
        "planted.clean": "import json\n",
        # run at import time under a name no import statement shows: only sys.modules tells
        "planted.hidden": "import importlib\n_engine = importlib.import_module('tor' + 'ch')\n",
        # function-level: never run by an import, so the static scan must see it
        "planted.lazy": "def engine():\n    import importlib\n    return importlib.import_module('torch')\n",
        "planted.relative": "def up():\n    from .. import train\n",
    })  # fmt: skip
    forbidden = ("torch", "planted_upper")
    assert runtime_offenders("planted", forbidden=forbidden, path=tree) == ["torch"]
    static = static_offenders("planted", tree / "planted", forbidden)
    assert [s.split(": ")[-1] for s in static] == ["torch"] and static[0].startswith("planted/lazy.py:3")
    assert static_offenders("dlcv.runtime", tree / "planted", ("dlcv.train",)) == ["planted/relative.py:2: dlcv.train"]

    (tree / "planted" / "hidden.py").unlink()
    (tree / "planted" / "lazy.py").unlink()
    assert runtime_offenders("planted", forbidden=forbidden, path=tree) == []
    assert static_offenders("planted", tree / "planted", forbidden) == []
