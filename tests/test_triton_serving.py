"""A real tritonserver (the binary nvidia-pytriton ships, installed by make install) serving the
repository dlcv-export writes: served masks bit-identical to dlcv-infer with the same ONNX file,
dynamic batching seen in the server's statistics, the triton:// client backend's errors."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.export.triton import TritonConfig, write_repository
from dlcv.runtime.cli import main as infer_main
from dlcv.runtime.errors import DlcvError, MissingDependencyError
from dlcv.runtime.backends import open_backend
from dlcv.runtime.imageio import read_label_map
from dlcv.runtime.infer import InferConfig, run_inference
from dlcv.runtime.triton import IMAGE, MASK, TOP_CLASSES, TOP_NAMES, TOP_SCORES
from dlcv.runtime.triton.local_server import LocalTritonServer, find_distribution, free_port

from .runtime.onnx_fixtures import CLS_NAMES, colour_model, save_image, save_mask

http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

QUEUE_DELAY_US = 50_000  # long enough that concurrent requests meet in the dynamic batcher


@pytest.fixture(scope="module")
def served(tmp_path_factory, make_checkpoint):
    """A segmentation and a classification model, their ONNX files, the same models with an in-graph
    head (``--argmax``: labels, TopK), a narrow FCN8s exported with --argmax from a checkpoint, and a
    running server."""
    try:
        find_distribution()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    from dlcv.export import ExportConfig, export_onnx

    root = tmp_path_factory.mktemp("triton")
    seg, cls = colour_model(root / "seg.onnx"), colour_model(root / "cls.onnx", "classification")
    checkpoint = make_checkpoint("fcn8s", num_classes=5)
    fcn = export_onnx(ExportConfig(checkpoint=checkpoint, out=root / "fcn", argmax=True)).onnx_path
    models = {"seg": seg, "cls": cls, "seg_head": with_head(seg, root / "seg_head.onnx"),
              "cls_head": with_head(cls, root / "cls_head.onnx"), "fcn": fcn}  # fmt: skip
    for name, path in models.items():
        # the model step on the Python backend: this tritonserver has no onnxruntime backend
        write_repository(TritonConfig(root / "repo", name=name, model_backend="python", max_queue_delay_us=QUEUE_DELAY_US), path)
    server = LocalTritonServer(root / "repo").start()
    yield {"root": root, **models, "checkpoint": checkpoint, "server": server}
    server.stop()


def with_head(path: Path, out: Path) -> Path:
    """The model with the in-graph head dlcv-export --argmax appends (labels, or TopK)."""
    import onnx

    from dlcv.export.heads import append_head
    from dlcv.runtime.metadata import read_onnx_metadata

    proto, _ = append_head(onnx.load(str(path)), read_onnx_metadata(path))
    onnx.save(proto, str(out))
    return out


@pytest.fixture
def client(served):
    """An HTTP client, closed after the test (an open connection delays the server's shutdown)."""
    c = http.InferenceServerClient(served["server"].url, concurrency=16)
    yield c
    c.close()


@pytest.fixture(scope="module")
def images(served):
    """Images of two sizes, labels for them, and a file that is not an image."""
    folder, labels = served["root"] / "images", served["root"] / "labels"
    rng = np.random.default_rng(3)
    for i in range(10):
        h, w = (20, 24) if i % 2 else (17, 9)
        save_image(folder / f"im{i}.png", rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        save_mask(labels / f"im{i}.png", rng.integers(0, 5, size=(h, w)))
    (folder / "notes.png").write_text("not an image")
    return folder, labels


def _encoded(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype=np.uint8)[None]


def _infer(client, model: str, path: Path, outputs: tuple[str, ...]):
    x = http.InferInput(IMAGE, [1, path.stat().st_size], "UINT8")
    x.set_data_from_numpy(_encoded(path))
    result = client.infer(model, [x])
    return [result.as_numpy(name) for name in outputs]


def test_served_masks_are_bit_identical_to_dlcv_infer(served, images, client, tmp_path):
    folder, labels = images
    url = f"triton://{served['server'].url}/seg"
    run_inference(InferConfig(engine=served["seg"], images=folder, out=tmp_path / "local", labels=labels, progress=False))
    result = CliRunner().invoke(infer_main, [str(folder), "--engine", url, "--out", str(tmp_path / "served"),
                                             "--labels", str(labels), "--batch-size", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "10 processed" in result.output and "1 failed" in result.output and "notes.png" in result.output

    # the client backend: the same files, errors and metrics as a local run
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    remote = {p.name: p.read_bytes() for p in (tmp_path / "served").iterdir()}
    assert set(local) == set(remote) and len(local) == 2 * 10 + 2
    assert all(remote[name] == local[name] for name in local if name != "metrics.json")
    local_record, remote_record = (json.loads(d["metrics.json"]) for d in (local, remote))
    assert remote_record["metrics"] == local_record["metrics"] and remote_record["counts"] == local_record["counts"]
    assert remote_record["backend"] == "triton" and remote_record["engine"] == url

    # the ensemble: image bytes in, the same mask out (the server decodes and preprocesses with dlcv)
    for i in range(10):
        (mask,) = _infer(client, "seg_ensemble", folder / f"im{i}.png", (MASK,))
        np.testing.assert_array_equal(mask[0], read_label_map(tmp_path / "local" / f"im{i}.png"))
        assert mask.dtype == np.uint8


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_a_served_head_model_answers_as_the_local_logits_model(served, images, client, tmp_path, task):
    """The repository written from an --argmax graph (labels / TopK tensors end to end): dlcv-infer over
    triton:// and the image-in ensemble give what the local logits model gives."""
    folder, _ = images
    url = f"triton://{served['server'].url}/{task}_head"
    run_inference(InferConfig(engine=served[task], images=folder, out=tmp_path / "local", progress=False))
    result = CliRunner().invoke(infer_main, [str(folder), "--engine", url, "--out", str(tmp_path / "served"), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "served" / "metrics.json").read_text())["outputs"] == ("labels" if task == "seg" else "topk")
    if task == "seg":
        for i in range(10):
            for name in (f"im{i}.png", f"im{i}_color.png"):
                assert (tmp_path / "served" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
            (mask,) = _infer(client, "seg_head_ensemble", folder / f"im{i}.png", (MASK,))
            np.testing.assert_array_equal(mask[0], read_label_map(tmp_path / "local" / f"im{i}.png"))
        return
    local = list(csv.DictReader((tmp_path / "local" / "predictions.csv").open()))
    remote = list(csv.DictReader((tmp_path / "served" / "predictions.csv").open()))
    assert [r["top5_labels"] for r in remote] == [r["top5_labels"] for r in local] and len(local) == 10
    for a, b in zip(local, remote):
        diff = np.abs(np.array(a["top5_scores"].split(";"), float) - np.array(b["top5_scores"].split(";"), float))
        assert diff.max() <= 1e-6 + 1e-12
    classes, _, names = _infer(client, "cls_head_ensemble", folder / "im0.png", (TOP_CLASSES, TOP_SCORES, TOP_NAMES))
    assert ";".join(map(str, classes[0])) == local[0]["top5_labels"] and names[0][0].decode() == local[0]["class_name"]


def test_dlcv_bench_puts_a_served_model_beside_the_local_backends(served, tmp_path):
    from dlcv.bench.cli import main as bench_main

    url = f"triton://{served['server'].url}/fcn"
    args = [served["checkpoint"], url, served["fcn"], "--backends", "torch,triton,onnxruntime", "--torch-variants",
            "channels_last", "--shape", "32x32", "--batch-sizes", "1,2", "--images", "4", "--iters", "2", "--warmup", "1",
            "--rounds", "2", "--bootstrap", "20", "--e2e-images", "2", "--ceiling-size", "128", "--out", tmp_path,
            "--name", "served"]  # fmt: skip
    result = CliRunner().invoke(bench_main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "served" / "results.json").read_text())
    served_rows = [r for r in records if r["backend"] == "triton"]
    assert len(served_rows) == 2 and all(r["error"] is None for r in served_rows), served_rows
    for r in served_rows:
        assert r["artifact"] == url and r["variant"] == "triton" and r["default_backend"] == "triton"
        assert r["latency_p50_ms"] > 0 and r["precision"] == "fp32"
        assert r["pixel_agreement"] == 1.0 and r["max_abs_logit_error"] is None  # labels from the served head
    local = next(r for r in records if r["backend"] == "onnxruntime")
    assert local["pixel_agreement"] == 1.0 and local["error"] is None
    assert "| triton | fp32 |" in result.stdout


def test_dynamic_batching_formed_batches(served, images, client):
    folder, _ = images
    image = folder / "im1.png"
    pending = []
    for _ in range(16):
        x = http.InferInput(IMAGE, [1, image.stat().st_size], "UINT8")
        x.set_data_from_numpy(_encoded(image))
        pending.append(client.async_infer("seg_ensemble", [x]))
    masks = [p.get_result().as_numpy(MASK) for p in pending]
    assert all(np.array_equal(m, masks[0]) for m in masks)
    stats = client.get_inference_statistics("seg")["model_stats"][0]
    sizes = {int(b["batch_size"]) for b in stats["batch_stats"]}
    assert max(sizes) > 1, stats["batch_stats"]
    assert int(stats["execution_count"]) < int(stats["inference_count"])


def test_classification_ensemble_answers_the_local_top5(served, images, client, tmp_path):
    folder, _ = images
    run_inference(InferConfig(engine=served["cls"], images=folder, out=tmp_path / "local", progress=False))
    rows = {r["image_name"]: r for r in csv.DictReader((tmp_path / "local" / "predictions.csv").open())}
    for i in range(10):
        classes, scores, names = _infer(client, "cls_ensemble", folder / f"im{i}.png", (TOP_CLASSES, TOP_SCORES, TOP_NAMES))
        row = rows[f"im{i}.png"]
        assert ";".join(map(str, classes[0])) == row["top5_labels"]
        assert ";".join(f"{p:.6f}" for p in scores[0]) == row["top5_scores"]
        assert [n.decode() for n in names[0]] == [CLS_NAMES[int(c)] for c in classes[0]]


def test_a_bad_image_gets_an_error_response_naming_the_reason(served, images, client):
    folder, _ = images
    with pytest.raises(InferenceServerException, match="not a readable image"):
        _infer(client, "seg_ensemble", folder / "notes.png", (MASK,))
    (mask,) = _infer(client, "seg_ensemble", folder / "im0.png", (MASK,))  # the server goes on
    assert mask.shape == (1, 17, 9)


def test_client_errors_say_what_to_do(served):
    url = served["server"].url
    with pytest.raises(DlcvError, match=r"no model 'nope' in its repository \(ready: cls, cls_ensemble"):
        open_backend(f"triton://{url}/nope")
    with pytest.raises(DlcvError, match="'seg_ensemble' is the image-in ensemble: name the model step, 'seg'"):
        open_backend(f"triton://{url}/seg_ensemble")
    with pytest.raises(DlcvError, match="'seg_preprocess' is the preprocessing model: name the model step, 'seg'"):
        open_backend(f"triton://{url}/seg_preprocess")
    with pytest.raises(DlcvError, match="cannot reach a Triton server"):
        open_backend(f"triton://127.0.0.1:{free_port()}/seg")
    with pytest.raises(DlcvError, match="triton://HOST:PORT/MODEL"):
        open_backend("triton://no-model-here")
    with open_backend(f"triton://{url}/seg") as backend:
        assert backend.metadata.task == "segmentation" and backend.max_batch == 8


def _living_members(group: int) -> list[str]:
    """Processes of a process group that are not zombies (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(text.split(")")[0] + ")")
    return found


def test_stop_leaves_no_process_behind(served):
    server = served["server"]
    group = server.process.pid
    assert len(_living_members(group)) >= 2  # the server and its Python stubs
    server.stop()
    assert _living_members(group) == []
