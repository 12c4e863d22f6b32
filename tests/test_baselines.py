"""The no-model baselines and the paired student/teacher ratio, on hand-made gold."""

import numpy as np
import pytest

from eval.baselines import baseline_records, name_words
from eval.f1_report import evaluate_f1
from eval.paired import paired_f1_ratio


class ExactEncoder:
    """One-hot embeddings: phrases match only when equal after normalisation (no model needed)."""

    def encode(self, phrases):
        return np.eye(len(phrases), dtype=np.float32)


def test_name_words_drops_filler_and_repeats():
    assert name_words("Set of 3 Cake Tins & Bowls - Pantry Design") == ["Set", "3", "Cake", "Tins", "Bowls", "Pantry", "Design"]
    history = "Purchase history (oldest first):\n1. Red Mug\n2. Mug x 2 Blue\nProfile: country=France"
    assert name_words(history) == ["Red", "Mug", "2", "Blue"]


def test_the_baseline_scores_on_a_hand_made_gold():
    gold = [
        {"id": "a", "level": "item", "input": "Red Retrospot Lunch Bag", "key_phrases": ["Red", "Lunch Bag", "Retro Style"]},
        {"id": "b", "level": "item", "input": "Set of 6 Spice Tins", "key_phrases": ["Spice", "Tins", "6"]},
        {"id": "c", "level": "item", "key_phrases": ["no input, no baseline"]},
    ]
    preds = baseline_records(gold)
    assert [p["key_phrases"] for p in preds] == [["Red", "Retrospot", "Lunch", "Bag"], ["Set", "6", "Spice", "Tins"]]
    report = evaluate_f1(preds, gold, ExactEncoder(), n_boot=0)
    # a: 1 of 4 predicted matches ("Red"), 1 of 3 gold found -> F1 2/7; b: 3 of 4, 3 of 3 -> 6/7; c: missing -> 0.
    assert report["headline"]["macro"]["f1"] == pytest.approx((2 / 7 + 6 / 7 + 0) / 3)


def test_unknown_baselines_are_refused():
    with pytest.raises(ValueError, match="name-words"):
        baseline_records([], "tf-idf")


def test_paired_ratio_and_its_interval():
    teacher = {("item", str(i)): f for i, f in enumerate([0.4, 0.2, 0.6, 0.0])}
    student = {("item", str(i)): f / 2 for (_, i), f in zip(teacher, teacher.values())} | {("item", "extra"): 1.0}
    out = paired_f1_ratio(student, teacher, n_boot=200)
    assert out["ratio"] == pytest.approx(0.5) and out["n_items"] == 4
    assert out["ratio_ci95"] == pytest.approx([0.5, 0.5])  # half on every record: every paired resample says 0.5
    assert paired_f1_ratio({("item", "0"): 0.3}, {("item", "0"): 0.0})["ratio"] is None
