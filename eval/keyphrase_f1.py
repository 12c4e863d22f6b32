"""Key-phrase F1, the pure core: similarities, matchings, per-item scores, bootstrap aggregates.

Inputs are already-normalised, de-duplicated phrase lists and their unit-norm embeddings;
no model and no files here. Empty-set convention (one rule for P and R): a ratio with an
empty denominator is 1.0 when both sides are empty and 0.0 otherwise, so both empty scores
P = R = F1 = 1 and one side empty scores P = R = F1 = 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ground.normalize import numbers_and_units

Pair = tuple[int, int, float]
Matching = Literal["one_to_one", "many_to_one", "exact"]


def similarity_matrix(
    pred_norm: list[str], gold_norm: list[str], emb_pred: np.ndarray, emb_gold: np.ndarray
) -> np.ndarray:
    """Cosine similarity (P, G), set to 1 for equal normalised forms and 0 where numbers/units differ."""
    if not pred_norm or not gold_norm:
        return np.zeros((len(pred_norm), len(gold_norm)), dtype=np.float32)
    sim = _unit(emb_pred) @ _unit(emb_gold).T  # (P, G)
    nums_pred = [numbers_and_units(p) for p in pred_norm]
    nums_gold = [numbers_and_units(g) for g in gold_norm]
    # "1.25l" vs "1.5l" embed at cosine 0.92 but name different products: a number/unit mismatch is 0.
    differ = np.array([[bool(a or b) and a != b for b in nums_gold] for a in nums_pred], dtype=bool)
    equal = np.array([[p == g for g in gold_norm] for p in pred_norm], dtype=bool)
    sim = np.where(differ, 0.0, sim)
    sim = np.where(equal, 1.0, sim)
    return np.clip(sim, 0.0, 1.0).astype(np.float32)


def _unit(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb))[:, None]  # (N, 1)
    return emb / np.maximum(norms, 1e-12)


def match_one_to_one(sim: np.ndarray, tau: float) -> list[Pair]:
    """Most pairs with similarity >= tau, each phrase used once; ties broken by total similarity."""
    from scipy.optimize import linear_sum_assignment  # ~1 s to import: not when `distill --help` starts

    if sim.size == 0:
        return []
    valid = sim >= tau
    # Sub-tau entries weigh 0 so they never displace a valid pair, and each valid pair weighs
    # more than all similarities together, so the assignment first maximises the number of
    # matches (what F1 counts) and only then their total similarity.
    bonus = min(sim.shape) + 1.0
    weights = np.where(valid, bonus + sim, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return [(int(i), int(j), float(sim[i, j])) for i, j in zip(rows, cols) if valid[i, j]]


def match_many_to_one(sim: np.ndarray, tau: float) -> tuple[int, int]:
    """(predicted phrases matching some gold, gold phrases matched by some prediction) at tau."""
    if sim.size == 0:
        return 0, 0
    valid = sim >= tau
    return int(valid.any(axis=1).sum()), int(valid.any(axis=0).sum())


def match_exact(pred_norm: list[str], gold_norm: list[str]) -> int:
    """Number of normalised predicted phrases that equal a gold phrase."""
    return len(set(pred_norm) & set(gold_norm))


def safe_ratio(num: float, den: float, other_den: float) -> float:
    """num/den, or the empty-set convention: 1.0 when both sides are empty, else 0.0."""
    if den > 0:
        return num / den
    return 1.0 if other_den == 0 else 0.0


def prf(tp_pred: float, tp_gold: float, n_pred: float, n_gold: float) -> dict[str, float]:
    """Precision, recall and F1 from matched counts on each side (equal for one-to-one)."""
    precision = safe_ratio(tp_pred, n_pred, n_gold)
    recall = safe_ratio(tp_gold, n_gold, n_pred)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def item_scores(sim: np.ndarray, pred_norm: list[str], gold_norm: list[str], tau: float, how: Matching) -> dict:
    """tp_pred, tp_gold, n_pred, n_gold, precision, recall, f1 of one item under one matching."""
    n_pred, n_gold = len(pred_norm), len(gold_norm)
    if how == "one_to_one":
        tp_pred = tp_gold = len(match_one_to_one(sim, tau))
    elif how == "many_to_one":
        tp_pred, tp_gold = match_many_to_one(sim, tau)
    elif how == "exact":
        tp_pred = tp_gold = match_exact(pred_norm, gold_norm)
    else:
        raise ValueError(f"matching must be one_to_one, many_to_one or exact, got {how!r}")
    counts = {"tp_pred": tp_pred, "tp_gold": tp_gold, "n_pred": n_pred, "n_gold": n_gold}
    return counts | prf(tp_pred, tp_gold, n_pred, n_gold)


def _micro(tp_pred: np.ndarray, tp_gold: np.ndarray, n_pred: np.ndarray, n_gold: np.ndarray) -> np.ndarray:
    """Micro P/R/F1 of counts summed along the last axis: (..., N) -> (..., 3); same convention as `prf`."""
    tpp, tpg, npred, ngold = (x.sum(axis=-1) for x in (tp_pred, tp_gold, n_pred, n_gold))
    both_empty = ((npred == 0) & (ngold == 0)).astype(np.float64)
    precision = np.where(npred > 0, tpp / np.maximum(npred, 1), both_empty)
    recall = np.where(ngold > 0, tpg / np.maximum(ngold, 1), both_empty)
    total = precision + recall
    f1 = np.where(total > 0, 2 * precision * recall / np.maximum(total, 1e-12), 0.0)
    return np.stack([precision, recall, f1], axis=-1)


def aggregate(items: list[dict], rng: np.random.Generator, n_boot: int = 1000) -> dict:
    """Macro and micro P/R/F1 over items, each with a percentile-bootstrap 95% interval (items resampled)."""
    if not items:
        return {"n_items": 0, "macro": None, "micro": None}
    keys = ("precision", "recall", "f1", "tp_pred", "tp_gold", "n_pred", "n_gold")
    cols = {k: np.array([it[k] for it in items], dtype=np.float64) for k in keys}
    prf_cols = np.stack([cols["precision"], cols["recall"], cols["f1"]], axis=1)  # (N, 3)
    counts = [cols[k] for k in ("tp_pred", "tp_gold", "n_pred", "n_gold")]
    macro_point, micro_point = prf_cols.mean(axis=0), _micro(*counts)
    macro_boot, micro_boot = _bootstrap(prf_cols, counts, rng, n_boot)
    return {
        "n_items": len(items),
        "macro": _summary(macro_point, macro_boot),
        "micro": _summary(micro_point, micro_boot),
    }


def _bootstrap(
    prf_cols: np.ndarray, counts: list[np.ndarray], rng: np.random.Generator, n_boot: int, chunk: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(n_boot, 3) macro and micro replicates, each a resample of the N items with replacement."""
    n = len(prf_cols)
    values = np.column_stack([prf_cols, *counts])  # (N, 7)
    macro, micro = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))  # (B, N) resampled item indices
        # How often each item was drawn, (B, N): sums over a resample become one matrix product.
        times = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        sums = times @ values  # (B, 7)
        macro.append(sums[:, :3] / n)
        micro.append(_micro(*(sums[:, k : k + 1] for k in range(3, 7))))
    empty = np.empty((0, 3))
    return (np.concatenate(macro) if macro else empty), (np.concatenate(micro) if micro else empty)


def _summary(point: np.ndarray, boot: np.ndarray) -> dict:
    out = {}
    for k, name in enumerate(("precision", "recall", "f1")):
        out[name] = float(point[k])
        if len(boot):
            lo, hi = np.percentile(boot[:, k], [2.5, 97.5])
            out[f"{name}_ci95"] = [float(lo), float(hi)]
        else:
            out[f"{name}_ci95"] = None
    return out
