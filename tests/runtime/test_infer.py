"""dlcv.runtime.infer: run_inference on tiny ONNX models whose answers are known exactly."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import read_image, read_label_map
from dlcv.runtime.batching import ShapeBatcher
from dlcv.runtime.infer import InferConfig, run_inference
from dlcv.runtime.datasets.ground_truth import parse_label
from dlcv.runtime.label_scoring import LABEL_RULES
from dlcv.runtime.infer_files import PREDICTION_COLUMNS
from dlcv.runtime.listing import ListingStats, iter_image_files
from dlcv.runtime.postprocess import default_palette, softmax, topk
from dlcv.runtime.preprocess import PreprocessSpec

try:
    from .onnx_fixtures import (
        CLS_COLOURS, CLS_NAMES, PLAIN, SEG_COLOURS, blocks_image, colour_model, expected_logits, save_image, save_mask,
    )
except ImportError:
    from onnx_fixtures import (  # type: ignore[no-redef]
        CLS_COLOURS, CLS_NAMES, PLAIN, SEG_COLOURS, blocks_image, colour_model, expected_logits, save_image, save_mask,
    )

NUM_SEG = len(SEG_COLOURS)


def _config(engine, images, out, **kw) -> InferConfig:
    kw.setdefault("progress", False)
    kw.setdefault("workers", 2)
    return InferConfig(engine=engine, images=images, out=out, **kw)


def _seg_folder(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Images of several sizes and kinds; returns image name -> expected label map (original size)."""
    rng = np.random.default_rng(seed)
    expected = {}

    def grid(h, w, choices=range(NUM_SEG)):
        return rng.choice(np.array(list(choices)), size=(h, w))

    for name, (gh, gw, block) in {"a.png": (3, 4, (4, 4)), "b.png": (5, 3, (2, 3)), "c.png": (3, 4, (4, 4)),
                                  "a b ü.png": (2, 2, (3, 5))}.items():
        g = grid(gh, gw)
        save_image(folder / name, blocks_image(g, block))
        expected[name] = np.kron(g, np.ones(block, dtype=g.dtype))
    g = grid(4, 4, (0, 4))  # black/white only: a grayscale PNG
    labels = np.kron(g, np.ones((3, 3), dtype=g.dtype))
    save_image(folder / "gray.png", np.where(labels == 4, 255, 0).astype(np.uint8))
    expected["gray.png"] = labels
    g = grid(2, 3)
    rgb = blocks_image(g, (4, 4))
    alpha = rng.integers(0, 256, size=rgb.shape[:2], dtype=np.uint8)
    save_image(folder / "rgba.png", np.dstack([rgb, alpha]))
    expected["rgba.png"] = np.kron(g, np.ones((4, 4), dtype=g.dtype))
    return expected


# --------------------------------------------------------------------------- segmentation outputs


def test_segmentation_masks_exact_at_original_size(seg_model, tmp_path):
    expected = _seg_folder(tmp_path / "images")
    summary = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out", batch_size=3))
    assert (summary.processed, summary.failed, summary.skipped) == (len(expected), 0, 0)
    assert summary.exit_code == 0 and summary.metrics is None
    palette = default_palette(NUM_SEG)
    for name, labels in expected.items():
        stem = Path(name).stem
        mask = read_label_map(tmp_path / "out" / f"{stem}.png")
        assert mask.shape == labels.shape, name
        np.testing.assert_array_equal(mask, labels, err_msg=name)
        colour = read_image(tmp_path / "out" / f"{stem}_color.png")
        np.testing.assert_array_equal(colour, palette[labels], err_msg=name)
    with open(tmp_path / "out" / "errors.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == [["file", "reason"]]
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert record["counts"]["processed"] == len(expected) and record["metrics"] is None
    for key in ("decode_preprocess_s", "inference_s", "postprocess_write_s", "throughput_img_s", "latency_mean_ms"):
        assert record["timing"][key] >= 0


def test_default_palette_is_the_voc_colour_map():
    assert default_palette(6).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128]]
    assert len({tuple(c) for c in default_palette(256)}) == 256


