"""The built wheel holds every ``dlcv.*`` module the source tree has: a folder missing from
setup.cfg's ``packages`` would install without its modules and fail only on a user's machine."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_dirs() -> dict[str, str]:
    """setup.cfg's ``package_dir``: import name -> folder."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    pairs = [line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines()]
    return {name.strip(): folder.strip() for name, folder in pairs}


def source_modules() -> set[str]:
    """Every module under the mapped folders, as its import name (``dlcv.runtime.task``)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.py"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    modules = set()
    for package, folder in package_dirs().items():
        for path in listed:
            rel = Path(path)
            if rel.is_relative_to(folder):
                parts = rel.relative_to(folder).with_suffix("").parts
                modules.add(".".join((package, *parts)))
    return modules


def wheel_modules(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {n[: -len(".py")].replace("/", ".") for n in z.namelist() if n.endswith(".py")}


def copy_tracked_tree(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    for path in listed:
        src = REPO / path
        if src.is_file():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / path)


def test_the_wheel_holds_every_module_of_the_source_tree(tmp_path):
    src, out = tmp_path / "src", tmp_path / "wheels"
    copy_tracked_tree(src)  # a copy, so the build leaves no build/ or egg-info in the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(src)], check=True, capture_output=True, text=True)  # fmt: skip
    (wheel,) = out.glob("dlcv-*.whl")
    in_wheel, in_source = wheel_modules(wheel), source_modules()
    assert "dlcv.runtime.task" in in_source and "dlcv.bench.cli" in in_source
    assert in_source - in_wheel == set(), "modules the wheel leaves out (add their package to setup.cfg)"
    with zipfile.ZipFile(wheel) as z:
        assert "dlcv/runtime/py.typed" in z.namelist(), "the runtime's PEP 561 marker (setup.cfg package_data)"
    assert {m for m in in_wheel if m.startswith("dlcv.")} == in_source
