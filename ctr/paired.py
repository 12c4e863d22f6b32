"""Paired comparisons of two models on the same test rows: per-seed AUC deltas, a bootstrap over test users,
a paired test over seeds, and RelaImpr only where it means something.

Each run folder's predictions.parquet holds its probabilities per test row, in the split's order; the rows of
two runs on one prepared folder are the same rows, so a delta is paired row by row. The bootstrap resamples
*users* (all of a user's rows together: rows of one user are not independent), draws the same users for both
models and for every seed, and gives a 95% percentile interval of the delta; the paired t-test over seeds asks
whether the per-seed deltas differ from 0 (seed to seed spread, the training noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctr.metrics import rela_impr  # noqa: F401  (RelaImpr beside the deltas: None where the base AUC <= 0.55)

@dataclass(kw_only=True)
class Ranked:
    """One model's test scores prepared for fast weighted AUCs: tied scores grouped, groups in score order."""

    group: np.ndarray  # (N,) index of the row's score among the sorted distinct scores
    n_groups: int
    label: np.ndarray  # (N,) 0/1


def ranked(labels: np.ndarray, scores: np.ndarray) -> Ranked:
    distinct, group = np.unique(scores, return_inverse=True)
    return Ranked(group=group, n_groups=len(distinct), label=np.asarray(labels, dtype=np.int64))


def weighted_auc(r: Ranked, weights: np.ndarray) -> float:
    """AUC with a weight per row (a bootstrap's row counts): P(score of a positive > a negative), ties count 1/2."""
    pos = np.bincount(r.group, weights=weights * r.label, minlength=r.n_groups)  # (G,) per distinct score
    neg = np.bincount(r.group, weights=weights * (1 - r.label), minlength=r.n_groups)
    below = np.cumsum(neg) - neg  # negatives with a strictly lower score
    total = pos.sum() * neg.sum()
    return float((pos * (below + 0.5 * neg)).sum() / total) if total else float("nan")


def user_draws(users: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes (N,), counts (n_boot, U)): each bootstrap draws the users with replacement; row i of bootstrap b
    weighs counts[b, codes[i]], its user's number of draws."""
    distinct, codes = np.unique(users, return_inverse=True)
    rng = np.random.default_rng(seed)
    n = len(distinct)
    return codes, np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])


def paired_deltas(labels: np.ndarray, users: np.ndarray, base: list[np.ndarray], model: list[np.ndarray],
                  n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-seed and mean AUC deltas (model - base) with 95% user-bootstrap intervals and a paired t-test.

    base, model: one (N,) score array per seed, paired by position (seed i of both).
    """
    from scipy import stats

    if len(base) != len(model) or not base:
        raise ValueError(f"need the same number of seeds for both models, got {len(base)} and {len(model)}")
    codes, counts = user_draws(users, n_boot, seed)  # the same draws for every seed and both models
    ones = np.ones(len(labels))
    per_seed, boot = [], np.zeros((len(base), n_boot))
    for s, (b, m) in enumerate(zip(base, model)):
        rb, rm = ranked(labels, b), ranked(labels, m)
        delta = weighted_auc(rm, ones) - weighted_auc(rb, ones)
        for i in range(n_boot):
            w = counts[i, codes].astype(np.float64)  # (N,)
            boot[s, i] = weighted_auc(rm, w) - weighted_auc(rb, w)
        low, high = np.percentile(boot[s], [2.5, 97.5])
        per_seed.append({"delta": delta, "ci95": [float(low), float(high)]})
    deltas = np.array([p["delta"] for p in per_seed])
    mean_boot = boot.mean(0)
    out = {"per_seed": per_seed, "mean_delta": float(deltas.mean()),
           "ci95_users": [float(v) for v in np.percentile(mean_boot, [2.5, 97.5])],
           "seeds_positive": int((deltas > 0).sum()), "seeds": len(deltas), "n_boot": n_boot,
           "users": int(len(np.unique(users)))}
    if len(deltas) > 1:
        t = stats.ttest_1samp(deltas, 0.0)
        out["paired_t"] = {"t": float(t.statistic), "p": float(t.pvalue), "df": len(deltas) - 1}
    return out
