"""Edits to an annotation document: pure functions from (doc, command) to a new doc.

A command is a dict `{"op", "row"?, "text"?, "type"?}` as the browser or an API
client sends it. `apply_edit` never mutates its input; it returns an `Outcome`
whose `doc` is None when the command changed nothing (with `message` saying why).
An added phrase without a type is explicit when it is found in the input text, else implicit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from annotate.phrases import (
    DECISION,
    HINT,
    MAX_PHRASE_CHARS,
    ORIGIN,
    PHRASE,
    ROWS,
    TYPE,
    TYPES,
    near_duplicate,
    tidy_phrase,
)
from ground import records as R
from kgen.grounding import is_grounded

EDIT_OPS: tuple[str, ...] = ("accept", "reject", "edit", "add", "toggle", "accept_all", "reset")
OP, ROW, TEXT = "op", "row", "text"


@dataclass(frozen=True)
class Outcome:
    """The new document (None when nothing changed), what to tell the annotator, and how loudly."""

    doc: dict | None
    message: str
    level: str = "info"  # info | warn | error
    cursor: int | None = None  # where the row cursor must go (the new row after an add); else the page keeps its own


def _row_index(doc: dict, command: dict) -> int | None:
    row = command.get(ROW)
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < len(doc[ROWS]):
        return None
    return row


def _others(doc: dict, skip: int | None = None) -> list[str]:
    """Phrases of the rows still in play (not rejected), except row `skip`."""
    return [r[PHRASE] for i, r in enumerate(doc[ROWS]) if i != skip and r[DECISION] != "reject"]


def _checked_text(command: dict) -> tuple[str, str | None]:
    """(tidied phrase, problem) from a command's text."""
    text = tidy_phrase(str(command.get(TEXT) or ""))
    if not text:
        return text, "type a phrase first"
    if len(text) > MAX_PHRASE_CHARS:
        return text, f"a key phrase is at most {MAX_PHRASE_CHARS} characters"
    return text, None


def _type_of(command: dict, default: str) -> str:
    kind = command.get(TYPE)
    return kind if kind in TYPES else default


def _decide(doc: dict, i: int, decision: str) -> Outcome:
    row = doc[ROWS][i]
    if decision == "accept":  # keeping a row records how it differs from the teacher's phrase
        decision = "add" if row[ORIGIN] is None else ("edit" if row[PHRASE] != row[ORIGIN] else "accept")
    verb = {"accept": "accepted", "edit": "kept", "add": "kept", "reject": "rejected", "pending": "reset"}[decision]
    if row[DECISION] == decision:
        return Outcome(None, f"'{row[PHRASE]}' is already {verb}")
    new = copy.deepcopy(doc)
    new[ROWS][i][DECISION] = decision
    return Outcome(new, f"{verb} '{row[PHRASE]}'")


def _duplicate_outcome(new: dict, text: str, dup: tuple[str, str] | None, verb: str, cursor: int | None) -> Outcome:
    if dup and dup[0] == "near":
        return Outcome(new, f"{verb} '{text}' — close to '{dup[1]}'; press u to undo if it is a duplicate", "warn", cursor)
    if "," in text:
        return Outcome(new, f"{verb} '{text}' — it holds a comma; two phrases?", "warn", cursor)
    return Outcome(new, f"{verb} '{text}'", cursor=cursor)


def _edit(doc: dict, i: int, command: dict) -> Outcome:
    text, problem = _checked_text(command)
    if problem:
        return Outcome(None, problem, "error")
    dup = near_duplicate(text, _others(doc, skip=i))
    if dup and dup[0] == "same":
        return Outcome(None, f"'{text}' is already in the list as '{dup[1]}'", "error")
    new = copy.deepcopy(doc)
    row = new[ROWS][i]
    row[TYPE] = _type_of(command, row[TYPE])
    changed = text != row[ORIGIN]
    row[PHRASE] = text
    row[DECISION] = "add" if row[ORIGIN] is None else ("edit" if changed else "accept")
    return _duplicate_outcome(new, text, dup, "edited to", None)


def _add(doc: dict, command: dict, source: str) -> Outcome:
    text, problem = _checked_text(command)
    if problem:
        return Outcome(None, problem, "error")
    dup = near_duplicate(text, _others(doc))
    if dup and dup[0] == "same":
        return Outcome(None, f"'{text}' is already in the list as '{dup[1]}'", "error")
    new = copy.deepcopy(doc)
    kind = _type_of(command, R.EXPLICIT if is_grounded(text, source) else R.IMPLICIT)
    new[ROWS].append({PHRASE: text, TYPE: kind, DECISION: "add", ORIGIN: None, HINT: "added"})
    return _duplicate_outcome(new, text, dup, "added", len(new[ROWS]) - 1)


def _toggle(doc: dict, i: int) -> Outcome:
    new = copy.deepcopy(doc)
    row = new[ROWS][i]
    row[TYPE] = TYPES[1 - TYPES.index(row[TYPE])]
    row[HINT] = "set by annotator"
    return Outcome(new, f"'{row[PHRASE]}' is now {row[TYPE]}")


def _accept_all(doc: dict) -> Outcome:
    pending = [i for i, r in enumerate(doc[ROWS]) if r[DECISION] == "pending"]
    if not pending:
        return Outcome(None, "no pending phrases")
    new = copy.deepcopy(doc)
    for i in pending:
        new[ROWS][i][DECISION] = "accept"
    return Outcome(new, f"accepted {len(pending)} pending phrase(s)")


def apply_edit(doc: dict, command: dict, source: str = "") -> Outcome:
    """Apply one editing command to a document; `source` is the item's input text (to type an added phrase)."""
    op = command.get(OP)
    if op == "add":
        return _add(doc, command, source)
    if op == "accept_all":
        return _accept_all(doc)
    if op not in EDIT_OPS:
        return Outcome(None, f"unknown command {op!r}", "error")
    i = _row_index(doc, command)
    if i is None:
        return Outcome(None, "no phrase selected", "error")
    if op == "edit":
        return _edit(doc, i, command)
    if op == "toggle":
        return _toggle(doc, i)
    return _decide(doc, i, {"accept": "accept", "reject": "reject", "reset": "pending"}[op])
