"""Penultimate features in one pass where the model allows, and the embeddings' guards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from dlcv.analyze.features import Penultimate, pca_2d, tsne_2d, unembeddable
from dlcv.runtime.errors import DlcvError
from dlcv.train.checkpoint import load_checkpoint, model_from_checkpoint


def test_logits_come_from_the_last_linear_applied_to_the_features(cls_checkpoint):
    model = model_from_checkpoint(load_checkpoint(cls_checkpoint))
    runner = Penultimate(model, "cnn_small")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # the first call checks the head against model(x), the second uses it
        features, logits = runner(x)
        with torch.no_grad():
            torch.testing.assert_close(features, model.forward_features(x))
            torch.testing.assert_close(logits, model(x))
    assert runner.head is model.classifier[-1] and runner.width == features.shape[1]


class _ScaledHead(nn.Module):
    """forward is not "last Linear of forward_features": the logits are doubled after it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward_features(self, x):
        return torch.relu(self.body(x))

    def forward(self, x):
        return 2 * self.head(self.forward_features(x))


def test_a_model_whose_logits_are_not_its_last_linear_is_run_in_full():
    model = _ScaledHead().eval()
    runner = Penultimate(model)
    x = torch.randn(5, 4)
    for _ in range(2):
        _, logits = runner(x)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(x))
    assert runner.head is None


def test_a_model_without_forward_features_is_refused():
    with pytest.raises(DlcvError, match="forward_features"):
        Penultimate(nn.Linear(2, 2), "linear")


def test_identical_features_are_refused_before_tsne():
    # scikit-learn's t-SNE crashes the process (segfault) on constant input; it must never get it
    assert "same for every image" in unembeddable(np.ones((30, 8)))
    assert "NaN" in unembeddable(np.full((30, 8), np.nan))
    assert unembeddable(np.ones((1, 8))) is not None
    varied = np.random.default_rng(0).normal(size=(30, 8))
    assert unembeddable(varied) is None
    assert pca_2d(varied).shape == (30, 2) and tsne_2d(varied).shape == (30, 2)
    assert tsne_2d(varied[:4]) is None  # too few points for a perplexity
