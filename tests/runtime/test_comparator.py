"""dlcv.runtime.comparator: the comparator against brute-force counts, the observer's view of every batch,
gates and tie margins from the precision records, candidates that output labels, and failures."""
from __future__ import annotations

import numpy as np
import pytest

from dlcv.runtime.comparator import Batch, Candidate, compare, image_parity, model_output
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.precision import FP16, FP32, INT8, Gate
from dlcv.runtime.preprocess import PreprocessSpec

C = 4
IGNORE = 255


def metadata(task: str, exclude=()) -> ArtifactMetadata:
    return ArtifactMetadata(task=task, arch="m", num_classes=C, class_names=tuple("abcd"), preprocess=PreprocessSpec(),
                            ignore_index=IGNORE, exclude_classes=tuple(exclude))  # fmt: skip


class Replay:
    """A runner that answers the i-th call with ``outputs[i]`` and records the inputs it saw."""

    def __init__(self, outputs, fail_at: int | None = None):
        self.outputs, self.fail_at, self.seen = list(outputs), fail_at, []

    def infer(self, batch):
        if len(self.seen) == self.fail_at:
            raise RuntimeError("simulated backend failure")
        self.seen.append(batch)
        return self.outputs[len(self.seen) - 1]


def seg_case(seed=0, sizes=((3, 9, 11), (2, 9, 11), (4, 7, 5))):
    """Reference logits, a perturbed candidate, and labels (some ignored) for batches of ``sizes``."""
    rng = np.random.default_rng(seed)
    ref = [rng.normal(0, 2, (n, C, h, w)).astype(np.float32) for n, h, w in sizes]
    cand = [r + rng.normal(0, 0.7, r.shape).astype(np.float32) for r in ref]
    labels = [rng.integers(0, C, (n, h, w)) for n, h, w in sizes]
    labels[0][0, :3] = IGNORE
    batches = [Batch(np.zeros((n, 3, h, w), np.float32), lab) for (n, h, w), lab in zip(sizes, labels)]
    return ref, cand, labels, batches


def brute_miou(gt: np.ndarray, pred: np.ndarray, exclude=()) -> float:
    """Per class: pixels where both are the class / pixels where either is (ignored pixels skipped)."""
    valid = gt != IGNORE
    ious = []
    for c in range(C):
        union = np.sum(valid & ((gt == c) | (pred == c)))
        if union and c not in exclude:
            ious.append(np.sum(valid & (gt == c) & (pred == c)) / union)
    return float(np.mean(ious))


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays])


@pytest.mark.parametrize("exclude", [(), (3,)])
def test_segmentation_against_brute_force(exclude):
    ref, cand, labels, batches = seg_case()
    result = compare(Replay(ref), [Candidate("c", Replay(cand))], batches, metadata("segmentation", exclude))
    r = result["c"]
    ref_labels, cand_labels = flat(x.argmax(1) for x in ref), flat(x.argmax(1) for x in cand)
    error = np.abs(flat(cand).astype(np.float64) - flat(ref))
    assert r.parity["agreement"] == pytest.approx(np.mean(ref_labels == cand_labels))
    assert r.parity["count"] == ref_labels.size and r.parity["disagreements"] == np.sum(ref_labels != cand_labels)
    assert r.parity["max_abs_logit_error"] == pytest.approx(error.max())
    assert r.parity["mean_abs_logit_error"] == pytest.approx(error.mean())
    gt = flat(labels)
    assert result.reference_metric == pytest.approx(brute_miou(gt, ref_labels, exclude))
    assert r.metric == pytest.approx(brute_miou(gt, cand_labels, exclude))
    assert r.reference_metric == result.reference_metric and r.metric_delta == pytest.approx(r.metric - r.reference_metric)
    # agreement mIoU: the reference's labels as the truth, nothing ignored, nothing excluded
    ious = [np.sum((ref_labels == c) & (cand_labels == c)) / np.sum((ref_labels == c) | (cand_labels == c)) for c in range(C)]
    assert r.parity["agreement_miou"] == pytest.approx(np.mean(ious))
    assert (result.images, result.batches, result.labelled, result.metric_name) == (9, 3, True, "mIoU")


def test_classification_against_brute_force():
    rng = np.random.default_rng(1)
    ref = [rng.normal(size=(n, C)).astype(np.float32) for n in (5, 7)]
    cand = [r + rng.normal(0, 0.5, r.shape).astype(np.float32) for r in ref]
    labels = [rng.integers(0, C, n) for n in (5, 7)]
    batches = [Batch(np.zeros((n, 3, 2, 2), np.float32), lab) for n, lab in zip((5, 7), labels)]
    result = compare(Replay(ref), [Candidate("c", Replay(cand))], batches, metadata("classification"))
    gt = flat(labels)
    ref_top1, cand_top1 = flat(x.argmax(1) for x in ref), flat(x.argmax(1) for x in cand)
    assert result.reference_metric == pytest.approx(np.mean(ref_top1 == gt))
    assert result["c"].metric == pytest.approx(np.mean(cand_top1 == gt))
    assert result["c"].parity["agreement"] == pytest.approx(np.mean(ref_top1 == cand_top1))
    assert result.metric_name == "top-1" and "top5" not in result.reference_metrics  # 4 classes: no top-5


