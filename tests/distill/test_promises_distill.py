"""Promises of distill that a plausible one-line bug breaks silently (issue 23, section 2): dictionary
augmentation replaces whole words only, and training validates on the validation split."""

from __future__ import annotations

import random

from distill.augment import eligible_phrases, phrase_pattern, substitute
from kgen.parse import ParsedAnswer

DICT = {"gift": ["Present"], "present": ["Gift"], "tea": ["Chai"], "chai": ["Tea"]}


def answer(implicit_values: list[str], rationale: str, phrases: list[str]) -> ParsedAnswer:
    explicit = [{"aspect": "Type", "value": "Mug", "rationale": rationale}]
    implicit = [{"aspect": "Use", "value": v, "rationale": rationale} for v in implicit_values]
    return ParsedAnswer(explicit, implicit, phrases)


def test_dictionary_substitution_replaces_whole_words_only():
    parsed = answer(["Gift", "Giftware"], "A gifted maker's teapot, a steady gift; tea-time gifts and TEA.",
                    ["Gift", "Teapot", "Steady", "Tea"])
    new = substitute(parsed, DICT, random.Random(0), "Mug")
    assert [a["value"] for a in new.implicit] == ["Present", "Giftware"]  # "Giftware" is a word of its own
    assert new.implicit[0]["rationale"] == "A gifted maker's teapot, a steady present; chai-time gifts and CHAI."
    assert new.key_phrases == ["Present", "Teapot", "Steady", "Chai"]
    assert new.explicit[0]["rationale"] == new.implicit[0]["rationale"]


def test_a_dictionary_phrase_inside_a_longer_word_is_never_eligible_nor_protected():
    pattern = phrase_pattern(DICT)
    assert [m.group(0) for m in pattern.finditer("teapots, gifted, presentation, steady, tea, Gift")] == ["tea", "Gift"]
    # "tea" inside the input's "Teapot" does not protect the answer's "tea"; "present" inside "presentation" neither
    parsed = answer([], "tea as a present", ["Tea"])
    assert eligible_phrases(parsed, pattern, "Teapot presentation box") == ["tea", "present"]


def test_training_validates_on_the_validation_split(tmp_path, knowledge_file, tiny_model):
    """The loss reported as eval_loss is computed on the held-out ids, never on the training examples."""
    from datasets import load_from_disk

    from distill.data import DataConfig, build_data
    from distill.train import build_trainer, load_splits
    from distill.train_config import TrainConfig

    sft = tmp_path / "sft"
    build_data(DataConfig(knowledge=[knowledge_file], output=sft, augment=("shuffle",), shuffle_factor=1, val_fraction=0.25))
    saved = load_from_disk(str(sft))
    train, val = load_splits(sft)
    assert val["completion"] == saved["validation"]["completion"] and train["completion"] == saved["train"]["completion"]
    assert 0 < len(val) < len(train)
    config = TrainConfig(data=str(sft), output=str(tmp_path / "run"), student=str(tiny_model), max_steps=1,
                         batch_size=2, max_length=512)
    trainer = build_trainer(config, train, val)
    assert len(trainer.eval_dataset) == len(val) and len(trainer.train_dataset) == len(train)
