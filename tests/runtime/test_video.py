"""dlcv-infer on a video file: lossless label frames, timestamps, overlay video, truncated files."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.runtime import load
from dlcv.runtime.cli import main as infer_main

try:
    from .onnx_fixtures import CLS_COLOURS, SEG_COLOURS, blocks_image, save_mask
except ImportError:
    from onnx_fixtures import CLS_COLOURS, SEG_COLOURS, blocks_image, save_mask  # type: ignore[no-redef]

FRAMES, FPS, SIZE = 200, 25.0, (48, 64)  # frames, frames/s, (height, width)


def write_video(path: Path, frames: int = FRAMES, colours: np.ndarray = SEG_COLOURS, seed: int = 0) -> Path:
    """An MJPG AVI of moving template-colour blocks, written with OpenCV."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (SIZE[1], SIZE[0]))
    assert writer.isOpened()
    grid = rng.integers(0, len(colours), (3, 4))
    for i in range(frames):
        if i % 10 == 0:
            grid = rng.integers(0, len(colours), (3, 4))
        rgb = np.roll(blocks_image(grid, (16, 16), colours), i % 16, axis=1)
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame OpenCV decodes from ``path`` (BGR) and its timestamp."""
    capture = cv2.VideoCapture(str(path))
    frames, stamps = [], []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
        stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    capture.release()
    return frames, stamps


def invoke(*args):
    return CliRunner().invoke(infer_main, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "street clip.avi")


def test_label_frames_equal_per_image_inference_on_the_decoded_frames(seg_model, clip, tmp_path):
    result = invoke("--engine", seg_model, clip, "--out", tmp_path / "out", "--overlay", "--batch-size", "8", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "street clip"
    frames, stamps = decode(clip)
    assert len(frames) == FRAMES
    with load(seg_model) as predictor:
        expected = predictor.predict(frames, keep_images=True)
    with open(out / "frames.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    assert np.allclose([float(r["timestamp_ms"]) for r in rows], stamps, atol=1e-3)  # the decoder's timestamps
    for row, want in zip(rows, expected):
        written = cv2.imread(str(out / row["labels"]), cv2.IMREAD_UNCHANGED)  # lossless: the labels themselves
        assert written.dtype == np.uint8 and np.array_equal(written, want.labels), row["frame"]
    overlay, _ = decode(out / "overlay.mp4")
    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS) and len(overlay) == FRAMES
    # lossy (mp4v), so close to the blend rather than equal to it
    error = np.mean([np.abs(o.astype(int) - e.overlay(0.5).astype(int)).mean() for o, e in zip(overlay, expected)])
    assert overlay[0].shape == (*SIZE, 3) and error < 8.0
    record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert record["counts"] == {"frames": FRAMES, "frames_in_header": FRAMES} and record["stopped_early"] is None
    assert record["timing"]["frames_per_s"] > 0
    assert "200 frames" in result.output and "frames/s" in result.output


def test_labels_score_the_frames_and_count_missing_masks(seg_model, clip, tmp_path):
    frames, _ = decode(clip)
    with load(seg_model) as predictor:
        predicted = predictor.predict(frames[:30])
    for i, r in enumerate(predicted):
        if i != 7:
            save_mask(tmp_path / "masks" / f"frame_{i:06d}.png", r.labels)
    result = invoke("--engine", seg_model, clip, "--out", tmp_path / "out", "--labels", tmp_path / "masks",
                    "--max-frames", "30", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "street clip" / "metrics.json").read_text(encoding="utf-8"))
    assert record["counts"]["frames"] == 30 and record["metrics"]["pixel_accuracy"] == 1.0
    assert json.dumps(record["label_report"]).count("frame_000007.png") == 1  # the missing mask is named


def test_a_truncated_video_stops_with_a_message_and_keeps_the_frames_before_the_cut(seg_model, clip, tmp_path):
    cut = tmp_path / "cut.avi"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    frames, _ = decode(cut)
    assert 0 < len(frames) < FRAMES
    result = invoke("--engine", seg_model, cut, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert f"ended after {len(frames)} of the {FRAMES} frames" in message and "are written in" in message
    out = tmp_path / "out" / "cut"
    written = sorted(out.glob("frame_*.png"))
    assert len(written) == len(frames)
    with load(seg_model) as predictor:
        for path, want in zip(written, predictor.predict(frames)):
            assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), want.labels)
    assert len((out / "frames.csv").read_text(encoding="utf-8").splitlines()) == len(frames) + 1  # committed
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["stopped_early"].startswith("the video ended")


def test_a_video_opencv_cannot_open_writes_nothing(seg_model, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    result = invoke("--engine", seg_model, broken, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "OpenCV cannot open this video" in result.output
    assert not (tmp_path / "out").exists()


def test_a_classifier_writes_one_row_per_frame(cls_model, tmp_path):
    clip = write_video(tmp_path / "cls.avi", frames=12, colours=CLS_COLOURS)
    result = invoke("--engine", cls_model, clip, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    frames, _ = decode(clip)
    with load(cls_model) as predictor:
        expected = predictor.predict(frames)
    with open(tmp_path / "out" / "cls" / "frames.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["label"]), r["class_name"]) for r in rows] == [(e.label, e.name) for e in expected]
    assert [r["top5_scores"] for r in rows] == [";".join(f"{c.probability:.6f}" for c in e.topk) for e in expected]


def test_video_option_mistakes_are_usage_errors(seg_model, clip, tmp_path):
    assert invoke("--engine", seg_model, clip, "--camera", "0").exit_code == 2
    assert invoke("--engine", seg_model, clip, "--skip-existing").exit_code == 2
    assert invoke("--engine", seg_model, tmp_path, "--overlay").exit_code == 2
    assert invoke("--engine", seg_model).exit_code == 2


@pytest.fixture
def camera(clip, monkeypatch):
    """Camera 0 is the clip: OpenCV's own capture of it, opened as cv2.VideoCapture(0) is."""
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda source, *a: real(str(clip)) if isinstance(source, int) else real(source, *a))


