"""dlcv.runtime.load -> Predictor: the answers dlcv-infer writes, from Python, bit for bit."""
from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import dlcv.runtime
from dlcv.runtime import ClassificationResult, DlcvError, DlcvUsageError, SegmentationResult, load
from dlcv.runtime.cli import main as infer_main
from dlcv.runtime.imageio import read_image, read_label_map
from dlcv.runtime.infer import prediction_line
from dlcv.runtime.postprocess import default_palette, softmax
from dlcv.runtime.precision import FP32, INT8
from dlcv.runtime.predictor import window_size
from dlcv.runtime.preprocess import PreprocessSpec

try:
    from .onnx_fixtures import CLS_COLOURS, PLAIN, SEG_COLOURS, blocks_image, colour_model, expected_labels, save_image, write_rectangles
except ImportError:
    from onnx_fixtures import CLS_COLOURS, PLAIN, SEG_COLOURS, blocks_image, colour_model, expected_labels, save_image, write_rectangles  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]


def _infer(engine: Path, images: Path, out: Path, *extra: str) -> None:
    args = ["--engine", engine, images, "--out", out, "--batch-size", "4", "-q", *extra]
    result = CliRunner().invoke(infer_main, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _seg_images(folder: Path, seed: int = 0) -> list[Path]:
    """Images of three sizes made of the colour model's template colours (its labels are known)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, (gh, gw, block) in enumerate([(3, 4, (4, 4)), (5, 3, (2, 3)), (3, 4, (4, 4)), (2, 2, (3, 5)), (3, 4, (4, 4))]):
        paths.append(save_image(folder / f"{i:02d}.png", blocks_image(rng.integers(0, len(SEG_COLOURS), (gh, gw)), block)))
    return paths


def _assert_masks_are_dlcv_infers(results, paths: list[Path], out: Path) -> None:
    assert len(results) == len(paths)
    for path, result in zip(paths, results):
        assert isinstance(result, SegmentationResult)
        written = cv2.imread(str(out / f"{path.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert result.labels.dtype == written.dtype and np.array_equal(result.labels, written), path.name
        colour = cv2.imread(str(out / f"{path.stem}_color.png"))  # BGR, as result.color() gives for BGR input
        assert np.array_equal(result.color(), colour), path.name


def _assert_rows_are_dlcv_infers(results, paths: list[Path], out: Path) -> None:
    rows = (out / "predictions.csv").read_text(encoding="utf-8").splitlines(keepends=True)[1:]
    assert len(results) == len(paths) == len(rows)
    for path, result, row in zip(paths, results, rows):
        assert isinstance(result, ClassificationResult)
        assert prediction_line(path.name, result) == row  # label, name, top-5 indices and probabilities as written


# --------------------------------------------------------------------------- the colour-rule models (no torch)


def test_predict_on_arrays_equals_dlcv_infer_and_the_known_labels(seg_model, tmp_path):
    paths = _seg_images(tmp_path / "images")
    _infer(seg_model, tmp_path / "images", tmp_path / "out")
    frames = [cv2.imread(str(p)) for p in paths]
    with load(seg_model, batch_size=4) as predictor:
        results = predictor.predict(frames)
        _assert_masks_are_dlcv_infers(results, paths, tmp_path / "out")
        for frame, result in zip(frames, results):
            assert np.array_equal(result.labels, expected_labels(frame[:, :, ::-1]))
        # the same answers from paths, RGB arrays (rgb=True), a generator and a 4-D stack
        assert all(np.array_equal(a.labels, b.labels) for a, b in zip(results, predictor.predict(paths)))
        rgb = predictor.predict((f[:, :, ::-1] for f in frames), rgb=True)
        assert all(np.array_equal(a.labels, b.labels) and np.array_equal(a.color(), b.color()[:, :, ::-1]) for a, b in zip(results, rgb))
        same_size = [f for f in frames if f.shape == frames[0].shape]
        stacked = predictor.predict(np.stack(same_size))
        assert len(stacked) == len(same_size) == 3
        (one,) = predictor.predict(str(paths[1]))  # one image: still a list
        assert np.array_equal(one.labels, results[1].labels)


def test_gray_arrays_scores_and_overlay(seg_model):
    gray = np.kron(np.array([[0, 255], [255, 0]], np.uint8), np.ones((4, 4), np.uint8))
    with load(seg_model) as predictor:
        (result,) = predictor.predict(gray, scores=True, keep_images=True)
    assert np.array_equal(result.labels, np.where(gray == 255, 4, 0))  # white and black templates
    x = np.repeat(gray[..., None], 3, axis=2).astype(np.float32) / np.float32(255)
    w = 2 * SEG_COLOURS.astype(np.float32) / 255
    logits = x @ w.T - (w / 2) ** 2 @ np.ones(3, np.float32)
    assert result.scores is not None and np.allclose(result.scores, softmax(logits, axis=-1).max(axis=-1), atol=1e-6)
    assert result.image is not None and result.image.shape == (8, 8, 3)
    blended = result.overlay(0.25)
    expected = np.clip(0.25 * result.color().astype(np.float64) + 0.75 * result.image + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(blended.astype(int) - expected).max() <= 1
    assert result.class_names[int(result.labels[0, 4])] == "white"


def test_scores_of_a_resized_input_are_probabilities_at_the_image_size(tmp_path):
    model = colour_model(tmp_path / "resized.onnx", preprocess=PreprocessSpec(resize="resize", size=(8, 8), **PLAIN))
    image = blocks_image(np.array([[1, 2, 3], [4, 0, 1]]), (6, 5))  # 12×15, run at 8×8
    with load(model) as predictor:
        (result,) = predictor.predict(image, rgb=True, scores=True)
        assert result.labels.shape == result.scores.shape == (12, 15) and result.scores.dtype == np.float32
        x, geometry = predictor.prepare(image, rgb=True)
        logits = predictor.infer(x[None])["logits"][0]
    probs = softmax(logits, axis=0).max(axis=0).astype(np.float32)  # at the model's 8×8
    assert np.array_equal(result.scores, cv2.resize(probs, (15, 12), interpolation=cv2.INTER_NEAREST_EXACT))
    assert result.scores.min() > 1 / len(SEG_COLOURS)  # a winning class's probability, never truncated


def test_classification_results_are_dlcv_infers_rows(cls_model, tmp_path):
    paths = [save_image(tmp_path / "images" / f"{i}.png", np.full((6 + i, 5, 3), CLS_COLOURS[i], np.uint8)) for i in range(len(CLS_COLOURS))]
    _infer(cls_model, tmp_path / "images", tmp_path / "out")
    with load(cls_model) as predictor:
        results = predictor.predict([cv2.imread(str(p)) for p in paths])
        assert predictor.metadata.task == "classification"
    _assert_rows_are_dlcv_infers(results, paths, tmp_path / "out")
    assert [r.label for r in results] == list(range(len(CLS_COLOURS)))  # each image is its template's class
    assert all(r.name == r.topk[0].name and len(r.topk) == 5 and r.logits is not None for r in results)


def test_metadata_says_what_runs_where(seg_model):
    with load(seg_model, backend="openvino", batch_size=2) as predictor:
        m = predictor.metadata
        assert (m.task, m.num_classes, m.precision, m.backend, m.device) == ("segmentation", 5, "fp32", "openvino", "cpu")
        assert m.backend_choice == "openvino (--backend)" and m.preprocess == m.artifact.preprocess
        assert np.array_equal(np.array(m.palette, np.uint8), default_palette(5))
    with load(seg_model) as predictor:
        # what follows the choice says what was measured on this machine's CPU class, which varies
        assert predictor.metadata.backend_choice.startswith("onnxruntime (the default for .onnx models)")


def test_predict_batches_streams_with_a_bounded_window(seg_model):
    frame = blocks_image(np.array([[1, 2], [3, 0]]), (4, 4))
    pulled = 0

    def frames():
        nonlocal pulled
        for _ in range(40):
            pulled += 1
            yield frame

    with load(seg_model, batch_size=4, workers=1) as predictor:
        stream = predictor.predict_batches(frames(), rgb=True)
        first = next(stream)
        # held: the loading window plus the batch being filled (dlcv-infer's bound), never the whole iterator
        assert len(first) == 4 and pulled <= window_size(1, 4) + 4
        rest = [len(batch) for batch in stream]
    assert sum(rest) == 36 and max(rest) == 4 and pulled == 40


def test_bad_inputs_are_clear(seg_model, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with load(seg_model) as predictor:
        with pytest.raises(DlcvUsageError, match="uint8"):
            predictor.predict(np.zeros((4, 4, 3), np.float32))
        with pytest.raises(DlcvUsageError, match=r"H×W×3"):
            predictor.predict(np.zeros((4, 4, 4), np.uint8))
        with pytest.raises(DlcvError, match="broken.png"):
            predictor.predict(tmp_path / "broken.png")
        with pytest.raises(DlcvUsageError, match="needs the image"):
            predictor.predict(np.zeros((4, 4, 3), np.uint8))[0].overlay()
    with pytest.raises(DlcvError, match="unknown model file type"):
        load(tmp_path / "model.txt")


# --------------------------------------------------------------------------- dlcv-export's files, every backend


@pytest.fixture(scope="module")
def exported(make_checkpoint, tmp_path_factory):
    """A narrow FCN8s and a small classifier exported by dlcv-export as FP32 and INT8, and test images."""
    from dlcv.export.cli import main as export_main

    data = write_rectangles(tmp_path_factory.mktemp("data") / "set", val_count=6)
    out = tmp_path_factory.mktemp("exported")
    seg, cls = make_checkpoint("fcn8s"), make_checkpoint("cnn_small", num_classes=10, width=0.25)
    for ckpt, extra in ((seg, ["--input-size", "48x64", "--val", data, "--eval-count", "4"]), (cls, [])):
        args = [ckpt, "--out", out, "--int8", "--calib", data / "train", "--calib-count", "6", *extra]
        result = CliRunner().invoke(export_main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    files = {(task, p.name): out / p.file_name(arch) for task, arch in (("segmentation", "fcn8s"), ("classification", "cnn_small"))
             for p in (FP32, INT8)}  # fmt: skip
    files[("segmentation", "checkpoint")], files[("classification", "checkpoint")] = seg, cls
    return files, data / "val"


CASES = [(task, precision, backend) for task in ("segmentation", "classification")
         for precision, backend in (("fp32", "onnxruntime"), ("fp32", "openvino"), ("int8", "onnxruntime"),
                                    ("int8", "openvino"), ("checkpoint", "torch"))]  # fmt: skip


@pytest.mark.parametrize("task,precision,backend", CASES)
def test_predict_equals_dlcv_infer_for_every_backend_and_precision(exported, tmp_path, task, precision, backend):
    files, images = exported
    model = files[(task, precision)]
    paths = sorted(images.glob("*.png"))  # three sizes
    _infer(model, images, tmp_path / "out", "--backend", backend)
    with load(model, backend=backend, batch_size=4) as predictor:
        assert predictor.metadata.backend == backend
        results = predictor.predict([cv2.imread(str(p)) for p in paths])
    if task == "segmentation":
        _assert_masks_are_dlcv_infers(results, paths, tmp_path / "out")
    else:
        _assert_rows_are_dlcv_infers(results, paths, tmp_path / "out")


# --------------------------------------------------------------------------- the README's example


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- readme-example: predictor [^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its predictor example"
    return match.group(1)


def test_the_readme_example_runs_on_an_exported_model(exported, tmp_path, monkeypatch, capsys):
    files, images = exported
    model = tmp_path / "model.onnx"
    os.link(files[("segmentation", "fp32")], model)
    street = tmp_path / "street.png"
    street.write_bytes(sorted(images.glob("*.png"))[4].read_bytes())  # 44×52
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md example", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "segmentation ('class_0', 'class_1', 'class_2') onnxruntime"
    assert printed[1] == "[(44, 52), (44, 52)]"
    _infer(model, tmp_path, tmp_path / "out", "--backend", "onnxruntime")
    labels = cv2.imread(str(tmp_path / "street_labels.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, read_label_map(tmp_path / "out" / "street.png"))
    overlay = cv2.imread(str(tmp_path / "street_overlay.png"))
    colour = cv2.imread(str(tmp_path / "out" / "street_color.png"))
    frame = cv2.imread(str(street))
    assert np.array_equal(overlay, cv2.addWeighted(colour, 0.5, frame, 0.5, 0.0))


def test_the_runtime_is_typed():
    """PEP 561: the marker is in the package (tests/test_wheel_contents.py checks the wheel holds it)."""
    assert (Path(dlcv.runtime.__file__).parent / "py.typed").is_file()
