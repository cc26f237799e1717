"""dlcv-train as a user runs it (click's CliRunner, in-process): every layout trains and evaluates,
and the training features (optimisers, schedules, early stopping, AMP note, TensorBoard,
overlays, class maps, augmentation options, transfer modes, BYOL) do what they say."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dlcv.runtime.imageio import read_image
from dlcv.train.checkpoint import load_checkpoint
from dlcv.train.cli import main
from dlcv.train.config import TrainConfig
from dlcv.train.optim import MixedPrecision, build_optimizer, build_scheduler, step_scheduler
from dlcv.train.registry import create_model

from tests.runtime.datasets.fixtures import ALL_FIXTURES, FORMAT_OF, SEGMENTATION_FIXTURES, write_camvid, write_imagefolder

NARROW = "0.0625"
SEG_MODEL, CLS_MODEL = "fcn8s", "vgg16_bn"


def dlcv_train(*args, expect: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, f"exit {result.exit_code}:\n{result.output}\n{result.exception!r}"
    return result


def model_args(layout: str) -> list:
    if layout in SEGMENTATION_FIXTURES:
        return [SEG_MODEL, "--width", NARROW, "--batch-size", 4]
    return [CLS_MODEL, "--width", NARROW, "--input-size", 32, "--batch-size", 16]


def log_rows(run) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return write_camvid(tmp_path_factory.mktemp("camvid") / "data", counts=(4, 2, 0))


@pytest.mark.parametrize("layout", sorted(ALL_FIXTURES))
def test_one_epoch_trains_and_evaluates_on_each_layout(tmp_path, layout):
    data = ALL_FIXTURES[layout](tmp_path / "data")
    run = tmp_path / "run"
    out = dlcv_train(*model_args(layout), "--data", data, "--epochs", 1, "--out", run, "--overlays", 1,
                     "--no-tensorboard", "--quiet")  # fmt: skip
    assert "best val" in out.output
    ckpt = load_checkpoint(run / "best.pt")
    from dlcv.runtime.datasets import open_dataset

    info = open_dataset(data).info
    assert ckpt["class_names"] == list(info.class_names) and ckpt["exclude_classes"] == list(info.exclude_classes)
    val = ckpt["metrics"]["val"]
    assert val["count"] > 0 and math.isfinite(val["loss"])
    rows = log_rows(run)
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert get_format_name(data) == FORMAT_OF[layout]


def get_format_name(root) -> str:
    from dlcv.runtime.datasets import get_format

    return get_format(None, root).name


def test_schedules_step_per_epoch():
    model = torch.nn.Linear(2, 2)
    base = dict(model="fcn8s", data="x", out="x", lr=0.1, epochs=4)
    lrs = {}
    for name in ("cosine", "poly", "none"):
        cfg = TrainConfig(**base, scheduler=name)
        opt = build_optimizer(model, cfg)
        sched = build_scheduler(opt, cfg)
        seq = []
        for _ in range(4):
            seq.append(opt.param_groups[0]["lr"])
            opt.step()
            step_scheduler(sched, 0.5)
        lrs[name] = seq
    assert lrs["none"] == [0.1] * 4
    assert lrs["cosine"] == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    assert lrs["poly"] == pytest.approx([0.1 * (1 - e / 4) ** 0.9 for e in range(4)])
    cfg = TrainConfig(**base, scheduler="plateau", plateau_patience=0)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    for metric in (0.5, 0.5, 0.5):  # no improvement: halved each time after the first
        step_scheduler(sched, metric)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_optimizer_choices():
    model = torch.nn.Linear(2, 2)
    base = dict(model="fcn8s", data="x", out="x", lr=0.1, weight_decay=0.01)
    sgd = build_optimizer(model, TrainConfig(**base, optimizer="sgd", momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    assert type(build_optimizer(model, TrainConfig(**base, optimizer="adam"))) is torch.optim.Adam
    adamw = build_optimizer(model, TrainConfig(**base, optimizer="adamw"))
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.01
    model.weight.requires_grad_(False)
    assert build_optimizer(model, TrainConfig(**base)).param_groups[0]["params"] == [model.bias]


def test_amp_on_cpu_is_a_noop_with_a_note(tmp_path, camvid):
    assert not MixedPrecision(True, torch.device("cpu")).enabled
    out = dlcv_train(SEG_MODEL, "--width", NARROW, "--data", camvid, "--epochs", 1, "--out", tmp_path / "run", "--amp",
                     "--no-tensorboard", "--overlays", 0, "--quiet")  # fmt: skip
    assert "--amp needs a CUDA device; training in FP32 on cpu" in out.output


def test_early_stopping_on_the_validation_metric(tmp_path, camvid):
    # a learning rate too small to change any float32 weight: the metric never improves after epoch 1
    out = dlcv_train(SEG_MODEL, "--width", NARROW, "--data", camvid, "--epochs", 6, "--optimizer", "sgd", "--momentum", 0,
                     "--lr", 1e-20, "--patience", 2, "--out", tmp_path / "run", "--no-tensorboard", "--overlays", 0)  # fmt: skip
    assert "early stop: no better validation metric in 2 epochs" in out.output and "(stopped early)" in out.output
    rows = log_rows(tmp_path / "run")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert len({r["val_metric"] for r in rows}) == 1


def test_overlays_and_tensorboard_scalars(tmp_path, camvid):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    dlcv_train(SEG_MODEL, "--width", NARROW, "--data", camvid, "--epochs", 2, "--overlays", 2, "--out", run, "--quiet",
               "--class-weights", "median", "--optimizer", "adamw", "--weight-decay", 0.01, "--scheduler", "cosine",
               "--snapshot-every", 1)  # fmt: skip
    figures = sorted(p.name for p in (run / "overlays").iterdir())
    assert figures == ["epoch_001.png", "epoch_002.png"]
    assert sorted(p.name for p in (run / "epochs").iterdir()) == ["epoch_001.pt", "epoch_002.pt"]
    snapshot, last = load_checkpoint(run / "epochs" / "epoch_002.pt"), load_checkpoint(run / "last.pt")
    assert "train_state" not in snapshot and all(torch.equal(snapshot["state_dict"][k], v) for k, v in last["state_dict"].items())
    figure = read_image(run / "overlays" / "epoch_002.png")
    # row 1, tile 2 is the first validation image's ground truth in the dataset's palette (grey = void)
    from dlcv.runtime.datasets import open_dataset
    from dlcv.runtime.postprocess import IGNORE_COLOUR
    from dlcv.train.overlays import GAP, LINE, _tile_scale
    from dlcv.runtime.postprocess import default_palette

    ds = open_dataset(camvid)
    labels = ds.read_labels(ds.samples("val")[0])
    k = int(_tile_scale(labels.shape[0]))
    top, left = 2 * LINE, labels.shape[1] * k + GAP
    tile = figure[top : top + labels.shape[0] * k : k, left : left + labels.shape[1] * k : k]
    expected = default_palette(11)[np.clip(labels, 0, 10)]
    expected[labels == 11] = IGNORE_COLOUR
    assert np.array_equal(tile, expected)
    assert figure.shape[0] == 2 * LINE + 2 * (labels.shape[0] * k + GAP)

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "val/miou", "lr"} <= tags
    assert [e.step for e in events.Scalars("val/miou")] == [1, 2]
    rows = log_rows(run)
    assert [e.value for e in events.Scalars("val/miou")] == pytest.approx([float(r["val_metric"]) for r in rows], abs=1e-6)


def test_missing_tensorboard_is_said_once(tmp_path, camvid, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = dlcv_train(SEG_MODEL, "--width", NARROW, "--data", camvid, "--epochs", 2, "--out", tmp_path / "run",
                     "--overlays", 0, "--quiet")  # fmt: skip
    assert out.output.count("tensorboard is not installed") == 1
    assert not (tmp_path / "run" / "tensorboard").exists() and len(log_rows(tmp_path / "run")) == 2


def test_class_map_and_augmentation_options(tmp_path, camvid):
    run = tmp_path / "run"
    dlcv_train(SEG_MODEL, "--width", NARROW, "--data", camvid, "--class-map", "camvid3", "--epochs", 1, "--out", run,
               "--hflip", "--vflip", "--scale", "0.8,1.25", "--crop", "12x12", "--color-jitter", 0.2,
               "--no-tensorboard", "--overlays", 0, "--quiet")  # fmt: skip
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["class_names"] == ["background", "ground", "road_user"] and ckpt["num_classes"] == 3
    assert ckpt["preprocess"]["resize"] == "none"  # evaluation: the contract only, no augmentation
    settings = ckpt["train_state"]["settings"]
    assert settings["augment"] == {"hflip": True, "vflip": True, "scale": [0.8, 1.25], "crop": [12, 12], "color_jitter": 0.2}
    bad = dlcv_train(SEG_MODEL, "--data", camvid, "--scale", "2", "--out", tmp_path / "x", expect=2)
    assert "--scale needs 2 comma-separated float values" in bad.output


def test_resume_refuses_changed_settings(tmp_path, camvid):
    run = tmp_path / "run"
    common = [SEG_MODEL, "--width", NARROW, "--data", camvid, "--no-tensorboard", "--overlays", 0, "--quiet"]
    dlcv_train(*common, "--epochs", 1, "--out", run)
    bad = dlcv_train(*common, "--epochs", 2, "--lr", 1e-3, "--resume", run / "last.pt", expect=1)
    assert "cannot resume with different settings (lr: checkpoint 0.0001 vs now 0.001)" in bad.output
    dlcv_train(*common, "--epochs", 2, "--resume", run / "last.pt")  # --out defaults to the run's folder
    assert [r["epoch"] for r in log_rows(run)] == ["1", "2"]


def test_pretrained_and_finetune_head(tmp_path):
    data = write_imagefolder(tmp_path / "data")
    source = create_model(CLS_MODEL, num_classes=7, width=float(NARROW))
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.05)
    torch.save(source.state_dict(), tmp_path / "vgg16_bn.pth")
    run = tmp_path / "run"
    out = dlcv_train(CLS_MODEL, "--width", NARROW, "--input-size", 32, "--data", data, "--epochs", 1, "--lr", 1e-2,
                     "--pretrained", tmp_path / "vgg16_bn.pth", "--finetune", "head", "--out", run, "--no-tensorboard",
                     "--quiet")  # fmt: skip
    assert "--finetune head:" in out.output and "trainable parameters" in out.output
    trained = load_checkpoint(run / "last.pt")["state_dict"]
    pretrained = source.state_dict()
    frozen = [k for k in trained if k.startswith("features.")]
    assert frozen and all(torch.equal(trained[k], pretrained[k]) for k in frozen)  # incl. BatchNorm statistics
    assert trained["classifier.6.weight"].shape[0] == 3  # the 7-class head was replaced


def test_byol_subcommand_then_pretrained(tmp_path):
    data = write_imagefolder(tmp_path / "data")
    out = dlcv_train("byol", "--backbone", CLS_MODEL, "--data", data, "--epochs", 1, "--batch-size", 4, "--width", NARROW,
                     "--input-size", 32, "--out", tmp_path / "byol", "--quiet")  # fmt: skip
    backbone = tmp_path / "byol" / "backbone.pt"
    assert f"backbone: {backbone}" in out.output and backbone.is_file()
    out = dlcv_train(CLS_MODEL, "--width", NARROW, "--input-size", 32, "--data", data, "--epochs", 1, "--pretrained",
                     backbone, "--out", tmp_path / "run", "--no-tensorboard", "--quiet")  # fmt: skip
    assert (tmp_path / "run" / "best.pt").is_file()


def test_list_formats_and_help():
    out = dlcv_train("--list-formats")
    names = [line.split("\t")[0] for line in out.output.splitlines() if "\t" in line]
    assert names == ["camvid", "cmp-facade", "csv", "dlcv-cls", "imagefolder", "landcover"]
    assert "camvid3" in out.output
    help_text = dlcv_train("--help").output
    for option in ("--optimizer", "--scheduler", "--patience", "--amp", "--resume", "--pretrained", "--finetune", "--overlays", "--crop"):
        assert option in help_text
    assert "dlcv-train byol" in help_text


def test_model_args_reach_the_builder_and_the_checkpoint(tmp_path):
    """--model-arg batch_norm=true builds FCN8s with a batch-norm encoder, recorded in the checkpoint."""
    from click.testing import CliRunner

    from dlcv.train.checkpoint import load_checkpoint, model_from_checkpoint
    from dlcv.train.cli import main
    from dlcv.train.data.demo import DemoSizes, demo_root

    data = demo_root("segmentation", tmp_path / "cache", DemoSizes(seg=(4, 2, 2), cls=(1, 1, 1)))
    args = ["fcn8s", "--data", str(data), "--epochs", "1", "--batch-size", "2", "--width", "0.0625", "--quiet",
            "--no-tensorboard", "--overlays", "0", "--out", str(tmp_path / "run"), "--model-arg", "batch_norm=true"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["arch_kwargs"] == {"width": 0.0625, "batch_norm": True}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model_from_checkpoint(ckpt).modules())
    bad = CliRunner().invoke(main, args[:-1] + ["colour=red"])
    assert bad.exit_code == 1 and "fcn8s takes no option colour" in bad.output


def test_a_misspelt_model_or_format_is_one_line_with_a_suggestion(tmp_path):
    model = dlcv_train("fcn9s", "--data", "demo", "--out", tmp_path / "run", expect=1)
    assert "unknown model 'fcn9s' (did you mean 'fcn8s'?); choose one of:" in model.output
    assert "Traceback" not in model.output and not (tmp_path / "run").exists()
    data = write_camvid(tmp_path / "camvid")
    fmt = dlcv_train(SEG_MODEL, "--data", data, "--format", "camvd", "--out", tmp_path / "run2", expect=1)
    assert "unknown dataset format 'camvd' (did you mean 'camvid'?)" in fmt.output
