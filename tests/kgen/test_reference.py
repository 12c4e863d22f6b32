"""Dynamic one-shot selection: most similar pool example, never the input itself or a near-duplicate."""

import numpy as np
import pytest

from kgen.reference import pick_examples, select_references


class BagOfWords:
    """A deterministic stand-in encoder: word counts over a fixed vocabulary."""

    def __init__(self, vocab):
        self.vocab = {w: i for i, w in enumerate(vocab)}

    def encode(self, sentences, **_):
        out = np.zeros((len(sentences), len(self.vocab)))
        for row, s in enumerate(sentences):
            for w in s.lower().split():
                if w in self.vocab:
                    out[row, self.vocab[w]] += 1
        return out + 1e-3


POOL = [
    {"id": "p-coffee", "input": "Classic Coffee Beans 200g"},
    {"id": "p-candle", "input": "Vanilla Scented Candle"},
    {"id": "p-mug", "input": "Ceramic Coffee Mug"},
]
ENC = BagOfWords(["coffee", "beans", "candle", "vanilla", "mug", "ceramic", "scented", "tea", "light"])


def test_picks_the_most_similar_example_per_input():
    picked = pick_examples(["Tea Light Candle", "Ceramic Mug"], POOL, ENC)
    assert [p["id"] for p in picked] == ["p-candle", "p-mug"]


def test_never_picks_the_input_itself():
    picked = pick_examples(["classic coffee beans 200g"], POOL, ENC)
    assert picked[0]["id"] != "p-coffee"


def test_never_picks_a_near_duplicate():
    emb_in = np.array([[1.0, 0.0]])
    emb_pool = np.array([[1.0, 0.01], [0.6, 0.8]])
    same = np.zeros((1, 2), dtype=bool)
    assert select_references(emb_in, emb_pool, same, near_duplicate=0.95)[0] == 1
    assert select_references(emb_in, emb_pool, same, near_duplicate=1.01)[0] == 0


def test_all_banned_is_an_error():
    with pytest.raises(ValueError, match="near-duplicate"):
        select_references(np.ones((1, 2)), np.ones((2, 2)), np.zeros((1, 2), dtype=bool))
