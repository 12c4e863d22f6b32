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
    assert rela_impr(0.56, 0.55) is None and rela_impr(0.6, 0.5) is None  # near chance it means nothing


def test_mean_std_uses_the_sample_spread():
    out = mean_std([0.70, 0.72, 0.74])
    assert out["mean"] == pytest.approx(0.72) and out["std"] == pytest.approx(0.02) and out["n"] == 3


def test_weighted_auc_equals_sklearn_with_ties_and_with_row_weights():
    from sklearn.metrics import roc_auc_score

    from ctr.paired import ranked, weighted_auc

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # rounded: many ties
    weights = rng.integers(0, 4, 500).astype(float)
    r = ranked(labels, scores)
    assert weighted_auc(r, np.ones(500)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert weighted_auc(r, weights) == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)


def test_paired_deltas_see_a_real_lift_and_not_a_reshuffle():
    """A model that adds signal: every seed positive, interval above 0; the base rescored with noise: interval holds 0."""
    from ctr.paired import paired_deltas

    rng = np.random.default_rng(1)
    n, users = 3000, rng.integers(0, 150, 3000).astype(str)
    signal = rng.normal(size=n)
    labels = (signal + rng.normal(size=n) > 0).astype(int)
    base = [0.5 * signal + rng.normal(size=n) for _ in range(3)]
    better = [b + 1.0 * signal for b in base]
    lift = paired_deltas(labels, users, base, better, n_boot=200)
    assert lift["seeds_positive"] == 3 and lift["ci95_users"][0] > 0 and lift["paired_t"]["p"] < 0.05
    same = [0.5 * signal + rng.normal(size=n) for _ in range(3)]
    null = paired_deltas(labels, users, base, same, n_boot=200)
    assert null["ci95_users"][0] < 0 < null["ci95_users"][1]
    with pytest.raises(ValueError, match="same number of seeds"):
        paired_deltas(labels, users, base, better[:2])


def test_slices_count_rows_and_score_each_bucket():
    import torch

    from ctr.data import Catalogue, Split
    from ctr.slices import slice_masks, slice_metrics

    item_counts = torch.tensor([0.0, 0.0, 5.0, 50.0])  # key 1 never in train, key 2 rare, key 3 frequent
    catalogue = Catalogue(item_table=torch.zeros(4, 1, dtype=torch.long), item_counts=item_counts)
    history = torch.zeros(6, 25, dtype=torch.int32)
    history[1, :3] = 2
    history[2, :25] = 3
    split = Split(user=torch.tensor([[1], [5], [5], [1], [6], [7]]), user_key=torch.zeros(6, dtype=torch.long),
                  item=torch.tensor([1, 2, 3, 3, 2, 1]), history=history, label=torch.tensor([1.0, 0, 1, 0, 1, 0]),
                  ts=torch.zeros(6, dtype=torch.long), user_ids=np.array(list("abcdef"), dtype=object))
    masks = slice_masks(split, catalogue)
    out = slice_metrics(split.label.numpy(), np.array([0.9, 0.2, 0.8, 0.1, 0.7, 0.6]), masks)
    assert {k: v["rows"] for k, v in out["item_train_count"].items()} == {"0": 2, "1-20": 2, ">20": 2}
    assert out["item_train_count"]["0"]["auc"] == 1.0  # rows 0 (label 1, 0.9) and 5 (label 0, 0.6)
    assert {k: v["rows"] for k, v in out["user"].items()} == {"seen in train": 4, "unseen in train": 2}
    assert {k: v["rows"] for k, v in out["history_length"].items()} == {"0": 4, "1-5": 1, "6-19": 0, ">=20": 1}
    assert out["history_length"]["6-19"]["auc"] is None
