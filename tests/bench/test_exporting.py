"""dlcv.bench.exporting: reduced precisions the export cannot make become messages, never a crashed run.

The export library is replaced by fakes here (its own tests cover it); what is checked is how
the benchmark reacts to what it writes, lacks or raises.
"""

from __future__ import annotations

import dlcv.export.onnx_export as onnx_export
from dlcv.bench.exporting import export_artifacts
from dlcv.export.config import ExportConfig
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.precision import get_precision
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec

METADATA = ArtifactMetadata(
    task="segmentation", arch="fcn8s", num_classes=2, class_names=("a", "b"), preprocess=PreprocessSpec()
)


class FakeExport:
    """Records each ExportConfig; writes the files of ``writes`` precisions; raises when ``fail_if`` says."""

    def __init__(self, writes=("fp32",), fail_if=lambda config: False):
        self.writes, self.fail_if, self.configs = writes, fail_if, []

    def __call__(self, config: ExportConfig, log=None):
        self.configs.append(config)
        (config.out).mkdir(parents=True, exist_ok=True)
        get_precision("fp32").path(config.out, METADATA.arch).write_bytes(b"fp32")
        if self.fail_if(config):
            raise DlcvError("fcn8s: INT8 calibration failed (no images)")
        for p in self.writes:
            get_precision(p).path(config.out, METADATA.arch).write_bytes(p.encode())


def export(tmp_path, precisions, fake, monkeypatch):
    monkeypatch.setattr(onnx_export, "export_onnx", fake)
    return export_artifacts(
        tmp_path / "ckpt.pt", METADATA, precisions, out=tmp_path / "art", shape=(64, 80),
        calibration=tmp_path / "calib", calib_count=8, eval_count=4, log=lambda _: None,
    )  # fmt: skip


def test_precisions_the_export_does_not_write_become_errors(tmp_path, monkeypatch):
    fake = FakeExport(writes=("fp32",))
    outcome = export(tmp_path, ("fp32", "fp16"), fake, monkeypatch)
    assert set(outcome.paths) == {"fp32"}
    assert "wrote no fcn8s.fp16.onnx" in outcome.errors["fp16"]
    (config,) = fake.configs  # asked for through the export's own option, at the benchmark's size
    assert config.precisions == ("fp32", "fp16")
    assert config.input_size == (64, 80) and config.strict is False


def test_written_reduced_precisions_are_used(tmp_path, monkeypatch):
    fake = FakeExport(writes=("fp32", "fp16", "int8"))
    outcome = export(tmp_path, ("fp32", "fp16", "int8"), fake, monkeypatch)
    assert outcome.errors == {}
    assert outcome.paths == {p: tmp_path / "art" / name for p, name in
                             (("fp32", "fcn8s.onnx"), ("fp16", "fcn8s.fp16.onnx"), ("int8", "fcn8s.int8.onnx"))}  # fmt: skip
    (config,) = fake.configs
    assert config.precisions == ("fp32", "fp16", "int8") and config.calib == tmp_path / "calib" and config.calib_count == 8
    assert config.eval_count == 4


def test_a_failing_reduced_export_keeps_fp32_and_names_the_reason(tmp_path, monkeypatch):
    fake = FakeExport(writes=("fp32",), fail_if=lambda config: "int8" in config.precisions)
    outcome = export(tmp_path, ("fp32", "int8"), fake, monkeypatch)
    assert set(outcome.paths) == {"fp32"}
    assert "INT8 calibration failed" in outcome.errors["int8"] and "DlcvError" in outcome.errors["int8"]
    assert len(fake.configs) == 1  # the FP32 file was written before the failure: no second export


def test_a_failing_fp32_export_is_an_error_for_every_precision(tmp_path, monkeypatch):
    fake = FakeExport(fail_if=lambda config: True)

    def always_fails(config, log=None):
        fake.configs.append(config)
        raise DlcvError("fcn8s: ONNX export failed (dynamo: boom)")

    outcome = export(tmp_path, ("fp32",), always_fails, monkeypatch)
    assert outcome.paths == {}
    assert "ONNX export failed" in outcome.errors["fp32"]