def test_metadata_palette_colours_the_masks(tmp_path):
    palette = [(1, 2, 3), (250, 10, 20), (30, 240, 40), (50, 60, 230), (200, 210, 220)]
    model = colour_model(tmp_path / "pal.onnx", palette=palette)
    g = np.array([[0, 1, 2], [3, 4, 1]])
    save_image(tmp_path / "images" / "x.png", blocks_image(g, (2, 2)))
    run_inference(_config(model, tmp_path / "images", tmp_path / "out"))
    colour = read_image(tmp_path / "out" / "x_color.png")
    np.testing.assert_array_equal(colour, np.asarray(palette, np.uint8)[np.kron(g, np.ones((2, 2), int))])


def test_resized_input_is_restored_to_the_original_size(tmp_path):
    spec = PreprocessSpec(resize="resize", size=(8, 8), interpolation="nearest", **PLAIN)
    model = colour_model(tmp_path / "r.onnx", preprocess=spec)
    rng = np.random.default_rng(3)
    expected = {}
    for name, block in {"p.png": (2, 3), "q.png": (3, 1), "r.png": (1, 2)}.items():
        g = rng.integers(0, NUM_SEG, size=(8, 8))
        save_image(tmp_path / "images" / name, blocks_image(g, block))
        expected[name] = np.kron(g, np.ones(block, dtype=g.dtype))
    summary = run_inference(_config(model, tmp_path / "images", tmp_path / "out", batch_size=2))
    assert summary.processed == 3
    for name, labels in expected.items():
        np.testing.assert_array_equal(read_label_map(tmp_path / "out" / name), labels)


def test_grouping_by_shape_gives_the_batch_size_1_masks(seg_model, tmp_path):
    rng = np.random.default_rng(5)
    for i in range(9):
        h, w = [(6, 8), (8, 6), (5, 5)][i % 3]
        save_image(tmp_path / "images" / f"im{i}.png", blocks_image(rng.integers(0, NUM_SEG, (h, w)), (2, 2)))
    one = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "one", batch_size=1))
    many = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "many", batch_size=4, workers=3))
    assert one.processed == many.processed == 9 and many.failed == 0
    for i in range(9):
        for suffix in ("", "_color"):
            name = f"im{i}{suffix}.png"
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes(), name


def test_shape_batcher_never_mixes_shapes_and_bounds_memory():
    b = ShapeBatcher(batch_size=3, max_pending=4)
    ready = []
    shapes = [(1,), (2,), (1,), (3,), (2,), (1,), (4,), (2,), (5,)]
    for i, s in enumerate(shapes):
        ready += b.add(s, (s, i))
        assert b.pending <= 4
    ready += b.flush()
    seen = sorted(i for batch in ready for _, i in batch)
    assert seen == list(range(len(shapes)))
    for batch in ready:
        assert len({s for s, _ in batch}) == 1 and 1 <= len(batch) <= 3
    assert [[i for _, i in batch] for batch in ready] == [[0, 2], [1, 4], [3], [5], [6], [7], [8]]
    full = ShapeBatcher(batch_size=2)
    assert full.add((1,), "a") == [] and full.add((2,), "b") == [] and full.add((1,), "c") == [["a", "c"]]
    assert full.flush() == [["b"]] and full.pending == 0


# --------------------------------------------------------------------------- segmentation metrics


