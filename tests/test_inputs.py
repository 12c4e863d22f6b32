"""Rendering items and users into the text a model reads."""

from __future__ import annotations

import pytest

from kgen.inputs import item_input, user_input

ITEMS = {str(i): {"item_id": str(i), "name": f"Item {i}"} for i in range(30)}


def test_item_input_is_the_cleaned_name():
    assert item_input({"item_id": "85123A", "name": "White Hanging Heart T-Light Holder"}) == "White Hanging Heart T-Light Holder"


def test_item_input_adds_year_and_genres_from_the_attributes():
    movie = {"item_id": "1", "name": "Toy Story", "category": "Animation",
             "attributes": {"year": 1995, "genres": ["Animation", "Children's", "Comedy"]}}
    assert item_input(movie) == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert item_input({**movie, "attributes": {"genres": ["Drama"]}}) == "Toy Story. Genres: Drama"
    # Online Retail: the category is derived from the name and the price is no fact to describe: name only.
    product = {"item_id": "2", "name": "Purple Paper Parasol", "category": "garden & outdoor",
               "attributes": {"unit_price": 2.95}}
    assert item_input(product) == "Purple Paper Parasol"


def test_user_input_exact_format_with_profile():
    user = {"user_id": "u1", "history": ["1", "2"], "profile": {"country": "United Kingdom", "age": 30}}
    assert user_input(user, ITEMS) == (
        "Purchase history (oldest first):\n1. Item 1\n2. Item 2\nProfile: age=30, country=United Kingdom"
    )


def test_a_history_of_films_is_headed_as_viewing_not_purchases():
    films = {"1": {"item_id": "1", "name": "Heat", "attributes": {"year": 1995, "genres": ["Action", "Crime"]}},
             "2": {"item_id": "2", "name": "Fargo", "attributes": {"year": 1996, "genres": ["Crime"]}}}
    user = {"user_id": "u1", "history": ["1", "2"], "profile": {"gender": "F"}}
    assert user_input(user, films) == (
        "Viewing history (oldest first):\n1. Heat (1995). Genres: Action, Crime\n2. Fargo (1996). Genres: Crime\n"
        "Profile: gender=F"
    )
    # One product among the films, or no history at all: a purchase history, as before.
    assert user_input(user, {**films, "2": ITEMS["2"]}).startswith("Purchase history (oldest first):\n")
    assert user_input({"user_id": "u2", "history": []}, films) == "Purchase history (oldest first):"


def test_user_input_without_profile_has_no_profile_line():
    assert user_input({"user_id": "u1", "history": ["3"]}, ITEMS) == "Purchase history (oldest first):\n1. Item 3"


def test_user_input_keeps_the_last_max_history_items():
    user = {"user_id": "u1", "history": [str(i) for i in range(25)]}
    lines = user_input(user, ITEMS).split("\n")
    assert lines[1] == "1. Item 5" and lines[-1] == "20. Item 24" and len(lines) == 21
    assert user_input(user, ITEMS, max_history=2).split("\n")[1:] == ["1. Item 23", "2. Item 24"]


def test_integer_history_ids_match_string_item_ids():
    assert user_input({"user_id": 7, "history": [4]}, ITEMS).endswith("1. Item 4")


def test_missing_history_item_names_user_and_item():
    with pytest.raises(ValueError, match=r"user u42.*'nope'"):
        user_input({"user_id": "u42", "history": ["1", "nope"]}, ITEMS)
