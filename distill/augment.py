"""Training-data augmentation: key-phrase shuffling and dictionary (synonym) substitution.

Both are pure functions of a parsed answer; the SFT completion is re-rendered
from the fields they return, so the text always agrees with itself.

Substitution never changes what must match the input. A phrase is eligible only
when it occurs neither in the input text nor in any explicit value (explicit
information is copied from the product name or purchase history, so a synonym
there would contradict what the model was shown). An eligible phrase is then
replaced everywhere it occurs: implicit values and rationales, explicit
rationales, and the key features. Because phrases in explicit values are never
eligible, "everywhere" never reaches an explicit value.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from kgen.parse import ParsedAnswer, dedupe
from ground.records import ASPECT, RATIONALE, VALUE
from ground.errors import RecordError
from ground.files import read_lines

Dictionary = dict[str, list[str]]  # casefolded phrase -> its synonyms, as written in the file


def shuffle_answer(parsed: ParsedAnswer, rng: random.Random) -> tuple[list[dict], list[dict], list[str]]:
    """Permute the key features and the aspects within explicit and within implicit; lines stay whole."""
    explicit = [dict(a) for a in parsed.explicit]
    implicit = [dict(a) for a in parsed.implicit]
    phrases = list(parsed.key_phrases)
    rng.shuffle(explicit)
    rng.shuffle(implicit)
    rng.shuffle(phrases)
    return explicit, implicit, phrases


def load_dictionary(path: str | Path) -> Dictionary:
    """Read synonym groups (one per line, tab-separated phrases, '#' comments); bad lines raise RecordError."""
    groups: Dictionary = {}
    first_line: dict[str, int] = {}  # casefolded phrase -> the line of its group
    for lineno, line in read_lines(path):
        text = line.split("#", 1)[0].rstrip("\r\n")
        if not text.strip():
            continue
        phrases = [p.strip() for p in text.split("\t")]
        problem = _group_problem(phrases) or _repeat_problem(phrases, first_line)
        if problem:
            raise RecordError(f"{path}:{lineno}: {problem}")
        for phrase in phrases:
            first_line[phrase.casefold()] = lineno
            groups[phrase.casefold()] = [p for p in phrases if p.casefold() != phrase.casefold()]
    return groups


def _group_problem(phrases: list[str]) -> str | None:
    if len(phrases) < 2:
        return f"a synonym group needs at least two tab-separated phrases, got {phrases[0]!r} (separate with a tab)"
    if any(not p for p in phrases):
        return "empty phrase between tabs"
    if len({p.casefold() for p in phrases}) < len(phrases):
        return "the same phrase twice in one group"
    return None


def _repeat_problem(phrases: list[str], first_line: dict[str, int]) -> str | None:
    # One group per phrase: otherwise "a -> b" and "a -> c" would make substitution depend on line order.
    for phrase in phrases:
        if phrase.casefold() in first_line:
            return f"{phrase!r} is already in the group on line {first_line[phrase.casefold()]}; merge the two lines"
    return None


def phrase_pattern(dictionary: Dictionary) -> re.Pattern:
    """One whole-word, case-insensitive pattern for every dictionary phrase, longest first."""
    keys = sorted(dictionary, key=len, reverse=True)
    alternation = "|".join(re.escape(k) for k in keys) or r"(?!x)x"  # an empty dictionary matches nothing
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)


def _answer_texts(parsed: ParsedAnswer) -> list[str]:
    texts = [a[RATIONALE] for a in parsed.explicit]
    texts += [t for a in parsed.implicit for t in (a[VALUE], a[RATIONALE])]
    return texts + list(parsed.key_phrases)


def eligible_phrases(parsed: ParsedAnswer, pattern: re.Pattern, input_text: str) -> list[str]:
    """Dictionary phrases (casefolded) in the answer's substitutable text, minus those in the input or explicit values."""
    protected_text = [input_text, *(a[VALUE] for a in parsed.explicit)]
    protected = {m.group(0).casefold() for t in protected_text for m in pattern.finditer(t)}
    found = dedupe([m.group(0).casefold() for t in _answer_texts(parsed) for m in pattern.finditer(t)])
    return [p for p in found if p not in protected]


def match_case(synonym: str, original: str) -> str:
    """Give the synonym the original occurrence's case: UPPER, Title Case, Capitalised or lower (acronyms kept)."""
    if original.isupper() and any(c.isalpha() for c in original):
        return synonym.upper()
    words = original.split()
    if len(words) > 1 and all(w[:1].isupper() for w in words if w[:1].isalpha()):
        return " ".join(w[:1].upper() + w[1:] for w in synonym.split())
    if original[:1].isupper():
        return synonym[:1].upper() + synonym[1:]
    if original.islower():
        # Mid-sentence "a popular gift" becomes "a popular present", not "a popular Present"; "LED" stays.
        return " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in synonym.split(" "))
    return synonym


def substitute(parsed: ParsedAnswer, dictionary: Dictionary, rng: random.Random, input_text: str) -> ParsedAnswer:
    """Replace every eligible dictionary phrase by one random synonym, the same one everywhere it occurs."""
    pattern = phrase_pattern(dictionary)
    chosen = {p: rng.choice(dictionary[p]) for p in eligible_phrases(parsed, pattern, input_text)}

    def swap(text: str) -> str:
        # The full pattern (longest first) finds the same spans as eligible_phrases did; only chosen ones change.
        return pattern.sub(lambda m: match_case(chosen[m.group(0).casefold()], m.group(0))
                           if m.group(0).casefold() in chosen else m.group(0), text)

    explicit = [{ASPECT: a[ASPECT], VALUE: a[VALUE], RATIONALE: swap(a[RATIONALE])} for a in parsed.explicit]
    implicit = [{ASPECT: a[ASPECT], VALUE: swap(a[VALUE]), RATIONALE: swap(a[RATIONALE])} for a in parsed.implicit]
    # Two key phrases can become one ("Gift", "Present" -> "Present", "Present"); keep it once.
    phrases = dedupe([swap(p) for p in parsed.key_phrases])
    return ParsedAnswer(explicit, implicit, phrases)
