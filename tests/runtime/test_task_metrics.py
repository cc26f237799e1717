"""ConfusionMatrix and ClassificationMetrics against brute force and the per-set formula (docs/architecture.md, "Metrics")."""
import numpy as np
import pytest

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.task_metrics import ClassificationMetrics, ConfusionMatrix


def brute_force_iou(gt, pred, n, ignore):
    ious = []
    for c in range(n):
        valid = gt != ignore
        tp = np.sum((gt == c) & (pred == c) & valid)
        fp = np.sum((gt != c) & (pred == c) & valid)
        fn = np.sum((gt == c) & (pred != c) & valid)
        ious.append(np.nan if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return np.array(ious)


def per_set_formula(gt, pred, n, ignore):
    k = (gt >= 0) & (gt < n) & (gt != ignore)
    hist = np.bincount(n * gt[k].astype(int) + pred[k], minlength=n * n).reshape(n, n)
    acc = np.diag(hist).sum() / hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    return acc, iou, np.nanmean(iou)


@pytest.mark.parametrize("seed", range(5))
def test_iou_matches_brute_force_and_formula(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    cm = ConfusionMatrix(n, ignore_index=255)
    all_gt, all_pred = [], []
    for _ in range(3):  # accumulated over several images, like a whole set
        gt = rng.integers(0, n, size=(17, 23))
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = rng.integers(0, n, size=gt.shape)
        cm.update(gt, pred)
        all_gt.append(gt.ravel())
        all_pred.append(pred.ravel())
    gt, pred = np.concatenate(all_gt), np.concatenate(all_pred)
    result = cm.compute()
    np.testing.assert_allclose(np.array(result["per_class_iou"], dtype=float), brute_force_iou(gt, pred, n, 255))
    acc, iou, miou = per_set_formula(gt, pred, n, 255)
    assert result["pixel_accuracy"] == pytest.approx(acc)
    assert result["miou"] == pytest.approx(miou)
    assert result["count"] == np.sum(gt != 255)


def test_absent_class_is_nan_and_left_out_of_mean():
    cm = ConfusionMatrix(3, ignore_index=None)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]))
    r = cm.compute()
    assert r["per_class_iou"][2] is None
    assert r["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_exclude_classes_leaves_them_out_of_miou_but_reported():
    cm = ConfusionMatrix(3, ignore_index=None, exclude=[2])
    cm.update(np.array([0, 1, 2, 2]), np.array([0, 1, 0, 0]))
    r = cm.compute()
    assert r["per_class_iou"][2] == 0.0
    assert r["miou"] == pytest.approx((1 / 3 + 1.0) / 2)  # class 0: tp 1, fp 2


def test_merge_equals_single_accumulation():
    rng = np.random.default_rng(7)
    gt, pred = rng.integers(0, 4, 1000), rng.integers(0, 4, 1000)
    whole = ConfusionMatrix(4)
    whole.update(gt, pred)
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(gt[:300], pred[:300])
    b.update(gt[300:], pred[300:])
    assert np.array_equal(a.merge(b).matrix, whole.matrix)


def test_out_of_range_ground_truth_counted_not_scored():
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(np.array([0, 1, 7, 255]), np.array([0, 1, 1, 1]))
    r = cm.compute()
    assert r["out_of_range_labels"] == 1 and r["count"] == 2 and r["pixel_accuracy"] == 1.0


def test_bad_inputs_raise_dlcv_error():
    cm = ConfusionMatrix(2)
    with pytest.raises(DlcvError):
        cm.update(np.zeros(3), np.zeros(4))
    with pytest.raises(DlcvError):
        cm.update(np.zeros(3), np.array([0, 1, 5]))
    with pytest.raises(DlcvError):
        cm.merge(ConfusionMatrix(3))


def test_classification_topk_against_brute_force():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(50, 8))
    gt = rng.integers(0, 8, 50)
    m = ClassificationMetrics(8)
    m.update(gt[:20], scores[:20])
    m.update(gt[20:], scores[20:])
    r = m.compute()
    ranks = [(np.argsort(-s)[:k]) for s in scores for k in (5,)]
    assert r["top1"] == pytest.approx(np.mean(scores.argmax(1) == gt))
    assert r["top5"] == pytest.approx(np.mean([g in top for g, top in zip(gt, ranks)]))
    per_class = [np.mean(scores[gt == c].argmax(1) == c) if np.any(gt == c) else None for c in range(8)]
    assert r["per_class_accuracy"] == pytest.approx(per_class)


def test_confusion_matrix_round_trips_through_its_result():
    import json

    from dlcv.runtime.task_metrics import confusion_from_dict

    cm = ConfusionMatrix(3, exclude=[2])
    cm.update(np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 1, 1]))
    result = json.loads(json.dumps(cm.compute()))
    again = confusion_from_dict(result, exclude=[2])
    assert np.array_equal(again.matrix, cm.matrix) and again.compute() == cm.compute()