def test_a_camera_runs_to_max_frames(seg_model, camera, clip, tmp_path):
    result = invoke("--engine", seg_model, "--camera", "0", "--max-frames", "20", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "camera0"
    assert len(list(out.glob("frame_*.png"))) == 20
    record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert record["counts"] == {"frames": 20, "frames_in_header": None} and record["stopped_early"] is None


def test_ctrl_c_ends_a_camera_run_and_keeps_what_was_written(seg_model, camera, clip, tmp_path, monkeypatch):
    from dlcv.runtime import video

    real, calls = video._Writer.write, []

    def interrupted(self, frames, results):
        calls.append(len(frames))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C arrives while the third batch waits for the writer
        real(self, frames, results)

    monkeypatch.setattr(video._Writer, "write", interrupted)
    result = invoke("--engine", seg_model, "--camera", "0", "--overlay", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / "camera0"
    rows = (out / "frames.csv").read_text(encoding="utf-8").splitlines()[1:]
    written = sorted(p.name for p in out.glob("frame_*.png"))
    assert 0 < len(rows) == len(written) < FRAMES and [r.split(",")[2] for r in rows] == written
    overlay, _ = decode(out / "overlay.mp4")
    assert len(overlay) == len(written)


def test_overwrite_replaces_a_longer_earlier_run_and_labels_are_never_overwritten(seg_model, clip, tmp_path):
    assert invoke("--engine", seg_model, clip, "--out", tmp_path / "out", "--max-frames", "12", "-q").exit_code == 0
    assert invoke("--engine", seg_model, clip, "--out", tmp_path / "out", "--max-frames", "5", "-q").exit_code == 1  # exists
    result = invoke("--engine", seg_model, clip, "--out", tmp_path / "out", "--max-frames", "5", "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out" / "street clip").glob("frame_*.png")) == [f"frame_{i:06d}.png" for i in range(5)]
    labels = tmp_path / "out" / "street clip"
    result = invoke("--engine", seg_model, clip, "--out", tmp_path / "out", "--labels", labels, "--overwrite", "-q")
    assert result.exit_code == 2 and "would replace the masks" in result.output
    assert len(list(labels.glob("frame_*.png"))) == 5