def test_segmentation_metrics_match_brute_force_and_label_problems_are_reported(tmp_path):
    model = colour_model(tmp_path / "m.onnx", exclude_classes=(4,))
    rng = np.random.default_rng(7)
    images, masks = tmp_path / "images", tmp_path / "masks"
    truth = {}
    for i in range(5):
        g = rng.integers(0, NUM_SEG, size=(4, 5))
        save_image(images / f"img{i}.png", blocks_image(g, (2, 2)))
        truth[i] = np.kron(g, np.ones((2, 2), dtype=g.dtype))
    gt0 = truth[0].copy()
    noise = rng.random(gt0.shape)
    gt0[noise < 0.3] = rng.integers(0, NUM_SEG, size=int((noise < 0.3).sum()))
    gt0[0, :3] = 255  # ignored
    gt0[1, :2] = 9  # out of range
    save_mask(masks / "img0.png", gt0)
    gt1 = rng.integers(0, NUM_SEG, size=truth[1].shape)
    save_mask(masks / "img1.png", gt1)
    # img2: no mask; img3: wrong size; img4: unreadable mask
    save_mask(masks / "img3.png", np.zeros((5, 5), np.uint8))
    (masks / "img4.png").write_bytes(b"")

    summary = run_inference(_config(model, images, tmp_path / "out", labels=masks, batch_size=2))
    assert summary.processed == 5 and summary.failed == 0
    record = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    metrics, report = record["metrics"], record["label_report"]

    gt = np.concatenate([gt0.ravel(), gt1.ravel()])
    pred = np.concatenate([truth[0].ravel(), truth[1].ravel()])
    valid = gt < NUM_SEG
    ious = []
    for c in range(NUM_SEG):
        tp = np.sum(valid & (gt == c) & (pred == c))
        fp = np.sum(valid & (gt != c) & (pred == c))
        fn = np.sum(valid & (gt == c) & (pred != c))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else float("nan"))
    for got, want in zip(metrics["per_class_iou"], ious):
        assert (got is None and math.isnan(want)) or got == pytest.approx(want)
    assert metrics["miou"] == pytest.approx(np.nanmean(ious[:4]))  # class 4 excluded by the metadata
    assert metrics["pixel_accuracy"] == pytest.approx(np.sum(valid & (gt == pred)) / np.sum(valid))
    assert metrics["out_of_range_labels"] == 2 and metrics["count"] == int(valid.sum())
    assert metrics["class_names"] == ["background", "red", "green", "blue", "white"]

    assert report["images_scored"] == 2
    assert report["missing"] == {"count": 1, "images": ["img2.png"]}
    assert report["size_mismatch"]["images"] == [{"image": "img3.png", "image_hw": [8, 10], "label_hw": [5, 5]}]
    assert report["unreadable"]["count"] == 1 and "empty file" in report["unreadable"]["images"][0]["reason"]
    assert report["out_of_range"]["count"] == 2 and report["out_of_range"]["images"] == [{"image": "img0.png", "pixels": 2}]
    assert set(report["rules"]) <= set(LABEL_RULES)
    # unscored images still get their outputs
    np.testing.assert_array_equal(read_label_map(tmp_path / "out" / "img2.png"), truth[2])
    assert any("mIoU" in line for line in summary.lines())


# --------------------------------------------------------------------------- classification


def _cls_folder(folder: Path, rng) -> dict[str, np.ndarray]:
    """Uniform template-coloured images (PNG and JPEG) plus noisy ones; name -> decoded RGB."""
    out = {}
    for c, colour in enumerate(CLS_COLOURS):
        ext = ".jpg" if c % 2 else ".png"
        img = np.broadcast_to(colour, (6 + c, 7, 3)).copy()
        out[f"u{c}{ext}"] = img
    for i in range(3):
        out[f"n{i}.png"] = rng.integers(0, 256, size=(5, 9, 3), dtype=np.uint8)
    for name, img in out.items():
        save_image(folder / name, img)
    return {name: read_image(folder / name) for name in out}


def _oracle_top5(image):
    logits = expected_logits(image, CLS_COLOURS)
    order = np.argsort(-logits, kind="stable")
    gaps = -np.diff(logits[order])
    assert gaps[:5].min() > 1e-4, "fixture images must not tie near the top 5"
    return logits, order[:5]


