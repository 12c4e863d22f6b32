"""AUC on the slices where knowledge should matter: rare and cold items, users unseen in train, short histories.

Every scored split reports them (metrics.json "slices", and on screen), each with its row count: a slice
AUC over 74 rows is a different figure from one over 40,000.
"""

from __future__ import annotations

import numpy as np

from ctr.data import Catalogue, Split
from ctr.features import UNKNOWN

# (name, lowest, highest) inclusive bounds
ITEM_BUCKETS = (("0", 0, 0), ("1-20", 1, 20), (">20", 21, None))
HISTORY_BUCKETS = (("0", 0, 0), ("1-5", 1, 5), ("6-19", 6, 19), (">=20", 20, None))


def in_bucket(values: np.ndarray, low: int, high: int | None) -> np.ndarray:
    return (values >= low) & (values <= high if high is not None else True)


def slice_masks(split: Split, catalogue: Catalogue) -> dict[str, dict[str, np.ndarray]]:
    """{slice family: {bucket: (N,) bool}}: item train count, user seen in train, history length (as fed)."""
    item_train = catalogue.item_counts[split.item].numpy()  # train rows whose target is the item
    seen = split.user[:, 0].numpy() != UNKNOWN  # user_id's vocabulary is the train split's
    length = (split.history > 0).sum(1).numpy()
    return {"item_train_count": {name: in_bucket(item_train, lo, hi) for name, lo, hi in ITEM_BUCKETS},
            "user": {"seen in train": seen, "unseen in train": ~seen},
            "history_length": {name: in_bucket(length, lo, hi) for name, lo, hi in HISTORY_BUCKETS}}


def auc_or_none(labels: np.ndarray, probs: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, probs)) if len(labels) and labels.min() != labels.max() else None


def slice_metrics(labels: np.ndarray, probs: np.ndarray, masks: dict[str, dict[str, np.ndarray]]) -> dict:
    """{family: {bucket: {"rows", "positives", "auc"}}} (auc None when the slice holds one class or no row)."""
    labels = np.asarray(labels, dtype=np.int64)
    return {family: {name: {"rows": int(m.sum()), "positives": int(labels[m].sum()),
                            "auc": auc_or_none(labels[m], probs[m])}
                     for name, m in buckets.items()}
            for family, buckets in masks.items()}


def format_slices(slices: dict, title: str = "") -> str:
    """One line per family: `bucket AUC (rows)` side by side."""
    lines = [title] if title else []
    for family, buckets in slices.items():
        cells = [f"{name}: {auc_text(s['auc'])} ({s['rows']:,})" for name, s in buckets.items()]
        lines.append(f"  {family:17} " + " | ".join(cells))
    return "\n".join(lines)


def auc_text(auc: float | None) -> str:
    return "-" if auc is None else f"{auc:.4f}"
