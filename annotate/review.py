"""The reviewer's side: which items need a decision, the candidate phrases, saving the gold.

A reviewer sees every annotator's version of an item, picks the gold phrases
(from one annotator's version or from the union of all) and gives a reason.
Unanimous items need no review: `gold.item_state` accepts them automatically.
"""

from __future__ import annotations

import json

from annotate.gold import ItemState, item_state
from annotate.phrases import DECISION, ORIGIN, PHRASE, ROWS, TYPE, TYPES, kept_rows
from annotate.store import SaveResult, Snapshot, Store
from eval.normalize import normalize_phrase

MIN_REASON_CHARS = 3
UNION = "union of all"


def review_list(snapshot: Snapshot) -> list[ItemState]:
    """Every annotated item's state, the ones needing review first, then in input order."""
    order = {"needs review": 0, "waiting": 1, "unanimous": 2, "reviewed": 3}
    states = [item_state(key, snapshot) for key in snapshot.assignments]
    position = {f"{r['level']}:{r['id']}": i for i, r in enumerate(snapshot.items)}
    return sorted(states, key=lambda s: (order[s.state], position.get(s.key, 0)))


def candidates(state: ItemState) -> list[tuple[str, str]]:
    """(label, value) of each distinct kept (phrase, type) across annotators; label names who kept it."""
    seen: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for annotation in state.submitted:
        for row in kept_rows(annotation.doc):
            norm = (normalize_phrase(row[PHRASE]), row[TYPE])
            spelling, names = seen.setdefault(norm, (row[PHRASE], []))
            names.append(annotation.annotator)
    total = len(state.submitted)
    return [
        (f"{spelling} · {kind} · {len(names)}/{total} ({', '.join(names)})", json.dumps([spelling, kind]))
        for (_, kind), (spelling, names) in seen.items()
    ]


def chosen_by(state: ItemState, source: str) -> list[str]:
    """The candidate values of one annotator's final set, or of every annotator's for UNION."""
    if source == UNION:
        return [value for _, value in candidates(state)]
    for annotation in state.submitted:
        if annotation.annotator == source:
            return [json.dumps([r[PHRASE], r[TYPE]]) for r in kept_rows(annotation.doc)]
    return []


def initial_choice(state: ItemState) -> list[str]:
    """What the reviewer starts from: the saved review, all phrases of a unanimous item, else nothing."""
    if state.review:
        return [json.dumps([r[PHRASE], r[TYPE]]) for r in state.review.doc[ROWS]]
    return chosen_by(state, UNION) if state.state == "unanimous" else []


def gold_doc(values: list[str]) -> dict:
    """A document of accepted rows from chosen candidate values (JSON [phrase, type] pairs)."""
    rows = []
    for value in values:
        phrase, kind = json.loads(value)
        if kind not in TYPES:
            raise ValueError(f"bad phrase type {kind!r}")
        rows.append({PHRASE: phrase, TYPE: kind, DECISION: "accept", ORIGIN: phrase})
    return {ROWS: rows}


def save_gold(store: Store, reviewer: str, key: str, values: list[str], reason: str, source: str,
              expected_version: int) -> SaveResult:
    """Store the reviewer's gold for an item; a reason is required."""
    if len(reason.strip()) < MIN_REASON_CHARS:
        return SaveResult(False, expected_version, False, "give a reason for the choice")
    return store.save_review(key, reviewer, gold_doc(values), reason.strip(), source, expected_version)
