"""dlcv.export.triton: the repository's files, and every config.pbtxt parsed with Triton's own
schema (tritonclient's model_config_pb2), for each platform, also where no server could load it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dlcv.export.cli import main as export_main
from dlcv.export.triton import TritonConfig, write_repository
from dlcv.export.triton.config_proto import model_config_pb2, parse_model_config
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.metadata import ArtifactMetadata, write_sidecar
from dlcv.runtime.triton import GEOMETRY, IMAGE, MASK, TOP_CLASSES, TOP_NAMES, TOP_SCORES

from ..runtime.onnx_fixtures import CLS_NAMES, SEG_NAMES, colour_model

pytest.importorskip("tritonclient")


def _configs(repo: Path) -> dict:
    return {p.parent.name: parse_model_config(p.read_text(), str(p)) for p in sorted(repo.glob("*/config.pbtxt"))}


def _dims(tensors) -> dict[str, list[int]]:
    return {t.name: list(t.dims) for t in tensors}


def _fake_engine(tmp_path: Path, onnx_path: Path, max_batch: int) -> Path:
    """Bytes no TensorRT could load, with the sidecar an engine build writes: enough for the configs."""
    from dlcv.export.triton.repository import read_graph

    metadata, _, _ = read_graph(onnx_path)
    plan = tmp_path / "seg.plan"
    plan.write_bytes(b"not a real engine")
    write_sidecar(plan, metadata.with_(precision="fp16", engine={"profile": {"min": [1, 3, 8, 8], "opt": [2, 3, 64, 64],
                                                                              "max": [max_batch, 3, 128, 128]}}))  # fmt: skip
    return plan


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt", "python"])
def test_segmentation_repository_parses_for_every_model_backend(backend, tmp_path):
    onnx_path = colour_model(tmp_path / "seg.onnx")
    engine = _fake_engine(tmp_path, onnx_path, max_batch=4) if backend == "tensorrt" else None
    result = write_repository(TritonConfig(tmp_path / "repo", model_backend=backend, name="seg", instances=2), onnx_path, engine)

    configs = _configs(tmp_path / "repo")
    assert set(configs) == set(result.models) == {"seg", "seg_preprocess", "seg_postprocess", "seg_ensemble"}
    model = configs["seg"]
    expected = {"onnxruntime": ("onnxruntime_onnx", ""), "tensorrt": ("tensorrt_plan", ""), "python": ("", "python")}
    assert (model.platform, model.backend) == expected[backend]
    assert model.max_batch_size == (4 if backend == "tensorrt" else 8)  # the engine's profile caps the batch
    assert _dims(model.input) == {"input": [3, -1, -1]} and _dims(model.output) == {"logits": [5, -1, -1]}
    assert model.HasField("dynamic_batching") and model.dynamic_batching.max_queue_delay_microseconds == 2000
    kind = model.instance_group[0]
    assert (kind.count, model.instance_group[0].Kind.Name(kind.kind)) == (2, "KIND_GPU" if backend == "tensorrt" else "KIND_CPU")
    served = ArtifactMetadata.from_json(model.parameters["dlcv"].string_value)
    assert served.class_names == SEG_NAMES and served.precision == ("fp16" if backend == "tensorrt" else "fp32")

    pre, post, ensemble = configs["seg_preprocess"], configs["seg_postprocess"], configs["seg_ensemble"]
    assert pre.backend == post.backend == "python" and pre.HasField("dynamic_batching")
    assert _dims(pre.input) == {IMAGE: [-1]} and _dims(pre.output) == {"input": [3, -1, -1], GEOMETRY: [8]}
    assert _dims(post.input) == {"logits": [5, -1, -1], GEOMETRY: [8]} and _dims(post.output) == {MASK: [-1, -1]}
    assert ensemble.platform == "ensemble" and _dims(ensemble.output) == {MASK: [-1, -1]}
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["seg_preprocess", "seg", "seg_postprocess"]
    assert dict(steps[2].input_map) == {"logits": "logits", GEOMETRY: "geometry"}

    files = {p.relative_to(tmp_path / "repo").as_posix() for p in (tmp_path / "repo").rglob("*") if p.is_file()}
    model_file = {"onnxruntime": ["seg/1/model.onnx"], "tensorrt": ["seg/1/model.plan"],
                  "python": ["seg/1/model.onnx", "seg/1/model.py"]}[backend]  # fmt: skip
    assert files == {*(f"{m}/config.pbtxt" for m in configs), "seg_preprocess/1/model.py", "seg_postprocess/1/model.py", *model_file}
    shim = (tmp_path / "repo" / "seg_preprocess" / "1" / "model.py").read_text()
    assert "from dlcv.runtime.triton.python_models import PreprocessModel as TritonPythonModel" in shim


def test_classification_repository_answers_top_k_with_names(tmp_path):
    onnx_path = colour_model(tmp_path / "cls.onnx", "classification", class_names=("caf\u00e9 \"noir\"", *CLS_NAMES[1:]))
    write_repository(TritonConfig(tmp_path / "repo", name="cls"), onnx_path)
    configs = _configs(tmp_path / "repo")
    assert _dims(configs["cls"].output) == {"logits": [7]}
    assert _dims(configs["cls_postprocess"].output) == {TOP_CLASSES: [5], TOP_SCORES: [5], TOP_NAMES: [5]}
    assert [model_config_pb2().DataType.Name(t.data_type) for t in configs["cls_postprocess"].output] == [
        "TYPE_INT32", "TYPE_FP32", "TYPE_STRING"]  # fmt: skip
    steps = configs["cls_ensemble"].ensemble_scheduling.step
    assert GEOMETRY not in dict(steps[2].input_map) and set(dict(steps[2].output_map)) == {TOP_CLASSES, TOP_SCORES, TOP_NAMES}
    served = json.loads(configs["cls_ensemble"].parameters["dlcv"].string_value)
    assert served["class_names"][0] == "caf\u00e9 \"noir\""  # escaped in the text format, intact when parsed


def test_a_fixed_batch_of_one_is_written_into_the_dims(tmp_path):
    onnx_path = colour_model(tmp_path / "seg.onnx", input_hw=(32, 32))
    write_repository(TritonConfig(tmp_path / "repo"), onnx_path)  # name: the architecture
    configs = _configs(tmp_path / "repo")
    assert set(configs) >= {"colour-templates", "colour-templates_ensemble"}
    # dynamic batch, fixed H×W
    assert _dims(configs["colour-templates"].input) == {"input": [3, 32, 32]}

    import onnx

    proto = onnx.load(str(onnx_path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(proto, str(tmp_path / "static.onnx"))
    write_repository(TritonConfig(tmp_path / "static_repo", name="s"), tmp_path / "static.onnx")
    configs = _configs(tmp_path / "static_repo")
    assert configs["s"].max_batch_size == 0 and not configs["s"].HasField("dynamic_batching")
    assert _dims(configs["s"].input) == {"input": [1, 3, 32, 32]} and _dims(configs["s_preprocess"].input) == {IMAGE: [1, -1]}

    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    onnx.save(proto, str(tmp_path / "static2.onnx"))
    with pytest.raises(DlcvError, match="fixed at 2"):
        write_repository(TritonConfig(tmp_path / "repo2", name="s2"), tmp_path / "static2.onnx")


def test_rewriting_replaces_its_models_and_keeps_the_others(tmp_path):
    onnx_path = colour_model(tmp_path / "seg.onnx")
    (tmp_path / "repo" / "other" / "1").mkdir(parents=True)
    write_repository(TritonConfig(tmp_path / "repo", name="seg"), onnx_path)
    (tmp_path / "repo" / "seg" / "1" / "stale.txt").write_text("old")
    write_repository(TritonConfig(tmp_path / "repo", name="seg", max_batch=2), onnx_path)
    assert (tmp_path / "repo" / "other" / "1").is_dir() and not (tmp_path / "repo" / "seg" / "1" / "stale.txt").exists()
    assert _configs(tmp_path / "repo")["seg"].max_batch_size == 2
    assert [p.name for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")] == []  # no staging left


def test_usage_errors(tmp_path):
    with pytest.raises(DlcvUsageError, match="needs --triton-kind gpu"):
        TritonConfig(tmp_path, model_backend="tensorrt", kind="cpu")
    with pytest.raises(DlcvUsageError, match="--triton-max-batch"):
        TritonConfig(tmp_path, max_batch=0)
    with pytest.raises(DlcvUsageError, match="add --trt"):
        write_repository(TritonConfig(tmp_path / "repo", model_backend="tensorrt"), colour_model(tmp_path / "seg.onnx"))


def test_export_cli_writes_a_repository(make_checkpoint, tmp_path):
    runner = CliRunner()
    ckpt = make_checkpoint("fcn32s")
    result = runner.invoke(export_main, [str(ckpt), "--out", str(tmp_path), "--triton", str(tmp_path / "repo"),
                                         "--triton-max-batch", "4", "--triton-model-backend", "python"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote Triton repository" in result.output and "fcn32s_ensemble" in result.output
    configs = _configs(tmp_path / "repo")
    assert configs["fcn32s"].max_batch_size == 4 and configs["fcn32s"].backend == "python"
    assert (tmp_path / "repo" / "fcn32s" / "1" / "model.onnx").read_bytes() == (tmp_path / "fcn32s.onnx").read_bytes()

    for args, message in [
        (["--triton-kind", "gpu"], "only apply with --triton REPO"),
        (["--triton", str(tmp_path / "r"), "--triton-model-backend", "tensorrt"], "add --trt"),
    ]:
        bad = runner.invoke(export_main, [str(ckpt), "--out", str(tmp_path / "x"), *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
