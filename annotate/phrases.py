"""Phrase rows of one annotation: typing, entry clean-up, near-duplicates, suggestions.

An annotation document is `{"rows": [row, ...], "flag"?: reason}`; a row is
`{"phrase", "type": "explicit"|"implicit", "decision", "origin", "hint"}` where
`decision` is pending/accept/reject/edit/add, `origin` the teacher's phrase the
row started from (None for an added phrase) and `hint` how its type was found.
`flag`, when present, marks the item for review with the annotator's reason (maybe ""); it stays
through edits and submits until the annotator clears it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from ground.normalize import normalize_phrase
from ground import records as R
from kgen.grounding import is_grounded

PHRASE, TYPE, DECISION, ORIGIN, HINT, ROWS, FLAG = "phrase", "type", "decision", "origin", "hint", "rows", "flag"
TYPES: tuple[str, ...] = (R.EXPLICIT, R.IMPLICIT)
DECISIONS: tuple[str, ...] = ("pending", "accept", "reject", "edit", "add")
KEPT: frozenset[str] = frozenset({"accept", "edit", "add"})
MAX_PHRASE_CHARS = 120
MAX_REASON_CHARS = 300
GROUNDED = "grounded"  # kgen's mark on each explicit entry: is its value found in the input?
NEAR_RATIO = 0.85  # difflib ratio of normalised forms above which two phrases look like one


def _values(aspects: Iterable[dict] | None) -> list[str]:
    return [str(a.get(R.VALUE, "")) for a in aspects or [] if isinstance(a, dict)]


def _contains_words(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` on word boundaries (both already normalised)."""
    return bool(needle) and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack) is not None


def phrase_type(phrase: str, record: dict) -> tuple[str, str]:
    """(type, hint) of a teacher phrase, by the first rule that holds.

    1. equal (normalised) to an explicit aspect value -> explicit;
    2. equal to an implicit aspect value -> implicit;
    3. found in the input text or inside an explicit value -> explicit;
    4. found inside an implicit value -> implicit;
    5. otherwise implicit, marked as a guess (not grounded in the text).
    """
    norm = normalize_phrase(phrase)
    explicit = [normalize_phrase(v) for v in _values(record.get(R.EXPLICIT))]
    implicit = [normalize_phrase(v) for v in _values(record.get(R.IMPLICIT))]
    if norm in explicit:
        return R.EXPLICIT, "explicit value"
    if norm in implicit:
        return R.IMPLICIT, "implicit value"
    if _contains_words(normalize_phrase(str(record.get(R.INPUT, ""))), norm) or any(
        _contains_words(v, norm) for v in explicit
    ):
        return R.EXPLICIT, "in the input"
    if any(_contains_words(v, norm) for v in implicit):
        return R.IMPLICIT, "inside an implicit value"
    return R.IMPLICIT, "guess"


def grounded(phrase: str, record: dict) -> bool:
    """Whether a phrase is found in the record's input: kgen's mark on the explicit entry of that value, else computed."""
    norm = normalize_phrase(phrase)
    for entry in record.get(R.EXPLICIT) or []:
        if isinstance(entry, dict) and isinstance(entry.get(GROUNDED), bool) \
                and normalize_phrase(str(entry.get(R.VALUE, ""))) == norm:
            return entry[GROUNDED]
    return is_grounded(phrase, str(record.get(R.INPUT, "")))


def initial_doc(record: dict) -> dict:
    """The document an annotator starts from: the teacher's key phrases, all pending."""
    rows = []
    for phrase in record.get(R.KEY_PHRASES) or []:
        kind, hint = phrase_type(phrase, record)
        rows.append({PHRASE: phrase, TYPE: kind, DECISION: "pending", ORIGIN: phrase, HINT: hint})
    return {ROWS: rows}


