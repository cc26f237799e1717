"""docs/architecture.md is the design the code cites: every citation must resolve in it, every
file it names must exist, and nothing may cite a design file outside the repository."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
TEXT_SUFFIXES = {".py", ".md", ".cfg", ".toml", ".sh", ".txt", ".ini"}
# "docs/architecture.md contract 4", "... contracts 3, 5, 6", "docs/architecture.md, "Metrics""
CITATION = re.compile(r'docs/architecture\.md(?:,? contracts? (?P<numbers>\d+(?:(?:, | and )\d+)*))?(?:, "(?P<section>[^"]+)")?')


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    return [REPO / p for p in listed if (Path(p).suffix in TEXT_SUFFIXES or Path(p).name == "Makefile")
            and (REPO / p).is_file()]  # fmt: skip


def citations() -> list[tuple[str, int, str]]:
    """(file, line, citation text) of every citation of the design document outside itself."""
    found = []
    for path in tracked_text_files():
        if path in (DOC, Path(__file__).resolve()):  # this file quotes dangling citations on purpose
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in CITATION.finditer(line):
                found.append((str(path.relative_to(REPO)), number, m.group(0)))
    return found


def headings() -> tuple[set[int], set[str]]:
    text = DOC.read_text(encoding="utf-8")
    contracts = {int(n) for n in re.findall(r"^### Contract (\d+):", text, flags=re.M)}
    titles = {t.strip() for t in re.findall(r"^#{2,4} (.+)$", text, flags=re.M)}
    return contracts, titles


def unresolved(citation: str, contracts: set[int], titles: set[str]) -> list[str]:
    m = CITATION.fullmatch(citation)
    missing = []
    if m.group("numbers"):
        missing += [f"contract {n}" for n in re.findall(r"\d+", m.group("numbers")) if int(n) not in contracts]
    if m.group("section") and m.group("section") not in titles:
        missing.append(f'section "{m.group("section")}"')
    return missing


def test_the_code_cites_the_design_and_every_citation_resolves():
    contracts, titles = headings()
    found = citations()
    assert len(found) >= 15, "the sources cite docs/architecture.md for their contracts"
    broken = [f"{f}:{line}: {text} -> {', '.join(miss)}" for f, line, text in found
              if (miss := unresolved(text, contracts, titles))]  # fmt: skip
    assert not broken, "citations of docs/architecture.md that name nothing in it:\n" + "\n".join(broken)


@pytest.mark.parametrize("citation, ok", [
    ("docs/architecture.md contract 4", True),
    ("docs/architecture.md contracts 3, 5, 6", True),
    ("docs/architecture.md contract 99", False),
    ('docs/architecture.md, "Metrics"', True),
    ('docs/architecture.md, "No such section"', False),
])  # fmt: skip
def test_the_citation_check_tells_a_dangling_citation(citation, ok):
    contracts, titles = headings()
    assert (not unresolved(citation, contracts, titles)) is ok


def test_contracts_are_numbered_without_gaps():
    contracts, _ = headings()
    assert sorted(contracts) == list(range(1, len(contracts) + 1))


def test_every_file_the_design_names_exists():
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:runtime|train|export|analyze|benchmarks|tests)/[a-z0-9_/]+(?:\.py|/))`", text))
    assert named, "the owner table names modules"
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_nothing_cites_a_design_file_outside_the_repository():
    outside = re.compile(r"\bDESIGN\.md\b|\.\./shared/")
    hits = [f"{p.relative_to(REPO)}:{n}" for p in tracked_text_files() if p.name != Path(__file__).name
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if outside.search(line)]  # fmt: skip
    assert not hits, f"citations of a design file that is not in the repository: {hits}"
