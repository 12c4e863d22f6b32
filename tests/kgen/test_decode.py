"""kgen.teachers.decode: the shared prefix, the slot cache, and answers equal to generate()'s on a tiny model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from ground.errors import ConfigError
from kgen.run import request_schema
from kgen.teachers.base import GenerationSettings
from kgen.teachers.decode import SlotCache, common_prefix_length, supports_fast_decoding
from kgen.teachers.transformers_backend import TransformersTeacher

NAMES = ["Jumbo Bag Red Retrospot", "Set of 3 Cake Tins Pantry Design", "Pack of 12 London Tissues",
         "Coca-Cola Zero Sugar 1.25L", "Doormat Union Flag", "Glass Star Frosted T-Light Holder", "Mug"]


def prompts():
    # One shared instruction, then inputs of different lengths: a prefix to reuse and rows that end apart.
    return [[{"role": "user", "content": "Summarise the product. " * 4 + f"Product Name: {name} " + "x " * i}]
            for i, name in enumerate(NAMES)]


def both_ways(model_dir, settings, batch_size, schemas=None):
    out = {}
    for decoding in ("generate", "auto"):
        teacher = TransformersTeacher(model_dir, batch_size=batch_size, decoding=decoding)
        got = list(teacher.complete(prompts(), settings, schemas))
        assert sorted(i for i, _ in got) == list(range(len(NAMES)))  # every prompt answered once
        out[decoding] = dict(got)
    return out["generate"], out["auto"]


def assert_same_answers(reference, fast):
    for i in range(len(NAMES)):
        assert fast[i].text == reference[i].text, i
        assert (fast[i].status, fast[i].prompt_tokens) == (reference[i].status, reference[i].prompt_tokens)


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3, 4], [1, 2, 5]) == 2
    assert common_prefix_length([1, 2, 3], [1, 2, 3]) == 3
    assert common_prefix_length([7, 1], [8, 1]) == 0


def test_slot_cache_keeps_each_row_in_its_own_columns():
    cache = SlotCache(n_layers=1, slots=3, kv_heads=1, head_dim=1, capacity=4, limit=10, dtype=torch.float32,
                      device="cpu")
    for length, value in ((2, 1.0), (4, 2.0), (1, 3.0)):
        row = torch.full((1, 1, length, 1), value)
        cache.put([(row, row)])
    assert cache.lengths == [2, 4, 1] and cache.capacity >= 5  # grown to hold the longest row and its next token
    cache.drop(0)  # the last row takes the dropped row's place
    assert cache.lengths == [1, 4]
    positions, mask = cache.step_inputs()
    assert positions[:, 0].tolist() == [1, 4]
    assert mask[:, 0, 0].tolist() == [[True, True, False, False, False], [True] * 5]
    new = torch.tensor([[[[30.0]]], [[[20.0]]]])  # (rows, heads, 1, dim)
    keys, _ = cache.update(new, new, 0)
    assert keys[:, 0, :, 0].tolist() == [[3.0, 30.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0, 20.0]]
    cache.advance()
    assert cache.lengths == [2, 5]


def test_greedy_text_answers_equal_generate(tiny_model_dir):
    settings = GenerationSettings(max_new_tokens=12, answer_format="text")
    reference, fast = both_ways(tiny_model_dir, settings, batch_size=3)  # 7 prompts through 3 slots: rows refill
    assert_same_answers(reference, fast)
    assert [fast[i].completion_tokens for i in range(7)] == [12] * 7


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_structured_answers_equal_generate_as_rows_end_apart(tiny_model_dir, penalty):
    from kgen.answer_schema import max_answer_tokens

    settings = GenerationSettings(max_new_tokens=max_answer_tokens(), answer_format="json", repetition_penalty=penalty)
    schemas = [request_schema({"input": name}, settings) for name in NAMES]
    reference, fast = both_ways(tiny_model_dir, settings, batch_size=3, schemas=schemas)
    assert_same_answers(reference, fast)
    assert len({fast[i].completion_tokens for i in range(7)}) > 1  # rows did end at different steps
    assert all(fast[i].status == "ok" for i in range(7))


def test_tokens_a_prompt_shares_with_the_one_before_are_not_computed_again(tiny_model_dir, monkeypatch):
    from kgen.teachers.decode import Decoder

    computed = []
    real = Decoder.prefill

    def prefill(self, prompt, prefix):
        computed.append(len(prompt) - (prefix[0][0].shape[2] if prefix else 0))
        return real(self, prompt, prefix)

    monkeypatch.setattr(Decoder, "prefill", prefill)
    teacher = TransformersTeacher(tiny_model_dir, batch_size=3)
    list(teacher.complete(prompts(), GenerationSettings(max_new_tokens=2, answer_format="text")))
    lengths = sorted(len(teacher._prompt_ids(p)) for p in prompts())
    assert computed[0] in lengths  # the first prompt: every token
    assert sum(computed[1:]) < sum(lengths) / 3  # the others: their own ends only (the instruction is shared)


def test_sampled_answers_follow_the_schema(tiny_model_dir):
    from kgen.answer_schema import max_answer_tokens
    from kgen.parse import parse_answer

    settings = GenerationSettings(max_new_tokens=max_answer_tokens(), answer_format="json", temperature=1.0,
                                  top_p=0.9, seed=3)
    schemas = [request_schema({"input": name}, settings) for name in NAMES]
    got = dict(TransformersTeacher(tiny_model_dir, batch_size=2).complete(prompts(), settings, schemas))
    assert all(got[i].status == "ok" and parse_answer(got[i].text).status == "ok" for i in range(7))


def test_a_failing_prompt_fails_alone(tiny_model_dir, monkeypatch):
    from kgen.teachers.decode import Decoder

    real = Decoder.prefill

    def prefill(self, prompt, prefix):
        if len(prompt) == max_len:
            raise RuntimeError("out of memory")
        return real(self, prompt, prefix)

    teacher = TransformersTeacher(tiny_model_dir, batch_size=2)
    teacher._load()
    lengths = [len(teacher._prompt_ids(p)) for p in prompts()]
    max_len = max(lengths)
    monkeypatch.setattr(Decoder, "prefill", prefill)
    got = dict(teacher.complete(prompts(), GenerationSettings(max_new_tokens=4, answer_format="text")))
    failed = sorted(i for i, c in got.items() if c.status == "api_error")
    assert failed == [i for i, n in enumerate(lengths) if n == max_len]  # the longest prompts only; the rest answered
    assert "out of memory" in got[failed[0]].error
    assert all(c.text for i, c in got.items() if i not in failed)


def test_models_the_loop_does_not_cover_go_through_generate(tiny_model_dir):
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert supports_fast_decoding(lm)
    lm.generation_config.no_repeat_ngram_size = 3  # a processor the loop does not apply
    assert not supports_fast_decoding(lm)
    lm.generation_config.no_repeat_ngram_size = 0
    lm.config.layer_types = ["sliding_attention", "full_attention"]
    assert not supports_fast_decoding(lm)


def test_decoding_setting_is_checked():
    with pytest.raises(ConfigError, match="decoding"):
        TransformersTeacher("x", decoding="fast")


def test_int8_is_opt_in_and_named_in_the_label(tiny_model_dir):
    from kgen.answer_schema import max_answer_tokens

    teacher = TransformersTeacher(tiny_model_dir, batch_size=3, quantize="int8")
    assert teacher.model == f"transformers:{tiny_model_dir}+int8"  # other request keys than the fp32 model's
    settings = GenerationSettings(max_new_tokens=max_answer_tokens(), answer_format="json")
    schemas = [request_schema({"input": name}, settings) for name in NAMES]
    got = dict(teacher.complete(prompts(), settings, schemas))
    assert type(teacher.lm.model.layers[0].mlp.up_proj).__name__ == "Linear" and "quantized" in type(
        teacher.lm.model.layers[0].mlp.up_proj).__module__
    assert all(got[i].status == "ok" for i in range(7))
    with pytest.raises(ConfigError, match="quantize"):
        TransformersTeacher("x", quantize="int4")


def test_a_teacher_spec_ending_in_int8_asks_for_it():
    from kgen.teachers import make_teacher, teacher_label

    spec = "transformers:some/model+int8"
    teacher = make_teacher(spec)
    assert (teacher.name, teacher.quantize, teacher.model) == ("some/model", "int8", teacher_label(spec))
    assert make_teacher("transformers:some/model").quantize == "none"