def tidy_phrase(text: str) -> str:
    """Clean a typed phrase: NFKC, one space between words, no quotes or stray punctuation at the ends."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text.strip(" \"'`.,;:!?·").strip()


def flag_of(doc: dict) -> str | None:
    """The reason an item is flagged for review ("" when none was given), or None when it is not flagged."""
    flag = doc.get(FLAG)
    return flag if isinstance(flag, str) else None


def check_doc(doc: object) -> str | None:
    """What is wrong with an annotation document sent by a client, or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get(ROWS), list):
        return "doc must be an object with a 'rows' list"
    if doc.get(FLAG) is not None and (not isinstance(doc[FLAG], str) or len(doc[FLAG]) > MAX_REASON_CHARS):
        return f"'flag' must be a reason of at most {MAX_REASON_CHARS} characters (\"\" for none) or null"
    for i, row in enumerate(doc[ROWS]):
        if not isinstance(row, dict) or not isinstance(row.get(PHRASE), str) or not row[PHRASE].strip():
            return f"row {i}: 'phrase' must be a non-empty string"
        if row.get(TYPE) not in TYPES:
            return f"row {i}: 'type' must be explicit or implicit, got {row.get(TYPE)!r}"
        if row.get(DECISION) not in DECISIONS:
            return f"row {i}: 'decision' must be one of {DECISIONS}, got {row.get(DECISION)!r}"
        if len(row[PHRASE]) > MAX_PHRASE_CHARS:
            return f"row {i}: phrase longer than {MAX_PHRASE_CHARS} characters"
    return None


def kept_rows(doc: dict) -> list[dict]:
    """Rows that make the final set (accepted, edited, added)."""
    return [r for r in doc.get(ROWS, []) if r.get(DECISION) in KEPT]


def final_phrases(doc: dict, kind: str | None = None) -> list[str]:
    """The final phrases of a document, optionally of one type, duplicates (normalised) kept once."""
    seen: set[str] = set()
    out = []
    for row in kept_rows(doc):
        norm = normalize_phrase(row[PHRASE])
        if norm and norm not in seen and (kind is None or row[TYPE] == kind):
            seen.add(norm)
            out.append(row[PHRASE])
    return out


def pending_count(doc: dict) -> int:
    """How many rows still wait for a decision."""
    return sum(1 for r in doc.get(ROWS, []) if r.get(DECISION) == "pending")


def _token_subset(a: str, b: str) -> bool:
    ta, tb = set(a.split()), set(b.split())
    return bool(ta) and bool(tb) and (ta <= tb or tb <= ta)


def near_duplicate(phrase: str, others: Iterable[str]) -> tuple[str, str] | None:
    """("same" | "near", other) for the closest existing phrase that duplicates `phrase`, else None."""
    norm = normalize_phrase(phrase)
    best: tuple[float, str] | None = None
    for other in others:
        other_norm = normalize_phrase(other)
        if other_norm == norm:
            return "same", other
        ratio = difflib.SequenceMatcher(None, norm, other_norm).ratio()
        if ratio >= NEAR_RATIO or _token_subset(norm, other_norm):
            if best is None or ratio > best[0]:
                best = (ratio, other)
    return ("near", best[1]) if best else None


def suggestions(docs: Iterable[dict], limit: int = 300) -> list[str]:
    """Phrases already used in final sets, most frequent first (one spelling per normalised form)."""
    counts: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for doc in docs:
        for phrase in final_phrases(doc):
            norm = normalize_phrase(phrase)
            counts[norm] += 1
            spelling.setdefault(norm, phrase)
    return [spelling[n] for n, _ in counts.most_common(limit)]


def highlight_spans(text: str, phrases: Iterable[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of `text` where a phrase occurs, longest phrases first.

    Matching is case-insensitive and lets spaces, hyphens and slashes vary (also
    between a number and its unit), so "Coca Cola" marks "Coca-Cola" and "200g" marks "200 g".
    """
    spans: list[tuple[int, int]] = []
    for phrase in sorted({p for p in phrases if p.strip()}, key=len, reverse=True):
        tokens = re.findall(r"[^\W\d_]+|\d+(?:[.,]\d+)?|[^\w\s]", phrase)  # "200g" -> 200, g
        if not tokens:
            continue
        pattern = r"[\s\-_/]*".join(re.escape(t) for t in tokens)
        for m in re.finditer(rf"(?<!\w){pattern}(?!\w)", text, flags=re.IGNORECASE):
            if m.end() > m.start() and all(m.end() <= s or m.start() >= e for s, e in spans):
                spans.append((m.start(), m.end()))
    return sorted(spans)
