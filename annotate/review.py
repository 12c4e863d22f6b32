"""The reviewer's side: which items need a decision, the candidate phrases, saving the gold.

A reviewer sees every annotator's version of an item (and any flag's reason), starts the gold from
one annotator's version or from the union of all, edits it as `type: phrase` lines (a phrase's
spelling, its type, phrases added or removed) and gives a reason.
Unanimous items need no review: `gold.item_state` accepts them automatically.
"""

from __future__ import annotations

from annotate.gold import ItemState, item_state
from annotate.phrases import DECISION, MAX_PHRASE_CHARS, ORIGIN, PHRASE, ROWS, TYPE, TYPES, kept_rows, tidy_phrase
from annotate.store import SaveResult, Snapshot, Store
from ground.normalize import normalize_phrase

MIN_REASON_CHARS = 3
UNION = "union of all"


def review_list(snapshot: Snapshot) -> list[ItemState]:
    """Every annotated item's state, the ones needing review first, then in input order."""
    order = {"needs review": 0, "waiting": 1, "unanimous": 2, "reviewed": 3}
    states = [item_state(key, snapshot) for key in snapshot.assignments]
    position = {f"{r['level']}:{r['id']}": i for i, r in enumerate(snapshot.items)}
    return sorted(states, key=lambda s: (order[s.state], position.get(s.key, 0)))


def candidates(state: ItemState) -> list[tuple[str, str, list[str]]]:
    """(phrase, type, who kept it) of each distinct kept (phrase, type) across the submitted annotations."""
    seen: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for annotation in state.submitted:
        for row in kept_rows(annotation.doc):
            spelling, names = seen.setdefault((normalize_phrase(row[PHRASE]), row[TYPE]), (row[PHRASE], []))
            names.append(annotation.annotator)
    return [(spelling, kind, names) for (_, kind), (spelling, names) in seen.items()]


def chosen_by(state: ItemState, source: str) -> list[tuple[str, str]]:
    """(phrase, type) of one annotator's final set, or of every annotator's for UNION."""
    if source == UNION:
        return [(phrase, kind) for phrase, kind, _ in candidates(state)]
    for annotation in state.submitted:
        if annotation.annotator == source:
            return [(r[PHRASE], r[TYPE]) for r in kept_rows(annotation.doc)]
    return []


def initial_choice(state: ItemState) -> list[tuple[str, str]]:
    """What the reviewer starts from: the saved review, the set of a unanimous item, else nothing."""
    if state.review:
        return [(r[PHRASE], r[TYPE]) for r in state.review.doc[ROWS]]
    return chosen_by(state, UNION) if state.state == "unanimous" else []


def gold_text(pairs: list[tuple[str, str]]) -> str:
    """The reviewer's editable gold: one `type: phrase` a line."""
    return "".join(f"{kind}: {phrase}\n" for phrase, kind in pairs)


def parse_gold_text(text: str) -> list[tuple[str, str]]:
    """(phrase, type) pairs from `type: phrase` lines (`e:` / `i:` for short); a bad line is a ValueError."""
    short = {kind[0]: kind for kind in TYPES}
    pairs: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        kind, sep, phrase = line.partition(":")
        kind, phrase = short.get(kind.strip().lower(), kind.strip().lower()), tidy_phrase(phrase)
        if not sep or kind not in TYPES:
            raise ValueError(f"line {lineno}: start it with explicit: or implicit: (e: / i:), got {line.strip()!r}")
        if not phrase or len(phrase) > MAX_PHRASE_CHARS:
            raise ValueError(f"line {lineno}: a phrase of 1 to {MAX_PHRASE_CHARS} characters is needed")
        norm = normalize_phrase(phrase)
        if norm in seen:
            raise ValueError(f"line {lineno}: {phrase!r} repeats line {seen[norm]}")
        seen[norm] = lineno
        pairs.append((phrase, kind))
    return pairs


def gold_doc(pairs: list[tuple[str, str]]) -> dict:
    """A document of accepted rows from (phrase, type) pairs."""
    return {ROWS: [{PHRASE: phrase, TYPE: kind, DECISION: "accept", ORIGIN: phrase} for phrase, kind in pairs]}


def save_gold(store: Store, reviewer: str, key: str, text: str, reason: str, source: str,
              expected_version: int) -> SaveResult:
    """Store the reviewer's gold (`type: phrase` lines) for an item; a reason is required."""
    if len(reason.strip()) < MIN_REASON_CHARS:
        return SaveResult(False, expected_version, False, "give a reason for the choice")
    try:
        pairs = parse_gold_text(text)
    except ValueError as exc:
        return SaveResult(False, expected_version, False, f"gold phrases, {exc}")
    return store.save_review(key, reviewer, gold_doc(pairs), reason.strip(), source, expected_version)
