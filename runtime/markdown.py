"""One Markdown table builder for every report (dlcv-bench's report.md, dlcv-analyze's report, the GPU
check's summary, the studies): cells are text, a ``|`` or newline inside one is escaped."""
from __future__ import annotations

from typing import Iterable, Sequence


def cell(value: object) -> str:
    """``value`` as one Markdown table cell: ``|`` escaped, newlines folded into spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: the header row, the ``| --- |`` rule, then one line per row."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
