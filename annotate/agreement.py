"""Inter-annotator agreement on items with two or more submitted annotations.

- alpha on decisions: each teacher phrase is a unit, each annotator's value is
  kept (accepted or edited) or rejected; nominal Krippendorff's alpha.
- alpha with MASI distance: each item is a unit, each annotator's value is
  the set of normalised final phrases (Passonneau 2006's MASI).
- pairwise F1: for each pair of annotators, phrases match when their
  `ground.normalize.normalize_phrase` forms are equal (exact normalised match,
  not the embedding match of `distill eval-f1`), micro-averaged over shared
  items; overall and per type (explicit, implicit).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from annotate.phrases import DECISION, ORIGIN, ROWS, final_phrases
from annotate.store import Annotation, Snapshot
from ground.normalize import unique_normalized
from ground import records as R

KEPT_VALUE, REJECTED_VALUE = 1.0, 0.0


def masi_distance(a: frozenset, b: frozenset) -> float:
    """1 - Jaccard * monotonicity (1 equal, 2/3 subset, 1/3 overlap, 0 disjoint); two empty sets are equal."""
    if a == b:
        return 0.0
    union = len(a | b)
    jaccard = len(a & b) / union
    monotonicity = 0.67 if (a <= b or b <= a) else (0.33 if a & b else 0.0)
    return 1.0 - jaccard * monotonicity


def _submitted(snapshot: Snapshot) -> dict[str, list[Annotation]]:
    """Items with at least two submitted annotations."""
    out = {}
    for key, saved in snapshot.annotations.items():
        done = [a for a in saved if a.status == "submitted"]
        if len(done) >= 2:
            out[key] = done
    return out


def _alpha(matrix: np.ndarray, metric: object = "nominal") -> float | None:
    """Krippendorff's alpha of an (annotators, units) matrix with NaN for missing; None when undefined."""
    import krippendorff

    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    if pairable.sum() == 0 or len(np.unique(matrix[:, pairable][~np.isnan(matrix[:, pairable])])) < 2:
        return None  # no pairable values, or a single value everywhere: alpha is 0/0
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=metric))


def decision_matrix(items: dict[str, list[Annotation]], annotators: list[str]) -> np.ndarray:
    """(annotators, teacher phrases) with 1 kept, 0 rejected, NaN not annotated or still pending."""
    columns = []
    for _, done in sorted(items.items()):
        by_name = {a.annotator: a for a in done}
        origins = list(dict.fromkeys(r[ORIGIN] for a in done for r in a.doc[ROWS] if r.get(ORIGIN) is not None))
        for origin in origins:
            column = []
            for name in annotators:
                rows = [r for r in by_name[name].doc[ROWS] if r.get(ORIGIN) == origin] if name in by_name else []
                decision = rows[0][DECISION] if rows else "pending"
                column.append({"accept": KEPT_VALUE, "edit": KEPT_VALUE, "reject": REJECTED_VALUE}.get(decision, np.nan))
            columns.append(column)
    return np.array(columns, dtype=float).T if columns else np.zeros((len(annotators), 0))


def masi_alpha(items: dict[str, list[Annotation]], annotators: list[str]) -> float | None:
    """Krippendorff's alpha over items, each annotator's value its normalised final set, MASI distance."""
    sets: list[frozenset] = []
    matrix = np.full((len(annotators), len(items)), np.nan)
    for j, (_, done) in enumerate(sorted(items.items())):
        for a in done:
            value = frozenset(unique_normalized(final_phrases(a.doc)))
            if value not in sets:
                sets.append(value)
            matrix[annotators.index(a.annotator), j] = sets.index(value)
    distances = np.array([[masi_distance(x, y) for y in sets] for x in sets])

    def metric(v1, v2, i1, i2, n_v, dtype=np.float64):  # the package passes value-domain indices i1, i2
        return distances[v1.astype(int), v2.astype(int)].astype(dtype)

    return _alpha(matrix, metric)


def _pair_counts(a: dict, b: dict, kind: str | None) -> tuple[int, int]:
    """(2 * matches, |A| + |B|) of two documents' normalised final sets."""
    sa, sb = set(unique_normalized(final_phrases(a, kind))), set(unique_normalized(final_phrases(b, kind)))
    return 2 * len(sa & sb), len(sa) + len(sb)


def _f1(num: int, den: int) -> float | None:
    return num / den if den else None


def pairwise_f1(items: dict[str, list[Annotation]]) -> dict:
    """Micro F1 of every annotator pair over shared items, and the mean over pairs; overall and by type."""
    counts: dict[tuple[str, str], dict[str, list[int]]] = {}
    for done in items.values():
        for x, y in combinations(sorted(done, key=lambda a: a.annotator), 2):
            pair = counts.setdefault((x.annotator, y.annotator), {k: [0, 0, 0] for k in ("overall", R.EXPLICIT, R.IMPLICIT)})
            for kind, slot in ((None, "overall"), (R.EXPLICIT, R.EXPLICIT), (R.IMPLICIT, R.IMPLICIT)):
                num, den = _pair_counts(x.doc, y.doc, kind)
                pair[slot][0] += num
                pair[slot][1] += den
            pair["overall"][2] += 1
    pairs = [{"a": a, "b": b, "items": c["overall"][2], **{k: _f1(v[0], v[1]) for k, v in c.items()}}
             for (a, b), c in sorted(counts.items())]
    mean = {}
    for slot in ("overall", R.EXPLICIT, R.IMPLICIT):
        values = [p[slot] for p in pairs if p[slot] is not None]
        mean[slot] = float(np.mean(values)) if values else None
    return {**mean, "pairs": pairs}


def agreement_report(snapshot: Snapshot) -> dict:
    """All agreement figures over the items annotated (and submitted) by two or more people."""
    items = _submitted(snapshot)
    annotators = sorted({a.annotator for done in items.values() for a in done})
    decisions = decision_matrix(items, annotators)
    return {
        "items": len(items),
        "annotators": annotators,
        "decision_units": int(((~np.isnan(decisions)).sum(axis=0) >= 2).sum()) if decisions.size else 0,
        "decision_alpha": _alpha(decisions) if decisions.size else None,
        "masi_alpha": masi_alpha(items, annotators) if items else None,
        "pairwise_f1": pairwise_f1(items),
        "matching": "exact match after ground.normalize.normalize_phrase",
    }
