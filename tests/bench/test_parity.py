"""dlcv.bench.parity: self-parity is exact; bootstrap intervals contain the estimate and reproduce with a seed;
task scores follow dlcv.runtime.task_metrics. The records are built as the benchmark builds them: the
runtime's comparator with the per-image cells observer, then :func:`parity_record`."""

from __future__ import annotations

import numpy as np
import pytest

from dlcv.bench.parity import CellCollector, ImageCellsObserver, bootstrap_delta, parity_record, task_scores
from dlcv.runtime.comparator import Batch, Candidate, compare
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.task_metrics import ConfusionMatrix
from dlcv.runtime.logit_parity import DEFAULT_TIE_MARGIN
from dlcv.runtime.preprocess import PreprocessSpec

N_CLASSES = 4


def seg_logits(rng, n=6, h=9, w=11):
    return rng.normal(0, 2, size=(n, N_CLASSES, h, w)).astype(np.float32)


class Replay:
    """A runner that answers each batch with the next prepared output."""

    def __init__(self, outputs):
        self.outputs = iter(outputs)

    def infer(self, batch):
        return next(self.outputs)


def accumulate(ref_batches, cand_batches, truth_batches, task="segmentation", ignore=255, exclude=(), seed=0):
    truth_list = truth_batches if truth_batches is not None else [None] * len(ref_batches)
    md = ArtifactMetadata(task=task, arch="m", num_classes=N_CLASSES, class_names=tuple("abcd"),
                          preprocess=PreprocessSpec(), exclude_classes=tuple(exclude))  # fmt: skip
    batches = [Batch(np.zeros((len(r), 3, 1, 1), np.float32), truth) for r, truth in zip(ref_batches, truth_list)]
    cells = ImageCellsObserver(N_CLASSES, ignore)
    candidate = Candidate("candidate", Replay(cand_batches), tie_margin=DEFAULT_TIE_MARGIN)
    result = compare(Replay(ref_batches), [candidate], batches, md, observe=cells)["candidate"]
    truth_source = "labels" if truth_batches is not None else "reference"
    return parity_record(result, cells.reference.finish(), cells.candidates["candidate"].finish(), task,
                         truth_source=truth_source, exclude=exclude, resamples=200, seed=seed)  # fmt: skip


@pytest.mark.parametrize("with_labels", [False, True])
def test_a_backend_compared_with_itself_is_exact(with_labels):
    rng = np.random.default_rng(0)
    batches = [seg_logits(rng), seg_logits(rng, n=3)]
    truth = [list(rng.integers(0, N_CLASSES, size=(len(b), 9, 11))) for b in batches] if with_labels else None
    r = accumulate(batches, [b.copy() for b in batches], truth)
    assert r["max_abs_logit_error"] == 0.0 and r["mean_abs_logit_error"] == 0.0
    assert r["pixel_agreement"] == 1.0 and r["agreement_miou"] == 1.0
    assert r["disagreements"] == 0 and r["nonfinite_logits"] == 0
    assert r["miou_delta"] == 0.0 and r["miou_delta_ci_low"] == 0.0 and r["miou_delta_ci_high"] == 0.0
    assert r["miou_reference"] == r["miou_candidate"]
    assert all(d in (0.0, None) for d in r["per_class_iou_delta"])
    assert all(v in (0.0, None) for v in r["per_class_iou_delta_ci_low"] + r["per_class_iou_delta_ci_high"])
    assert r["parity_images"] == 9
    if not with_labels:
        assert r["miou_reference"] == 1.0  # the reference's own labels are the truth


def test_classification_self_parity_is_exact():
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(8, N_CLASSES)).astype(np.float32) for _ in range(2)]
    truth = [list(rng.integers(0, N_CLASSES, size=8)) for _ in range(2)]
    r = accumulate(batches, batches, truth, task="classification", ignore=None)
    assert r["top1_agreement"] == 1.0 and r["max_abs_logit_error"] == 0.0
    assert r["top1_delta"] == 0.0 and r["top1_delta_ci_low"] == r["top1_delta_ci_high"] == 0.0


