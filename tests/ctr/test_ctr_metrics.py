"""CTR metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from ctr.metrics import ctr_metrics, gauc, mean_std, rela_impr


def test_gauc_weights_users_by_samples_and_skips_one_class_users():
    users = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    # user a: positives 0.9, 0.2 vs negatives 0.5, 0.1 -> 3 of 4 pairs ordered -> AUC 0.75 (4 samples)
    # user b: AUC 0.0 (2 samples); user c: one class, skipped
    scores = np.array([0.9, 0.5, 0.2, 0.1, 0.1, 0.8, 0.3, 0.4])
    value, scored, skipped = gauc(labels, scores, users)
    assert value == pytest.approx((0.75 * 4 + 0.0 * 2) / 6)
    assert (scored, skipped) == (2, 1)


def test_gauc_is_none_when_every_user_has_one_class():
    assert gauc(np.array([1, 0]), np.array([0.3, 0.2]), np.array(["a", "b"])) == (None, 0, 2)


def test_ctr_metrics_match_hand_figures():
    labels, probs = np.array([0, 1, 1, 0]), np.array([0.2, 0.8, 0.4, 0.6])
    out = ctr_metrics(labels, probs, np.array(["u"] * 4))
    assert out["auc"] == pytest.approx(0.75)
    assert out["logloss"] == pytest.approx(-np.mean(np.log([0.8, 0.8, 0.4, 0.4])))
    assert out["gauc"] == pytest.approx(0.75) and out["samples"] == 4


def test_logloss_of_a_one_class_split_is_defined():
    out = ctr_metrics(np.array([1, 1]), np.array([0.9, 0.6]), np.array(["u", "v"]))
    assert out["auc"] is None and out["logloss"] == pytest.approx(-np.mean(np.log([0.9, 0.6])))


def test_rela_impr_against_deepfm():
    assert rela_impr(0.7871, 0.7763) == pytest.approx(0.0391, abs=1e-4)  # the paper's Table 2, KDD Cup 2012
    assert rela_impr(0.7, 0.7) == 0


def test_mean_std_uses_the_sample_spread():
    out = mean_std([0.70, 0.72, 0.74])
    assert out["mean"] == pytest.approx(0.72) and out["std"] == pytest.approx(0.02) and out["n"] == 3
