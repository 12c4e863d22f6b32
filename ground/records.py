"""The one schema module: record field names, their validation, and reading records from JSONL.

Every record is a plain dict; its field names are spelled here once and
imported everywhere else. Readers stop at the first bad line with
`path:line: what is wrong`; writing is `ground.files`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from ground.errors import RecordError
from ground.files import iter_jsonl

# --- field names -----------------------------------------------------------
ID = "id"
LEVEL = "level"
INPUT = "input"
EXPLICIT = "explicit"
IMPLICIT = "implicit"
KEY_PHRASES = "key_phrases"
RAW = "raw"
MODEL = "model"
TEMPLATE = "template"
REFERENCE_ID = "reference_id"
SAMPLING_WEIGHT = "sampling_weight"
INCLUSION_PROB = "inclusion_prob"
STATUS = "status"
ERROR = "error"
USAGE = "usage"
REQUEST_KEY = "request_key"
ASPECT = "aspect"
VALUE = "value"
RATIONALE = "rationale"
GROUNDED = "grounded"  # on an explicit entry: its value is found in the input (kgen.grounding)
LEAKED = "leaked"  # on a knowledge record: phrases of the reference example that are not in the input
LEAKED_DROPPED = "leaked_dropped"  # on a knowledge record: the leaked key phrases taken out of its key phrases
REFERENCE_TEXT = "reference_text"  # on a generation task only: the chosen example's input and answer

ITEM_ID = "item_id"
NAME = "name"
ORIGINAL_NAME = "original_name"
CATEGORY = "category"
ATTRIBUTES = "attributes"
STATS = "stats"
EXPOSURES = "exposures"
CLICKS = "clicks"
USER_ID = "user_id"
HISTORY = "history"
PROFILE = "profile"
HISTORY_AS_OF = "history_as_of"  # on a user record: the time its history was taken (ground.snapshots)
LABEL = "label"
TS = "ts"
ANNOTATOR = "annotator"
GUIDELINE = "guideline"
STRATUM = "stratum"
INPUT_TRUNCATED = "input_truncated"  # true when a name was cut to fit the model's context (kgen.inputs)

Level = Literal["item", "user"]
Status = Literal["ok", "parse_error", "truncated", "api_error"]
Kind = Literal["item", "user", "interaction", "knowledge", "gold"]
LEVELS: tuple[str, ...] = ("item", "user")
STATUSES: tuple[str, ...] = ("ok", "parse_error", "truncated", "api_error")

# Required fields and their JSON types, per record kind.
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "item": {ITEM_ID: (str, int), NAME: str},
    "user": {USER_ID: (str, int), HISTORY: list},
    "interaction": {USER_ID: (str, int), ITEM_ID: (str, int), LABEL: int},
    "knowledge": {ID: (str, int), LEVEL: str, INPUT: str, KEY_PHRASES: list, RAW: str, STATUS: str},
    "gold": {ID: (str, int), LEVEL: str, KEY_PHRASES: list},
}
_OPTIONAL: dict[str, dict[str, type | tuple[type, ...]]] = {
    "item": {CATEGORY: str, ATTRIBUTES: dict, STATS: dict},
    "user": {PROFILE: dict, HISTORY_AS_OF: int},
    "interaction": {},
    "knowledge": {EXPLICIT: list, IMPLICIT: list, LEAKED: list},
    "gold": {EXPLICIT: list, IMPLICIT: list, INPUT: str},
}


def _type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    names = {str: "string", int: "integer", list: "list", dict: "object", float: "number"}
    return " or ".join(names.get(x, x.__name__) for x in types)


def check_record(row: object, kind: Kind) -> str | None:
    """Return what is wrong with `row` as a `kind` record, or None when it is valid."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for field, t in _REQUIRED[kind].items():
        if field not in row:
            return f"missing field '{field}' for a {kind} record"
        value = row[field]
        if isinstance(value, bool) or not isinstance(value, t):
            return f"field '{field}' must be a {_type_name(t)}, got {json.dumps(value)[:60]}"
    for field, t in _OPTIONAL[kind].items():
        if row.get(field) is not None and not isinstance(row[field], t):
            return f"field '{field}' must be a {_type_name(t)}, got {json.dumps(row[field])[:60]}"
    if LEVEL in _REQUIRED[kind] and row[LEVEL] not in LEVELS:
        return f"field 'level' must be one of {LEVELS}, got {row[LEVEL]!r}"
    if kind == "interaction" and row[LABEL] not in (0, 1):
        return f"field 'label' must be 0 or 1, got {row[LABEL]!r}"
    if kind in ("knowledge", "gold") and not all(isinstance(p, str) for p in row[KEY_PHRASES]):
        return "field 'key_phrases' must be a list of strings"
    return None


def read_numbered_records(path: str | Path, kind: Kind, unique: bool = False) -> list[tuple[int, dict]]:
    """(line number, record) for a whole JSONL file of `kind` records; the first bad line raises RecordError.

    With `unique`, a second record for one (level, id) (or one item/user id) is a bad line too.
    """
    rows, first_seen = [], {}
    for lineno, row in iter_jsonl(path):
        problem = check_record(row, kind)
        if problem:
            raise RecordError(f"{path}:{lineno}: {problem}")
        if unique:
            check_new_key(first_seen, (row.get(LEVEL), record_id(row)), path, lineno)
        rows.append((lineno, row))
    return rows


def read_records(path: str | Path, kind: Kind, unique: bool = False) -> list[dict]:
    """Read and validate a whole JSONL file of `kind` records; the first bad line raises RecordError."""
    return [row for _, row in read_numbered_records(path, kind, unique)]


def check_new_key(first_seen: dict[object, int], key: tuple, path: str | Path, lineno: int) -> None:
    """Note the line where `key` = (level, id) first occurs; a second occurrence raises RecordError."""
    if key in first_seen:
        raise RecordError(f"{path}:{lineno}: duplicate id {key[-1]!r} (first on line {first_seen[key]})")
    first_seen[key] = lineno


def require_rows(rows: list, path: str | Path) -> list:
    """The rows read from `path`; none at all raises RecordError (caught before any model loads)."""
    if not rows:
        raise RecordError(f"{path}: no records (the file is empty)")
    return rows


def record_id(row: dict) -> str:
    """The id of any record as a string (knowledge/gold `id`, item `item_id`, user `user_id`)."""
    for field in (ID, ITEM_ID, USER_ID):
        if field in row:
            return str(row[field])
    raise KeyError("record has no id field")

