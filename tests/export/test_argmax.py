"""dlcv-export --argmax: an ArgMax (segmentation) or TopK (classification) head on every precision
written, valid graphs whose metadata says what they return, checked against their own logits at
export; on every CPU backend the same masks (bit for bit) and predictions as the logits files;
Triton configs written from such graphs."""
from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from dlcv.export.cli import main as export_main
from dlcv.export.triton import TritonConfig, write_repository
from dlcv.runtime.cli import main as infer_main
from dlcv.runtime.metadata import ArtifactMetadata, read_onnx_metadata
from dlcv.runtime.output_spec import head_outputs
from dlcv.runtime.triton import GEOMETRY, MASK, TOP_CLASSES

from .test_precision import write_dataset

PRECISIONS = ("fp32", "fp16", "int8")
SEG_FILES = {"fp32": "fcn8s.onnx", "fp16": "fcn8s.fp16.onnx", "int8": "fcn8s.int8.onnx"}


def export(args) -> str:
    result = CliRunner().invoke(export_main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def exports(make_checkpoint, tmp_path_factory):
    """A narrow FCN8s (3 classes) in FP32/FP16/INT8 and a narrow VGG16-BN (7 classes) in FP32/INT8, each
    exported twice from the same checkpoint: with logits, and with --argmax."""
    root = tmp_path_factory.mktemp("argmax")
    data = write_dataset(root / "set")
    seg, cls = make_checkpoint("fcn8s"), make_checkpoint("vgg16_bn", num_classes=7)
    log = {}
    for kind, extra in (("logits", []), ("argmax", ["--argmax"])):
        log[kind] = export([seg, "--out", root / kind / "seg", "--fp16", "--int8", "--calib", data / "train", *extra])
        export([cls, "--out", root / kind / "cls", "--int8", "--calib", data / "train", *extra])
    return {"root": root, "data": data, "log": log}


def test_argmax_graphs_are_valid_and_their_metadata_says_what_they_return(exports):
    root = exports["root"]
    assert "-> labels (labels uint8), primary labels[batch,height,width]" in exports["log"]["argmax"]
    assert "the head answers exactly what the logits' postprocessing answers" in exports["log"]["argmax"]
    files = [(root / "argmax" / "seg" / f, "segmentation", 3, p) for p, f in SEG_FILES.items()]
    files += [(root / "argmax" / "cls" / f, "classification", 7, p) for p, f in (("fp32", "vgg16_bn.onnx"), ("int8", "vgg16_bn.int8.onnx"))]
    for path, task, classes, precision in files:
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load(str(path))
        md = read_onnx_metadata(path)
        assert md.precision == precision and md.outputs == head_outputs(task, classes)
        assert ArtifactMetadata.from_json(md.to_json()) == md
        outputs = {o.name: o.type.tensor_type for o in proto.graph.output}
        dims = {name: [d.dim_param or d.dim_value for d in t.shape.dim] for name, t in outputs.items()}
        types = {name: onnx.TensorProto.DataType.Name(t.elem_type) for name, t in outputs.items()}
        if task == "segmentation":
            assert types == {"labels": "UINT8"} and dims == {"labels": ["batch", "height", "width"]}
            (argmax,) = [n for n in proto.graph.node if n.op_type == "ArgMax"]
            assert {a.name: a.i for a in argmax.attribute} == {"axis": 1, "keepdims": 0, "select_last_index": 0}
        else:
            assert types == {"topk_indices": "INT64", "topk_scores": "FLOAT"}
            assert dims == {"topk_indices": ["batch", 5], "topk_scores": ["batch", 5]}
            assert {"TopK", "Softmax", "GatherElements"} <= {n.op_type for n in proto.graph.node}
    logits_md = read_onnx_metadata(root / "logits" / "seg" / "fcn8s.onnx")
    assert not logits_md.outputs.is_head and json.loads(logits_md.to_json())["outputs"]["kind"] == "logits"


def infer(engine, images, out, backend, *extra) -> dict:
    result = CliRunner().invoke(infer_main, [str(images), "--engine", str(engine), "--out", str(out), "--backend", backend,
                                             "-q", *map(str, extra)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_masks_from_an_argmax_file_are_bit_identical_to_the_logits_files(exports, tmp_path, precision, backend):
    root, data = exports["root"], exports["data"]
    name = SEG_FILES[precision]
    records = {
        kind: infer(root / kind / "seg" / name, data / "val", tmp_path / kind, backend, "--labels", data / "valannot")
        for kind in ("logits", "argmax")
    }  # fmt: skip
    written = sorted(p.name for p in (tmp_path / "logits").iterdir() if p.suffix == ".png")
    assert len(written) == 8 and written == sorted(p.name for p in (tmp_path / "argmax").iterdir() if p.suffix == ".png")
    for png in written:
        assert (tmp_path / "argmax" / png).read_bytes() == (tmp_path / "logits" / png).read_bytes(), png
    assert records["argmax"]["metrics"] == records["logits"]["metrics"]
    assert records["argmax"]["outputs"] == "labels" and records["logits"]["outputs"] == "logits"
    assert records["argmax"]["backend"] == backend


def _predictions(folder):
    with (folder / "predictions.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("name", ["vgg16_bn.onnx", "vgg16_bn.int8.onnx"])
def test_classification_predictions_from_a_topk_file_match_the_logits_files(exports, tmp_path, name, backend):
    """Classes and their order identical; probabilities (float32 softmax in the graph against the runtime's
    float64) within one unit of the sixth decimal written."""
    root, images = exports["root"], exports["data"] / "val"
    for kind in ("logits", "argmax"):
        infer(root / kind / "cls" / name, images, tmp_path / kind, backend)
    plain, head = _predictions(tmp_path / "logits"), _predictions(tmp_path / "argmax")
    assert len(plain) == len(head) == 4
    for a, b in zip(plain, head):
        assert (a["image_name"], a["label"], a["class_name"], a["top5_labels"]) == (
            b["image_name"], b["label"], b["class_name"], b["top5_labels"])  # fmt: skip
        diff = np.abs(np.array(a["top5_scores"].split(";"), float) - np.array(b["top5_scores"].split(";"), float))
        assert diff.max() <= 1e-6 + 1e-12, (a, b)


def test_a_head_that_changes_the_answers_fails_the_export_and_writes_nothing(make_checkpoint, tmp_path, monkeypatch):
    import dlcv.export.onnx_export as onnx_export

    real = onnx_export.append_head

    def argmin_head(proto, metadata):
        proto, md = real(proto, metadata)
        next(n for n in proto.graph.node if n.op_type == "ArgMax").op_type = "ArgMin"
        return proto, md

    monkeypatch.setattr(onnx_export, "append_head", argmin_head)
    result = CliRunner().invoke(export_main, [str(make_checkpoint("fcn8s")), "--out", str(tmp_path), "--argmax"])
    assert result.exit_code == 1 and "the ArgMax head's labels differ from the logits' argmax" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_triton_configs_from_argmax_graphs_carry_the_heads_tensors(exports, tmp_path):
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")  # the triton extra (installed by the test extra)
    from dlcv.export.triton.config_proto import parse_model_config

    root = exports["root"]
    write_repository(TritonConfig(tmp_path, name="seg"), root / "argmax" / "seg" / "fcn8s.int8.onnx")
    write_repository(TritonConfig(tmp_path, name="cls"), root / "argmax" / "cls" / "vgg16_bn.onnx")
    configs = {p.parent.name: parse_model_config(p.read_text(), source=str(p)) for p in tmp_path.glob("*/config.pbtxt")}
    types = lambda tensors: {t.name: (t.data_type, list(t.dims)) for t in tensors}  # noqa: E731
    assert types(configs["seg"].output) == {"labels": (pb.TYPE_UINT8, [-1, -1])}
    assert types(configs["seg_postprocess"].input) == {"labels": (pb.TYPE_UINT8, [-1, -1]), GEOMETRY: (pb.TYPE_INT32, [8])}
    assert MASK in types(configs["seg_ensemble"].output)
    assert types(configs["cls"].output) == {"topk_indices": (pb.TYPE_INT64, [5]), "topk_scores": (pb.TYPE_FP32, [5])}
    assert set(types(configs["cls_postprocess"].input)) == {"topk_indices", "topk_scores"}
    steps = configs["cls_ensemble"].ensemble_scheduling.step
    assert dict(steps[1].output_map) == {"topk_indices": "topk_indices", "topk_scores": "topk_scores"}
    assert TOP_CLASSES in dict(steps[2].output_map)
