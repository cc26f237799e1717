"""dlcv.runtime.markdown: the one Markdown table every report is built with."""
from __future__ import annotations

from dlcv.analyze.report import Table, render_table
from dlcv.bench import gpu_check
from dlcv.bench.report import table as bench_table
from dlcv.runtime.markdown import table


def test_a_table_has_header_rule_and_rows_with_cells_escaped():
    text = table(["file", "ms"], [("a|b.onnx", 1.5), ("two\nlines", None)])
    assert text.splitlines() == ["| file | ms |", "| --- | --- |", "| a\\|b.onnx | 1.5 |", "| two lines | None |"]


def test_every_report_uses_it(tmp_path):
    assert bench_table is table
    assert render_table(Table(header=("a", "b"), rows=(("x|y", 2),))) == table(["a", "b"], [("x|y", 2)])
    (tmp_path / "steps.tsv").write_text("export fp16\tfailed\t3.2\tbuilder said a|b\n")
    summary = gpu_check.summary(tmp_path).read_text()
    assert table(["step or row", "status", "seconds", "detail"], [("export fp16", "failed", "3.2", "builder said a|b")]) in summary
