"""Key-phrase normalisation: the canonical form two phrases are compared in.

`normalize_phrase("Coca-Cola Zero 1.25 L") == normalize_phrase("coca cola zero 1.25L")`.
The annotation app imports `normalize_phrase`, so its signature stays fixed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import lru_cache

# Unit spellings after a number, mapped to one canonical form ("1.25 litres" == "1.25l").
_UNIT_SPELLINGS: dict[str, str] = {
    "ml": "ml millilitre millilitres milliliter milliliters",
    "l": "l ltr litre litres liter liters",
    "cl": "cl",
    "g": "g gr gram grams",
    "kg": "kg kgs kilogram kilograms",
    "mg": "mg",
    "oz": "oz ounce ounces",
    "lb": "lb lbs pound pounds",
    "cm": "cm",
    "mm": "mm",
    "m": "m",
    "in": "in inch inches",
    "pcs": "pcs pc piece pieces",
    "ct": "ct",
    "pack": "pack packs",
    "x": "x",
}
_UNIT_FORMS = {spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings.split()}
UNITS: frozenset[str] = frozenset(_UNIT_FORMS.values())

_NUMBER = r"\d+(?:\.\d+)?"
# Longest spellings first so "litres" is not read as "l" + "itres".
_UNIT_ALT = "|".join(sorted(map(re.escape, _UNIT_FORMS), key=len, reverse=True))
# A number, optional space, a unit spelling, then a word end. Not before another number, so
# "3 in 1" stays a phrase ("in" is a word there) and "12 x 200g" is left to the multiplier rule.
_NUMBER_UNIT = re.compile(rf"(?<![\w.])({_NUMBER})\s*({_UNIT_ALT})(?![\w])(?!\s*\d)")
_MULTIPLIER = re.compile(rf"({_NUMBER})\s*x\s*(?=\d)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_STRAY_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
_SEPARATORS = re.compile(r"[_\\|,;:–—‐‑]+")
# Hyphens and slashes separate words, but not digits ("1/2", "3-5 years").
_DASH_SLASH = re.compile(r"(?<!\d)[-/]|[-/](?!\d)")
_APOSTROPHES = re.compile(r"['‘’`´]")
_AMPERSAND = re.compile(r"\s*&\s*")
_SPACES = re.compile(r"\s+")
_NUMBER_TOKEN = re.compile(rf"({_NUMBER})([a-z]*)")
# For comparing numbers only: "12 pack", "pack of 12", "12 pcs" and "a dozen" all say 12 things.
_COUNT_UNITS = frozenset({"pack", "pcs"})
_NUMBER_WORDS = {
    w: str(n) for n, w in enumerate("two three four five six seven eight nine ten eleven twelve".split(), start=2)
} | {"dozen": "12"}
_NUMBER_WORD = re.compile(rf"\b({'|'.join(_NUMBER_WORDS)})\b")
# Ideographs, kana and hangul: the scripts an English-only WordPiece vocabulary maps to [UNK].
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f\U00020000-\U0002ffff]"
)
# Ends are trimmed of punctuation and symbols, but "%", "#" and "+" carry meaning ("50%", "#1", "age 3+").
_KEEP_AT_ENDS = frozenset("%#+")


def _strip_ends(s: str) -> str:
    def trimmable(ch: str) -> bool:
        return ch.isspace() or (unicodedata.category(ch)[0] in "PS" and ch not in _KEEP_AT_ENDS)

    start, end = 0, len(s)
    while start < end and trimmable(s[start]):
        start += 1
    while end > start and trimmable(s[end - 1]):
        end -= 1
    return s[start:end]


def _join_number_unit(match: re.Match) -> str:
    return match.group(1) + _UNIT_FORMS[match.group(2)]


@lru_cache(maxsize=1 << 17)  # key phrases repeat across items; the regexes are the cost
def normalize_phrase(s: str) -> str:
    """Canonical form of a key phrase: NFKC, casefold, one separator, joined number+unit."""
    s = unicodedata.normalize("NFKC", s).casefold()
    s = _THOUSANDS.sub("", s)  # "1,000" -> "1000"
    s = _DECIMAL_COMMA.sub(".", s)  # "1,25 l" -> "1.25 l"
    s = _APOSTROPHES.sub("", s)  # "children's" == "childrens"
    s = _STRAY_PERIOD.sub("", s)  # "dr. martens" == "dr martens"; "1.25" kept
    s = _AMPERSAND.sub(" and ", s)
    s = _SEPARATORS.sub(" ", _DASH_SLASH.sub(" ", s.replace("×", "x")))
    s = _SPACES.sub(" ", _strip_ends(s))
    s = _NUMBER_UNIT.sub(_join_number_unit, s)
    return _MULTIPLIER.sub(lambda m: m.group(1) + "x", s)


def _canonical_number(text: str) -> str:
    try:
        value = Decimal(text).normalize()
    except InvalidOperation:
        return text
    return format(value, "f")


@lru_cache(maxsize=1 << 16)
def numbers_and_units(s: str) -> tuple[tuple[str, str], ...]:
    """Sorted (number, unit) pairs of a phrase: "1.50L pack of six" -> (("1.5", "l"), ("6", ""))."""
    norm = _NUMBER_WORD.sub(lambda m: _NUMBER_WORDS[m.group(1)], normalize_phrase(s))
    pairs = (
        (_canonical_number(num), "" if suffix in _COUNT_UNITS else suffix)
        for num, suffix in _NUMBER_TOKEN.findall(norm)
    )
    return tuple(sorted(pairs))


def numbers_differ(a: str, b: str) -> bool:
    """True when at least one phrase has a number and their number/unit multisets differ."""
    na, nb = numbers_and_units(a), numbers_and_units(b)
    return (bool(na) or bool(nb)) and na != nb


def has_cjk(s: str) -> bool:
    """True when the text holds CJK ideographs, kana or hangul."""
    return _CJK.search(s) is not None


def unique_normalized(phrases: Iterable[str]) -> list[str]:
    """Normalised phrases, empties dropped, duplicates after normalisation kept once (first order)."""
    seen: dict[str, None] = {}
    for phrase in phrases:
        norm = normalize_phrase(phrase)
        if norm:
            seen.setdefault(norm, None)
    return list(seen)
