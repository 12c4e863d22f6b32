"""From a model's raw answer to explicit/implicit aspects and key phrases.

Tolerant of what real models write: markdown bullets, numbering, bold,
Chinese punctuation, a missing rationale, key features on the next lines,
a missing `Key Features` line (then the aspect values stand in), and
chatter or a second invented example after the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from kgen.answer_schema import KEY_FEATURES
from ground.records import ASPECT, EXPLICIT, IMPLICIT, RATIONALE, VALUE

_CJK_PUNCT = str.maketrans({"：": ":", "，": ",", "、": ",", "；": ";", "。": ". ", "（": "(", "）": ")", "“": '"', "”": '"'})
_BULLET = re.compile(r"^\s*(?:[-*•·+>]+|\d{1,2}[.)](?!\d)|[a-z][.)]\s|#+)\s*", re.IGNORECASE)
_EMPHASIS = re.compile(r"\*\*|__|`")
_SECTION = re.compile(r"^(explicit|implicit)(?:\s+(?:information|info|features|key features))?\s*:?\s*(.*)$", re.IGNORECASE)
_KEY_FEATURES = re.compile(r"^(?:final\s+)?key\s*(?:features|phrases|words)\s*:?\s*(.*)$|^keywords\s*:?\s*(.*)$", re.IGNORECASE)
_ASPECT = re.compile(r"^([A-Za-z][\w &/'()\-]{0,40}?)\s*:\s*(.*)$")
_SKIP = re.compile(r"^(thought process|output|answer)\s*:?\s*$", re.IGNORECASE)
_NEW_EXAMPLE = re.compile(r"^(product name|purchase history|user)\s*:", re.IGNORECASE)
# A value ends at the first full stop that is followed by space (so "1.25L" and "e.g" inside stay whole).
_VALUE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?:\s+|$)")


@dataclass
class ParsedAnswer:
    """The structured content of one answer."""

    explicit: list[dict] = field(default_factory=list)
    implicit: list[dict] = field(default_factory=list)
    key_phrases: list[str] = field(default_factory=list)
    status: Literal["ok", "parse_error"] = "ok"
    error: str | None = None
    key_phrases_from: Literal["key_features", "aspects", "none"] = "key_features"


def _clean_line(line: str) -> str:
    line = _EMPHASIS.sub("", line.translate(_CJK_PUNCT))
    return strip_list_marker(line)


def strip_list_marker(line: str) -> str:
    """A line without its bullet, numbering ("3.", "b)") or markdown heading marks."""
    return _BULLET.sub("", line).strip()


MAX_PHRASE_WORDS = 6  # longer "phrases" are sentences a model ran on with, not key features
MAX_LABEL_WORDS = 3


def _phrase(part: str) -> str:
    """One key feature as written -> the phrase, without quotes, end full stop, list marker or a label.

    Small models write labels into the list: "Type: Coffee Beans" is "Coffee Beans", and a heading such as
    "Purchase History:" is no phrase at all. No phrase of the prompts' examples or of the gold holds a colon.
    """
    def tidy(text: str) -> str:
        return text.strip().strip("\"'").rstrip(".").strip()

    text = tidy(_clean_line(part))
    label = _ASPECT.match(text)
    return tidy(label.group(2)) if label and len(label.group(1).split()) <= MAX_LABEL_WORDS else text


def split_phrases(text: str) -> list[str]:
    """Split a key-feature list on commas/semicolons into phrases (see `_phrase`), at most 6 words each."""
    phrases = (_phrase(p) for p in re.split(r"[,;]\s*|\s+\|\s+", text.translate(_CJK_PUNCT)))
    return dedupe([p for p in phrases if p and len(p.split()) <= MAX_PHRASE_WORDS])


def dedupe(phrases: list[str]) -> list[str]:
    """Drop repeats (case-insensitive), keeping first occurrences in order."""
    seen: set[str] = set()
    out = []
    for phrase in phrases:
        if phrase.casefold() not in seen:
            seen.add(phrase.casefold())
            out.append(phrase)
    return out


def parse_aspect(text: str) -> dict | None:
    """`Aspect: Value. Rationale` -> {"aspect", "value", "rationale"}; None if it is no aspect line."""
    match = _ASPECT.match(text)
    if not match:
        return None
    aspect, rest = match.group(1).strip(), match.group(2).strip()
    end = _VALUE_END.search(rest)
    value, rationale = (rest[: end.start()], rest[end.end():]) if end else (rest, "")
    return {ASPECT: aspect, VALUE: value.strip().strip("\"'"), RATIONALE: rationale.strip()}


def parse_answer(raw: str) -> ParsedAnswer:
    """Parse a raw answer, JSON or text; status is parse_error only when no key phrase can be found at all."""
    if raw.lstrip().startswith("{"):
        return parse_json_answer(raw)
    return parse_text_answer(raw)


def _json_aspects(rows: object) -> list[dict]:
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get(VALUE), str) and row[VALUE].strip():
            out.append({ASPECT: str(row.get(ASPECT, "")).strip(), VALUE: row[VALUE].strip(),
                        RATIONALE: str(row.get(RATIONALE, "")).strip()})
    return out


def parse_json_answer(raw: str) -> ParsedAnswer:
    """A structured answer (see kgen.answer_schema) -> its fields; text after the JSON object is ignored."""
    try:
        answer, _ = json.JSONDecoder().raw_decode(raw.lstrip())
    except json.JSONDecodeError as exc:
        return ParsedAnswer(status="parse_error", error=f"answer is not complete JSON: {exc}", key_phrases_from="none")
    if not isinstance(answer, dict):
        return ParsedAnswer(status="parse_error", error="answer JSON is not an object", key_phrases_from="none")
    listed = answer.get(KEY_FEATURES)
    key_lines = [", ".join(p for p in listed if isinstance(p, str))] if isinstance(listed, list) else []
    return _finish(_json_aspects(answer.get(EXPLICIT)), _json_aspects(answer.get(IMPLICIT)), key_lines)


def parse_text_answer(raw: str) -> ParsedAnswer:
    """Parse an answer in the text format ("Aspect: Value. Rationale" lines, then a Key Features line)."""
    sections: dict[str, list[dict]] = {"explicit": [], "implicit": []}
    current, key_lines, in_key_block = "explicit", [], False
    for line in raw.splitlines():
        text = _clean_line(line)
        if not text:
            in_key_block = in_key_block and not key_lines
            continue
        if key_lines and _NEW_EXAMPLE.match(text):
            break  # the model started inventing another example
        key = _KEY_FEATURES.match(text)
        if key:
            rest = (key.group(1) or key.group(2) or "").strip()
            key_lines, in_key_block = ([rest] if rest else []), True
            continue
        if in_key_block:
            if _SECTION.match(text) or (_ASPECT.match(text) and key_lines):
                break
            key_lines.append(text)
            continue
        if _SKIP.match(text) or _NEW_EXAMPLE.match(text):
            continue
        section = _SECTION.match(text)
        if section:
            current, text = section.group(1).lower(), section.group(2).strip()
            if not text:
                continue
        aspect = parse_aspect(text)
        if aspect and aspect[VALUE]:
            sections[current].append(aspect)
        elif sections[current] and not sections[current][-1][RATIONALE]:
            sections[current][-1][RATIONALE] = text  # a rationale on its own line
    return _finish(sections["explicit"], sections["implicit"], key_lines)


def _finish(explicit: list[dict], implicit: list[dict], key_lines: list[str]) -> ParsedAnswer:
    phrases = split_phrases(", ".join(key_lines))
    if phrases:
        return ParsedAnswer(explicit, implicit, phrases)
    fallback = dedupe([p for a in explicit + implicit for p in split_phrases(a[VALUE])])
    if fallback:
        return ParsedAnswer(explicit, implicit, fallback, key_phrases_from="aspects")
    return ParsedAnswer(explicit, implicit, [], "parse_error", "no key features line and no aspect lines", "none")


def format_answer(explicit: list[dict], implicit: list[dict], key_phrases: list[str]) -> str:
    """The canonical answer text; parse_answer(format_answer(...)) gives the same fields back."""

    def aspect_line(a: dict) -> str:
        value = a[VALUE].rstrip(".")
        return f"{a[ASPECT]}: {value}. {a[RATIONALE]}".rstrip()

    lines = ["Explicit Information:", *map(aspect_line, explicit), "Implicit Information:", *map(aspect_line, implicit)]
    lines.append("Key Features: " + ", ".join(key_phrases))
    return "\n".join(lines)
