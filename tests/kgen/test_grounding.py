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
