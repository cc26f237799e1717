"""BYOL pre-training: update rules, augmentations, and a tiny run whose backbone loads with --pretrained."""
import copy
import csv
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dlcv.runtime.errors import DlcvUsageError
from dlcv.runtime.imageio import write_png
from dlcv.train import create_model, model_config
from dlcv.train.byol import (
    VIEW_AUGMENTS,
    ByolConfig,
    augment_view,
    byol_loss,
    default_view_size,
    ema_update,
    tau_schedule,
    train_byol,
    view_normalisation,
)
from dlcv.train.pretrained import load_pretrained

NARROW = 0.0625


def write_images(root, count, size=(40, 48), seed=0):
    """A dlcv-cls folder of smooth random images (labels in the names are ignored by BYOL)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
        image = np.kron(coarse, np.ones((size[0] // 5, size[1] // 6, 1), np.uint8))
        write_png(root / "train" / f"{i % 3}_{i:04d}.png", image)
    return root


def test_views_take_the_backbones_registered_size_and_normalisation():
    assert default_view_size("efficientnet_b2") == (288, 288) and default_view_size("cnn_small") == (32, 32)
    spec, registered = view_normalisation("convnext_base"), model_config("convnext_base").preprocess
    assert (spec.resize, spec.size, spec.resize_shorter) == ("none", None, None)  # the views are cropped already
    assert (spec.color_order, spec.mean, spec.std) == (registered.color_order, registered.mean, registered.std)


def test_ema_update_on_a_toy_module():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in target.parameters():
            p.normal_()
    online.train()(torch.randn(8, 3))  # move the online batch-norm statistics
    old = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for t, o, before in zip(target.parameters(), online.parameters(), old):
        assert torch.allclose(t, 0.9 * before + 0.1 * o, atol=1e-7)
    for t, o in zip(target.buffers(), online.buffers()):
        assert torch.equal(t, o)
    ema_update(target, online, 0.0)  # tau 0: a copy
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


def test_tau_schedule_rises_from_base_to_one_on_a_cosine():
    assert tau_schedule(0, 100, 0.996) == pytest.approx(0.996)
    assert tau_schedule(50, 100, 0.996) == pytest.approx(0.998)
    assert tau_schedule(100, 100, 0.996) == pytest.approx(1.0)
    assert tau_schedule(25, 100, 0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    values = [tau_schedule(k, 10, 0.99) for k in range(11)]
    assert values == sorted(values)


def test_loss_is_two_minus_two_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    assert byol_loss(a, a * 5).item() == pytest.approx(0.0, abs=1e-6)  # scale does not matter
    assert byol_loss(a, -a).item() == pytest.approx(4.0)
    assert byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])).item() == pytest.approx(2.0)


def test_two_views_are_different_augmentations_of_the_same_size():
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    views = [augment_view(image, (32, 40), aug, np.random.default_rng(i)) for i, aug in enumerate(VIEW_AUGMENTS)]
    assert all(v.shape == (32, 40, 3) and v.dtype == np.uint8 for v in views)
    assert not np.array_equal(views[0], views[1])
    again = augment_view(image, (32, 40), VIEW_AUGMENTS[0], np.random.default_rng(0))
    assert np.array_equal(again, views[0])  # seeded: reproducible


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(DlcvUsageError, match="--batch-size must be at least 2"):
        ByolConfig(backbone="resnet50", data="demo", out=tmp_path, batch_size=1)
    with pytest.raises(DlcvUsageError, match="--tau must be within 0..1"):
        ByolConfig(backbone="resnet50", data="demo", out=tmp_path, tau=1.5)
    cfg = ByolConfig(backbone="fcn8s", data=str(write_images(tmp_path / "d", 4)), out=tmp_path / "o")
    with pytest.raises(DlcvUsageError, match="classification backbone, not 'fcn8s'.*resnet50"):
        train_byol(cfg)


def test_tiny_run_writes_a_backbone_that_loads_with_pretrained(tmp_path):
    data = write_images(tmp_path / "data", 6)
    cfg = ByolConfig(
        backbone="resnet50", data=str(data), out=tmp_path / "run", epochs=2, batch_size=3, width=NARROW,
        input_size=(32, 32), progress=False, steps_per_epoch=1,
    )  # fmt: skip
    result = train_byol(cfg)
    assert [row["steps"] for row in result.history] == [1, 1]
    assert all(0 < row["loss"] <= 8 and math.isfinite(row["loss"]) for row in result.history)  # two terms of 0..4
    assert result.history[-1]["tau"] > result.history[0]["tau"] >= cfg.tau
    with open(result.log_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert sorted(p.name for p in cfg.out.iterdir()) == ["backbone.pt", "log.csv"]  # no temporary files left

    saved = torch.load(result.backbone_path, weights_only=True)  # a plain torchvision-format state dict
    assert "conv1.weight" in saved and not any(k.startswith("fc.") for k in saved)

    classifier = create_model("resnet50", num_classes=4, width=NARROW)
    report = load_pretrained(classifier, "resnet50", result.backbone_path)
    assert not report.skipped and len(report.loaded) == len(saved)
    assert report.kept == ("fc.weight", "fc.bias")
    assert all(torch.equal(classifier.state_dict()[k], v) for k, v in saved.items())

    segmenter = create_model("deeplabv3_resnet50", num_classes=3, width=NARROW)
    report = load_pretrained(segmenter, "deeplabv3_resnet50", result.backbone_path)
    assert not report.skipped and len(report.loaded) == len(saved)


def test_training_lowers_the_loss(tmp_path):
    """On a handful of images the predictor quickly learns to match the slowly moving target."""
    data = write_images(tmp_path / "data", 8, seed=1)
    cfg = ByolConfig(
        backbone="cnn_small", data=str(data), out=tmp_path / "run", epochs=3, batch_size=4, width=0.25,
        input_size=(32, 32), progress=False, lr=1e-3,
    )  # fmt: skip
    losses = [row["loss"] for row in train_byol(cfg).history]
    assert losses[-1] < 0.7 * losses[0], losses
