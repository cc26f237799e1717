"""A new model is one module: tests/train/tiny_model.py registers itself with its config, and
training, the checkpoint, pretrained loading, head fine-tuning and export take everything from it."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dlcv.train import registry
from dlcv.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcv.train.cli import main

from tests.runtime.datasets.fixtures import write_camvid
from .test_data import train_and_compare_with_runtime, write_varied_camvid

TINY_MODULE = Path(__file__).with_name("tiny_model.py")


@pytest.fixture
def tiny(monkeypatch):
    """tiny_model.py loaded as a user's module would be; its registration ends with the test."""
    registry.list_models()  # the built-in models first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    spec = importlib.util.spec_from_file_location("dlcv_test_tiny_model", TINY_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return write_camvid(tmp_path_factory.mktemp("camvid") / "data", counts=(4, 2, 0))


def dlcv_train(*args, expect: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, f"exit {result.exit_code}:\n{result.output}\n{result.exception!r}"
    return result


def common(data, out) -> list:
    return ["--data", data, "--epochs", 1, "--batch-size", 2, "--out", out, "--no-tensorboard", "--overlays", 0, "--quiet"]


def test_the_module_registers_its_model_with_its_config(tiny):
    info = registry.model_info(tiny.NAME)
    assert tiny.NAME in registry.list_models() and info.config is tiny.TINY_CONFIG
    assert (info.task, info.default_num_classes) == ("segmentation", 4)
    assert registry.create_model(tiny.NAME).head.out_channels == 4


def test_training_records_the_models_preprocessing_and_input_size_overrides_only_the_size(tiny, camvid, tmp_path):
    dlcv_train(tiny.NAME, *common(camvid, tmp_path / "run"))
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert (ckpt["arch"], ckpt["task"], ckpt["num_classes"]) == (tiny.NAME, "segmentation", 11)
    assert ckpt["preprocess"] == tiny.TINY_CONFIG.preprocess.to_dict()  # BGR, 24×20, area, its mean/std
    assert isinstance(model_from_checkpoint(ckpt), tiny.TinyNet)

    dlcv_train(tiny.NAME, *common(camvid, tmp_path / "sized"), "--input-size", "16x12")
    sized = load_checkpoint(tmp_path / "sized" / "best.pt")["preprocess"]
    assert sized == dataclasses.replace(tiny.TINY_CONFIG.preprocess, size=(16, 12)).to_dict()


def test_the_tensors_training_evaluates_are_the_runtimes_for_the_new_model(tiny, tmp_path, monkeypatch):
    ckpt = train_and_compare_with_runtime(tiny.NAME, write_varied_camvid(tmp_path / "data"), tmp_path / "run", monkeypatch)
    assert ckpt["preprocess"]["color_order"] == "bgr" and ckpt["preprocess"]["size"] == [24, 20]


def foreign_file(tiny, path: Path, num_classes: int = 7) -> dict:
    """The tiny net's weights for ``num_classes`` classes as another lab names them (conv1, bn1, ...)."""
    torch.manual_seed(3)
    source = tiny.TinyNet(num_classes=num_classes)
    with torch.no_grad():
        for t in source.state_dict().values():
            if t.is_floating_point():
                t.normal_(0, 0.3)
        source.stem_bn.running_var.abs_().add_(0.5)
    ours = {v: k for k, v in tiny.FOREIGN_NAMES.items()}
    state = {f"{ours[k.partition('.')[0]]}.{k.partition('.')[2]}": v for k, v in source.state_dict().items()}
    torch.save(state, path)
    return source.state_dict()


def test_pretrained_weights_load_through_its_key_mapper_and_head_finetuning_uses_its_head(tiny, camvid, tmp_path):
    pretrained = foreign_file(tiny, tmp_path / "foreign.pth")
    out = dlcv_train(tiny.NAME, *common(camvid, tmp_path / "head"), "--lr", 0.05, "--pretrained", tmp_path / "foreign.pth",
                     "--finetune", "head")  # fmt: skip
    assert "loaded 9 tensors, skipped 2: classifier.weight (head replaced: (7, 8, 1, 1) in the file vs (11, 8, 1, 1)" in out.output
    trained = load_checkpoint(tmp_path / "head" / "last.pt")["state_dict"]
    backbone = [k for k in trained if not k.startswith("head.")]
    assert len(backbone) == 9 and all(torch.equal(trained[k], pretrained[k]) for k in backbone)  # frozen, BN statistics too
    assert trained["head.weight"].shape[0] == 11

    dlcv_train(tiny.NAME, *common(camvid, tmp_path / "stage"), "--lr", 0.05, "--pretrained", tmp_path / "foreign.pth",
               "--finetune", "head", "--trainable-stages", 1)  # fmt: skip
    trained = load_checkpoint(tmp_path / "stage" / "last.pt")["state_dict"]
    assert torch.equal(trained["stem.weight"], pretrained["stem.weight"])  # the first stage stays frozen
    assert not torch.equal(trained["body.weight"], pretrained["body.weight"])  # the last stage trained

    bad = dlcv_train(tiny.NAME, *common(camvid, tmp_path / "bad"), "--finetune", "head", "--trainable-stages", 3, expect=2)
    assert f"{tiny.NAME} has 2 backbone stages; trainable stages must be 0..2, got 3" in bad.output


def test_the_export_takes_the_new_model_from_its_checkpoint(tiny, camvid, tmp_path):
    from dlcv.export import ExportConfig, export_onnx

    dlcv_train(tiny.NAME, *common(camvid, tmp_path / "run"))
    result = export_onnx(ExportConfig(checkpoint=tmp_path / "run" / "best.pt", out=tmp_path / "onnx"))
    assert result.verification.passed and result.verification.overall["agreement"] == 1.0
    assert result.metadata.arch == tiny.NAME and result.metadata.preprocess == tiny.TINY_CONFIG.preprocess
    assert (2, 3, 24, 20) in [r.shape for r in result.verification.rows]  # verified at the size its config gives
