"""Local batched generation with transformers: the embedded default teacher."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import torch

from kgen.models import loading_model, resolve_llm
from kgen.parse import strip_list_marker
from ground.errors import ConfigError
from kgen.teachers.base import Completion, GenerationSettings, Messages, prompt_schema

_DONE_MARK = "key features"


def _key_features_tail(text: str) -> str | None:
    """What follows the last `Key Features:` mark, or None without one."""
    at = text.lower().rfind(_DONE_MARK)
    return None if at < 0 else text[at:].split(":", 1)[-1]


def _repeats(listed: str) -> bool:
    """True when an unfinished Key Features line lists one phrase twice: small models then loop to the limit."""
    finished = [p.strip().casefold() for p in listed.split(",")[:-1]]  # the last piece may still be growing
    finished = [p for p in finished if p]
    return len(finished) != len(set(finished))


def key_features_done(text: str) -> bool:
    """True once the text holds a `Key Features:` line with content, ended by a newline or starting to repeat."""
    listed = _key_features_tail(text)
    if listed is None or listed.strip() == "":
        return False
    return "\n" in listed.lstrip() or _repeats(listed)


def cut_repetition(text: str) -> str:
    """Drop what follows the last comma of an unfinished Key Features line that began to repeat itself."""
    listed = _key_features_tail(text)
    if listed is None or "\n" in listed.lstrip() or not _repeats(listed):
        return text
    return text[: text.rfind(",")]


_LOOP_WINDOW, _LOOP_MAX_PERIOD = 96, 32  # characters


def looping(text: str) -> bool:
    """True when greedy decoding has fallen into a loop and would run to the token limit.

    Either the last 96 characters repeat with a period of at most 32 ("Blue, Blue, Blue, ", "4444"), or the last
    three finished lines are the same line once list numbering is dropped ("31. Kit", "32. Kit", "33. Kit").
    """
    tail = text[-_LOOP_WINDOW:]
    if len(tail) == _LOOP_WINDOW and any(tail[p:] == tail[:-p] for p in range(1, _LOOP_MAX_PERIOD + 1)):
        return True
    lines = [strip_list_marker(line) for line in text.split("\n")[:-1]]
    lines = [line for line in lines if line]
    return len(lines) >= 3 and lines[-1] == lines[-2] == lines[-3]


class StopAfterKeyFeatures:
    """Stop a row once its `Key Features:` line is complete, or once it loops, instead of running to the limit.

    Returns a (B,) bool tensor, so finished rows stop while the rest of the batch goes on.
    """

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [key_features_done(text) or looping(text) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class TransformersTeacher:
    """A causal LM from a hub id, a local folder, or the embedded SmolLM2 alias."""

    def __init__(self, model: str, batch_size: int = 8, dtype: str | None = None, stop_after_key_features: bool = True):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = f"transformers:{model}"
        self.name, self.dtype, self.batch_size, self.stop_early = model, dtype, batch_size, stop_after_key_features
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.lm = self.tokenizer = None  # loaded on first use: a resumed run with nothing left loads nothing

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_llm(self.name)
        default = torch.bfloat16 if self.device == "cuda" else torch.float32
        torch_dtype = getattr(torch, self.dtype) if self.dtype else default
        with loading_model(self.name):
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        self.tokenizer.padding_side = "left"  # decoder-only: pad on the left so new tokens line up
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = lm.to(self.device).eval()

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Yield each prompt's answer, batch by batch (prompts of similar length batched together)."""
        if prompts and self.lm is None:
            self._load()
        order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            try:
                batch_schemas = None
                if settings.structured:
                    batch_schemas = [prompt_schema(schemas, i) for i in batch]
                answers = self._generate([prompts[i] for i in batch], settings, batch_schemas)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory, a prompt over the context length
                answers = [Completion("", "api_error", error=f"{type(exc).__name__}: {exc}")] * len(batch)
            yield from zip(batch, answers)

    @torch.inference_mode()
    def _generate(self, batch: list[Messages], settings: GenerationSettings,
                  schemas: list[dict] | None) -> list[Completion]:
        enc = self.tokenizer.apply_chat_template(
            batch, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        torch.manual_seed(settings.seed)
        sampling = settings.temperature > 0
        constrain = self._schema_processor(schemas, prompt_len) if schemas else None
        # A schema bounds every list and string, so a structured answer ends by itself; the text format needs the
        # stop at a finished Key Features line.
        stop = [StopAfterKeyFeatures(self.tokenizer, prompt_len)] if self.stop_early and not constrain else None
        out = self.lm.generate(
            **enc,
            max_new_tokens=settings.max_new_tokens,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_p=settings.top_p if sampling else None,
            top_k=None,
            repetition_penalty=settings.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=stop,
            logits_processor=[constrain] if constrain else None,
        )
        return [self._completion(row[prompt_len:], mask, settings) for row, mask in zip(out, enc["attention_mask"])]

    def _schema_processor(self, schemas: list[dict], prompt_len: int):
        from kgen.teachers.constrained import SchemaLogitsProcessor

        n_vocab = self.lm.get_output_embeddings().weight.shape[0]
        return SchemaLogitsProcessor(self.tokenizer, schemas, prompt_len, n_vocab)

    def _completion(self, new_tokens: torch.Tensor, prompt_mask: torch.Tensor, settings: GenerationSettings) -> Completion:
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        # Rows that finished early are padded to the batch's length; count only real tokens.
        real = new_tokens[new_tokens != pad] if pad != eos else new_tokens[: _first_eos(new_tokens, eos) + 1]
        text = self.tokenizer.decode(real, skip_special_tokens=True)
        if settings.structured:  # the grammar lets the model stop only once the JSON is complete
            cut_off = len(real) >= settings.max_new_tokens and not json_complete(text)
            return Completion(text.strip(), "truncated" if cut_off else "ok", int(prompt_mask.sum()), len(real))
        # Stopped by the limit or by a loop, an answer is whole only if its Key Features line was complete. (Whether
        # the model itself ended can't be read off the tokens: rows stopped early are padded, often with EOS.)
        cut_off = (len(real) >= settings.max_new_tokens or looping(text)) and not key_features_done(text)
        return Completion(cut_repetition(text).strip(), "truncated" if cut_off else "ok", int(prompt_mask.sum()), len(real))

    def close(self) -> None:
        self.lm = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def json_complete(text: str) -> bool:
    """True when the text starts with one whole JSON value."""
    try:
        json.JSONDecoder().raw_decode(text.lstrip())
    except json.JSONDecodeError:
        return False
    return True


def _first_eos(tokens: torch.Tensor, eos: int) -> int:
    hits = (tokens == eos).nonzero()
    return int(hits[0]) if len(hits) else len(tokens) - 1
