"""The structured answer format end to end without a model: schema, prompts, settings, task building."""

import json

import numpy as np
import pytest

from kgen.answer_schema import answer_schema, default_max_new_tokens
from kgen.generate import GenerateConfig
from kgen.parse import parse_answer
from kgen.reference import example_answer, load_pool
from kgen.tasks import teacher_tasks
from kgen.teachers.base import GenerationSettings


class HashEncoder:
    """A random but fixed 16-d vector per text: no model needed to pick an example."""

    def encode(self, sentences, **_):
        return np.array([np.random.default_rng(sum(map(ord, s))).normal(size=16) for s in sentences])


def test_every_pool_answer_has_a_json_form_that_parses_back_the_same():
    for level in ("item", "user"):
        for example in load_pool(level):
            text, as_json = parse_answer(example["answer"]), parse_answer(example_answer(example, "json"))
            assert as_json.key_phrases == text.key_phrases and as_json.explicit == text.explicit
            json.loads(example_answer(example, "json"))


@pytest.mark.parametrize("level", ["item", "user"])
def test_json_tasks_show_the_example_as_json_or_no_example_at_all(level):
    text = "Purchase history (oldest first):\n1. Red Mug" if level == "user" else "Red Mug"
    inputs = [("a", text, {})]
    one_shot = teacher_tasks(level, inputs, HashEncoder(), answer_format="json")[0]
    zero_shot = teacher_tasks(level, inputs, None, answer_format="json", reference="none")[0]
    assert one_shot["template"] == zero_shot["template"] == f"{level}_json"
    assert '"key_features": [' in one_shot["messages"][0]["content"] and one_shot["reference_id"]
    assert '"key_features": [' not in zero_shot["messages"][0]["content"]
    assert zero_shot["reference_id"] is None and zero_shot["reference_text"] == ""
    assert zero_shot["messages"][0]["content"].endswith(f"{text}\nAnswer:")


def test_settings_and_configs_check_the_format():
    assert "answer_format" not in GenerationSettings().to_dict()  # old request keys stay valid
    assert GenerationSettings(answer_format="json").to_dict()["answer_format"] == "json"
    with pytest.raises(ValueError, match="answer_format must be one of text, json"):
        GenerationSettings(answer_format="yaml")
    with pytest.raises(ValueError, match="reference 'none' needs answer_format 'json'"):
        GenerateConfig(level="item", input="i.jsonl", output="o.jsonl", reference="none")
    assert default_max_new_tokens("json") > default_max_new_tokens("text")


def test_the_schema_orders_facts_before_key_features_and_bounds_every_list():
    schema = answer_schema()
    assert list(schema["properties"]) == ["explicit", "implicit", "key_features"]
    assert all("maxItems" in p for p in schema["properties"].values())
