"""The structured answer format end to end without a model: schema, prompts, settings, task building."""

import json

import numpy as np
import pytest

from kgen.answer_schema import (
    MAX_SPAN_WORDS,
    answer_schema,
    default_max_new_tokens,
    input_spans,
    max_answer_tokens,
)
from kgen.grounding import is_grounded
from kgen.inputs import input_segments
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
            values = [a["value"] for a in as_json.explicit + as_json.implicit]
            assert as_json.status == "ok" and set(values) <= {a["value"] for a in text.explicit + text.implicit}
            spans = {s.casefold() for s in input_spans(input_segments(example["input"]))}
            # Shown as the schema asks: explicit values copied from the example's input, where it has any.
            shown = [a["value"] for a in as_json.explicit]
            assert all(v.casefold() in spans for v in shown) or shown == [a["value"] for a in text.explicit]
            assert "rationale" not in json.loads(example_answer(example, "json"))["explicit"][0]


@pytest.mark.parametrize("level", ["item", "user"])
def test_json_tasks_show_the_example_as_json_or_no_example_at_all(level):
    text = "Purchase history (oldest first):\n1. Red Mug" if level == "user" else "Red Mug"
    inputs = [("a", text, {})]
    one_shot = teacher_tasks(level, inputs, HashEncoder(), answer_format="json")[0]
    zero_shot = teacher_tasks(level, inputs, None, answer_format="json", reference="none")[0]
    assert one_shot["template"] == zero_shot["template"] == f"{level}_json"
    assert 'Answer: {"explicit": [' in one_shot["messages"][0]["content"] and one_shot["reference_id"]
    assert 'Answer: {"explicit": [' not in zero_shot["messages"][0]["content"]
    assert zero_shot["reference_id"] is None and zero_shot["reference_text"] == ""
    assert zero_shot["messages"][0]["content"].endswith(f"{text}\nAnswer:")


def test_settings_and_configs_check_the_format():
    assert not {"answer_format", "explicit_spans"} & set(GenerationSettings(answer_format="text").to_dict())  # old keys stay valid
    assert GenerationSettings(answer_format="json").to_dict()["answer_format"] == "json"
    spans, free = GenerationSettings(answer_format="json"), GenerationSettings(answer_format="json", explicit_spans=False)
    assert spans.to_dict() != free.to_dict()  # a span run never resumes from a free run's answers
    with pytest.raises(ValueError, match="answer_format must be one of text, json"):
        GenerationSettings(answer_format="yaml")
    with pytest.raises(ValueError, match="reference 'none' needs answer_format 'json'"):
        GenerateConfig(level="item", input="i.jsonl", output="o.jsonl", reference="none",
                       settings=GenerationSettings(answer_format="text"))
    assert GenerateConfig(level="item", input="i.jsonl", output="o.jsonl").settings.answer_format == "json"  # default
    assert default_max_new_tokens("json") > default_max_new_tokens("text")


def test_one_default_answer_format_and_token_limit_for_every_run():
    """json everywhere; no token limit given means the format's own, decided by default_max_new_tokens alone."""
    from distill.data import DataConfig
    from distill.student_config import StudentConfig

    assert GenerationSettings().answer_format == DataConfig(knowledge=["k"], output="o").answer_format \
        == StudentConfig(model="m", input="i", output="o").answer_format == "json"
    assert GenerationSettings().max_new_tokens == default_max_new_tokens("json") == max_answer_tokens()
    assert GenerationSettings(answer_format="text").max_new_tokens == default_max_new_tokens("text")
    assert GenerationSettings(answer_format="text", max_new_tokens=7).max_new_tokens == 7
    assert StudentConfig(model="m", input="i", output="o").max_new_tokens is None  # resolved by its GenerationSettings


def test_a_repetition_penalty_is_part_of_the_request_key_only_when_it_is_on():
    assert "repetition_penalty" not in GenerationSettings().to_dict()  # keys of runs made before it stay valid
    assert GenerationSettings(repetition_penalty=1.15).to_dict()["repetition_penalty"] == 1.15
    with pytest.raises(ValueError, match="repetition_penalty must be > 0, got 0"):
        GenerationSettings(repetition_penalty=0)


def test_the_schema_bounds_every_list_and_string():
    schema = answer_schema()
    assert list(schema["properties"]) == ["explicit", "implicit"]
    assert all("maxItems" in p for p in schema["properties"].values())
    for facts in schema["properties"].values():
        assert all("maxLength" in field for field in facts["items"]["properties"].values())
    assert default_max_new_tokens("json") == max_answer_tokens()


def test_spans_are_contiguous_words_of_one_segment_and_grounded_by_construction():
    spans = input_spans(["Set of 3 Cake Tins, Pantry Design"])
    assert spans[:4] == ["Set", "3", "Cake", "Tins"]  # unigrams first; "of" alone is no phrase
    assert "Cake Tins" in spans and "3 Cake Tins" in spans and "Pantry Design" in spans
    assert "Set of 3" in spans and "Set of" not in spans and "of 3" not in spans  # no function word at an edge
    assert "Tins Pantry" in spans  # the comma is trimmed; a phrase may still cross it
    assert all(len(s.split()) <= MAX_SPAN_WORDS for s in spans) and len(spans) == len({s.casefold() for s in spans})
    user = "Purchase history (oldest first):\n1. Red Mug\n2. Blue Tin\nProfile: country=Finland"
    segments = input_segments(user)
    assert segments == ["Red Mug", "Blue Tin", "Finland"]
    assert "Mug Blue" not in input_spans(segments) and "Finland" in input_spans(segments)  # never across two names
    for text in ("Coca-Cola Zero Sugar 1.25L", "Pack of 12 London Tissues", "JUMBO BAG 50's CHRISTMAS", user):
        assert all(is_grounded(s, text) for s in input_spans(input_segments(text))), text


def test_a_span_schema_admits_only_the_input_spans_as_explicit_values():
    schema = answer_schema(["Red", "Red Mug"])
    value = schema["properties"]["explicit"]["items"]["properties"]["value"]
    assert value == {"type": "string", "enum": ["Red", "Red Mug"]}
    assert "enum" not in schema["properties"]["implicit"]["items"]["properties"]["value"]
    assert "enum" not in answer_schema()["properties"]["explicit"]["items"]["properties"]["value"]
