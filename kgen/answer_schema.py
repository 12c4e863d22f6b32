"""The structured answer: a JSON schema every backend enforces by constrained decoding, and its text form.

An answer is `{"explicit": [{aspect, value, rationale}], "implicit": [...], "key_features": [str]}`, key
features last so the model has written its facts before it lists them. Every string and list has a length
limit, so a constrained answer always closes within `MAX_ANSWER_TOKENS` and never loops to the token limit.
"""

from __future__ import annotations

import json
from typing import Literal

from kgen.records import ASPECT, EXPLICIT, IMPLICIT, RATIONALE, VALUE

AnswerFormat = Literal["text", "json"]
ANSWER_FORMATS: tuple[str, ...] = ("text", "json")
KEY_FEATURES = "key_features"

MAX_EXPLICIT, MAX_IMPLICIT, MAX_KEY_FEATURES = 4, 3, 10
MAX_ASPECT_CHARS, MAX_VALUE_CHARS, MAX_RATIONALE_CHARS, MAX_PHRASE_CHARS = 24, 40, 60, 32
# Every list and string at its limit, at the ~3.5 characters a token of model-written English, plus the JSON
# punctuation: a token limit this large does not cut a constrained answer (a random model's short tokens can).
MAX_ANSWER_TOKENS = 480
TEXT_MAX_NEW_TOKENS = 320  # the text format's default limit (its answers stop at the Key Features line)


def default_max_new_tokens(answer_format: str) -> int:
    """The token limit a run uses unless told otherwise: enough for a whole answer of the format."""
    return MAX_ANSWER_TOKENS if answer_format == "json" else TEXT_MAX_NEW_TOKENS


def _aspect_list(max_items: int) -> dict:
    aspect = {
        "type": "object",
        "properties": {
            ASPECT: {"type": "string", "minLength": 1, "maxLength": MAX_ASPECT_CHARS},
            VALUE: {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_CHARS},
            RATIONALE: {"type": "string", "maxLength": MAX_RATIONALE_CHARS},
        },
        "required": [ASPECT, VALUE, RATIONALE],
        "additionalProperties": False,
    }
    return {"type": "array", "items": aspect, "minItems": 1, "maxItems": max_items}


def answer_schema() -> dict:
    """The JSON schema of one structured answer (a fresh dict: callers may add to it)."""
    phrase = {"type": "string", "minLength": 1, "maxLength": MAX_PHRASE_CHARS}
    return {
        "type": "object",
        "properties": {
            EXPLICIT: _aspect_list(MAX_EXPLICIT),
            IMPLICIT: _aspect_list(MAX_IMPLICIT),
            KEY_FEATURES: {"type": "array", "items": phrase, "minItems": 3, "maxItems": MAX_KEY_FEATURES},
        },
        "required": [EXPLICIT, IMPLICIT, KEY_FEATURES],
        "additionalProperties": False,
    }


def format_json_answer(explicit: list[dict], implicit: list[dict], key_phrases: list[str]) -> str:
    """The canonical JSON text of an answer (the pool examples are shown to the teacher in this form)."""
    def aspects(rows: list[dict]) -> list[dict]:
        return [{ASPECT: a[ASPECT], VALUE: a[VALUE], RATIONALE: a[RATIONALE]} for a in rows]

    answer = {EXPLICIT: aspects(explicit), IMPLICIT: aspects(implicit), KEY_FEATURES: list(key_phrases)}
    return json.dumps(answer, ensure_ascii=False)
