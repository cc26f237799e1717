"""dlcv.runtime.ray_infer on a real local Ray (ray.init(num_cpus=2)): the same files and
metrics as a local run, bad files in errors.csv, cluster checks before anything runs."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcv.runtime.cli import main as infer_main
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.infer import InferConfig, run_inference
from dlcv.runtime.ray_infer import MANIFEST_COLUMNS, MANIFEST_CSV, RayConfig, plan_actors, run_ray_inference

try:
    from .onnx_fixtures import SEG_COLOURS, save_image, save_mask
except ImportError:
    from onnx_fixtures import SEG_COLOURS, save_image, save_mask  # type: ignore[no-redef]

IMAGES = 300


# --------------------------------------------------------------------------- cluster checks (no Ray needed)


def test_plan_actors_clamps_without_a_count_and_leaves_a_cpu_for_reading():
    notes = []
    assert plan_actors({"CPU": 2.0}, RayConfig(), note=notes.append) == 1
    assert plan_actors({"CPU": 16.0}, RayConfig(cpus_per_actor=2), note=notes.append) == 7
    assert "kept for reading" in notes[0]


def test_plan_actors_refuses_actors_that_starve_the_readers():
    with pytest.raises(DlcvUsageError, match="--ray-actors 2 does not fit.*use --ray-actors 1"):
        plan_actors({"CPU": 2.0}, RayConfig(actors=2))
    with pytest.raises(DlcvError, match="1 CPUs"):
        plan_actors({"CPU": 1.0}, RayConfig())


def test_plan_actors_counts_in_words():
    with pytest.raises(DlcvUsageError, match=r"at most 1 actor leaves room for Ray's read tasks; use --ray-actors 1$"):
        plan_actors({"CPU": 2.0}, RayConfig(actors=2))
    notes = []
    plan_actors({"CPU": 2.0}, RayConfig(), note=notes.append)
    assert notes[0].startswith("Ray: 1 actor (")


def test_a_path_given_as_the_ray_address_is_refused_with_the_fix(seg_model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for args in (["--engine", str(seg_model), "--ray", str(images)], ["--engine", str(seg_model), "--ray", "images/"]):
        result = CliRunner().invoke(infer_main, args)
        assert result.exit_code == 2, result.output
        assert "is a path, not a Ray address" in result.output and "Missing argument" not in result.output
        assert "put the images folder before --ray" in result.output


def test_a_cluster_that_refuses_the_connection_names_token_authentication():
    from dlcv.runtime.ray_infer import _connect

    class Unreachable:  # ray's two calls _connect makes, the second failing as ray.init does on an unreachable GCS
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            raise ConnectionError(f"Failed to connect to GCS at address {kwargs['address']} within 5 seconds")

    with pytest.raises(DlcvError, match=r"^--ray 10\.0\.0\.9:6379: cannot connect to the Ray cluster \(Failed.*RAY_AUTH_MODE=token"):
        _connect(Unreachable, "10.0.0.9:6379")


def test_plan_actors_gpus_must_exist():
    with pytest.raises(DlcvError, match="has no GPUs"):
        plan_actors({"CPU": 8.0}, RayConfig(gpus_per_actor=1))
    assert plan_actors({"CPU": 8.0, "GPU": 2.0}, RayConfig(gpus_per_actor=1)) == 2
    with pytest.raises(DlcvUsageError, match="does not fit"):
        plan_actors({"CPU": 8.0, "GPU": 2.0}, RayConfig(actors=3, gpus_per_actor=1))


# --------------------------------------------------------------------------- a real local Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    """300 small images (three sizes), label masks for most (some pixels ignored), one
    non-image, one truncated file and a broken link."""
    root = tmp_path_factory.mktemp("ray_seg")
    images, labels = root / "images", root / "labels"
    rng = np.random.default_rng(7)
    for i in range(IMAGES):
        h, w = [(12, 16), (16, 12), (9, 10)][i % 3]
        save_image(images / f"img{i:04d}.png", rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        if i % 10:
            mask = rng.integers(0, len(SEG_COLOURS), size=(h, w))
            mask[0, :3] = 255
            save_mask(labels / f"img{i:04d}.png", mask)
    (images / "bad.png").write_bytes(b"this is not an image")
    data = (images / "img0001.png").read_bytes()
    (images / "cut.png").write_bytes(data[: len(data) // 2])
    (images / "zlink.png").symlink_to(images / "gone.png")  # a broken link: Ray's readers cannot open it
    return images, labels


def _config(engine, images, out, **kw) -> InferConfig:
    return InferConfig(engine=engine, images=images, out=out, progress=False, batch_size=4, **kw)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _comparable(metrics_json: Path) -> dict:
    record = json.loads(metrics_json.read_text())
    return {k: record[k] for k in ("task", "backend", "precision", "counts", "metrics", "label_report")}


def test_segmentation_on_ray_writes_what_the_local_run_writes(ray_local, seg_model, seg_data, tmp_path):
    images, labels = seg_data
    local = run_inference(_config(seg_model, images, tmp_path / "local", labels=labels))
    warnings: list[str] = []
    served = run_ray_inference(_config(seg_model, images, tmp_path / "ray", labels=labels), RayConfig(actors=1),
                               log=warnings.append)  # fmt: skip

    assert (served.processed, served.failed) == (local.processed, local.failed) == (IMAGES, 3)
    local_files, ray_files = _files(tmp_path / "local"), _files(tmp_path / "ray")
    masks = {k for k in local_files if k.endswith(".png")}
    assert len(masks) == 2 * IMAGES and masks == {k for k in ray_files if k.endswith(".png")}
    assert all(ray_files[k] == local_files[k] for k in masks)  # bit-identical masks and colour masks
    assert ray_files["errors.csv"] == local_files["errors.csv"]
    assert "bad.png" in ray_files["errors.csv"].decode() and "cut.png" in ray_files["errors.csv"].decode()
    assert any("bad.png" in w for w in warnings)
    assert _comparable(tmp_path / "ray" / "metrics.json") == _comparable(tmp_path / "local" / "metrics.json")
    assert served.metrics["images_scored"] == IMAGES - IMAGES // 10

    rows = list(csv.reader((tmp_path / "ray" / MANIFEST_CSV).open()))
    assert tuple(rows[0]) == MANIFEST_COLUMNS and len(rows) == IMAGES + 4
    by_file = {r[0]: r for r in rows[1:]}
    assert by_file["img0000.png"][1:3] == ["written", "img0000.png;img0000_color.png"]
    assert by_file["bad.png"][1] == by_file["zlink.png"][1] == "failed" and by_file["img0000.png"][3] != "driver"
    assert "zlink.png: file not found" in ray_files["errors.csv"].decode()
    assert json.loads((tmp_path / "ray" / "metrics.json").read_text())["timing"]["ray_actors"] == 1


def test_resume_on_ray_keeps_finished_images_and_scores_them(ray_local, seg_model, seg_data, tmp_path):
    images, labels = seg_data
    out = tmp_path / "ray"
    run_ray_inference(_config(seg_model, images, out, labels=labels), RayConfig(actors=1))
    first = _comparable(out / "metrics.json")
    for name in ("img0003.png", "img0003_color.png", "img0150.png"):
        (out / name).unlink()
    again = run_ray_inference(_config(seg_model, images, out, labels=labels, skip_existing=True), RayConfig(actors=1))
    assert (again.processed, again.kept, again.failed) == (2, IMAGES - 2, 3)
    assert _comparable(out / "metrics.json")["metrics"] == first["metrics"]
    statuses = {r[0]: r[1] for r in csv.reader((out / MANIFEST_CSV).open())}
    assert statuses["img0003.png"] == "written" and statuses["img0004.png"] == "kept"


def test_classification_on_ray_writes_what_the_local_run_writes(ray_local, cls_model, seg_data, tmp_path):
    images, _ = seg_data
    names = sorted(p.name for p in images.iterdir() if p.name.startswith("img"))[:120]
    folder = tmp_path / "images"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes((images / name).read_bytes())
    (folder / "bad.png").write_bytes(b"GIF89a not decoded")
    with (tmp_path / "labels.csv").open("w") as f:
        f.write("image_name,label\n" + "".join(f"{n},{i % 7}\n" for i, n in enumerate(names)))
    local = run_inference(_config(cls_model, folder, tmp_path / "local", labels=tmp_path / "labels.csv"))
    runner = CliRunner()
    result = runner.invoke(infer_main, [str(folder), "--engine", str(cls_model), "--out", str(tmp_path / "ray"),
                                        "--labels", str(tmp_path / "labels.csv"), "-q", "--ray", "--ray-actors", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "120 processed" in result.output
    for name in ("predictions.csv", "errors.csv"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert _comparable(tmp_path / "ray" / "metrics.json") == _comparable(tmp_path / "local" / "metrics.json")
    assert local.metrics["count"] == 120


def test_too_many_actors_is_refused_before_anything_is_written(ray_local, seg_model, seg_data, tmp_path):
    images, _ = seg_data
    with pytest.raises(DlcvUsageError, match="--ray-actors 2 does not fit"):
        run_ray_inference(_config(seg_model, images, tmp_path / "out"), RayConfig(actors=2))
    assert not (tmp_path / "out").exists()


def test_gpus_on_a_cluster_without_gpus_is_an_error_not_a_hang(ray_local, seg_model, seg_data, tmp_path):
    images, _ = seg_data
    with pytest.raises(DlcvError, match="has no GPUs"):
        run_ray_inference(_config(seg_model, images, tmp_path / "out", device="cuda"), RayConfig(gpus_per_actor=1))
    with pytest.raises(DlcvUsageError, match="add --ray-gpus-per-actor"):
        run_ray_inference(_config(seg_model, images, tmp_path / "out", device="cuda"), RayConfig())
    assert not (tmp_path / "out").exists()


def test_ray_options_need_ray(seg_model, seg_data, tmp_path):
    images, _ = seg_data
    result = CliRunner().invoke(infer_main, [str(images), "--engine", str(seg_model), "--ray-actors", "2"])
    assert result.exit_code == 2 and "only apply with --ray" in result.output


def test_backend_option_reaches_the_actors(ray_local, seg_model, seg_data, tmp_path):
    images, _ = seg_data
    folder = tmp_path / "images"
    folder.mkdir()
    for name in sorted(p.name for p in images.iterdir() if p.name.startswith("img"))[:24]:
        (folder / name).write_bytes((images / name).read_bytes())
    local = run_inference(_config(seg_model, folder, tmp_path / "local", backend="openvino"))
    served = run_ray_inference(_config(seg_model, folder, tmp_path / "ray", backend="openvino"), RayConfig(actors=1))
    assert served.processed == local.processed == 24
    assert json.loads((tmp_path / "ray" / "metrics.json").read_text())["backend"] == "openvino"
    local_files, ray_files = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert all(ray_files[k] == v for k, v in local_files.items() if k.endswith(".png"))
