"""``run_analysis(AnalyzeConfig(...))``: the library behind ``dlcv-analyze``.

A metrics.json target is drawn without PyTorch (this module imports torch only when a
checkpoint is analysed); a checkpoint is run on its dataset's validation split
(:mod:`.checkpoint_analysis`). Either way a run folder adds the training curves, and the
figures and ``report.md`` go to the output folder.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dlcv.runtime.errors import DlcvError, DlcvUsageError, MissingDependencyError

from .config import AnalyzeConfig
from .confusion import confusion_section
from .curves import curves_section, read_log
from .figures import FigureFile
from .metrics_file import MetricsRecord, read_metrics_json
from .report import Section, write_report
from .runs import open_run


@dataclass(frozen=True)
class AnalysisResult:
    report: Path
    sections: tuple[Section, ...]
    metrics_json: Path | None  # written for a checkpoint analysis

    @property
    def figures(self) -> tuple[FigureFile, ...]:
        return tuple(f for s in self.sections for f in s.figures)


def metrics_json_section(record: MetricsRecord, out: Path, *, prefix: str, title: str) -> Section:
    """The confusion figures of a metrics.json (dlcv-infer's, or an earlier analysis's)."""
    section = confusion_section(record.confusion, record.class_names, record.task, out, title=title, prefix=prefix,
                                metrics=record.metrics)  # fmt: skip
    ctx = record.context
    described = [f"`{record.path}`"]
    for key in ("engine", "checkpoint", "backend", "precision", "images", "labels", "data", "split"):
        if ctx.get(key) is not None:
            described.append(f"{key}: {ctx[key]}")
    return dataclasses.replace(section, paragraphs=("; ".join(described) + ".",) + section.paragraphs)


def _resolve_target(config: AnalyzeConfig) -> AnalyzeConfig:
    """A run folder as the target means its best.pt (last.pt when there is none), and --runs it."""
    target = config.target
    if not target.exists():
        raise DlcvError(f"{target}: not found; give a checkpoint (.pt), a run folder or a metrics.json")
    if not target.is_dir():
        return config
    run = open_run(target)
    checkpoint = run.best or run.last
    if checkpoint is None:
        raise DlcvError(f"{target}: a run folder without best.pt or last.pt; give a checkpoint file")
    return dataclasses.replace(config, target=checkpoint, runs=config.runs or target)


def _analyze_checkpoint(config: AnalyzeConfig, log: Callable[[str], None]):
    if importlib.util.find_spec("torch") is None:
        raise MissingDependencyError(
            "analysing a checkpoint needs PyTorch (pip install 'dlcv[train]'); a deployed run's metrics.json "
            "is drawn without it: dlcv-analyze metrics.json"
        )
    from .checkpoint_analysis import analyze_checkpoint

    return analyze_checkpoint(config, log)


def run_analysis(config: AnalyzeConfig, log: Callable[[str], None] = lambda _: None) -> AnalysisResult:
    """Write the figures, ``report.md`` (and for a checkpoint ``metrics.json``) under ``config.out``."""
    config = _resolve_target(config)
    out = config.out
    if out.exists() and not out.is_dir():
        raise DlcvUsageError(f"--out {out} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    metrics_json = None
    if config.reads_metrics_json:
        checkpoint_only = (("--data", config.data), ("--compare", config.compare), ("--images", config.images))
        used = [name for name, value in checkpoint_only if value]
        if used:
            raise DlcvUsageError(f"{', '.join(used)} need a checkpoint; {config.target} is a metrics.json")
        record = read_metrics_json(config.target)
        task = record.task
        title = f"{record.task} metrics — {config.target}"
        sections = [metrics_json_section(record, out, prefix="", title=f"{record.context.get('backend') or 'metrics.json'} run")]
    else:
        analysis = _analyze_checkpoint(config, log)
        task, title, sections, metrics_json = analysis.task, analysis.title, list(analysis.sections), analysis.metrics_json
    if config.runs is not None:
        run = open_run(config.runs)
        if run.log_csv is not None:
            sections.append(curves_section(read_log(run.log_csv), task, out))
        else:
            sections.append(Section("Training curves", (f"`{run.root}` has no log.csv.",)))
    if config.metrics is not None:
        record = read_metrics_json(config.metrics)
        sections.append(metrics_json_section(record, out, prefix="deployed_", title="Deployed run"))
    report = write_report(out, f"dlcv-analyze: {title}", sections)
    return AnalysisResult(report, tuple(sections), metrics_json)
