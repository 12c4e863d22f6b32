"""CTR metrics: AUC and LogLoss from scikit-learn, GAUC, RelaImpr, and mean +- spread over seeds."""

from __future__ import annotations

import numpy as np


def gauc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> tuple[float | None, int, int]:
    """Per-user AUC weighted by the user's samples; users whose samples are all one class are skipped.

    Returns (GAUC or None when every user was skipped, users scored, users skipped).
    """
    from sklearn.metrics import roc_auc_score

    order = np.argsort(users, kind="stable")
    labels, scores, users = labels[order], scores[order], users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    total, weight, skipped = 0.0, 0, 0
    for start, end in zip(starts, ends):
        y = labels[start:end]
        if y.min() == y.max():
            skipped += 1
            continue
        total += roc_auc_score(y, scores[start:end]) * (end - start)
        weight += end - start
    return (total / weight if weight else None), len(starts) - skipped, skipped


def ctr_metrics(labels: np.ndarray, probs: np.ndarray, users: np.ndarray) -> dict:
    """AUC, GAUC (with its user counts), LogLoss and sizes of one scored split."""
    from sklearn.metrics import log_loss, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    both = labels.min() != labels.max()
    value, scored, skipped = gauc(labels, probs, users)
    return {"auc": float(roc_auc_score(labels, probs)) if both else None,
            "gauc": value, "gauc_users": scored, "gauc_skipped_users": skipped,
            "logloss": float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "samples": int(len(labels)), "positive_rate": float(labels.mean()) if len(labels) else None}


RELAIMPR_FLOOR = 0.55  # RelaImpr divides by AUC - 0.5: near chance it turns noise into huge percentages


def rela_impr(auc_model: float, auc_base: float) -> float | None:
    """RelaImpr (Yan et al., 2014): (AUC_model - 0.5) / (AUC_base - 0.5) - 1; None where AUC_base <= 0.55."""
    if auc_base <= RELAIMPR_FLOOR:
        return None
    return (auc_model - 0.5) / (auc_base - 0.5) - 1.0


def mean_std(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0 for one value), min, max and n of a list of figures."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "n": int(len(arr))}
