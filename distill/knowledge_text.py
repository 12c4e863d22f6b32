"""Knowledge records as the text a sentence encoder reads (KAR's route, issue 24): pure functions.

`distill embed --source knowledge` encodes, for each item (user), what its ok knowledge record says followed
by its input text; one without an ok record keeps its input text alone, and is counted. The knowledge comes
first so that an encoder's length limit cuts a long user history, never the knowledge (344 of 2,998 ML-1M
user inputs alone exceed MiniLM's 256 tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from ground import records as R
from ground.errors import ConfigError, RecordError

KnowledgeFormat = Literal["name+explicit+implicit", "phrases", "implicit"]
KNOWLEDGE_FORMATS: tuple[str, ...] = get_args(KnowledgeFormat)
DEFAULT_KNOWLEDGE_FORMAT: KnowledgeFormat = "name+explicit+implicit"
# How each text was made, counted per level in embed_config.json and on screen.
FROM_KNOWLEDGE, FALLBACK_NO_RECORD, FALLBACK_FAILED = "from_knowledge", "fallback_no_record", "fallback_failed"
RECORDS_UNUSED = "records_unused"  # the file's records of ids not embedded (a catalogue's knowledge, a CTR subset)


def check_knowledge_format(value: str) -> None:
    """Raise ConfigError unless `value` is one of KNOWLEDGE_FORMATS."""
    if value not in KNOWLEDGE_FORMATS:
        raise ConfigError(f"knowledge_format must be one of {', '.join(KNOWLEDGE_FORMATS)}, got {value!r}")


def _pairs(entries: list | None, leaked: set[str]) -> list[tuple[str, str]]:
    """(aspect, value) of each entry that has a value, stripped; a value copied from the one-shot example
    (the record's `leaked` list, kgen.grounding) is left out, as it is from the key phrases."""
    pairs = [(str(e.get(R.ASPECT) or "").strip(), str(e.get(R.VALUE) or "").strip())
             for e in entries or [] if isinstance(e, dict)]
    return [(aspect, value) for aspect, value in pairs if value and value not in leaked]


def _values(entries: list | None, leaked: set[str]) -> list[str]:
    return [value for _, value in _pairs(entries, leaked)]


def _aspect_values(entries: list | None, leaked: set[str]) -> list[str]:
    """'aspect: value' of each entry (the value alone where the aspect is empty)."""
    return [f"{aspect}: {value}" if aspect else value for aspect, value in _pairs(entries, leaked)]


def render_knowledge(input_text: str, record: dict, fmt: KnowledgeFormat = DEFAULT_KNOWLEDGE_FORMAT) -> str:
    """The record's knowledge on lines of its own (an empty part adds no line), then the input text.

    Values the teacher copied from its one-shot example (`leaked`) are left out: on ML-1M the embedded teacher
    copied 5,449 of its 8,093 implicit values from the example, which would make each vector say which
    example the item was shown with rather than what the teacher knows.

    >>> row = {"explicit": [{"aspect": "Type", "value": "Cakestand"}, {"aspect": "Size", "value": "3 Tier"}],
    ...        "implicit": [{"aspect": "Style", "value": "Vintage"}], "key_phrases": ["Cakestand", "Regency"]}
    >>> render_knowledge("REGENCY CAKESTAND 3 TIER", row)
    'Type: Cakestand; Size: 3 Tier\\nVintage\\nREGENCY CAKESTAND 3 TIER'
    >>> render_knowledge("REGENCY CAKESTAND 3 TIER", row, "phrases")
    'Cakestand, Regency\\nREGENCY CAKESTAND 3 TIER'
    >>> render_knowledge("REGENCY CAKESTAND 3 TIER", row, "implicit")
    'Vintage\\nREGENCY CAKESTAND 3 TIER'
    """
    check_knowledge_format(fmt)
    leaked = set(record.get(R.LEAKED) or [])
    if fmt == "phrases":
        parts = [", ".join(p.strip() for p in record.get(R.KEY_PHRASES) or [] if p.strip())]
    elif fmt == "implicit":
        parts = ["; ".join(_values(record.get(R.IMPLICIT), leaked))]
    else:
        parts = ["; ".join(_aspect_values(record.get(R.EXPLICIT), leaked)),
                 "; ".join(_values(record.get(R.IMPLICIT), leaked))]
    return "\n".join([*(p for p in parts if p), input_text])


def knowledge_texts(input_texts: dict[str, str], records: list[tuple[int, dict]], fmt: KnowledgeFormat,
                    level: str, path: str | Path) -> tuple[dict[str, str], dict[str, int]]:
    """(id -> text, counts): each id's knowledge text when it has an ok record, else its input text.

    `records` are (line number, knowledge record) of the file at `path`. A catalogue's knowledge may cover more
    than the items embedded (a CTR set drawn from it): records of other ids are skipped and counted
    (`records_unused`), but a file none of whose records is for an embedded id is the wrong file, and a record of
    another level is a mistake: both raise RecordError naming the file and line.
    """
    by_id: dict[str, dict] = {}
    first_other: tuple[int, str] | None = None
    for lineno, row in records:
        rid = R.record_id(row)
        if row[R.LEVEL] != level:
            raise RecordError(f"{path}:{lineno}: a {row[R.LEVEL]} record in the {level} knowledge file")
        if rid in input_texts:
            by_id[rid] = row
        elif first_other is None:
            first_other = (lineno, rid)
    if records and not by_id:
        lineno, rid = first_other
        raise RecordError(f"{path}:{lineno}: id {rid!r} is not among the {level} records embedded, nor is any other "
                          f"of the file's {len(records)} records' (the knowledge of another catalogue?)")
    texts, counts = {}, {FROM_KNOWLEDGE: 0, FALLBACK_NO_RECORD: 0, FALLBACK_FAILED: 0,
                         RECORDS_UNUSED: len(records) - len(by_id)}
    for rid, text in input_texts.items():
        row = by_id.get(rid)
        how = FALLBACK_NO_RECORD if row is None else FROM_KNOWLEDGE if row[R.STATUS] == "ok" else FALLBACK_FAILED
        counts[how] += 1
        texts[rid] = render_knowledge(text, row, fmt) if how == FROM_KNOWLEDGE else text
    return texts, counts


def check_same_inputs(input_texts: dict[str, str], records: list[tuple[int, dict]], path: str | Path) -> None:
    """Raise RecordError at the first ok record of an embedded id whose `input` is not that id's input text.

    For users of a `ctr prepare` users.jsonl, whose vectors feed only rows after each user's snapshot time: a
    record made from another input (another snapshot, a later one holding clicks after that time) would carry
    those clicks into the vector.
    """
    for lineno, row in records:
        rid = R.record_id(row)
        if row[R.STATUS] == "ok" and rid in input_texts and row[R.INPUT] != input_texts[rid]:
            raise RecordError(f"{path}:{lineno}: the knowledge of {row[R.LEVEL]} {rid!r} was made from another input "
                              "than their record's (another snapshot?); regenerate it from this users.jsonl")
