"""Teacher on the offline vLLM engine (`vllm.LLM.chat`, batched): the fast path on a GPU machine."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence

from kgen.models import resolve_llm
from ground.errors import ConfigError, MissingExtra
from kgen.teachers.base import Completion, GenerationSettings, Messages, prompt_schema

MISSING_VLLM = "the vllm backend needs `pip install msd-toolkit[vllm]` (and a GPU)"


class VLLMTeacher:
    """A hub id, local folder or the embedded alias, served by `vllm.LLM` in this process."""

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        batch_size: int = 256,
    ):
        _check_settings(tensor_parallel_size, gpu_memory_utilization, max_model_len, batch_size)
        try:
            import vllm
        except ImportError as exc:
            raise MissingExtra(MISSING_VLLM) from exc
        self._vllm = vllm
        self.model = f"vllm:{model}"
        self.batch_size = batch_size
        options = {"tensor_parallel_size": tensor_parallel_size, "gpu_memory_utilization": gpu_memory_utilization}
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        self.llm = vllm.LLM(model=resolve_llm(model), **options)

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Yield each answer chunk by chunk (`batch_size` prompts per `LLM.chat` call).

        Structured answers get one SamplingParams per prompt, each with its own schema (from `schemas`, if given).
        """
        def params(index: int):
            schema = prompt_schema(schemas, index) if settings.structured else None
            return self._vllm.SamplingParams(
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_new_tokens,
                seed=settings.seed,
                repetition_penalty=settings.repetition_penalty,
                **(structured_output_options(self._vllm, schema) if schema is not None else {}),
            )

        shared = None if settings.structured else params(0)
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            chunk_params = shared or [params(i) for i in range(start, start + len(chunk))]
            yield from enumerate(self._answer_chunk(chunk, chunk_params), start)

    def close(self) -> None:
        """Drop the engine and give its GPU memory back."""
        del self.llm
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _answer_chunk(self, chunk: list[Messages], params) -> list[Completion]:
        """Answer a chunk; `params` is one SamplingParams for all, or a list with one per prompt."""
        try:
            outputs = self._chat(chunk, params)
        except Exception as exc:  # vLLM raises many kinds (ValueError for a prompt over max_model_len, CUDA OOM, ...)
            if len(chunk) == 1:
                return [Completion("", "api_error", error=f"{type(exc).__name__}: {exc}")]
        else:
            return [completion_from_output(out) for out in outputs]
        # One bad prompt fails its whole call; answer the chunk one by one so only that prompt is lost
        # (else a rerun would meet the same chunk and fail it again).
        one_each = params if isinstance(params, list) else [params] * len(chunk)
        return [answer for messages, p in zip(chunk, one_each) for answer in self._answer_chunk([messages], [p])]

    def _chat(self, chunk: list[Messages], params) -> list:
        outputs = self.llm.chat(chunk, sampling_params=params, use_tqdm=False)
        if len(outputs) != len(chunk):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(chunk)} prompts")
        return outputs


def structured_output_options(vllm, schema: dict) -> dict:
    """The SamplingParams keywords that constrain an answer to the JSON schema, in this vLLM's own API.

    vLLM >= 0.10.2 takes `structured_outputs=StructuredOutputsParams(json=...)`; older releases took
    `guided_decoding=GuidedDecodingParams(json=...)` (removed in 0.12).
    """
    params = getattr(vllm, "sampling_params", None)
    if hasattr(params, "StructuredOutputsParams"):
        return {"structured_outputs": params.StructuredOutputsParams(json=schema)}
    if hasattr(params, "GuidedDecodingParams"):
        return {"guided_decoding": params.GuidedDecodingParams(json=schema)}
    raise ImportError("this vLLM has neither StructuredOutputsParams nor GuidedDecodingParams; upgrade vllm")


def completion_from_output(output) -> Completion:
    """Map a vLLM RequestOutput to a Completion: finish_reason "length" -> truncated (text kept), "stop" -> ok."""
    first = output.outputs[0]
    tokens = (len(output.prompt_token_ids or ()), len(first.token_ids or ()))
    if first.finish_reason == "length":
        return Completion(first.text, "truncated", *tokens)
    if first.finish_reason == "stop":
        return Completion(first.text, "ok", *tokens)
    return Completion(
        first.text, "api_error", *tokens, error=f"generation ended with finish_reason={first.finish_reason}"
    )


def _check_settings(
    tensor_parallel_size: int, gpu_memory_utilization: float, max_model_len: int | None, batch_size: int
) -> None:
    if tensor_parallel_size < 1:
        raise ConfigError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if max_model_len is not None and max_model_len < 1:
        raise ConfigError(f"max_model_len must be >= 1, got {max_model_len}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
