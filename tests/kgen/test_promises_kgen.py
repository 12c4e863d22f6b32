"""Promises of kgen that a plausible one-line bug breaks silently (issue 23, section 2): the one-shot example is
never the input itself, even when only normalisation makes the texts equal, and a phrase found in both the input
and the example is not leaked."""

from __future__ import annotations

import numpy as np

from kgen.grounding import leaked_phrases, with_grounding
from kgen.reference import pick_examples, select_references


class FixedVectors:
    """An encoder that gives each exact text its own vector (so case and spacing change the embedding)."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors

    def encode(self, sentences, **_):
        return np.array([self.vectors[s] for s in sentences], dtype=float)


POOL = [{"id": "p-mug", "input": "Ceramic Coffee Mug"}, {"id": "p-cup", "input": "Espresso Cup"}]


def test_the_input_itself_is_never_its_example_even_when_the_embeddings_differ():
    # The input is the pool's mug up to case and spacing; its embedding is close (0.8), but not a near-duplicate.
    enc = FixedVectors({"Ceramic Coffee Mug": [1.0, 0.0], "Espresso Cup": [0.0, 1.0],
                        "ceramic  coffee MUG ": [0.8, 0.6], "Ceramic Teapot": [0.8, 0.6]})
    picked = pick_examples(["ceramic  coffee MUG ", "Ceramic Teapot"], POOL, enc)
    assert [p["id"] for p in picked] == ["p-cup", "p-mug"]  # the same vectors: only the text equality bans the mug


def test_select_references_bans_equal_texts_below_the_near_duplicate_threshold():
    emb_in, emb_pool = np.array([[1.0, 0.0]]), np.array([[0.8, 0.6], [0.6, 0.8]])  # cosines 0.8 and 0.6
    assert select_references(emb_in, emb_pool, np.array([[False, False]]))[0] == 0
    assert select_references(emb_in, emb_pool, np.array([[True, False]]))[0] == 1


def test_a_phrase_in_both_the_input_and_the_example_is_not_leaked():
    example = "Product name: Red Ceramic Mug\nKey Features: Red, Ceramic, Gift Idea"
    source = "Product name: Large Red Ceramic Coffee Mug"
    # "Red", "Ceramic" (and "Ceramic Mugs", a plural of the input's words) are in both; "Gift Idea" only in the example
    assert leaked_phrases(["Red", "Ceramic Mugs", "Gift Idea", "Coffee"], example, source) == ["Gift Idea"]


def test_a_record_marks_only_the_example_only_phrases_as_leaked():
    example = "Product name: Red Ceramic Mug\nKey Features: Red, Ceramic, Gift Idea"
    row = {"id": "1", "level": "item", "input": "Red Ceramic Coffee Mug", "status": "ok",
           "explicit": [{"aspect": "Colour", "value": "Red", "rationale": ""}],
           "implicit": [{"aspect": "Use", "value": "Gift Idea", "rationale": ""}],
           "key_phrases": ["Red", "Gift Idea", "Coffee Mug"]}
    marked = with_grounding(row, example, drop_leaked=True)
    assert marked["leaked"] == ["Gift Idea"] and marked["key_phrases"] == ["Red", "Coffee Mug"]


def test_a_user_input_is_clipped_only_by_the_names_it_shows():
    """The user text shows the most recent max_history items: a long name among the older ones is not shown."""
    from kgen.inputs import MAX_NAME_CHARS, input_clipped, user_input

    items = {"old": {"item_id": "old", "name": "x" * (MAX_NAME_CHARS + 10)},
             "a": {"item_id": "a", "name": "Mug"}, "b": {"item_id": "b", "name": "Teapot"}}
    user = {"user_id": "u1", "history": ["old", "a", "b"]}
    assert "x" * 20 not in user_input(user, items, max_history=2)
    assert not input_clipped(user, items, max_history=2)
    assert input_clipped(user, items, max_history=3)
    assert input_clipped({"user_id": "u2", "history": ["a", "b", "old"]}, items, max_history=2)
