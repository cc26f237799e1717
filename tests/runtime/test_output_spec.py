"""What a model returns: the metadata's outputs record (logits, an ArgMax head's labels, a TopK head's
indices and scores), its round trip, the Backend contract's check of each declared output, and the
postprocessing that reads either kind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlcv.runtime.backends.base import Backend
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.output_spec import (
    LOGITS, TOPK, OutputSpec, TensorSpec, head_outputs, labels_outputs, logits_outputs, topk_outputs,
)  # fmt: skip
from dlcv.runtime.postprocess import predicted_labels, predicted_topk, segmentation_labels, topk
from dlcv.runtime.preprocess import PreprocessSpec


def metadata(task: str = "segmentation", num_classes: int = 4, outputs: OutputSpec | None = None) -> ArtifactMetadata:
    md = ArtifactMetadata(task=task, arch="m", num_classes=num_classes, class_names=tuple(f"c{i}" for i in range(num_classes)),
                          preprocess=PreprocessSpec())  # fmt: skip
    return md if outputs is None else md.with_outputs(outputs)


def test_the_head_of_each_task_and_its_dtypes():
    assert head_outputs("segmentation", 12) == labels_outputs(12)
    assert labels_outputs(12).primary == TensorSpec("labels", "uint8", "labels")
    assert labels_outputs(300).primary.dtype == "int32"  # no uint16 tensors in TensorRT
    cls = head_outputs("classification", 50)
    assert cls.kind == TOPK and cls.k == 5 and cls.names == ("topk_indices", "topk_scores")
    assert [t.dtype for t in cls.tensors] == ["int64", "float32"]
    assert topk_outputs(3).k == 3  # never more than the classes


@pytest.mark.parametrize("task, outputs", [("segmentation", labels_outputs(4)), ("classification", topk_outputs(4)),
                                           ("segmentation", None)])  # fmt: skip
def test_outputs_round_trip_through_the_metadata_json(task, outputs):
    md = metadata(task, outputs=outputs)
    again = ArtifactMetadata.from_json(md.to_json())
    assert again == md and again.outputs == md.outputs
    assert again.output_name == md.outputs.primary.name
    assert json.loads(md.to_json())["outputs"]["kind"] == (outputs.kind if outputs else LOGITS)


def test_a_file_written_before_the_outputs_record_reads_as_logits():
    record = json.loads(metadata().to_json())
    del record["outputs"]
    record["output_name"] = "scores"
    md = ArtifactMetadata.from_dict(record)
    assert md.outputs == logits_outputs("scores") and not md.outputs.is_head and md.output_names == ("scores",)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda r: r["outputs"].update(kind="mask"), "outputs kind must be one of"),
        (lambda r: r["outputs"]["tensors"][0].update(dtype="float32"), "cannot be float32"),
        (lambda r: r["outputs"]["tensors"][0].update(name="other"), "is not the primary output tensor"),
        (lambda r: r.update(task="classification"), "classification model cannot have labels outputs"),
        (lambda r: r["outputs"].update(tensors="nope"), "malformed outputs record"),
    ],
)
def test_a_contradictory_outputs_record_is_refused_naming_the_file(change, needle):
    record = json.loads(metadata(outputs=labels_outputs(4)).to_json())
    change(record)
    if record["task"] == "classification":
        record["palette"] = None
    with pytest.raises(DlcvError, match=needle) as info:
        ArtifactMetadata.from_dict(record, source="m.onnx")
    assert "m.onnx" in str(info.value)


class Canned(Backend):
    """A backend that returns whatever the test hands it, checked by the contract."""

    name = "canned"

    def __init__(self, md: ArtifactMetadata, answer):
        super().__init__(Path("canned.onnx"), md)
        self.answer = answer

    def _run(self, batch):
        return self.answer(batch)


BATCH = np.zeros((2, 3, 5, 7), np.float32)


def test_the_output_check_checks_the_declared_kind_shape_and_dtype():
    labels = metadata(outputs=labels_outputs(4))
    assert Canned(labels, lambda b: np.zeros((2, 5, 7), np.uint8)).infer(BATCH).dtype == np.uint8
    with pytest.raises(DlcvError, match=r"output 'labels' has shape \(2, 1, 5, 7\), expected \(2, 5, 7\)"):
        Canned(labels, lambda b: np.zeros((2, 1, 5, 7), np.uint8)).infer(BATCH)
    with pytest.raises(DlcvError, match="output 'labels' is float32, expected uint8"):
        Canned(labels, lambda b: np.zeros((2, 5, 7), np.float32)).infer(BATCH)  # logits where labels were declared
    with pytest.raises(DlcvError, match="output 'labels' is int64, expected uint8"):
        Canned(labels, lambda b: np.zeros((2, 5, 7), np.int64)).infer(BATCH)  # never narrowed silently
    with pytest.raises(DlcvError, match="output 'logits' is uint8, expected float32"):
        Canned(metadata(), lambda b: np.zeros((2, 4, 5, 7), np.uint8)).infer(BATCH)

    cls = metadata("classification", outputs=topk_outputs(4, 2))
    both = {"topk_indices": np.zeros((2, 2), np.int32), "topk_scores": np.zeros((2, 2), np.float16)}
    outputs = Canned(cls, lambda b: both).infer_outputs(BATCH)  # widened to the declared types (TensorRT's INT32, FP16)
    assert outputs["topk_indices"].dtype == np.int64 and outputs["topk_scores"].dtype == np.float32
    with pytest.raises(DlcvError, match="not the output 'topk_scores'"):
        Canned(cls, lambda b: {"topk_indices": both["topk_indices"]}).infer(BATCH)
    with pytest.raises(DlcvError, match=r"output 'topk_scores' has shape \(2, 3\), expected \(2, 2\)"):
        Canned(cls, lambda b: {**both, "topk_scores": np.zeros((2, 3), np.float32)}).infer(BATCH)


def test_labels_and_topk_of_either_kind_of_output_agree():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 6, 5)).astype(np.float32)
    logits[0, :, 0, 0] = 1.0  # a tie: the lower class wins in numpy and in ONNX's ArgMax alike
    seg, head = metadata(), metadata(outputs=labels_outputs(4))
    from_logits = predicted_labels({"logits": logits}, seg)
    np.testing.assert_array_equal(from_logits, segmentation_labels(logits))
    np.testing.assert_array_equal(predicted_labels({"labels": logits.argmax(axis=1).astype(np.uint8)}, head), from_logits)
    assert from_logits[0, 0, 0] == 0

    scores = rng.normal(size=(3, 6)).astype(np.float32)
    order, probs = topk(scores, 5)
    cls = metadata("classification", 6, outputs=topk_outputs(6))
    got = predicted_topk({"topk_indices": order, "topk_scores": probs.astype(np.float32)}, cls, 3)
    np.testing.assert_array_equal(got[0], order[:, :3])
    np.testing.assert_allclose(got[1], probs[:, :3], atol=1e-7)
    np.testing.assert_array_equal(predicted_topk({"logits": scores}, metadata("classification", 6), 5)[0], order)