def test_observers_see_every_batch_in_order_and_per_batch_parity_adds_up():
    ref, cand, labels, batches = seg_case()
    batches = [Batch(b.inputs, b.labels, ids=[f"img{k}" for k in range(len(b.inputs))]) for b in batches]
    steps = []
    result = compare(Replay(ref), [Candidate("a", Replay(cand)), Candidate("b", Replay(ref))], batches,
                     metadata("segmentation"), observe=[steps.append, lambda s: steps.append(s.index)])  # fmt: skip
    assert [s if isinstance(s, int) else ("step", s.index) for s in steps] == [
        ("step", 0), 0, ("step", 1), 1, ("step", 2), 2]  # every observer, in order, once per batch
    views = [s for s in steps if not isinstance(s, int)]
    assert [v.first_image for v in views] == [0, 3, 5]
    for view, batch, r, c in zip(views, batches, ref, cand):
        assert view.batch is batch and list(view.outputs) == ["a", "b"]
        np.testing.assert_array_equal(view.reference.values, r)
        np.testing.assert_array_equal(view.outputs["a"].labels, c.argmax(1))
        assert view.parity["b"].compute()["agreement"] == 1.0
    disagreements = sum(v.parity["a"].compute()["disagreements"] for v in views)
    assert disagreements == result["a"].parity["disagreements"]
    assert max(v.parity["a"].compute()["max_abs_logit_error"] for v in views) == result["a"].parity["max_abs_logit_error"]


def test_a_failing_candidate_drops_out_and_the_others_go_on():
    ref, cand, _, batches = seg_case()
    seen = []
    broken = Replay(cand, fail_at=1)
    result = compare(Replay(ref), [Candidate("broken", broken), Candidate("fine", Replay(cand))], batches,
                     metadata("segmentation"), observe=lambda s: seen.append(sorted(s.outputs)))  # fmt: skip
    assert seen == [["broken", "fine"], ["fine"], ["fine"]]
    assert len(broken.seen) == 1  # never asked again after it raised
    bad, good = result.candidates
    assert isinstance(bad.error, RuntimeError) and not bad.passed and "simulated backend failure" in bad.failures[0]
    assert bad.metrics is None and bad.parity["count"] == ref[0][:, 0].size  # what it compared before failing
    assert good.error is None and good.parity["count"] == sum(r[:, 0].size for r in ref)


def test_gates_and_tie_margins_come_from_the_precision_record():
    ref, cand, labels, batches = seg_case()
    unlabelled = [Batch(b.inputs) for b in batches]
    for precision in (FP32, FP16, INT8):
        for data, labelled in ((batches, True), (unlabelled, False)):
            r = compare(Replay(ref), [Candidate("c", Replay(cand), precision=precision.name)], data, metadata("segmentation"))["c"]
            assert r.gate == precision.default_gate(labelled)
            assert r.parity["tie_margin"] == precision.tie_margin
            assert (r.metric is None) == (not labelled)
    assert INT8.default_gate(True) == Gate(max_metric_drop=0.01) and INT8.default_gate(False) == Gate(min_agreement=0.98)
    assert FP32.tie_margin < FP16.tie_margin < INT8.tie_margin
    given = Gate(min_agreement=0.5)
    r = compare(Replay(ref), [Candidate("c", Replay(cand), INT8, gate=given, tie_margin=0.25)], batches, metadata("segmentation"))["c"]
    assert r.gate == given and r.parity["tie_margin"] == 0.25 and r.passed
    no_record = compare(Replay(ref), [Candidate("c", Replay(cand))], batches, metadata("segmentation"))["c"]
    assert no_record.gate == Gate() and no_record.parity["tie_margin"] == FP32.tie_margin


