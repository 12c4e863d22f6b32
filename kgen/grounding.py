"""Is a phrase found in a text? Grounding of explicit phrases and leakage from the reference example.

`is_grounded("1.25 litres Coke", "Coca-Cola Coke 1.25L")` is True: both sides are normalised as
key phrases are for F1 (`ground.normalize`: case, spacing, unit forms), split into words, and each
word is reduced to a crude stem ("bags" == "bag", "printed" == "print"). A phrase is grounded when
every content word of it occurs in the text, in any order. The annotation app imports
`is_grounded`, so its signature stays fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from ground.normalize import normalize_phrase
from ground.records import EXPLICIT, GROUNDED, IMPLICIT, INPUT, KEY_PHRASES, LEAKED, LEAKED_DROPPED, STATUS, VALUE

# Words a phrase may add without saying anything the input does not ("pack of 12" for "12 pack").
_FUNCTION_WORDS = frozenset("a an the of and with for in on to by from or".split())
# A count glued to its number by the normaliser ("12pack", "6pcs", "12x") is two words to a reader.
_COUNT = re.compile(r"^(\d+(?:\.\d+)?)(pack|pcs|x)$")
_TIMES = re.compile(r"(?<=\d)x(?=\d)")  # "12x200g" -> "12", "200g"
_BRACKETS = re.compile(r"[=()\[\]{}]+")  # "country=finland", "(oldest": the normaliser keeps these, a reader does not


def _stem(word: str) -> str:
    """A crude English stem, enough for plurals and simple inflections; numbers stay as they are."""
    if word[:1].isdigit():
        return word
    for suffix, keep, min_len in (("ies", "y", 5), ("sses", "ss", 5), ("ches", "ch", 5), ("shes", "sh", 5),
                                  ("xes", "x", 4), ("ing", "", 6), ("ed", "", 5)):
        if word.endswith(suffix) and len(word) >= min_len:
            return word[: -len(suffix)] + keep
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) >= 4:
        return word[:-1]
    return word


def _split_word(word: str) -> list[str]:
    count = _COUNT.match(word)
    if count:
        return [count.group(1), count.group(2)]
    return [part for part in _TIMES.split(word) if part]


@lru_cache(maxsize=1 << 16)
def words(text: str) -> tuple[str, ...]:
    """The stemmed words of a text after key-phrase normalisation, in order."""
    tokens = _BRACKETS.sub(" ", normalize_phrase(text)).split()
    return tuple(_stem(w) for token in tokens for w in _split_word(token))


@lru_cache(maxsize=1 << 12)
def _vocabulary(source: str) -> frozenset[str]:
    ws = words(source)
    # "CocaCola" is grounded in "Coca-Cola": two neighbouring words written as one.
    return frozenset(ws) | frozenset(a + b for a, b in zip(ws, ws[1:]))


def content_words(phrase: str) -> list[str]:
    """The stemmed words of a phrase that carry meaning (function words dropped)."""
    return [w for w in words(phrase) if w not in _FUNCTION_WORDS]


def is_grounded(phrase: str, source: str) -> bool:
    """True when every content word of `phrase` occurs in `source` (normalised, stemmed, any order)."""
    needed = content_words(phrase)
    return bool(needed) and set(needed) <= _vocabulary(source)


def leaked_phrases(phrases: Iterable[str], example: str, source: str) -> list[str]:
    """The phrases found in the reference example's text but not in the input (order kept, no repeats)."""
    seen: set[str] = set()
    leaked = []
    for phrase in phrases:
        key = normalize_phrase(phrase)
        if key not in seen and is_grounded(phrase, example) and not is_grounded(phrase, source):
            leaked.append(phrase)
        seen.add(key)
    return leaked


def answer_phrases(row: dict) -> list[str]:
    """The phrases an answer states: its key phrases, then its explicit and implicit values."""
    return [*row.get(KEY_PHRASES, []), *(a[VALUE] for a in row.get(EXPLICIT, []) + row.get(IMPLICIT, []))]


def with_grounding(row: dict, example: str | None, drop_leaked: bool = False) -> dict:
    """The record with `grounded` on each explicit entry and, given the example's text, its `leaked` phrases.

    With `drop_leaked`, leaked phrases also leave the key phrases (they stay listed under `leaked`, and in
    `raw`), unless every key phrase leaked: then nothing is dropped, so an ok record never has no key phrase.
    """
    source = row[INPUT]
    out = {**row, EXPLICIT: [{**a, GROUNDED: is_grounded(a[VALUE], source)} for a in row.get(EXPLICIT, [])]}
    out.pop(LEAKED_DROPPED, None)
    if example is not None:
        out[LEAKED] = leaked_phrases(answer_phrases(row), example, source)
    stated = out.get(KEY_PHRASES, [])
    kept = [p for p in stated if p not in out.get(LEAKED, [])]
    if drop_leaked and kept and len(kept) < len(stated):
        out[KEY_PHRASES], out[LEAKED_DROPPED] = kept, [p for p in stated if p not in kept]
    return out


def grounding_metrics(rows: list[dict]) -> dict:
    """Over the ok records: share with a leaked phrase, leaked share of key phrases, grounded share of explicit."""
    ok = [r for r in rows if r.get(STATUS) == "ok"]
    marked = [r for r in ok if LEAKED in r]
    explicit = [a for r in ok for a in r.get(EXPLICIT, []) if GROUNDED in a]
    # The key phrases as the model stated them: those dropped as leaked still count.
    stated = [(p, r) for r in marked for p in r.get(KEY_PHRASES, []) + r.get(LEAKED_DROPPED, [])]
    phrases = [p for p, _ in stated]
    leaked_keys = [p for p, r in stated if p in r[LEAKED]]
    return {
        "ok": len(ok),
        "leakage_rate": round(sum(bool(r[LEAKED]) for r in marked) / len(marked), 4) if marked else None,
        "leaked_key_phrase_share": round(len(leaked_keys) / len(phrases), 4) if phrases else None,
        "explicit_grounded_rate": round(sum(a[GROUNDED] for a in explicit) / len(explicit), 4) if explicit else None,
    }
