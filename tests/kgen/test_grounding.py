"""Grounding of explicit phrases in the input, and leakage from the reference example."""

import pytest

from kgen.grounding import is_grounded, leaked_phrases

SOURCE = "Product name: Coca-Cola Zero 1.25 L Bottles, Pack of 12\nCategory: Soft Drinks"


@pytest.mark.parametrize(
    "phrase",
    [
        "coca-cola zero",  # case
        "Coca  Cola   Zero",  # spacing
        "1.25L",  # unit glued to the number
        "1.25 litres",  # unit spelled out
        "Bottle",  # singular of "Bottles"
        "soft drink",  # plural on the other side
        "12 pack",  # a count in another order and with a function word dropped
        "Zero Coca-Cola",  # input words reordered
        "CocaCola",  # hyphenated words written as one
    ],
)
def test_phrases_found_in_the_input_are_grounded(phrase):
    assert is_grounded(phrase, SOURCE)


@pytest.mark.parametrize(
    "phrase",
    [
        "Pepsi Max",  # a hallucinated brand
        "Coca-Cola Zero 1.5 L",  # a number the input does not have
        "Glass Bottles",  # one word from nowhere
        "of the",  # nothing but function words
        "",
    ],
)
def test_phrases_not_in_the_input_are_not_grounded(phrase):
    assert not is_grounded(phrase, SOURCE)


def test_inflections_match_both_ways():
    assert is_grounded("printed tote", "Printing on canvas totes")
    assert is_grounded("boxes", "gift box") and is_grounded("gift box", "Gift Boxes")
    assert is_grounded("lorries", "toy lorry")


def test_grounding_a_hallucinated_brand_on_a_real_record():
    source = "Product name: Skulls Design Cotton Tote Bag"
    assert is_grounded("Cotton Tote Bag", source)
    assert is_grounded("skull design", source)
    assert not is_grounded("Nike Tote Bag", source)


def test_leaked_phrases_are_in_the_example_but_not_in_the_input():
    example = "Product name: Paris Print Canvas Bag\nKey Features: Canvas, Paris Print, Vintage Design, French Chic"
    source = "Product name: Skulls Design Cotton Tote Bag"
    answer = ["Canvas", "Paris Print", "Tote Bag", "Vintage Design", "Skull Design", "canvas", "Halloween"]
    # "Tote Bag" and "Skull Design" come from the input (also "Bag" is in the example), "Halloween" from nowhere.
    assert leaked_phrases(answer, example, source) == ["Canvas", "Paris Print", "Vintage Design"]


def test_nothing_leaks_when_the_answer_keeps_to_the_input():
    assert leaked_phrases(["Cotton Tote"], "Product name: Cotton Apron", "Cotton Tote Bag") == []


def test_dropping_leaked_phrases_keeps_them_listed_and_never_empties_an_answer():
    from kgen.grounding import grounding_metrics, with_grounding
    from kgen.run import reparse_record

    example = "Product name: Skulls Design Canvas Tote\nKey Features: Canvas, Paris Print"
    raw = '{"explicit": [{"aspect": "Type", "value": "Tote Bag"}], "implicit": [{"aspect": "Style", "value": "Paris Print"}]}'
    row = {"id": "1", "level": "item", "input": "Cotton Tote Bag", "raw": raw, "status": "ok",
           "explicit": [{"aspect": "Type", "value": "Tote Bag", "rationale": ""}],
           "implicit": [{"aspect": "Style", "value": "Paris Print", "rationale": ""}],
           "key_phrases": ["Tote Bag", "Paris Print"]}
    dropped = with_grounding(row, example, drop_leaked=True)
    assert dropped["key_phrases"] == ["Tote Bag"] and dropped["leaked"] == ["Paris Print"]
    assert dropped["leaked_dropped"] == ["Paris Print"] and dropped["explicit"][0]["grounded"]
    assert with_grounding(row, example)["key_phrases"] == ["Tote Bag", "Paris Print"]  # the default keeps them
    # The metrics count what the model said: half its key phrases leaked, dropped or not.
    assert grounding_metrics([dropped])["leaked_key_phrase_share"] == 0.5
    assert reparse_record(dropped, example, drop_leaked=False)["key_phrases"] == ["Tote Bag", "Paris Print"]
    assert reparse_record(dropped, example, drop_leaked=True) == dropped  # a reparse never drops twice
    only_leaked = {**row, "key_phrases": ["Paris Print"]}
    assert with_grounding(only_leaked, example, drop_leaked=True)["key_phrases"] == ["Paris Print"]
