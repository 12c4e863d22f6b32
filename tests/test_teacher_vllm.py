"""The vllm teacher's batching and output mapping, against a fake `vllm` module put into sys.modules.

The fake mimics the shape of vLLM's offline API (`LLM(model=...)`, `LLM.chat(conversations, sampling_params=...,
use_tqdm=...)`, `SamplingParams`, `RequestOutput.outputs[0].text/.finish_reason/.token_ids`, `.prompt_token_ids`).
It checks OUR mapping logic only, not vLLM itself: that needs a GPU and the real package.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from kgen.teachers.base import GenerationSettings
from kgen.teachers.vllm_backend import VLLMTeacher

SETTINGS = GenerationSettings(max_new_tokens=32, temperature=0.5, top_p=0.8, seed=7, answer_format="text")


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = 16
    seed: int | None = None
    repetition_penalty: float = 1.0


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]


@dataclass
class FakeLLM:
    """Answers "answer to: <last user message>"; "LONG" in it hits max_tokens, "TOO BIG" fails the whole call."""

    model: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    chats: list[list[str]] = field(default_factory=list)  # the last user messages of each `chat` call
    params: list[SamplingParams] = field(default_factory=list)

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        assert use_tqdm is False, "the run engine draws its own progress bar"
        contents = [conversation[-1]["content"] for conversation in messages]
        self.chats.append(contents)
        self.params.append(sampling_params)
        if any("TOO BIG" in c for c in contents):
            raise ValueError("The decoder prompt is longer than the maximum model length")
        return [self._output(n, conversation) for n, conversation in enumerate(messages)]

    def _output(self, n: int, conversation) -> RequestOutput:
        content = conversation[-1]["content"]
        text = f"answer to: {content}"
        reason = "length" if "LONG" in content else "abort" if "ABORT" in content else "stop"
        prompt_words = sum(len(m["content"].split()) for m in conversation)
        return RequestOutput(
            str(n), list(range(prompt_words)), [CompletionOutput(0, text, [1] * len(text.split()), reason)]
        )


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Describe it."}, {"role": "user", "content": content}]


def test_a_missing_vllm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"pip install msd-toolkit\[vllm\]` \(and a GPU\)"):
        VLLMTeacher("Qwen/Qwen2.5-7B-Instruct")


def test_engine_options_reach_vllm(fake_vllm):
    teacher = VLLMTeacher("Qwen/Qwen2.5-7B-Instruct", tensor_parallel_size=2, gpu_memory_utilization=0.5)
    assert teacher.model == "vllm:Qwen/Qwen2.5-7B-Instruct"
    llm = teacher.llm
    assert (llm.model, llm.tensor_parallel_size, llm.gpu_memory_utilization) == ("Qwen/Qwen2.5-7B-Instruct", 2, 0.5)
    assert teacher.llm.max_model_len is None
    assert VLLMTeacher("m", max_model_len=4096).llm.max_model_len == 4096


@pytest.mark.parametrize(
    "option, value", [("batch_size", 0), ("tensor_parallel_size", 0), ("gpu_memory_utilization", 1.5)]
)
def test_bad_settings_are_rejected_naming_the_value(fake_vllm, option, value):
    with pytest.raises(ValueError, match=f"{option} must be .*{value}"):
        VLLMTeacher("m", **{option: value})


def test_prompts_go_in_chunks_and_every_answer_comes_back_with_its_index(fake_vllm):
    contents = [f"item {i}" for i in range(7)]
    teacher = VLLMTeacher("m", batch_size=3)
    answers = list(teacher.complete([user(c) for c in contents], SETTINGS))
    assert teacher.llm.chats == [contents[0:3], contents[3:6], contents[6:7]]
    assert [i for i, _ in answers] == list(range(7))
    for i, completion in answers:
        assert completion.status == "ok" and completion.error is None
        assert completion.text == f"answer to: {contents[i]}"
        assert completion.prompt_tokens == 2 + 2  # "Describe it." + "item i"
        assert completion.completion_tokens == 4  # "answer to: item i"
    assert teacher.llm.params[0] == SamplingParams(temperature=0.5, top_p=0.8, max_tokens=32, seed=7)


def test_a_repetition_penalty_goes_to_the_sampling_params(fake_vllm):
    teacher = VLLMTeacher("m", batch_size=3)
    list(teacher.complete([user("mug")], GenerationSettings(max_new_tokens=32, seed=7, answer_format="text", repetition_penalty=1.15)))
    assert teacher.llm.params[0] == SamplingParams(temperature=0.0, top_p=1.0, max_tokens=32, seed=7,
                                                   repetition_penalty=1.15)


def test_answers_come_out_chunk_by_chunk(fake_vllm):
    teacher = VLLMTeacher("m", batch_size=2)
    answers = teacher.complete([user(f"item {i}") for i in range(6)], SETTINGS)
    first_two = [next(answers), next(answers)]
    assert len(teacher.llm.chats) == 1  # the first chunk was handed out before the second was generated
    assert [i for i, _ in first_two] == [0, 1]
    assert len(list(answers)) == 4


def test_finish_reasons_map_to_statuses(fake_vllm):
    teacher = VLLMTeacher("m")
    answers = dict(teacher.complete([user("fine"), user("LONG one"), user("ABORT it")], SETTINGS))
    assert answers[0].status == "ok"
    assert answers[1].status == "truncated" and answers[1].text == "answer to: LONG one"
    assert answers[2].status == "api_error" and "finish_reason=abort" in answers[2].error


def test_a_failing_prompt_costs_only_its_own_answer(fake_vllm):
    contents = ["a", "b", "TOO BIG", "c", "d", "e"]
    teacher = VLLMTeacher("m", batch_size=4)
    answers = list(teacher.complete([user(c) for c in contents], SETTINGS))
    assert sorted(i for i, _ in answers) == list(range(6))
    by_index = dict(answers)
    assert by_index[2].status == "api_error" and "ValueError" in by_index[2].error and "maximum" in by_index[2].error
    assert all(by_index[i].status == "ok" and by_index[i].text == f"answer to: {contents[i]}" for i in (0, 1, 3, 4, 5))
    # the failed chunk was retried one prompt at a time, and the next chunk ran as usual
    assert teacher.llm.chats == [contents[:4], ["a"], ["b"], ["TOO BIG"], ["c"], contents[4:]]


def test_no_prompts_make_no_call(fake_vllm):
    teacher = VLLMTeacher("m")
    assert list(teacher.complete([], SETTINGS)) == []
    assert teacher.llm.chats == []


def test_close_drops_the_engine(fake_vllm):
    teacher = VLLMTeacher("m")
    teacher.close()
    assert not hasattr(teacher, "llm")


@dataclass
class StructuredOutputsParams:
    json: dict | None = None


@dataclass
class StructuredSamplingParams(SamplingParams):
    structured_outputs: StructuredOutputsParams | None = None


def test_structured_answers_ask_vllm_for_the_answer_schema(fake_vllm):
    from kgen.answer_schema import answer_schema

    fake_vllm.SamplingParams = StructuredSamplingParams
    fake_vllm.sampling_params = types.SimpleNamespace(StructuredOutputsParams=StructuredOutputsParams)
    teacher = VLLMTeacher("m")
    json_settings = GenerationSettings(max_new_tokens=32, seed=7, answer_format="json")
    list(teacher.complete([user("a")], json_settings))
    list(teacher.complete([user("b")], SETTINGS))
    (structured,), plain = teacher.llm.params  # structured: one SamplingParams per prompt
    assert structured.structured_outputs == StructuredOutputsParams(json=answer_schema())
    assert structured.max_tokens == 32 and plain.structured_outputs is None


def test_each_prompt_gets_its_own_schema(fake_vllm):
    from kgen.answer_schema import answer_schema

    fake_vllm.SamplingParams = StructuredSamplingParams
    fake_vllm.sampling_params = types.SimpleNamespace(StructuredOutputsParams=StructuredOutputsParams)
    teacher = VLLMTeacher("m", batch_size=2)
    schemas = [answer_schema([f"span {i}"]) for i in range(3)]
    json_settings = GenerationSettings(max_new_tokens=32, answer_format="json")
    answers = dict(teacher.complete([user(f"item {i}") for i in range(3)], json_settings, schemas))
    assert sorted(answers) == [0, 1, 2]
    sent = [p.structured_outputs.json for chunk in teacher.llm.params for p in chunk]
    assert sent == schemas and [len(chunk) for chunk in teacher.llm.params] == [2, 1]


def test_an_older_vllm_gets_guided_decoding():
    from kgen.teachers.vllm_backend import structured_output_options

    old = types.SimpleNamespace(sampling_params=types.SimpleNamespace(GuidedDecodingParams=StructuredOutputsParams))
    assert structured_output_options(old, {"type": "object"}) == {
        "guided_decoding": StructuredOutputsParams(json={"type": "object"})}
    with pytest.raises(ImportError, match="upgrade vllm"):
        structured_output_options(types.SimpleNamespace(), {})