def test_perturbed_candidate_numbers_against_brute_force():
    rng = np.random.default_rng(2)
    ref = [seg_logits(rng, n=10)]
    noise = rng.normal(0, 0.5, size=ref[0].shape).astype(np.float32)
    cand = [ref[0] + noise]
    truth = [list(rng.integers(0, N_CLASSES, size=(10, 9, 11)))]
    truth[0][0][0, :5] = 255  # ignored pixels
    r = accumulate(ref, cand, truth)
    assert r["max_abs_logit_error"] == pytest.approx(float(np.abs(noise).max()), rel=1e-6)
    ref_labels, cand_labels = ref[0].argmax(1), cand[0].argmax(1)
    assert r["pixel_agreement"] == pytest.approx(float((ref_labels == cand_labels).mean()))
    gt = np.stack(truth[0])
    for labels, key in ((ref_labels, "miou_reference"), (cand_labels, "miou_candidate")):
        cm = ConfusionMatrix(N_CLASSES, ignore_index=255)
        cm.update(gt, labels)
        assert r[key] == pytest.approx(cm.compute()["miou"])
    assert r["miou_delta"] == pytest.approx(r["miou_candidate"] - r["miou_reference"])
    assert r["miou_delta_ci_low"] <= r["miou_delta"] <= r["miou_delta_ci_high"]
    assert r["miou_delta_ci_low"] < r["miou_delta_ci_high"]


def _cells(rng, n_images, flip):
    """Reference and candidate per-image counts against random truth; the candidate flips a share of pixels."""
    ref, cand = CellCollector(N_CLASSES, 255), CellCollector(N_CLASSES, 255)
    for _ in range(n_images):
        truth = rng.integers(0, N_CLASSES, size=(12, 12))
        pred = np.where(rng.random((12, 12)) < 0.7, truth, rng.integers(0, N_CLASSES, size=(12, 12)))
        ref.add(truth, pred)
        cand.add(truth, np.where(rng.random((12, 12)) < flip, (pred + 1) % N_CLASSES, pred))
    return ref.finish(), cand.finish()


def test_bootstrap_interval_contains_the_estimate_and_reproduces_with_its_seed():
    ref, cand = _cells(np.random.default_rng(3), 40, flip=0.05)
    a = bootstrap_delta(ref, cand, "segmentation", resamples=300, seed=11)
    b = bootstrap_delta(ref, cand, "segmentation", resamples=300, seed=11)
    c = bootstrap_delta(ref, cand, "segmentation", resamples=300, seed=12)
    assert a.ci_low <= a.delta <= a.ci_high and a.ci_low < a.ci_high
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    np.testing.assert_array_equal(a.per_class_ci_low, b.per_class_ci_low)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    for k in range(N_CLASSES):
        assert a.per_class_ci_low[k] <= a.per_class_delta[k] <= a.per_class_ci_high[k]
    # the point estimate is the whole set's score, not a bootstrap average
    assert a.reference == pytest.approx(task_scores(ref.matrix(), "segmentation")[0])


def test_task_scores_follow_the_metrics_module():
    rng = np.random.default_rng(4)
    cm = ConfusionMatrix(N_CLASSES, ignore_index=None, exclude=(3,))
    cm.update(rng.integers(0, N_CLASSES, 500), rng.integers(0, N_CLASSES, 500))
    miou, iou = task_scores(cm.matrix, "segmentation", exclude=(3,))
    assert miou == pytest.approx(cm.compute()["miou"])
    np.testing.assert_allclose(iou, cm.iou())
    top1, acc = task_scores(cm.matrix, "classification")
    assert top1 == pytest.approx(cm.compute()["pixel_accuracy"])
    np.testing.assert_allclose(acc, cm.class_accuracy())


def test_image_weights_count_an_image_that_many_times():
    ref, _ = _cells(np.random.default_rng(5), 3, flip=0.0)
    weights = np.array([2, 0, 1])
    expected = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    for i, w in enumerate(weights):
        single = np.zeros(ref.num_images, dtype=np.int64)
        single[i] = 1
        expected += w * ref.matrix(single)
    np.testing.assert_array_equal(ref.matrix(weights), expected)
    assert ref.matrix().sum() == 3 * 144
