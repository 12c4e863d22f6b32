"""The structured answer: a JSON schema every backend enforces by constrained decoding, and its text form.

An answer is `{"explicit": [{aspect, value}], "implicit": [{aspect, value}]}`; its key phrases are the
values, explicit first. With `spans` (the default), the schema is built per input and an explicit value
must be one of the input's spans (`input_spans`): explicit phrases are grounded by construction. Every
string and list has a length limit, so a constrained answer closes within `max_answer_tokens()`.

No rationale and no separate key-feature list: on the 135M teacher they tripled the answer's length
(~330 tokens), cut answers off and mostly repeated the example's phrases.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from ground.records import ASPECT, EXPLICIT, IMPLICIT, VALUE
from ground.errors import ConfigError

AnswerFormat = Literal["text", "json"]
ANSWER_FORMATS: tuple[str, ...] = ("text", "json")
# Teacher answers, the student's SFT completions and the student's answers alike: structured answers with
# span-constrained explicit values beat the text format on data/gold (README).
DEFAULT_ANSWER_FORMAT: AnswerFormat = "json"
KEY_FEATURES = "key_features"  # the key-phrase list of older structured answers; still parsed

MAX_EXPLICIT, MAX_IMPLICIT = 3, 4
MAX_ASPECT_CHARS, MAX_VALUE_CHARS = 20, 32
MAX_SPAN_WORDS, MAX_SPAN_CHARS = 3, 48
TEXT_MAX_NEW_TOKENS = 320  # the text format's default limit (its answers stop at the Key Features line)

# Words a span neither starts nor ends with ("of 12", "Bag with"): a reader would never pick them as a phrase.
_EDGE_WORDS = frozenset("a an the of and with for in on to by from or x & + -".split())
_TRIM = "\"'()[]{},;:!?."


def check_answer_format(value: str, name: str = "answer_format") -> None:
    """Raise ConfigError (naming the setting `name`) unless `value` is one of ANSWER_FORMATS."""
    if value not in ANSWER_FORMATS:
        raise ConfigError(f"{name} must be one of {', '.join(ANSWER_FORMATS)}, got {value!r}")


def input_spans(segments: Sequence[str], max_words: int = MAX_SPAN_WORDS) -> list[str]:
    """The contiguous word n-grams (1..max_words) of each segment, as written, first seen first, no repeats.

    Words are split on whitespace and trimmed of quotes and punctuation; an n-gram never crosses a segment
    (one item name of a user's history), never starts or ends with a function word, and has at most
    MAX_SPAN_CHARS characters.
    """
    seen: set[str] = set()
    spans = []
    for segment in segments:
        ws = [w.strip(_TRIM) for w in segment.split()]
        ws = [w for w in ws if w]
        for n in range(1, max_words + 1):
            for i in range(len(ws) - n + 1):
                gram = ws[i : i + n]
                if gram[0].casefold() in _EDGE_WORDS or gram[-1].casefold() in _EDGE_WORDS:
                    continue
                span = " ".join(gram)
                if len(span) <= MAX_SPAN_CHARS and span.casefold() not in seen:
                    seen.add(span.casefold())
                    spans.append(span)
    return spans


def _free_string(max_chars: int) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": max_chars}


def _aspect_list(value: dict, max_items: int) -> dict:
    aspect = {
        "type": "object",
        "properties": {ASPECT: _free_string(MAX_ASPECT_CHARS), VALUE: value},
        "required": [ASPECT, VALUE],
        "additionalProperties": False,
    }
    return {"type": "array", "items": aspect, "minItems": 1, "maxItems": max_items}


def answer_schema(spans: Sequence[str] | None = None) -> dict:
    """The JSON schema of one structured answer; given `spans`, explicit values must be one of them."""
    explicit_value = {"type": "string", "enum": list(spans)} if spans else _free_string(MAX_VALUE_CHARS)
    return {
        "type": "object",
        "properties": {
            EXPLICIT: _aspect_list(explicit_value, MAX_EXPLICIT),
            IMPLICIT: _aspect_list(_free_string(MAX_VALUE_CHARS), MAX_IMPLICIT),
        },
        "required": [EXPLICIT, IMPLICIT],
        "additionalProperties": False,
    }


# A JSON string of n characters is at most 6n + 2 bytes (every character a \uXXXX escape).
def _string_bytes(max_chars: int) -> int:
    return 6 * max_chars + 2


def max_answer_tokens() -> int:
    """An upper bound on the tokens of any answer the schema admits (spans or not): every token is >= 1 byte.

    With this as the token limit, a constrained answer can never be cut off: `truncated` cannot happen.
    """
    value = _string_bytes(max(MAX_VALUE_CHARS, MAX_SPAN_CHARS))
    row = len('{"aspect": , "value": }, ') + _string_bytes(MAX_ASPECT_CHARS) + value
    frame = len('{"explicit": [], "implicit": []}')
    return frame + (MAX_EXPLICIT + MAX_IMPLICIT) * row


def default_max_new_tokens(answer_format: str) -> int:
    """The token limit a run uses unless told otherwise (`max_new_tokens` None): enough for a whole answer of the
    format. The one place this default is decided; GenerationSettings applies it."""
    return max_answer_tokens() if answer_format == "json" else TEXT_MAX_NEW_TOKENS


def format_json_answer(explicit: list[dict], implicit: list[dict]) -> str:
    """The canonical JSON text of an answer (the pool examples are shown to the teacher in this form)."""
    def aspects(rows: list[dict], limit: int) -> list[dict]:
        return [{ASPECT: a[ASPECT], VALUE: a[VALUE]} for a in rows[:limit]]

    answer = {EXPLICIT: aspects(explicit, MAX_EXPLICIT), IMPLICIT: aspects(implicit, MAX_IMPLICIT)}
    return json.dumps(answer, ensure_ascii=False)

