"""The transformers backend on a tiny random model: batching, ordering, truncation, early stop."""

import json

from kgen.teachers.base import GenerationSettings
from kgen.teachers.transformers_backend import TransformersTeacher, cut_repetition, key_features_done, looping
from prompts import PROMPTS_DIR


def prompts(n):
    return [[{"role": "user", "content": f"Product Name: thing number {i} " + "x " * i}] for i in range(n)]


def test_every_prompt_answered_once_with_usage(tiny_model_dir):
    teacher = TransformersTeacher(tiny_model_dir, batch_size=3)
    got = dict(teacher.complete(prompts(7), GenerationSettings(max_new_tokens=5, answer_format="text")))
    assert sorted(got) == list(range(7))
    for completion in got.values():
        assert completion.status == "truncated"  # a random model never writes Key Features in 5 tokens
        assert completion.completion_tokens == 5 and completion.prompt_tokens > 0
    assert teacher.model == f"transformers:{tiny_model_dir}"


def test_batched_equals_one_by_one_greedy(tiny_model_dir):
    settings = GenerationSettings(max_new_tokens=6, answer_format="text")
    one = dict(TransformersTeacher(tiny_model_dir, batch_size=1).complete(prompts(4), settings))
    batched = dict(TransformersTeacher(tiny_model_dir, batch_size=4).complete(prompts(4), settings))
    # Left padding keeps greedy decoding the same per row (float noise aside, the tokens agree).
    assert [one[i].text for i in range(4)] == [batched[i].text for i in range(4)]


def test_key_features_done():
    assert not key_features_done("Type: Mug. x\nKey Features: Mug, Gi")
    assert key_features_done("Type: Mug. x\nKey Features: Mug, Gift\n")
    assert not key_features_done("Key Features:\n")
    assert key_features_done("Key Features:\n  Mug, Gift\n")
    # A line that starts listing a phrase again is as good as finished: small models loop there to the limit.
    assert key_features_done("Key Features: Blue, Dog, Dog,")
    assert not key_features_done("Key Features: Blue, Dog, Do")
    assert not key_features_done("Key Features: Dog, dogs,")


def test_cut_repetition_keeps_whole_phrases_only():
    assert cut_repetition("Type: Toy. x\nKey Features: Blue, Dog, Dog, B") == "Type: Toy. x\nKey Features: Blue, Dog, Dog"
    assert cut_repetition("Key Features: Blue, Dog, Fish, Bl") == "Key Features: Blue, Dog, Fish, Bl"  # no repeat: kept
    assert cut_repetition("Key Features: Blue, Blue\nMore") == "Key Features: Blue, Blue\nMore"  # finished line: kept


def test_looping_catches_the_loops_small_models_fall_into():
    start = "Explicit Information:\nType: Bag. The name says bag.\n"
    assert looping(start + "Style: " + "Custom, " * 20)
    assert looping(start + "Volume: 4." + "4" * 120)
    assert looping(start + "The product is a gift.\n" * 3)
    assert looping(start + "".join(f"{n}. Feltcraft Girl Nicole Kit\n" for n in range(30, 33)))
    # Real answers, and answers still short, are not loops.
    pool = [json.loads(line)["answer"] for line in (PROMPTS_DIR / "pool_items.jsonl").open()]
    pool += [json.loads(line)["answer"] for line in (PROMPTS_DIR / "pool_users.jsonl").open()]
    for answer in pool:
        assert not any(looping(answer[:end]) for end in range(1, len(answer) + 1, 7))
    assert not looping("Custom, Custom, Custom")


def test_structured_answers_of_a_random_model_all_parse_under_the_schema(tiny_model_dir):
    from kgen.answer_schema import MAX_EXPLICIT, MAX_IMPLICIT, MAX_VALUE_CHARS, max_answer_tokens
    from kgen.parse import parse_answer

    teacher = TransformersTeacher(tiny_model_dir, batch_size=3)
    settings = GenerationSettings(max_new_tokens=max_answer_tokens(), answer_format="json", temperature=1.0, seed=3)
    got = dict(teacher.complete(prompts(5), settings))
    assert sorted(got) == list(range(5))
    for completion in got.values():
        # A random model samples nonsense, yet the grammar lets it write only JSON the schema accepts.
        assert completion.status == "ok", completion.text
        answer = json.loads(completion.text)
        assert list(answer) == ["explicit", "implicit"]
        assert 1 <= len(answer["explicit"]) <= MAX_EXPLICIT and 1 <= len(answer["implicit"]) <= MAX_IMPLICIT
        assert all(len(a["value"]) <= MAX_VALUE_CHARS for a in answer["explicit"] + answer["implicit"])
        assert parse_answer(completion.text).status in ("ok", "parse_error")  # parse_error only if all phrases blank


def test_each_row_of_a_batch_is_held_to_the_spans_of_its_own_input(tiny_model_dir):
    from kgen.answer_schema import input_spans, max_answer_tokens
    from kgen.grounding import is_grounded
    from kgen.parse import parse_answer
    from kgen.run import request_schema

    names = ["Jumbo Bag Red Retrospot", "Set of 3 Cake Tins Pantry Design", "Pack of 12 London Tissues",
             "Coca-Cola Zero Sugar 1.25L", "Doormat Union Flag", "Glass Star Frosted T-Light Holder", "Mug"]
    settings = GenerationSettings(max_new_tokens=max_answer_tokens(), answer_format="json", temperature=1.0, seed=5)
    schemas = [request_schema({"input": name}, settings) for name in names]
    batch = [[{"role": "user", "content": f"Product Name: {name}"}] for name in names]
    got = dict(TransformersTeacher(tiny_model_dir, batch_size=4).complete(batch, settings, schemas))
    assert sorted(got) == list(range(len(names)))
    for i, completion in got.items():
        assert completion.status == "ok", completion.text
        parsed = parse_answer(completion.text)
        assert parsed.status == "ok" and parsed.explicit, completion.text
        for fact in parsed.explicit:  # a random model, yet every explicit value is a span of its own row's input
            assert fact["value"] in input_spans([names[i]]) and is_grounded(fact["value"], names[i]), (names[i], fact)


def test_a_repetition_penalty_changes_the_choices_but_never_breaks_the_schema(tiny_model_dir):
    from kgen.answer_schema import input_spans, max_answer_tokens
    from kgen.parse import parse_answer
    from kgen.run import request_schema

    names = ["Jumbo Bag Red Retrospot", "Set of 3 Cake Tins Pantry Design", "Pack of 12 London Tissues"]
    batch = [[{"role": "user", "content": f"Product Name: {name}"}] for name in names]
    answers = {}
    for penalty in (1.0, 3.0):
        settings = GenerationSettings(max_new_tokens=max_answer_tokens(), answer_format="json",
                                      repetition_penalty=penalty)
        schemas = [request_schema({"input": name}, settings) for name in names]
        answers[penalty] = dict(TransformersTeacher(tiny_model_dir, batch_size=3).complete(batch, settings, schemas))
        for i, completion in answers[penalty].items():
            parsed = parse_answer(completion.text)
            assert completion.status == "ok" and parsed.status == "ok", completion.text
            assert all(fact["value"] in input_spans([names[i]]) for fact in parsed.explicit)
    assert [c.text for c in answers[1.0].values()] != [c.text for c in answers[3.0].values()]  # it reaches generate
