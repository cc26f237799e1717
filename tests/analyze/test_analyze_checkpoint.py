"""dlcv-analyze on real checkpoint files, run as a user runs it (click's CliRunner)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dlcv.analyze import confusion as confusion_module
from dlcv.analyze import features as feature_module
from dlcv.analyze import figures
from dlcv.analyze.cli import main
from dlcv.analyze.confusion import row_normalised
from dlcv.analyze.deployment import compare_with_artifact, most_disagreeing
from dlcv.analyze.evaluation import load_model, open_eval_split
from dlcv.analyze.metrics_file import read_metrics_json
from dlcv.analyze.segmentation import score_images, worst_images
from dlcv.runtime.backends import open_backend
from dlcv.runtime.imageio import read_image, write_png
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image
from dlcv.train.checkpoint import load_checkpoint, model_from_checkpoint
from dlcv.train.data.demo import SEG_CLASSES, demo_palette
from dlcv.train.evaluate import eval_loader, evaluate
from tests.runtime.onnx_fixtures import colour_model

from .conftest import CLS_ARCH, SEG_ARCH, assert_png, assert_report_shows_every_png, make_run

CPU = torch.device("cpu")


def _analyze(*args: str):
    result = CliRunner().invoke(main, [*map(str, args), "--quiet"])
    return result


def _training_metrics(checkpoint: Path, data: Path) -> dict:
    """The checkpoint's validation metrics as dlcv-train's evaluation computes them."""
    ckpt = load_checkpoint(checkpoint)
    split = open_eval_split(str(data), ckpt)
    return evaluate(model_from_checkpoint(ckpt), eval_loader(split.dataset, 4), split.info, CPU)


# --------------------------------------------------------------------------- classification


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, demo_data):
    """A classification run (epoch snapshots 1-4) analysed with --runs and --compare (itself), the
    matrices fed to t-SNE recorded."""
    spec = dict(CLS_ARCH)
    arch = spec.pop("arch")
    run = make_run(tmp_path_factory.mktemp("cls-run"), arch, [1, 2, 3, 4], snapshots=True, **spec)
    out = tmp_path_factory.mktemp("cls-out")
    fed, drawn = [], []
    tsne, heatmap = feature_module.tsne_2d, confusion_module.confusion_heatmap
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(feature_module, "tsne_2d", lambda features, seed=0: fed.append(np.array(features)) or tsne(features, seed))
        mp.setattr(confusion_module, "confusion_heatmap", lambda matrix, *a: drawn.append(np.array(matrix)) or heatmap(matrix, *a))
        result = _analyze(run / "best.pt", "--data", demo_data["classification"], "--runs", run, "--compare", run / "best.pt", "--out", out)
    return run, out, result, (fed, drawn)


def test_classification_report_shows_every_figure_at_its_stated_size(cls_run):
    run, out, result, _ = cls_run
    assert result.exit_code == 0, result.output
    pngs = {p.name for p in assert_report_shows_every_png(out)}
    assert pngs == {
        "confusion_matrix.png", "per_class_accuracy.png", "features_tsne.png", "features_pca.png",
        "features_epochs_tsne.png", "features_epochs_pca.png", "deployment_disagreement.png", "training_curves.png",
    }  # fmt: skip
    assert_png(out / "features_epochs_tsne.png", *figures.embedding_size(3, 10))
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "4 epoch snapshots" in text and "shown: epochs 1, 2, 4" in text
    assert re.search(r"\| agreement \| 1 \|", text), "the checkpoint against itself must agree everywhere"


def test_tsne_gets_one_penultimate_row_per_validation_image(cls_run, demo_data):
    run, _, _, (fed, _) = cls_run
    ckpt = load_checkpoint(run / "best.pt")
    model = model_from_checkpoint(ckpt)
    split = open_eval_split(str(demo_data["classification"]), ckpt)
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    x = torch.stack([torch.from_numpy(preprocess_image(read_image(s.image), spec)[0]) for s in split.samples])
    with torch.no_grad():
        expected = model.forward_features(x).numpy()
    assert len(fed) == 4  # the final checkpoint, then epochs 1, 2, 4
    final = fed[0]
    assert final.shape == (len(split.samples), model.classifier[-1].in_features) == (30, 32)
    np.testing.assert_allclose(final, expected, rtol=1e-5, atol=1e-6)
    assert all(f.shape == final.shape for f in fed)


def test_classification_confusion_figure_uses_the_metrics_json_numbers(cls_run, demo_data):
    run, out, _, (_, drawn) = cls_run
    record = read_metrics_json(out / "metrics.json")
    assert len(drawn) == 1
    np.testing.assert_array_equal(drawn[0], row_normalised(record.confusion))
    assert record.confusion.matrix.sum() == 30
    training = _training_metrics(run / "best.pt", demo_data["classification"])
    assert record.metrics["top1"] == pytest.approx(training["top1"])
    assert record.confusion.matrix.tolist() == training["confusion_matrix"]


# --------------------------------------------------------------------------- segmentation


@pytest.fixture(scope="module")
def seg_artifact(tmp_path_factory) -> Path:
    """An 11-class ONNX model (colour templates: another model than the checkpoint) with dlcv metadata."""
    colours = np.array(demo_palette(len(SEG_CLASSES)), dtype=np.uint8)
    return colour_model(tmp_path_factory.mktemp("onnx") / "templates.onnx", colours=colours, class_names=SEG_CLASSES)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory, demo_data, seg_artifact):
    """A segmentation run without epoch snapshots (best.pt epoch 2, last.pt epoch 3, training overlays),
    analysed with chosen images and --compare."""
    spec = dict(SEG_ARCH)
    arch = spec.pop("arch")
    run = make_run(tmp_path_factory.mktemp("seg-run"), arch, [1, 2, 3], snapshots=False, best=2, **spec)
    for e in (1, 2, 3):
        write_png(run / "overlays" / f"epoch_{e:03d}.png", np.full((50, 70 + e, 3), 40 * e, np.uint8))
    out = tmp_path_factory.mktemp("seg-out")
    result = _analyze(run, "--data", demo_data["segmentation"], "--images", "0002.png,0004", "--compare", seg_artifact, "--out", out)
    return run, out, result


def test_segmentation_report_shows_every_figure_at_its_stated_size(seg_run):
    run, out, result = seg_run
    assert result.exit_code == 0, result.output
    pngs = {p.name for p in assert_report_shows_every_png(out)}
    assert pngs == {
        "confusion_matrix.png", "per_class_iou.png", "predictions.png", "predictions_epochs.png",
        "deployment_disagreement.png", "training_curves.png",
        "training_overlay_epoch_001.png", "training_overlay_epoch_002.png", "training_overlay_epoch_003.png",
    }  # fmt: skip
    legend = figures.legend_rows(len(SEG_CLASSES))
    assert_png(out / "predictions.png", *figures.grid_size(2, 3, legend))  # the two chosen images
    assert_png(out / "predictions_epochs.png", *figures.grid_size(2, 4, legend))  # image, truth, epochs 2 and 3
    assert_png(out / "deployment_disagreement.png", *figures.grid_size(4, 4, legend))  # --count 4
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "no epoch snapshots" in text and "best.pt (epoch 2), last.pt (epoch 3)" in text
    assert "| 0002.png |" in text and "| 0004.png |" in text
    assert "preprocessing record differs" in text  # the colour model reads plain 0-1 pixels


def test_segmentation_metrics_match_training_evaluation(seg_run, demo_data):
    run, out, _ = seg_run
    record = read_metrics_json(out / "metrics.json")
    training = _training_metrics(run / "best.pt", demo_data["segmentation"])
    assert record.confusion.matrix.tolist() == training["confusion_matrix"]
    assert record.metrics["miou"] == pytest.approx(training["miou"])
    heatmap = json.loads((out / "metrics.json").read_text())["metrics"]["confusion_matrix"]
    assert np.asarray(heatmap).sum() == 6 * 64 * 64


def _brute_force_miou(gt: np.ndarray, pred: np.ndarray, n: int, ignore: int) -> float:
    valid = gt != ignore
    ious = []
    for c in range(n):
        tp = np.sum(valid & (gt == c) & (pred == c))
        denom = np.sum(valid & ((gt == c) | (pred == c)))
        if denom:
            ious.append(tp / denom)
    return float(np.mean(ious))


def test_worst_images_and_disagreement_against_brute_force(seg_checkpoint, demo_data, seg_artifact):
    ckpt, loaded = load_model(seg_checkpoint, CPU)
    split = open_eval_split(str(demo_data["segmentation"]), ckpt)
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    with open_backend(seg_checkpoint) as torch_model, open_backend(seg_artifact) as onnx_model:
        brute_miou, brute_share = {}, {}
        for i, sample in enumerate(split.samples):
            x = preprocess_image(read_image(sample.image), spec)[0][None]
            ref, dep = torch_model.infer(x).argmax(1)[0], onnx_model.infer(x).argmax(1)[0]
            gt = split.dataset.fmt.read_labels(sample)
            brute_miou[i] = _brute_force_miou(gt, ref, 11, 255)
            brute_share[i] = float(np.mean(ref != dep))
        _, scores = score_images(loaded, split, range(len(split)), device=CPU, batch_size=4, workers=0, progress=False)
        assert [s.miou for s in scores] == pytest.approx([brute_miou[i] for i in range(len(split))])
        worst = worst_images(scores, 2, "miou")
        assert [s.index for s in worst] == sorted(brute_miou, key=brute_miou.get)[:2]
        comparison, per_image = compare_with_artifact(loaded, onnx_model, split, range(len(split)), device=CPU, batch_size=4,
                                                      workers=0, progress=False)  # fmt: skip
    assert {p.index: p.disagreement for p in per_image} == pytest.approx(brute_share)
    top = most_disagreeing(per_image, 3)
    assert [p.disagreement for p in top] == pytest.approx(sorted(brute_share.values(), reverse=True)[:3])
    assert comparison["deployed"].parity["agreement"] == pytest.approx(1 - np.mean(list(brute_share.values())))


# --------------------------------------------------------------------------- user mistakes


def test_user_mistakes_exit_with_a_reason(cls_checkpoint, seg_checkpoint, demo_data, tmp_path):
    no_data = _analyze(cls_checkpoint, "--out", tmp_path)
    assert no_data.exit_code == 2 and "--data" in no_data.output
    wrong_task = _analyze(cls_checkpoint, "--data", demo_data["segmentation"], "--out", tmp_path)
    assert wrong_task.exit_code == 2 and "segmentation dataset" in wrong_task.output
    unknown = _analyze(seg_checkpoint, "--data", demo_data["segmentation"], "--images", "nope.png", "--out", tmp_path)
    assert unknown.exit_code == 2 and "nope.png" in unknown.output and "0000.png" in unknown.output
    missing = _analyze(tmp_path / "none.pt", "--data", "demo", "--out", tmp_path)
    assert missing.exit_code == 1 and "not found" in missing.output


@pytest.mark.slow
def test_exported_onnx_agrees_with_pytorch_in_the_deployment_view(seg_checkpoint, demo_data, tmp_path):
    from dlcv.export import ExportConfig, export_onnx

    onnx_path = export_onnx(ExportConfig(checkpoint=seg_checkpoint, out=tmp_path, input_size=(64, 64))).onnx_path
    result = _analyze(seg_checkpoint, "--data", demo_data["segmentation"], "--compare", onnx_path, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    agreement = float(re.search(r"\| agreement \| ([0-9.]+) \|", text).group(1))
    assert agreement >= 0.999
    assert "another checkpoint file" not in text
    assert_report_shows_every_png(tmp_path / "out")


@pytest.mark.slow
def test_a_real_training_run_folder(demo_data, tmp_path):
    """dlcv-train's own run folder (log.csv, best.pt, last.pt, epochs/epoch_NNN.pt), analysed as is."""
    from dlcv.train.cli import main as train

    run = tmp_path / "run"
    trained = CliRunner().invoke(train, [
        "cnn_small", "--data", str(demo_data["classification"]), "--width", "0.25", "--epochs", "3",
        "--input-size", "32x32", "--snapshot-every", "1", "--out", str(run), "--quiet",
    ])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = _analyze(run, "--data", demo_data["classification"], "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    pngs = {p.name for p in assert_report_shows_every_png(tmp_path / "out")}
    assert {"training_curves.png", "features_epochs_tsne.png", "features_epochs_pca.png"} <= pngs
    text = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "shown: epochs 1, 2, 3" in text
    measured = re.search(r"\| measured here \| (top-1 [0-9.]+) \|", text).group(1)
    assert f"| recorded in the checkpoint | {measured} |" in text


def test_backend_chooses_what_the_compared_artifact_runs_on(seg_checkpoint, demo_data, seg_artifact, tmp_path):
    data = demo_data["segmentation"]
    result = _analyze(seg_checkpoint, "--data", data, "--compare", seg_artifact, "--backend", "onnxruntime",
                      "--max-images", "2", "--count", "1", "--out", tmp_path / "out")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"`{seg_artifact}` (onnxruntime, fp32)" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for args, needle in (
        (("--compare", seg_artifact, "--backend", "onnxrt"), "did you mean 'onnxruntime'"),
        (("--compare", seg_artifact, "--backend", "tensorrt"), "tensorrt backend does not open .onnx models"),
        (("--backend", "onnxruntime"), "give --compare ARTIFACT too"),
    ):
        wrong = _analyze(seg_checkpoint, "--data", data, *args, "--out", tmp_path / "wrong")
        assert wrong.exit_code == 2 and needle in wrong.output and wrong.output.count("\n") == 1
    assert not (tmp_path / "wrong").exists()