def test_a_missed_gate_is_a_failure_naming_the_bar():
    ref, cand, _, batches = seg_case()
    r = compare(Replay(ref), [Candidate("c", Replay(cand), FP16)], batches, metadata("segmentation"))["c"]
    assert r.parity["agreement"] < 0.9 and not r.passed
    assert r.failures[0].startswith("label agreement") and "< 99.5%" in r.failures[0]
    worse = [c.copy() for c in cand]
    worse[0][:, 0] = 50.0  # the candidate says class 0 everywhere in batch 0: its mIoU drops
    r = compare(Replay(ref), [Candidate("c", Replay(worse), INT8)], batches, metadata("segmentation"))["c"]
    assert r.metric_delta < -0.01 and r.failures == (f"mIoU drop {-100 * r.metric_delta:.2f} pt > 1.0 pt",)
    nan = [c.copy() for c in cand]
    nan[1][0, 0, 0, 0] = np.nan
    r = compare(Replay(ref), [Candidate("c", Replay(nan), gate=Gate())], batches, metadata("segmentation"))["c"]
    assert r.failures == ("1 NaN/inf logits",) and r.parity["max_abs_logit_error"] == np.inf


@pytest.mark.parametrize("form", ["maps", "keepdims"])
def test_a_candidate_that_outputs_label_maps_is_compared_by_its_labels(form):
    ref, cand, _, batches = seg_case()
    maps = [c.argmax(1).astype(np.uint8) for c in cand]
    if form == "keepdims":  # ONNX ArgMax keeps the class axis by default
        maps = [m[:, None] for m in maps]
    result = compare(Replay(ref), [Candidate("logits", Replay(cand)), Candidate("labels", Replay(maps))], batches,
                     metadata("segmentation"))  # fmt: skip
    logits, labels = result["logits"].parity, result["labels"].parity
    for key in ("agreement", "count", "disagreements", "near_tie_disagreements", "agreement_miou"):
        assert labels[key] == logits[key], key
    assert np.isnan(labels["max_abs_logit_error"]) and np.isnan(labels["mean_abs_logit_error"])
    assert result["labels"].metric == result["logits"].metric


def test_a_candidate_that_outputs_topk_indices_is_scored_by_them():
    rng = np.random.default_rng(2)
    n, classes = 12, 7
    md = ArtifactMetadata(task="classification", arch="m", num_classes=classes, class_names=tuple("abcdefg"),
                          preprocess=PreprocessSpec())  # fmt: skip
    ref = rng.normal(size=(n, classes)).astype(np.float32)
    cand = ref + rng.normal(0, 0.8, ref.shape).astype(np.float32)
    top5 = np.argsort(-cand, axis=1, kind="stable")[:, :5].astype(np.int64)
    batch = [Batch(np.zeros((n, 3, 2, 2), np.float32), rng.integers(0, classes, n))]
    result = compare(Replay([ref]), [Candidate("logits", Replay([cand])), Candidate("top5", Replay([top5])),
                                     Candidate("top1", Replay([top5[:, 0]]))], batch, md)  # fmt: skip
    for name in ("top5", "top1"):
        assert result[name].parity["agreement"] == result["logits"].parity["agreement"]
        assert result[name].metrics["top1"] == result["logits"].metrics["top1"]
    assert result["top5"].metrics["top5"] == result["logits"].metrics["top5"]
    assert "top5" not in result["top1"].metrics  # one rank given: no top-5 to score


def test_image_parity_per_image():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(3, C, 4, 5)).astype(np.float32)
    cand = ref.copy()
    cand[1, 2, :2, :] += 10.0  # image 1: 10 pixels turn to class 2 (where they were not already)
    share, worst = image_parity(model_output(ref, "segmentation"), model_output(cand, "segmentation"))
    assert share[0] == share[2] == 0 and share[1] == pytest.approx(np.mean(ref[1].argmax(0)[:2] != 2) * 10 / 20)
    np.testing.assert_allclose(worst, [0.0, 10.0, 0.0], atol=1e-5)
    share, worst = image_parity(model_output(ref, "segmentation"), model_output(cand.argmax(1).astype(np.uint8), "segmentation"))
    assert share[1] > 0 and np.isnan(worst).all()


def test_mistakes_are_errors():
    ref, cand, _, batches = seg_case()
    with pytest.raises(DlcvError, match="unique"):
        compare(Replay(ref), [Candidate("c", Replay(cand)), Candidate("c", Replay(cand))], batches, metadata("segmentation"))
    broken = [r.copy() for r in ref]
    broken[0][0, 0, 0, 0] = np.inf
    with pytest.raises(DlcvError, match="reference model itself is broken"):
        compare(Replay(broken), [Candidate("c", Replay(cand))], batches, metadata("segmentation"))
    with pytest.raises(DlcvError, match="reference model gives labels"):
        compare(Replay([r.argmax(1) for r in ref]), [Candidate("c", Replay(cand))], batches, metadata("segmentation"))
    with pytest.raises(DlcvError, match="precision"):
        Candidate("c", Replay(cand), precision="fp8")
    wrong = compare(Replay(ref), [Candidate("c", Replay([c[:, :2] for c in cand]))], batches, metadata("segmentation"))["c"]
    assert isinstance(wrong.error, DlcvError) and "shape" in wrong.failures[0]