def test_predictions_csv_format_and_values(cls_model, tmp_path):
    images = _cls_folder(tmp_path / "images", np.random.default_rng(11))
    summary = run_inference(_config(cls_model, tmp_path / "images", tmp_path / "out", batch_size=4))
    assert summary.processed == len(images) and summary.outputs["predictions_csv"].name == "predictions.csv"
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["image_name", "label"] and tuple(rows[0]) == PREDICTION_COLUMNS
    names = [r[0] for r in rows[1:]]
    assert names == sorted(images)
    for name, label, class_name, top_labels, top_scores in rows[1:]:
        logits, top = _oracle_top5(images[name])
        assert int(label) == top[0] and class_name == CLS_NAMES[top[0]]
        assert [int(v) for v in top_labels.split(";")] == top.tolist()
        np.testing.assert_allclose([float(v) for v in top_scores.split(";")], softmax(logits)[top], atol=2e-6)
    # the uniform images are recognised
    assert {r[0]: int(r[1]) for r in rows[1:] if r[0].startswith("u")} == {
        f"u{c}{'.jpg' if c % 2 else '.png'}": c for c in range(len(CLS_COLOURS))
    }


def _brute_force_cls(images, labels):
    n = len(CLS_COLOURS)
    top1 = top5 = count = 0
    per_class = np.zeros((n, 2))
    for name, gt in labels.items():
        if not 0 <= gt < n:
            continue
        _, top = _oracle_top5(images[name])
        count += 1
        top1 += top[0] == gt
        top5 += gt in top
        per_class[gt] += (top[0] == gt, 1)
    acc = [None if t == 0 else h / t for h, t in per_class]
    return top1 / count, top5 / count, acc, count


def test_classification_metrics_from_csv_match_brute_force(cls_model, tmp_path):
    images = _cls_folder(tmp_path / "images", np.random.default_rng(12))
    names = sorted(images)
    rng = np.random.default_rng(13)
    labels = {name: int(rng.integers(0, len(CLS_COLOURS))) for name in names[:-4]}
    labels[names[0]] = int(np.argmax(expected_logits(images[names[0]], CLS_COLOURS)))
    labels[names[-4]] = 17  # out of range
    lines = ["image_name,label"] + [f"{k},{v}" for k, v in labels.items()]
    lines += [f"{names[-3]},banana", f"{names[-2]},{CLS_NAMES[2]}", "ghost.png,1"]  # names[-1]: missing
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = run_inference(_config(cls_model, tmp_path / "images", tmp_path / "out", labels=tmp_path / "labels.csv"))
    m, report = summary.metrics, summary.label_report
    labels[names[-2]] = 2
    top1, top5, per_class, count = _brute_force_cls(images, labels)
    assert m["count"] == count and m["top1"] == pytest.approx(top1) and m["top5"] == pytest.approx(top5)
    for got, want in zip(m["per_class_accuracy"], per_class):
        assert got == pytest.approx(want) if want is not None else got is None
    assert m["out_of_range_labels"] == 1 and report["out_of_range"]["images"] == [{"image": names[-4], "label": 17}]
    assert report["invalid"] == {"count": 1, "images": [{"image": names[-3], "label": "banana"}]}
    assert report["missing"] == {"count": 1, "images": [names[-1]]}
    assert report["labels_without_image"] == {"count": 1, "examples": ["ghost.png"]}
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk["metrics"]["top1"] == pytest.approx(top1)


