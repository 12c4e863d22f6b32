"""From stored annotations to gold records: unanimity, review state, export rows.

An item's gold is the reviewer's choice when there is one; otherwise, once
every assigned annotator has submitted and their final sets agree (same
normalised phrases with the same types), that set is accepted automatically,
unless an annotator flagged the item: a flagged item always goes to review.
Anything else waits (for annotators or for review) and is not exported.
"""

from __future__ import annotations

from dataclasses import dataclass

from annotate.phrases import DECISION, ORIGIN, PHRASE, ROWS, TYPE, final_phrases, flag_of, kept_rows
from annotate.store import Annotation, Review, Snapshot, item_key
from ground.normalize import normalize_phrase
from ground import records as R

# Gold fields beyond the shared schema, spelled once here.
ANNOTATORS = "annotators"
REVIEWER = "reviewer"
REASON = "reason"
GOLD_SOURCE = "gold_source"
DECISIONS = "decisions"
CREATED_AT = "created_at"
SUBMITTED_AT = "submitted_at"
REVIEWED_AT = "reviewed_at"
TEACHER_MODEL = "teacher_model"

REVIEW_STATES: tuple[str, ...] = ("waiting", "unanimous", "needs review", "reviewed")


def typed_set(doc: dict) -> frozenset[tuple[str, str]]:
    """The final set of a document as (normalised phrase, type) pairs."""
    return frozenset((normalize_phrase(r[PHRASE]), r[TYPE]) for r in kept_rows(doc) if normalize_phrase(r[PHRASE]))


@dataclass(frozen=True)
class ItemState:
    """Where one item stands on its way to gold."""

    key: str
    state: str  # one of REVIEW_STATES
    assigned: list[str]
    submitted: list[Annotation]
    review: Review | None


def item_state(key: str, snapshot: Snapshot) -> ItemState:
    """The review state of one item."""
    assigned = snapshot.assignments.get(key, [])
    saved = {a.annotator: a for a in snapshot.annotations.get(key, [])}
    submitted = [saved[a] for a in assigned if a in saved and saved[a].status == "submitted"]
    flagged = any(flag_of(saved[a].doc) is not None for a in assigned if a in saved)  # kept through submit
    review = snapshot.reviews.get(key)
    if review is not None:
        state = "reviewed"
    elif flagged:
        state = "needs review"
    elif not assigned or len(submitted) < len(assigned):
        state = "waiting"
    elif len({typed_set(a.doc) for a in submitted}) == 1:
        state = "unanimous"
    else:
        state = "needs review"
    return ItemState(key, state, assigned, submitted, review)


def _decisions(annotations: list[Annotation]) -> list[dict]:
    rows = []
    for a in annotations:
        for row in a.doc.get(ROWS, []):
            rows.append({R.ANNOTATOR: a.annotator, PHRASE: row[PHRASE], TYPE: row[TYPE],
                         DECISION: row[DECISION], ORIGIN: row.get(ORIGIN)})
    return rows


def gold_record(record: dict, state: ItemState) -> dict | None:
    """The gold record of an item in state unanimous or reviewed; None otherwise."""
    if state.state not in ("unanimous", "reviewed"):
        return None
    doc = state.review.doc if state.review else state.submitted[0].doc
    names = [a.annotator for a in state.submitted]
    times = [a.submitted_at for a in state.submitted if a.submitted_at]
    created = [a.created_at for a in state.submitted]
    return {
        R.ID: record[R.ID],
        R.LEVEL: record[R.LEVEL],
        R.INPUT: record.get(R.INPUT, ""),
        R.KEY_PHRASES: final_phrases(doc),
        R.EXPLICIT: final_phrases(doc, R.EXPLICIT),
        R.IMPLICIT: final_phrases(doc, R.IMPLICIT),
        R.ANNOTATOR: ", ".join(names),
        ANNOTATORS: names,
        GOLD_SOURCE: "review" if state.review else ("single" if len(names) == 1 else "unanimous"),
        REVIEWER: state.review.reviewer if state.review else None,
        REASON: state.review.reason if state.review else None,
        DECISIONS: _decisions(state.submitted),
        CREATED_AT: min(created) if created else (state.review.created_at if state.review else None),
        SUBMITTED_AT: max(times) if times else None,
        REVIEWED_AT: state.review.updated_at if state.review else None,
        TEACHER_MODEL: record.get(R.MODEL),
    }


def empty_gold(rows: list[dict]) -> list[str]:
    """The keys (`level:id`) of gold records with no key phrases: reported apart, as they may be an accident."""
    return [item_key(g) for g in rows if not g[R.KEY_PHRASES]]


def gold_records(snapshot: Snapshot) -> tuple[list[dict], dict[str, int]]:
    """Gold records of every finished item (input order) and a count of items per review state."""
    counts = dict.fromkeys(REVIEW_STATES, 0)
    rows = []
    for record in snapshot.items:
        state = item_state(item_key(record), snapshot)
        counts[state.state] += 1
        gold = gold_record(record, state)
        if gold is not None:
            rows.append(gold)
    return rows, counts
