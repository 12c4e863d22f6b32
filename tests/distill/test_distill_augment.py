"""Augmentation: shuffling keeps every phrase and line; substitution is consistent and leaves the input's words alone."""

import random
import re
from collections import Counter

import pytest
from distill_samples import ITEMS, knowledge_row

from distill.augment import load_dictionary, match_case, shuffle_answer, substitute
from distill.data import DEFAULT_DICTIONARY, answer_of
from kgen.parse import ParsedAnswer, format_answer, parse_answer
from ground.errors import RecordError


def lines(aspects: list[dict]) -> Counter:
    return Counter((a["aspect"], a["value"], a["rationale"]) for a in aspects)


@pytest.mark.parametrize("rid", list(ITEMS))
def test_shuffle_keeps_the_multisets_of_phrases_and_aspect_lines(rid):
    original = answer_of(knowledge_row(rid))
    orders = set()
    for seed in range(30):
        explicit, implicit, phrases = shuffle_answer(original, random.Random(seed))
        assert Counter(phrases) == Counter(original.key_phrases)
        assert lines(explicit) == lines(original.explicit)  # each value keeps its own rationale
        assert lines(implicit) == lines(original.implicit)
        orders.add(tuple(phrases))
        # The re-rendered text parses back to exactly the shuffled fields.
        back = parse_answer(format_answer(explicit, implicit, phrases))
        assert (back.explicit, back.implicit, back.key_phrases) == (explicit, implicit, phrases)
    assert len(orders) > 5  # it really permutes


def test_shuffle_does_not_mutate_its_input():
    original = answer_of(knowledge_row("85123A"))
    before = format_answer(original.explicit, original.implicit, original.key_phrases)
    shuffle_answer(original, random.Random(1))
    assert format_answer(original.explicit, original.implicit, original.key_phrases) == before


def write(tmp_path, text: str):
    path = tmp_path / "syn.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_dictionary_maps_each_phrase_to_the_others_in_its_group(tmp_path):
    d = load_dictionary(write(tmp_path, "# comment\n\nGift\tPresent\nHome Decor\tHome Decoration\tInterior Decoration  # trailing\n"))
    assert d["gift"] == ["Present"] and d["present"] == ["Gift"]
    assert d["home decor"] == ["Home Decoration", "Interior Decoration"]
    assert d["interior decoration"] == ["Home Decor", "Home Decoration"]


@pytest.mark.parametrize("text, line, problem", [
    ("Gift\tPresent\nHome Decor  Home Decoration\n", 2, "at least two tab-separated"),
    ("Gift\t\tPresent\n", 1, "empty phrase"),
    ("Gift\tgift\n", 1, "twice in one group"),
    ("Gift\tPresent\nPresent\tOffering\n", 2, "already in the group on line 1"),
])
def test_load_dictionary_names_the_bad_line(tmp_path, text, line, problem):
    with pytest.raises(RecordError, match=rf"syn\.tsv:{line}: .*{problem}"):
        load_dictionary(write(tmp_path, text))


def test_the_shipped_dictionary_loads():
    d = load_dictionary(DEFAULT_DICTIONARY)
    assert len(d) > 20 and all(syns for syns in d.values())


DICT = {"gift": ["Present"], "present": ["Gift"], "home decor": ["Interior Decoration"],
        "interior decoration": ["Home Decor"], "white": ["Ivory"], "ivory": ["White"],
        "t-light holder": ["Tealight Holder"], "tealight holder": ["T-Light Holder"],
        "christmas": ["Xmas"], "xmas": ["Christmas"],
        "christmas decoration": ["Christmas Ornament"], "christmas ornament": ["Christmas Decoration"]}


def words(text: str, phrase: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE))


def free_text(p: ParsedAnswer) -> str:
    """Everything substitution may touch, joined."""
    return "\n".join([a["rationale"] for a in p.explicit] + [t for a in p.implicit for t in (a["value"], a["rationale"])]
                     + p.key_phrases)


def test_substitution_replaces_every_occurrence_with_one_synonym():
    row = knowledge_row("85123A")
    original = answer_of(row)
    new = substitute(original, DICT, random.Random(0), row["input"])
    before, after = free_text(original), free_text(new)
    # "gift" occurs in an implicit value, two rationales and a key phrase (4 times): all become "present", same case rules.
    assert words(before, "gift") == 4 and words(after, "gift") == 0
    assert words(after, "present") == 4
    assert words(before, "home decor") == 3 and words(after, "home decor") == 0
    assert words(after, "interior decoration") == 3
    assert "Gift" not in new.key_phrases and "Present" in new.key_phrases
    assert new.implicit[0]["value"] == "Present" and new.implicit[1]["value"] == "Interior Decoration"
    assert "a popular present" in new.implicit[0]["rationale"]  # lowercase kept lowercase
    # Words of the input ("WHITE", "T-LIGHT HOLDER") and the explicit values are never changed anywhere.
    assert new.explicit == original.explicit
    assert {"White", "T-Light Holder", "Hanging Heart"} <= set(new.key_phrases)
    assert words(after, "ivory") == 0 and words(after, "tealight holder") == 0


def test_substitution_never_touches_phrases_of_explicit_values_even_if_absent_from_the_input():
    row = knowledge_row("84879")
    row["explicit"].append({"aspect": "Use", "value": "Gift", "rationale": "Sold as a gift."})
    new = substitute(answer_of(row), DICT, random.Random(0), row["input"])
    assert words(free_text(new), "present") == 0 and "Gift" in new.key_phrases
    # The longest dictionary phrase wins: "Christmas Decoration" is substituted as a whole, not "Christmas" inside it.
    assert "Christmas Ornament" in new.key_phrases and "Xmas Decoration" not in new.key_phrases


def test_substitution_with_nothing_eligible_is_the_identity():
    row = knowledge_row("22423")
    original = answer_of(row)
    new = substitute(original, DICT, random.Random(0), row["input"])
    assert (new.explicit, new.implicit, new.key_phrases) == (original.explicit, original.implicit, original.key_phrases)


def test_substitution_picks_one_synonym_per_phrase_even_with_several_choices():
    row = knowledge_row("85123A")
    many = {**DICT, "gift": ["Present", "Keepsake", "Offering", "Token"]}
    for seed in range(20):
        new = substitute(answer_of(row), many, random.Random(seed), row["input"])
        used = {s for s in ("present", "keepsake", "offering", "token") if words(free_text(new), s)}
        assert len(used) == 1


@pytest.mark.parametrize("original, synonym, expected", [
    ("GIFT", "present", "PRESENT"), ("Home Decor", "interior decoration", "Interior Decoration"),
    ("Gift", "present", "Present"), ("gift", "Present", "present"), ("lights", "LED Lights", "LED lights"), ("T-light", "tealight", "Tealight"),
])
def test_match_case(original, synonym, expected):
    assert match_case(synonym, original) == expected
