"""The install metadata keeps a GPU install working.

onnxruntime and onnxruntime-gpu install into the same ``onnxruntime/`` folder; with both, the
CUDA provider disappears (microsoft/onnxruntime#26996). So only the ``cpu`` extra brings
``onnxruntime``, and no extra brings both. Every extra that brings cuda-python pins one major,
the CUDA major of its onnxruntime-gpu / TensorRT wheels, as the README's "GPU packages" table
says; a test reads that table, so the README and setup.cfg cannot drift apart.
"""
from __future__ import annotations

import configparser
import itertools
import re
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ONNXRUNTIME = {"onnxruntime", "onnxruntime-gpu"}
# The CUDA major of onnxruntime-gpu's PyPI wheels, read from their requirements: 1.19-1.26 require
# nvidia-cuda-runtime-cu12 (extra "cuda"), 1.27 and later nvidia-cuda-runtime(-cu13) ~= 13.0.
ONNXRUNTIME_GPU_CUDA = {12: SpecifierSet(">=1.19,<1.27"), 13: SpecifierSet(">=1.27")}


def setup_requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    parse = lambda text: [Requirement(line) for line in text.strip().splitlines() if line.strip()]  # noqa: E731
    return parse(cfg["options"]["install_requires"]), {k: parse(v) for k, v in cfg["options.extras_require"].items()}


def readme_gpu_table() -> list[dict[str, str]]:
    text = (ROOT / "README.md").read_text()
    lines = text.split("### GPU packages", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = []
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table.append(dict(zip(header, cells)))
    return table


def only_major(spec: SpecifierSet) -> int | None:
    """The one major version ``spec`` admits (None when it admits several or none)."""
    majors = [m for m in range(8, 20) if Version(f"{m}.0") in spec and Version(f"{m}.99.99") in spec]
    if len(majors) != 1 or Version(f"{majors[0] - 1}.99.99") in spec or Version(f"{majors[0] + 1}.0") in spec:
        return None
    return majors[0]


def test_only_the_cpu_extra_brings_onnxruntime_and_no_combination_brings_both():
    base, extras = setup_requirements()
    assert not ONNXRUNTIME & {r.name for r in base}, "the base install must not pick an onnxruntime package"
    brings = {name: {r.name for r in reqs} & ONNXRUNTIME for name, reqs in extras.items()}
    assert brings["cpu"] == {"onnxruntime"} and brings["gpu"] == brings["gpu-cu12"] == {"onnxruntime-gpu"}
    assert {name for name, found in brings.items() if "onnxruntime" in found} == {"cpu"}
    gpu_extras = {name for name, found in brings.items() if "onnxruntime-gpu" in found}
    for a, b in itertools.combinations(extras, 2):  # e.g. [train,gpu], [gpu,tensorrt]
        if not ({a, b} & {"cpu"} and {a, b} & gpu_extras):
            assert brings[a] | brings[b] != ONNXRUNTIME, (a, b)


def test_the_installed_metadata_requires_onnxruntime_only_with_the_cpu_extra():
    for line in requires("dlcv") or []:
        req = Requirement(line)
        if req.name == "onnxruntime":
            assert req.marker is not None and req.marker.evaluate({"extra": "cpu"})
            assert not any(req.marker.evaluate({"extra": e}) for e in ("", "gpu", "gpu-cu12", "train", "tensorrt"))


def test_every_gpu_extra_pins_cuda_python_to_its_wheels_cuda_major_as_the_readme_table_says():
    _, extras = setup_requirements()
    table = readme_gpu_table()
    with_cuda_python = {name for name, reqs in extras.items() if any(r.name == "cuda-python" for r in reqs)}
    assert {row["extra"].strip("`") for row in table} == with_cuda_python
    for row in table:
        name = row["extra"].strip("`")
        reqs = {r.name: r for r in extras[name]}
        cuda = int(re.match(r"\d+", row["CUDA (Linux driver)"]).group())
        assert only_major(reqs["cuda-python"].specifier) == cuda == int(row["cuda-python"]), name
        for req in reqs.values():  # TensorRT wheels carry their CUDA major in the name
            m = re.search(r"-cu(\d+)", req.name)
            if m:
                assert int(m.group(1)) == cuda, (name, req.name)
        if "onnxruntime-gpu" in reqs:
            spec = reqs["onnxruntime-gpu"].specifier
            assert spec == SpecifierSet(row["onnxruntime-gpu"]), (name, str(spec), row["onnxruntime-gpu"])
            known = ONNXRUNTIME_GPU_CUDA[cuda]
            for v in ("1.17", "1.19", "1.22", "1.26", "1.27", "1.31", "1.40"):
                assert Version(v) not in spec or Version(v) in known, (name, v)
        else:
            assert row["onnxruntime-gpu"] == "-"