def test_classification_labels_from_file_names(cls_model, tmp_path):
    rng = np.random.default_rng(14)
    images = {}
    for c, colour in enumerate(CLS_COLOURS):
        for k in range(2):
            label = c if k == 0 else (c + 1) % len(CLS_COLOURS)  # every second one is wrong
            img = np.clip(colour.astype(int) + rng.integers(-5, 6, size=(6, 6, 3)), 0, 255).astype(np.uint8)
            images[f"{label}_{c * 2 + k}.png"] = img
            save_image(tmp_path / "val" / f"{label}_{c * 2 + k}.png", img)
    summary = run_inference(_config(cls_model, tmp_path / "val", tmp_path / "out", labels=tmp_path / "val"))
    labels = {name: int(name.split("_")[0]) for name in images}
    decoded = {name: read_image(tmp_path / "val" / name) for name in images}
    top1, top5, _, count = _brute_force_cls(decoded, labels)
    assert summary.metrics["count"] == count == len(images)
    assert summary.metrics["top1"] == pytest.approx(top1) == pytest.approx(0.5)
    assert summary.metrics["top5"] == pytest.approx(top5)


def test_parse_label():
    assert parse_label("3", CLS_NAMES) == 3 and parse_label(" -1 ", CLS_NAMES) == -1
    assert parse_label("green", CLS_NAMES) == 2 and parse_label("banana", CLS_NAMES) is None


def test_topk_orders_by_logits_with_softmax_scores():
    logits = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0]], np.float32)
    order, probs = topk(logits, 5)
    assert order.tolist() == [[1, 2, 0], [0, 1, 2]]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


# --------------------------------------------------------------------------- robustness


