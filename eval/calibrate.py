"""Choosing the match threshold tau from labelled phrase pairs.

The file is `phrase_a<TAB>phrase_b<TAB>label` (1 = same key phrase, 0 = different), with
blank lines, `#` comments and an optional `phrase_a phrase_b label` header allowed. tau is
the grid value whose pair classification (similarity >= tau means "same") has the best F1,
then accuracy; among equally good values the middle one is taken, away from both edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.embedder import PhraseEncoder
from eval.f1_report import DEFAULT_TAU, PhraseTable
from ground.normalize import normalize_phrase
from ground.errors import RecordError
from ground.files import read_lines

TAU_GRID = tuple(round(0.30 + 0.01 * k, 2) for k in range(66))  # 0.30 .. 0.95
_HEADER = ("phrase_a", "phrase_b", "label")
_SHOWN_ERRORS = 10


def read_pairs(path: str | Path) -> list[tuple[str, str, int]]:
    """Labelled pairs from a TSV file; a bad line raises RecordError with path:line."""
    pairs = []
    for lineno, line in read_lines(path):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if tuple(f.strip().casefold() for f in fields) == _HEADER:
            continue
        pairs.append(_parse_pair(fields, f"{path}:{lineno}"))
    if not pairs:
        raise RecordError(f"{path}: no phrase pairs")
    return pairs


def _parse_pair(fields: list[str], where: str) -> tuple[str, str, int]:
    if len(fields) != 3:
        raise RecordError(f"{where}: expected 3 tab-separated fields (phrase_a, phrase_b, label), got {len(fields)}")
    a, b, label = (f.strip() for f in fields)
    if not a or not b:
        raise RecordError(f"{where}: empty phrase")
    if label not in ("0", "1"):
        raise RecordError(f"{where}: label must be 0 or 1, got {label!r}")
    return a, b, int(label)


def pair_similarities(pairs: list[tuple[str, str, int]], encoder: PhraseEncoder) -> np.ndarray:
    """Similarity of each pair under the F1 rules (equal forms 1, differing numbers 0, else cosine)."""
    norm = [(normalize_phrase(a), normalize_phrase(b)) for a, b, _ in pairs]
    table = PhraseTable((p for ab in norm for p in ab if p), encoder)
    return np.array([table.sim([a], [b])[0, 0] if a and b else 0.0 for a, b in norm], dtype=np.float64)


def classification_scores(sims: np.ndarray, labels: np.ndarray, tau: float) -> dict[str, float]:
    """Precision, recall, F1 and accuracy of "similarity >= tau means same"."""
    pred = sims >= tau
    tp = int(np.sum(pred & (labels == 1)))
    fp = int(np.sum(pred & (labels == 0)))
    fn = int(np.sum(~pred & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": float(np.mean(pred == (labels == 1)))}


def pick_tau(sims: np.ndarray, labels: np.ndarray, grid: tuple[float, ...] = TAU_GRID) -> dict:
    """The grid tau with the best (F1, accuracy), the middle one of a tie, with its scores."""
    if set(np.unique(labels)) != {0, 1}:
        raise RecordError("calibration needs pairs labelled 1 and pairs labelled 0")
    table = [(t, classification_scores(sims, labels, t)) for t in grid]
    best = max((s["f1"], s["accuracy"]) for _, s in table)
    tied = [t for t, s in table if (s["f1"], s["accuracy"]) == best]
    tau = tied[len(tied) // 2]
    return {"tau": tau, "tied_range": [tied[0], tied[-1]], **classification_scores(sims, labels, tau)}


def calibrate_tau(pairs_tsv: str | Path, encoder: PhraseEncoder) -> dict:
    """Read labelled pairs, score them, pick tau; report it with the errors it still makes."""
    pairs = read_pairs(pairs_tsv)
    sims = pair_similarities(pairs, encoder)
    labels = np.array([label for _, _, label in pairs])
    chosen = pick_tau(sims, labels)
    wrong = [
        (a, b, label, round(float(s), 4)) for (a, b, label), s in zip(pairs, sims) if (s >= chosen["tau"]) != label
    ]
    return {
        "file": str(pairs_tsv),
        "n_pairs": len(pairs),
        "n_positive": int(labels.sum()),
        **chosen,
        f"at_default_tau_{DEFAULT_TAU:.2f}": classification_scores(sims, labels, DEFAULT_TAU),
        "false_positives": [{"a": a, "b": b, "similarity": s} for a, b, y, s in wrong if y == 0][:_SHOWN_ERRORS],
        "false_negatives": [{"a": a, "b": b, "similarity": s} for a, b, y, s in wrong if y == 1][:_SHOWN_ERRORS],
    }
