"""dlcv-infer under bad input, interruption and untrusted files, run as a user runs it."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.runtime.atomic import is_temporary, journal_path
from dlcv.runtime.backends import open_backend
from dlcv.runtime.cli import main
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.external_data import check_external_data
from dlcv.runtime.imageio import read_image, read_label_map
from dlcv.runtime.listing import iter_image_files
from dlcv.runtime.infer_files import ResultLog, output_collision
from dlcv.runtime.postprocess import default_palette
from dlcv.runtime.summary import LatencyStats

pytest.importorskip("PIL")

try:
    from .bad_inputs import make_bad_inputs
    from .onnx_fixtures import (
        CLS_COLOURS, SEG_COLOURS, blocks_image, colour_model, save_image, save_mask, set_external_location,
        with_external_data,
    )
except ImportError:
    from bad_inputs import make_bad_inputs  # type: ignore[no-redef]
    from onnx_fixtures import (  # type: ignore[no-redef]
        CLS_COLOURS, SEG_COLOURS, blocks_image, colour_model, save_image, save_mask, set_external_location,
        with_external_data,
    )

NUM_SEG = len(SEG_COLOURS)
PALETTE = default_palette(NUM_SEG)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _errors(out: Path) -> dict[str, str]:
    with open(out / "errors.csv", newline="", encoding="utf-8") as f:
        return {r["file"]: r["reason"] for r in csv.DictReader(f)}


def _brute_force_iou(gt: np.ndarray, pred: np.ndarray, n: int) -> tuple[list[float], float]:
    valid = gt < n
    ious = []
    for c in range(n):
        tp = np.sum(valid & (gt == c) & (pred == c))
        fp = np.sum(valid & (gt != c) & (pred == c))
        fn = np.sum(valid & (gt == c) & (pred != c))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else float("nan"))
    return ious, float(np.sum(valid & (gt == pred)) / np.sum(valid))


# --------------------------------------------------------------------------- the fixture folder


def test_every_bad_input_is_reported_and_the_good_outputs_are_exact(seg_model, bad, tmp_path):
    out = tmp_path / "out"
    result = _invoke("--engine", seg_model, bad.images, "--labels", bad.masks, "--out", out, "--recursive",
                     "--workers", "2", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert result.stdout.splitlines()[0].startswith(
        f"{len(bad.good)} processed, {bad.not_images} skipped (not images), {len(bad.bad)} failed "
        f"of {len(bad.cases)} image files"
    )
    reasons = _errors(out)
    assert set(reasons) == set(bad.bad)
    for name, case in bad.bad.items():
        assert case.reason in reasons[name], (name, reasons[name])
        assert f"warning: skipped {name}: " in result.stderr
        assert "\n" not in reasons[name]
    for name, case in bad.good.items():
        stem = Path(name).with_suffix("")
        mask = read_label_map(out / f"{stem}.png")
        np.testing.assert_array_equal(mask, case.labels, err_msg=name)
        np.testing.assert_array_equal(read_image(out / f"{stem}_color.png"), PALETTE[case.labels], err_msg=name)
    # no outputs for the failed images (collide.png's names hold collide.jpg's masks)
    for name in set(bad.bad) - {"collide.png"}:
        assert not (out / Path(name).with_suffix(".png")).exists(), name

    record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert record["counts"]["folders_not_reentered"] == ["sub/loop"]
    report = record["label_report"]
    for rule, names in bad.label_problems.items():
        listed = [e if isinstance(e, str) else e["image"] for e in report[rule]["images"]]
        assert listed == names, rule
    assert report["out_of_range"]["count"] == 3 and report["images_scored"] == len(bad.ground_truth)
    gt = np.concatenate([g.ravel() for g in bad.ground_truth.values()])
    pred = np.concatenate([bad.cases[n].labels.ravel() for n in bad.ground_truth])
    ious, pixel_acc = _brute_force_iou(np.where(gt == 255, NUM_SEG + 1, gt), pred, NUM_SEG)
    assert record["metrics"]["pixel_accuracy"] == pytest.approx(pixel_acc)
    assert record["metrics"]["miou"] == pytest.approx(np.nanmean(ious))
    assert record["metrics"]["out_of_range_labels"] == 3


def test_strict_and_all_failed_exit_1_with_one_line(seg_model, bad, tmp_path):
    result = _invoke("--engine", seg_model, bad.images, "--out", tmp_path / "strict", "--strict", "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and "--strict" in result.stderr
    only_bad = tmp_path / "only bad"
    only_bad.mkdir()
    for name in ("zero bytes.png", "text.jpg", "huge 9000x9000.png"):
        (only_bad / name).write_bytes((bad.images / name).read_bytes())
    result = _invoke("--engine", seg_model, only_bad, "--out", tmp_path / "none", "-q")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "no image was processed successfully (3 failed; first: huge 9000x9000.png" in result.stderr


def test_the_size_limit_is_a_per_file_choice(seg_model, tmp_path):
    save_image(tmp_path / "images" / "small.png", blocks_image(np.array([[1, 2]]), (4, 4)))
    save_image(tmp_path / "images" / "large.png", blocks_image(np.array([[3, 4]]), (8, 8)))
    result = _invoke("--engine", seg_model, tmp_path / "images", "--out", tmp_path / "out", "--max-pixels", "100", "-q")
    assert result.exit_code == 0 and "1 processed" in result.stdout
    assert "16×8 pixels, above the limit of 100" in _errors(tmp_path / "out")["large.png"]


# --------------------------------------------------------------------------- interruption and resume


def _seg_set(root: Path, count: int, seed: int = 1) -> tuple[Path, Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    expected = {}
    for i in range(count):
        g = rng.integers(0, NUM_SEG, size=(2, 2))
        labels = np.kron(g, np.ones((4, 4), dtype=g.dtype))
        save_image(images / f"img{i:04d}.png", SEG_COLOURS[labels])
        gt = labels.copy()
        gt[rng.random(gt.shape) < 0.1] = rng.integers(0, NUM_SEG)
        save_mask(masks / f"img{i:04d}.png", gt)
        expected[f"img{i:04d}"] = labels
    return images, masks, expected


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlcv.runtime.cli", *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it finished first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _visible_pngs(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".png") and not n.startswith("."))


def test_a_killed_segmentation_run_leaves_whole_files_and_resumes_to_the_same_metrics(seg_model, tmp_path):
    images, masks, expected = _seg_set(tmp_path, 300)
    out = tmp_path / "out"
    common = ("--engine", seg_model, images, "--labels", masks, "--batch-size", "1", "--workers", "1", "-q")
    proc = _start(*common, "--out", out)
    _kill_when(proc, lambda: out.is_dir() and len(os.listdir(out)) >= 12)

    assert not (out / "metrics.json").exists() and not (out / "errors.csv").exists()
    assert journal_path(out / "errors.csv").exists()  # the killed run's journal, hidden
    written = _visible_pngs(out)
    assert 0 < len(written) < 600
    for name in written:  # every visible output decodes fully and is right
        stem = name[: -len("_color.png")] if name.endswith("_color.png") else name[:-4]
        if name.endswith("_color.png"):
            np.testing.assert_array_equal(read_image(out / name), PALETTE[expected[stem]])
        else:
            np.testing.assert_array_equal(read_label_map(out / name), expected[stem])
    (out / ".img0001.png.k2j4h5g6.tmp.png").write_bytes(b"\x89PNG half")  # what a kill mid-write leaves
    assert [f.name for f in iter_image_files(out)] == written  # hidden temporaries are never outputs
    kept = sum(1 for n in written if not n.endswith("_color.png") and (out / f"{n[:-4]}_color.png").exists())

    refused = _invoke(*common, "--out", out)
    assert refused.exit_code == 1 and "--skip-existing" in refused.stderr
    resumed = _invoke(*common, "--out", out, "--skip-existing")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith(f"{300 - kept} processed, {kept} kept from an earlier run, 0 skipped")
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # temporaries and journals gone
    for stem, labels in expected.items():
        np.testing.assert_array_equal(read_label_map(out / f"{stem}.png"), labels)

    clean = _invoke(*common, "--out", tmp_path / "clean")
    assert clean.exit_code == 0
    resumed_record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    clean_record = json.loads((tmp_path / "clean" / "metrics.json").read_text(encoding="utf-8"))
    assert resumed_record["metrics"] == clean_record["metrics"]
    assert resumed_record["label_report"] == clean_record["label_report"]
    assert resumed_record["counts"]["kept_from_earlier_run"] == kept


def test_a_killed_classification_run_resumes_to_identical_predictions_and_metrics(cls_model, tmp_path):
    rng = np.random.default_rng(3)
    images = tmp_path / "images"
    lines = ["image_name,label"]
    for i in range(1000):
        colour = CLS_COLOURS[i % len(CLS_COLOURS)].astype(int) + rng.integers(-30, 31, size=3)
        save_image(images / f"im{i:04d}.png", np.clip(np.broadcast_to(colour, (4, 4, 3)), 0, 255).astype(np.uint8))
        lines.append(f"im{i:04d}.png,{int(rng.integers(0, len(CLS_COLOURS)))}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    common = ("--engine", cls_model, images, "--labels", tmp_path / "labels.csv", "--batch-size", "1", "--workers", "1", "-q")
    journal = journal_path(out / "predictions.csv")
    proc = _start(*common, "--out", out)
    _kill_when(proc, lambda: journal.exists() and journal.stat().st_size > 2000)
    assert not (out / "predictions.csv").exists()

    resumed = _invoke(*common, "--out", out, "--skip-existing")
    assert resumed.exit_code == 0, resumed.output
    kept = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["counts"]["kept_from_earlier_run"]
    assert kept > 10
    clean = _invoke(*common, "--out", tmp_path / "clean")
    assert clean.exit_code == 0
    assert (out / "predictions.csv").read_bytes() == (tmp_path / "clean" / "predictions.csv").read_bytes()
    a = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "clean" / "metrics.json").read_text(encoding="utf-8"))
    assert a["metrics"] == b["metrics"] and a["label_report"] == b["label_report"]
    assert not journal.exists()


def test_skip_existing_redoes_half_finished_images_and_never_keeps_a_collision(seg_model, tmp_path):
    images = tmp_path / "images"
    g = np.array([[1, 2], [3, 4]])
    save_image(images / "a.jpg", blocks_image(g, (8, 8)))
    save_image(images / "a.png", blocks_image(g.T, (8, 8)))
    save_image(images / "b.png", blocks_image(g[::-1], (8, 8)))
    out = tmp_path / "out"
    assert _invoke("--engine", seg_model, images, "--out", out, "-q").exit_code == 0
    (out / "b_color.png").unlink()  # as if killed between b's two files
    (out / "metrics.json").unlink()
    result = _invoke("--engine", seg_model, images, "--out", out, "-q", "--skip-existing")
    assert result.exit_code == 0
    assert result.stdout.startswith("1 processed, 1 kept from an earlier run, 0 skipped (not images), 1 failed")
    assert (out / "b_color.png").is_file() and "a.jpg" in _errors(out)["a.png"]
    np.testing.assert_array_equal(read_label_map(out / "a.png"), np.kron(g, np.ones((8, 8), int)))
    both = _invoke("--engine", seg_model, images, "--out", out, "--skip-existing", "--overwrite")
    assert both.exit_code == 2 and "exclude each other" in both.stderr


def test_the_first_image_in_name_order_owns_colliding_names(tmp_path):
    for name in ("a.jpg", "a.png", "a.b.png", "a_color.png", "a_color.tif", "a0.png", "b.png", "notes.txt", "a_color"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a.d").mkdir()
    verdicts = {f.name: output_collision(f) for f in iter_image_files(tmp_path)}
    assert [n for n, v in verdicts.items() if v is None] == ["a.b.png", "a.jpg", "a0.png", "b.png"]
    assert "a.png would overwrite that of a.jpg" in verdicts["a.png"]
    assert "a_color.png would overwrite that of a.jpg" in verdicts["a_color.png"]  # a.jpg's colour mask
    assert "a_color.png would overwrite that of a_color.png" in verdicts["a_color.tif"]  # same stem, listed earlier


def test_result_log_writes_in_sequence_whatever_the_completion_order(tmp_path):
    log = ResultLog(tmp_path, with_predictions=True, keep_errors=1)
    log.record(2, line="c\n")
    log.record(1, error=("b.png", "bad"))
    assert log.next_seq == 0 and len(log.waiting) == 2
    log.record(0, line="a\n")
    log.record(3, error=("d.png", "worse"))
    assert log.next_seq == 4 and not log.waiting and log.failed == 2 and log.errors == [("b.png", "bad")]
    outputs = log.commit()
    assert outputs["predictions_csv"].read_text().splitlines()[1:] == ["a", "c"]
    assert outputs["errors_csv"].read_text().splitlines() == ["file,reason", "b.png,bad", "d.png,worse"]


def test_latency_stats_are_exact_below_capacity_and_bounded_above():
    small = LatencyStats(capacity=100)
    values = np.linspace(0.001, 0.1, 50)
    for v in values:
        small.add(float(v))
    ms = small.milliseconds()
    assert ms["latency_p50_ms"] == pytest.approx(np.percentile(values * 1000, 50))
    big = LatencyStats(capacity=100)
    for v in np.tile(values, 40):
        big.add(float(v))
    assert big.sample.size == 100 and big.milliseconds()["latency_mean_ms"] == pytest.approx(values.mean() * 1000)


def test_stale_temporaries_are_recognised_by_name():
    assert is_temporary(".x.png.abcd_123.tmp.png") and is_temporary(".metrics.json.a1b2c3d4.tmp.json")
    assert not is_temporary("x.png") and not is_temporary(".errors.csv.partial") and not is_temporary(".hidden.png")


# --------------------------------------------------------------------------- errors a user can act on


def test_user_mistakes_are_one_line_with_the_fix(seg_model, tmp_path):
    save_image(tmp_path / "images" / "a.png", blocks_image(np.array([[1, 2]]), (4, 4)))
    images = tmp_path / "images"
    cases = [
        (("--engine", tmp_path / "missing.onnx", images), 1, "missing.onnx: ONNX file not found"),
        (("--engine", tmp_path / "model.h5", images), 1, "unknown model file type '.h5'"),
        (("--engine", seg_model, tmp_path / "nowhere"), 1, "images folder not found"),
        (("--engine", seg_model, images, "--labels", tmp_path / "nolabels"), 1, "labels not found"),
        (("--engine", seg_model, images, "--batch-size", "0"), 2, "--batch-size"),
    ]
    for args, code, phrase in cases:
        result = _invoke(*args, "--out", tmp_path / "out")
        assert result.exit_code == code, (args, result.output)
        assert phrase in result.stderr and "Traceback" not in result.output, (args, result.stderr)
        assert code == 2 or result.stderr.count("\n") == 1


def test_a_model_that_contradicts_its_metadata_stops_at_the_first_batch(tmp_path):
    model = colour_model(tmp_path / "liar.onnx", metadata_class_names=("a", "b", "c"))  # computes 5 classes
    save_image(tmp_path / "images" / "a.png", blocks_image(np.array([[1, 2]]), (4, 4)))
    save_image(tmp_path / "images" / "b.png", blocks_image(np.array([[3, 4]]), (4, 4)))
    out = tmp_path / "out"
    result = _invoke("--engine", model, tmp_path / "images", "--out", out)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert "liar.onnx" in result.stderr and "expected (2, 3, 4, 8)" in result.stderr
    assert "re-export it with dlcv-export" in result.stderr
    assert not os.listdir(out)  # nothing written, no journal left
    debug = _invoke("--engine", model, tmp_path / "images", "--out", tmp_path / "dbg", "--debug")
    assert debug.exit_code != 0 and isinstance(debug.exception, DlcvError)
    assert debug.exc_info[2] is not None  # the traceback click would print


def test_inputs_a_static_model_cannot_take_fail_per_file_with_the_fix(tmp_path):
    model = colour_model(tmp_path / "static.onnx", input_hw=(4, 8))
    save_image(tmp_path / "images" / "fits.png", blocks_image(np.array([[1, 2]]), (4, 4)))
    save_image(tmp_path / "images" / "big.png", blocks_image(np.array([[1, 2]]), (8, 8)))
    result = _invoke("--engine", model, tmp_path / "images", "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0 and "1 processed" in result.stdout
    reason = _errors(tmp_path / "out")["big.png"]
    assert "the model refuses this input" in reason and "fixed at 4" in reason and "without --static" in reason
    (tmp_path / "images" / "fits.png").unlink()
    result = _invoke("--engine", model, tmp_path / "images", "--out", tmp_path / "out2", "-q")
    assert result.exit_code == 1 and "first: big.png: inference failed: the model refuses this input" in result.stderr


# --------------------------------------------------------------------------- untrusted ONNX files


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, where):
    models = tmp_path / "models"
    secret = tmp_path / "secret.bin"
    model = with_external_data(colour_model(models / "m.onnx"))
    secret.write_bytes((models / "weights.bin").read_bytes())  # a file the model could read its weights from
    location = {"parent": "../secret.bin", "absolute": str(secret), "symlink": "link.bin"}[where]
    if where == "symlink":
        os.symlink(secret, models / "link.bin")
    set_external_location(model, location)
    with pytest.raises(DlcvError, match="outside the model's folder") as info:
        open_backend(model)
    assert "m.onnx" in str(info.value) and location in str(info.value)
    save_image(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    result = _invoke("--engine", model, tmp_path / "images", "--out", tmp_path / "out")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "refused" in result.stderr


def test_external_data_inside_the_model_folder_runs(tmp_path):
    models = tmp_path / "models"
    model = with_external_data(colour_model(models / "m.onnx"))
    (models / "data").mkdir()
    os.replace(models / "weights.bin", models / "data" / "weights.bin")
    set_external_location(model, "data/weights.bin")
    check_external_data(model)
    g = np.array([[1, 2], [3, 4]])
    with open_backend(model) as backend:
        logits = backend.infer((blocks_image(g, (2, 2)).astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy())
    np.testing.assert_array_equal(logits.argmax(axis=1)[0], np.kron(g, np.ones((2, 2), int)))


def test_external_data_in_node_attributes_and_subgraphs_is_checked(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "k")
    then = helper.make_graph([helper.make_node("Constant", [], ["t"], value=value)], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 3, 1, 1])])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True), "cond_v")),
         helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=then)],
        "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1, 1])],
    )
    path = tmp_path / "models" / "if.onnx"
    path.parent.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    check_external_data(path)
    proto = onnx.load(str(path))
    tensor = proto.graph.node[1].attribute[0].g.node[0].attribute[0].t  # the Constant inside the branch
    tensor.ClearField("float_data")
    tensor.raw_data = b""
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")
    path.write_bytes(proto.SerializeToString())  # onnx.save itself refuses to write such a file
    with pytest.raises(DlcvError, match="'k' keeps its data at '../../etc/passwd'"):
        check_external_data(path)
    path.write_bytes(b"\x0a\xff\xff\xff")  # a field running past the end
    with pytest.raises(DlcvError, match="not a valid ONNX file"):
        check_external_data(path)


def test_resuming_keeps_the_reorder_buffer_bounded(cls_model, tmp_path, monkeypatch):
    from dlcv.runtime import infer_files
    from dlcv.runtime.batching import window_size
    from dlcv.runtime.infer import InferConfig, run_inference

    for i in range(300):
        save_image(tmp_path / "images" / f"im{i:03d}.png", np.full((4, 4, 3), CLS_COLOURS[i % len(CLS_COLOURS)], np.uint8))
    config = dict(engine=cls_model, images=tmp_path / "images", out=tmp_path / "out", batch_size=64, workers=1,
                  progress=False)
    run_inference(InferConfig(**config))
    predictions = tmp_path / "out" / "predictions.csv"
    original = predictions.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    predictions.write_text(lines[0] + "".join(lines[2:]), encoding="utf-8")  # im000 must be predicted again
    peak = 0
    record = infer_files.ResultLog.record

    def watched(self, seq, **kw):
        nonlocal peak
        record(self, seq, **kw)
        peak = max(peak, self.backlog)

    monkeypatch.setattr(infer_files.ResultLog, "record", watched)
    summary = run_inference(InferConfig(**config, skip_existing=True))
    assert (summary.processed, summary.kept) == (1, 299)
    assert predictions.read_bytes() == original
    assert 0 < peak <= 4 * window_size(1, 64) + 1  # im000 waited in a batch; the kept rows behind it did not pile up


def test_an_unexpected_per_file_failure_is_listed_and_debug_shows_its_traceback(seg_model, tmp_path, monkeypatch):
    from dlcv.runtime import predictor  # the loaders' preprocessing step (prepare_image)
    from dlcv.runtime.infer import InferConfig, run_inference

    for name in ("a.png", "b.png"):
        save_image(tmp_path / "images" / name, blocks_image(np.array([[1, 2]]), (4, 4)))
    real = predictor.preprocess_image

    def flaky(image, spec):
        if image[0, 0, 0] == 255 and flaky.calls == 0:
            flaky.calls += 1
            raise ValueError("a bug, not a bad file")
        return real(image, spec)

    flaky.calls = 0
    monkeypatch.setattr(predictor, "preprocess_image", flaky)
    messages: list[str] = []
    summary = run_inference(InferConfig(engine=seg_model, images=tmp_path / "images", out=tmp_path / "out",
                                        progress=False, debug=True, workers=1), log=messages.append)
    assert summary.processed == 1 and summary.errors[0][1].endswith("ValueError: a bug, not a bad file")
    assert "Traceback" in messages[0] and "\n" not in summary.errors[0][1]


def test_an_output_folder_that_cannot_be_created_is_one_line(seg_model, tmp_path):
    save_image(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a file").write_text("x", encoding="utf-8")
    result = _invoke("--engine", seg_model, tmp_path / "images", "--out", tmp_path / "a file" / "out")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "cannot write there" in result.stderr
