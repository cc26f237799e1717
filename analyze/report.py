"""The analysis report: Markdown sections of text, tables and the figures' PNGs (relative links)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dlcv.runtime.atomic import write_text_atomic
from dlcv.runtime.markdown import cell, table as markdown_table

from .figures import FigureFile

REPORT_NAME = "report.md"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """One part of the report; paragraphs come first, then tables, then figures."""

    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[FigureFile, ...] = ()


def render_table(table: Table) -> str:
    return markdown_table(table.header, table.rows)


def render_markdown(title: str, sections: Sequence[Section], folder: Path) -> str:
    """The report's Markdown; figure links are relative to ``folder`` (where the report lives)."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts.extend(section.paragraphs)
        parts.extend(render_table(t) for t in section.tables)
        for fig in section.figures:
            link = Path(os.path.relpath(fig.path, folder)).as_posix()
            parts.append(f"![{cell(fig.caption)}]({link})\n\n*{fig.caption}* ({fig.width}×{fig.height} px)")
    return "\n\n".join(parts) + "\n"


def write_report(folder: Path, title: str, sections: Sequence[Section]) -> Path:
    """Write ``<folder>/report.md`` atomically; returns its path."""
    path = Path(folder) / REPORT_NAME
    write_text_atomic(path, render_markdown(title, sections, Path(folder)))
    return path
