"""Promises of eval that a plausible one-line bug breaks silently (issue 23, section 2): Spearman gives ties
their mean rank (bootstrap resamples always hold ties), and tau is the middle of the best grid values, with
"similarity >= tau" meaning the same phrase."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from eval.calibrate import TAU_GRID, classification_scores, pick_tau
from eval.correlate import _spearman_rows, correlation


def test_spearman_gives_tied_values_their_mean_rank():
    x = [0.10, 0.10, 0.20, 0.20, 0.30, 0.40]
    y = [0.71, 0.70, 0.72, 0.70, 0.74, 0.73]
    expected = spearmanr(x, y).statistic
    assert correlation(x, y, n_boot=0)["spearman"]["r"] == pytest.approx(expected, abs=1e-12)
    # reversing the order of tied points must not change rho (it does when ties are broken by position)
    rev = correlation(x[1::-1] + x[3:1:-1] + x[4:], y[1::-1] + y[3:1:-1] + y[4:], n_boot=0)["spearman"]["r"]
    assert rev == pytest.approx(expected, abs=1e-12)


def test_spearman_of_bootstrap_resamples_handles_their_repeated_points():
    rng = np.random.default_rng(0)
    x, y = rng.random(7), rng.random(7)
    idx = rng.integers(0, 7, (200, 7))  # every resample repeats some points: ties in both x and y
    got = _spearman_rows(x[idx], y[idx])
    expected = np.array([spearmanr(x[row], y[row]).statistic if len(set(row)) > 1 else np.nan for row in idx])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_tau_is_the_middle_of_the_equally_good_grid_values():
    sims = np.array([0.95, 0.9, 0.85, 0.7, 0.6, 0.4])
    labels = np.array([1, 1, 1, 0, 0, 0])
    chosen = pick_tau(sims, labels)
    # every tau in (0.70, 0.85] separates the classes: 0.71 .. 0.85, the middle one is 0.78
    assert chosen["tied_range"] == [0.71, 0.85] and chosen["tau"] == 0.78


def test_a_similarity_equal_to_tau_counts_as_the_same_phrase():
    sims, labels = np.array([0.80, 0.80, 0.79, 0.5]), np.array([1, 1, 0, 0])
    assert classification_scores(sims, labels, 0.80)["f1"] == 1.0
    chosen = pick_tau(sims, labels)
    assert chosen["tau"] == 0.80 and chosen["tied_range"] == [0.80, 0.80] and 0.80 in TAU_GRID


def test_tau_is_picked_by_f1_before_accuracy():
    # high tau: 1 of 3 pairs found, no false match (F1 0.5, 9 of 11 right);
    # tau 0.45: all 3 found, 3 false matches (F1 0.67, 8 of 11 right)
    sims = np.array([0.9, 0.5, 0.48, 0.6, 0.58, 0.55, 0.3, 0.3, 0.2, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    chosen = pick_tau(sims, labels)
    assert 0.3 < chosen["tau"] <= 0.48 and chosen["f1"] == pytest.approx(2 / 3)
