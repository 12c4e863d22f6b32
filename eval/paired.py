"""Paired comparisons of two predictions scored on the same gold records (e.g. a student against its teacher)."""

from __future__ import annotations

import numpy as np

from ground import records as R


def per_item_f1(per_item: list[dict]) -> dict[tuple[str, str], float]:
    """(level, id) -> headline F1, from an F1 report's per-item rows."""
    return {(str(row[R.LEVEL]), str(row[R.ID])): float(row["f1"]) for row in per_item}


def paired_f1_ratio(num: dict, den: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """Macro F1 of `num` over macro F1 of `den` on their common gold records, with a paired bootstrap 95% CI.

    Each resample draws the same records for both sides, so the interval reflects only how the two differ
    record by record. The ratio is undefined (None) when the denominator's F1 is 0.
    """
    keys = sorted(set(num) & set(den))
    if not keys:
        raise ValueError("the two F1 reports share no gold record")
    a = np.array([num[k] for k in keys])  # (N,)
    b = np.array([den[k] for k in keys])  # (N,)
    point = a.mean() / b.mean() if b.mean() > 0 else None
    idx = np.random.default_rng(seed).integers(0, len(keys), size=(n_boot, len(keys)))  # (n_boot, N)
    sa, sb = a[idx].mean(axis=1), b[idx].mean(axis=1)
    ratios = sa[sb > 0] / sb[sb > 0]
    ci = [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))] if len(ratios) and n_boot else None
    return {"ratio": None if point is None else float(point), "ratio_ci95": ci, "n_items": len(keys),
            "num_f1": float(a.mean()), "den_f1": float(b.mean())}


def rounded(ratio: dict, digits: int = 4) -> dict:
    """A paired_f1_ratio result with its floats (and interval ends) rounded, for run JSON and tables."""
    return {k: round(v, digits) if isinstance(v, float) else [round(x, digits) for x in v] if isinstance(v, list) else v
            for k, v in ratio.items()}


def format_ratio(ratio: dict) -> str:
    """One line for a paired_f1_ratio result: the ratio, its interval and how many records it pairs."""
    if ratio["ratio"] is None:
        return f"undefined (the denominator's F1 is 0 on the {ratio['n_items']} paired gold records)"
    ci = ratio["ratio_ci95"]
    interval = f"  95% CI [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{ratio['ratio']:.2f}{interval} (paired bootstrap over {ratio['n_items']} gold records)"
