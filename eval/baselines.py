"""No-model baselines: what key-phrase F1 a user gets without any LLM, to set beside every teacher and student.

`name-words`: split the input into its words and call those the key phrases. For a user, the input is the
history, so the words of every item name in it (each once).
"""

from __future__ import annotations

import re

from ground import records as R
from kgen.inputs import HISTORY_HEADERS

BASELINES: tuple[str, ...] = ("name-words",)
NAME_WORDS_DROP = frozenset({"x", "of", "and", "the", "for", "with", "&", "-"})
_HISTORY_LINE = re.compile(r"^\s*\d+\.\s+(.*)$")


def item_names(input_text: str) -> list[str]:
    """The item names in a model input: the lines of a rendered purchase history, else the text itself."""
    lines = input_text.splitlines()
    if not lines or lines[0].strip() not in HISTORY_HEADERS:
        return [input_text]
    return [m.group(1) for line in lines[1:] if (m := _HISTORY_LINE.match(line))]


def name_words(input_text: str) -> list[str]:
    """The words of the item name(s), minus filler ("x", "of", "and", ...), each once (case-insensitive)."""
    seen: dict[str, str] = {}
    for name in item_names(input_text):
        for word in name.split():
            if word.casefold() not in NAME_WORDS_DROP:
                seen.setdefault(word.casefold(), word)
    return list(seen.values())


def baseline_records(gold_rows: list[dict], name: str = "name-words") -> list[dict]:
    """One ok knowledge-like record per gold record that carries its input, phrases from the baseline."""
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {name!r}")
    return [
        {R.ID: g[R.ID], R.LEVEL: g[R.LEVEL], R.INPUT: g[R.INPUT], R.KEY_PHRASES: name_words(g[R.INPUT]),
         R.EXPLICIT: [], R.IMPLICIT: [], R.RAW: "", R.STATUS: "ok", R.MODEL: f"baseline:{name}"}
        for g in gold_rows if g.get(R.INPUT)
    ]