def test_bad_files_are_listed_and_skipped(seg_model, tmp_path):
    images = tmp_path / "images"
    _seg_folder(images)
    (images / "zero.png").write_bytes(b"")
    save_image(images / "full.jpg", np.full((32, 32, 3), 200, np.uint8))
    data = (images / "full.jpg").read_bytes()
    (images / "trunc.jpg").write_bytes(data[: len(data) // 3])
    (images / "full.jpg").unlink()
    (images / "text.png").write_text("this is not an image\n", encoding="utf-8")
    (images / "notes.txt").write_text("ignored", encoding="utf-8")
    summary = run_inference(_config(seg_model, images, tmp_path / "out"))
    assert (summary.processed, summary.failed, summary.skipped) == (6, 3, 1)
    assert summary.exit_code == 0 and not (tmp_path / "out" / "zero.png").exists()
    with open(tmp_path / "out" / "errors.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    reasons = {r["file"]: r["reason"] for r in rows}
    assert sorted(reasons) == ["text.png", "trunc.jpg", "zero.png"]
    assert "empty file" in reasons["zero.png"]
    assert "not a readable image" in reasons["trunc.jpg"] and "not a readable image" in reasons["text.png"]
    strict = run_inference(_config(seg_model, images, tmp_path / "out2", strict=True))
    assert strict.exit_code == 1 and "--strict" in strict.failure_message


def test_no_success_is_exit_code_1(seg_model, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "zero.png").write_bytes(b"")
    summary = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out"))
    assert summary.processed == 0 and summary.exit_code == 1 and "errors.csv" in summary.failure_message


def test_existing_outputs_are_not_overwritten(seg_model, tmp_path):
    _seg_folder(tmp_path / "images")
    run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out"))
    before = (tmp_path / "out" / "a.png").stat().st_mtime_ns
    with pytest.raises(DlcvError, match="--overwrite") as info:
        run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out"))
    assert "already exists" in str(info.value) and str(tmp_path / "out") in str(info.value)
    assert (tmp_path / "out" / "a.png").stat().st_mtime_ns == before
    (tmp_path / "out" / "metrics.json").unlink()
    (tmp_path / "out" / "errors.csv").unlink()
    with pytest.raises(DlcvError, match=r"a b ü\.png already exists"):  # the first existing mask, in name order
        run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out"))
    summary = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out", overwrite=True))
    assert summary.processed == 6


def test_colliding_output_names_fail_the_second_image(seg_model, tmp_path):
    save_image(tmp_path / "images" / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    summary = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out"))
    assert summary.processed == 1 and summary.errors[0][0] == "a.png" and "a.jpg" in summary.errors[0][1]


def test_recursive_mirrors_folders_and_survives_symlink_loops(seg_model, tmp_path):
    images = tmp_path / "images"
    g = np.array([[1, 2], [3, 0]])
    save_image(images / "top.png", blocks_image(g, (2, 2)))
    save_image(images / "sub" / "deep" / "x y.png", blocks_image(g.T, (2, 2)))
    os.symlink(images, images / "sub" / "loop")  # points back at the root
    os.symlink(images / "sub", images / "sub" / "deep" / "up")
    flat = run_inference(_config(seg_model, images, tmp_path / "flat"))
    assert flat.processed == 1
    summary = run_inference(_config(seg_model, images, tmp_path / "out", recursive=True))
    assert summary.processed == 2 and summary.failed == 0
    np.testing.assert_array_equal(
        read_label_map(tmp_path / "out" / "sub" / "deep" / "x y.png"), np.kron(g.T, np.ones((2, 2), int))
    )
    assert (tmp_path / "out" / "sub" / "deep" / "x y_color.png").is_file()
    stats = ListingStats()
    listed = [f.name for f in iter_image_files(images, recursive=True, stats=stats)]
    assert listed == ["sub/deep/x y.png", "top.png"]
    assert sorted(stats.revisits) == ["sub/deep/up", "sub/loop"]


def test_output_folder_inside_the_input_is_not_read_back(seg_model, tmp_path):
    images = tmp_path / "images"
    _seg_folder(images)
    first = run_inference(_config(seg_model, images, images / "pred", recursive=True))
    second = run_inference(_config(seg_model, images, images / "pred", recursive=True, overwrite=True))
    assert first.found == second.found == 6


def test_run_level_mistakes_are_dlcv_errors(seg_model, tmp_path):
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    with pytest.raises(DlcvError, match="--recursive"):
        run_inference(_config(seg_model, tmp_path / "empty", tmp_path / "out"))
    with pytest.raises(DlcvError, match="not found"):
        run_inference(_config(seg_model, tmp_path / "missing", tmp_path / "out"))
    with pytest.raises(DlcvUsageError):
        run_inference(_config(seg_model, tmp_path / "empty", tmp_path / "empty"))
    with pytest.raises(DlcvUsageError):
        _config(seg_model, tmp_path / "empty", tmp_path / "out", batch_size=0)
    bare = colour_model(tmp_path / "bare.onnx", metadata=False)
    save_image(tmp_path / "img" / "a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DlcvError, match="no dlcv metadata"):
        run_inference(_config(bare, tmp_path / "img", tmp_path / "out"))


def test_progress_bar_and_warnings_go_to_stderr(seg_model, tmp_path, capsys):
    _seg_folder(tmp_path / "images")
    (tmp_path / "images" / "zero.png").write_bytes(b"")
    messages: list[str] = []
    summary = run_inference(_config(seg_model, tmp_path / "images", tmp_path / "out", progress=True), log=messages.append)
    captured = capsys.readouterr()
    assert summary.processed == 6 and captured.out == ""
    assert "dlcv-infer" in captured.err and "img" in captured.err  # the tqdm bar
    assert len(messages) == 1 and messages[0].startswith("warning: skipped zero.png") and "empty file" in messages[0]


def test_a_failing_batch_fails_its_images_only(tmp_path):
    model = colour_model(tmp_path / "static.onnx", input_hw=(4, 4))  # a static model: other sizes are refused
    save_image(tmp_path / "images" / "fits.png", np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "images" / "wide.png", np.zeros((4, 6, 3), np.uint8))
    summary = run_inference(_config(model, tmp_path / "images", tmp_path / "out", batch_size=2))
    assert summary.processed == 1 and [name for name, _ in summary.errors] == ["wide.png"]
    assert "inference failed" in summary.errors[0][1] and "static" in summary.errors[0][1]
