"""dlcv.runtime.logit_parity: logit errors and label agreement between a reference and a candidate."""
import math
import subprocess
import sys

import numpy as np
import pytest

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.logit_parity import DEFAULT_TIE_MARGIN, ParityStats, top2_margin


def test_a_backend_compared_with_itself_is_exact():
    rng = np.random.default_rng(0)
    for logits in (rng.normal(size=(3, 5, 7, 9)).astype(np.float32), rng.normal(size=(4, 10)).astype(np.float32)):
        s = ParityStats().update(logits, logits.copy()).compute()
        assert s["max_abs_logit_error"] == 0.0
        assert s["mean_abs_logit_error"] == 0.0
        assert s["agreement"] == 1.0
        assert s["agreement_miou"] == 1.0
        assert s["disagreements"] == 0 and s["near_tie_disagreements"] == 0
        assert math.isnan(s["near_tie_share"])
        assert s["count"] == logits.shape[0] * (logits.shape[2] * logits.shape[3] if logits.ndim == 4 else 1)
        assert s["num_logits"] == logits.size and s["nonfinite_logits"] == 0


def test_hand_made_classification_case():
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 0.9995], [1.0, 0.0, 0.0]])
    test = np.array([[2.0, 1.5, 0.0], [0.0, 0.999, 1.0], [0.0, 1.0, 0.0]])
    s = ParityStats(tie_margin=1e-3).update(ref, test).compute()
    assert s["task"] == "classification"
    assert s["max_abs_logit_error"] == pytest.approx(1.0)
    assert s["mean_abs_logit_error"] == pytest.approx((0.5 + 0.001 + 0.0005 + 1.0 + 1.0) / 9)
    assert s["max_abs_reference_logit"] == 2.0
    # labels: ref 0, 1, 0 / test 0, 2, 1 -> one of three agrees
    assert s["count"] == 3 and s["agreement"] == pytest.approx(1 / 3) and s["disagreements"] == 2
    # image 1 flips on a margin of 0.0005 (< 1e-3): a near tie; image 2 (margin 1) is not
    assert s["near_tie_disagreements"] == 1 and s["near_tie_share"] == 0.5
    # IoU(ref, test) per class: class 0: 1/(1+1) ... confusion rows ref, cols test:
    # (0,0) (1,2) (0,1): class0 tp1 fp0 fn1 -> 0.5; class1 tp0 -> 0; class2 tp0 -> 0
    assert s["agreement_miou"] == pytest.approx(0.5 / 3)


def test_hand_made_segmentation_case():
    ref = np.zeros((1, 2, 2, 2), dtype=np.float32)
    ref[0, 1] = [[1.0, -1.0], [0.0002, 3.0]]  # labels [[1, 0], [1, 1]]; pixel (1,0) is a near tie
    test = ref.copy()
    test[0, 1, 1, 0] = -0.0002  # flips the near-tied pixel: error 0.0004
    test[0, 0, 0, 0] = 0.25  # label unchanged: error 0.25
    s = ParityStats().update(ref, test).compute()
    assert s["task"] == "segmentation" and s["count"] == 4
    assert s["agreement"] == 0.75 and s["disagreements"] == 1
    assert s["near_tie_disagreements"] == 1 and s["near_tie_share"] == 1.0
    assert s["max_abs_logit_error"] == pytest.approx(0.25)
    assert s["mean_abs_logit_error"] == pytest.approx((0.25 + 0.0004) / 8, rel=1e-4)


def test_merge_equals_one_shot():
    rng = np.random.default_rng(1)
    batches = []
    for n in (1, 3, 2):
        ref = rng.normal(size=(n, 4, 6, 5)).astype(np.float32)
        batches.append((ref, ref + rng.normal(scale=0.3, size=ref.shape).astype(np.float32)))
    one = ParityStats()
    for ref, test in batches:
        one.update(ref, test)
    merged = ParityStats().update(*batches[0]).merge(ParityStats().update(*batches[1]).update(*batches[2]))
    whole = ParityStats().update(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    a, b, c = one.compute(), merged.compute(), whole.compute()
    assert a["disagreements"] > 0
    for key in a:
        if isinstance(a[key], float):
            assert b[key] == pytest.approx(a[key], rel=1e-12) and c[key] == pytest.approx(a[key], rel=1e-12), key
        else:
            assert b[key] == a[key] and c[key] == a[key], key
    assert ParityStats().merge(ParityStats()).compute()["count"] == 0  # empty merge is harmless


def test_nan_candidate_cannot_pass_a_tolerance():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    test = np.array([[np.nan, np.nan], [0.0, 1.0]], dtype=np.float32)
    s = ParityStats().update(ref, test).compute()
    assert s["nonfinite_logits"] == 2
    assert s["max_abs_logit_error"] == math.inf
    assert s["agreement"] == 0.5  # the all-NaN row is a disagreement


def test_mismatches_are_refused():
    with pytest.raises(DlcvError, match="shape"):
        ParityStats().update(np.zeros((1, 3)), np.zeros((1, 4)))
    with pytest.raises(DlcvError, match="N×C"):
        ParityStats().update(np.zeros((3,)), np.zeros((3,)))
    s = ParityStats().update(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(DlcvError, match="mix"):
        s.update(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)))
    with pytest.raises(DlcvError, match="tie margins"):
        ParityStats(0.1).merge(ParityStats(0.2))
    with pytest.raises(DlcvError, match="reference"):
        ParityStats().update(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))


def test_top2_margin_and_default():
    logits = np.array([[3.0, 1.0, 2.5], [0.0, 0.0, -1.0]])
    np.testing.assert_allclose(top2_margin(logits), [0.5, 0.0])
    assert np.all(np.isinf(top2_margin(np.zeros((2, 1, 3, 3)))))
    assert 0 < DEFAULT_TIE_MARGIN <= 1e-2


def test_parity_module_never_imports_torch():
    code = "import sys, dlcv.runtime.logit_parity; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
