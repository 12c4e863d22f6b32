"""Local batched generation with transformers: the embedded default teacher."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Literal

import torch

from kgen.models import loading_model, resolve_llm
from kgen.parse import strip_list_marker
from ground.errors import ConfigError
from kgen.teachers.base import Completion, GenerationSettings, Messages, prompt_schema
from kgen.teachers.decode import Decoder, Row, StepRules, supports_fast_decoding

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


Decoding = Literal["auto", "generate"]
DECODINGS: tuple[str, ...] = ("auto", "generate")
Quantize = Literal["none", "int8"]
QUANTIZE: tuple[str, ...] = ("none", "int8")


class TransformersTeacher:
    """A causal LM from a hub id, a local folder, or the embedded SmolLM2 alias.

    decoding "auto": on CPU, kgen.teachers.decode's loop (shared prefixes once, no padding, finished rows leave the
    batch) for the model families it covers, generate() for the rest; "generate": always generate(), padded batches.
    quantize "int8": the Linear layers' weights in int8, activations quantised on the fly (CPU only); the answers
    change, so the label (and every request key) says so.
    """

    def __init__(self, model: str, batch_size: int = 8, dtype: str | None = None, stop_after_key_features: bool = True,
                 decoding: Decoding = "auto", quantize: Quantize = "none"):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if decoding not in DECODINGS:
            raise ConfigError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
        if quantize not in QUANTIZE:
            raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
        self.model = f"transformers:{model}" + ("" if quantize == "none" else f"+{quantize}")
        self.name, self.dtype, self.batch_size, self.stop_early = model, dtype, batch_size, stop_after_key_features
        self.decoding, self.quantize = decoding, quantize
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
        if self.quantize == "int8":
            self.lm = quantize_int8(self.lm)

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Yield each prompt's answer as soon as it is done (prompts of similar length decoded together)."""
        if prompts and self.lm is None:
            self._load()
        if not prompts:
            return
        # The loop is measured and tested on CPU only; a GPU keeps generate() (or use the vllm backend there).
        if self.decoding == "auto" and self.device == "cpu" and supports_fast_decoding(self.lm):
            yield from self._complete_rows(prompts, settings, schemas)
        else:
            yield from self._complete_batches(prompts, settings, schemas)

    @torch.inference_mode()
    def _complete_rows(self, prompts: Sequence[Messages], settings: GenerationSettings,
                       schemas: Sequence[dict] | None) -> Iterator[tuple[int, Completion]]:
        """kgen.teachers.decode's loop: one row per prompt, yielded as each finishes."""
        rows = []
        for i, messages in enumerate(prompts):
            row = Row(i, self._prompt_ids(messages))
            try:
                if settings.structured:
                    row.state = self._matcher(prompt_schema(schemas, i))
            except ValueError as exc:  # a schema that does not compile fails its own row only
                yield i, _failure(exc)
                continue
            rows.append(row)
        torch.manual_seed(settings.seed)
        decoder = Decoder(self.lm, self.batch_size)
        for row, error in decoder.run(rows, self._step_rules(settings), settings.max_new_tokens):
            yield row.index, _failure(error) if error else self._completion(row.tokens, len(row.prompt), settings)

    def _prompt_ids(self, messages: Messages) -> list[int]:
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(enc["input_ids"])

    def _matcher(self, schema: dict):
        from kgen.teachers.constrained import schema_matcher

        return schema_matcher(self.tokenizer, schema, self._n_vocab())

    def _n_vocab(self) -> int:
        return self.lm.get_output_embeddings().out_features  # the logits' width (a quantised head has no .weight)

    def _step_rules(self, settings: GenerationSettings) -> StepRules:
        """What generate() would do with these settings: processors, then argmax or a draw; its stop conditions."""
        eos = self.lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id])
        stop_on_text = self.stop_early and not settings.structured
        choose = partial(choose_tokens, settings=settings, masker=self._masker(settings))

        def done(row: Row) -> bool:
            if row.tokens[-1] in eos_ids:
                return True
            if not stop_on_text:
                return False
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            return key_features_done(text) or looping(text)

        return StepRules(choose=choose, done=done)

    def _masker(self, settings: GenerationSettings):
        if not settings.structured:
            return None
        from kgen.teachers.constrained import RowsMasker

        return RowsMasker(self.tokenizer, self._n_vocab())

    def _complete_batches(self, prompts: Sequence[Messages], settings: GenerationSettings,
                          schemas: Sequence[dict] | None) -> Iterator[tuple[int, Completion]]:
        """generate() in batches of similar length, each padded to its longest prompt."""
        order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            try:
                batch_schemas = None
                if settings.structured:
                    batch_schemas = [prompt_schema(schemas, i) for i in batch]
                answers = self._generate([prompts[i] for i in batch], settings, batch_schemas)
            except (RuntimeError, ValueError) as exc:  # e.g. out of memory, a prompt over the context length
                answers = [_failure(exc)] * len(batch)
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
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        answers = []
        for row, mask in zip(out, enc["attention_mask"]):
            new_tokens = row[prompt_len:]
            # Rows that finished early are padded to the batch's length; count only real tokens.
            real = new_tokens[new_tokens != pad] if pad != eos else new_tokens[: _first_eos(new_tokens, eos) + 1]
            answers.append(self._completion(real, int(mask.sum()), settings))
        return answers

    def _schema_processor(self, schemas: list[dict], prompt_len: int):
        from kgen.teachers.constrained import SchemaLogitsProcessor

        return SchemaLogitsProcessor(self.tokenizer, schemas, prompt_len, self._n_vocab())

    def _completion(self, tokens: Sequence[int] | torch.Tensor, prompt_tokens: int,
                    settings: GenerationSettings) -> Completion:
        """The answer of one row from its generated tokens (EOS included when it ended there)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        n = len(tokens)
        if settings.structured:  # the grammar lets the model stop only once the JSON is complete
            cut_off = n >= settings.max_new_tokens and not json_complete(text)
            return Completion(text.strip(), "truncated" if cut_off else "ok", prompt_tokens, n)
        # Stopped by the limit or by a loop, an answer is whole only if its Key Features line was complete. (Whether
        # the model itself ended can't be read off the tokens: rows stopped early are padded, often with EOS.)
        cut_off = (n >= settings.max_new_tokens or looping(text)) and not key_features_done(text)
        return Completion(cut_repetition(text).strip(), "truncated" if cut_off else "ok", prompt_tokens, n)

    def close(self) -> None:
        self.lm = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def quantize_int8(lm):
    """The model with every Linear layer's weights in int8 and its activations quantised per call (CPU kernels)."""
    import warnings

    if torch.cuda.is_available():
        raise ConfigError("quantize int8 runs on CPU only (dynamic int8 kernels); drop it on a GPU")
    with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated for torchao, still shipped
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(lm, {torch.nn.Linear}, dtype=torch.qint8)


def choose_tokens(rows: list[Row], logits: torch.Tensor, *, settings: GenerationSettings, masker) -> torch.Tensor:
    """Each row's next token from its (n, V) logits, with generate()'s processors in generate()'s order."""
    sampling = settings.temperature > 0
    scores = logits
    from transformers import RepetitionPenaltyLogitsProcessor, TopPLogitsWarper

    ids = _row_ids(rows) if settings.repetition_penalty != 1.0 else None
    if ids is not None:
        scores = RepetitionPenaltyLogitsProcessor(settings.repetition_penalty)(ids, scores)
    if masker is not None:
        scores = masker.mask([row.state for row in rows], scores)
    if sampling:
        if settings.temperature != 1.0:
            scores = scores / settings.temperature
        if settings.top_p < 1.0:
            scores = TopPLogitsWarper(settings.top_p)(ids, scores)
        tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[:, 0]
    else:
        tokens = torch.argmax(scores, dim=-1)
    if masker is not None:
        masker.consume([row.state for row in rows], tokens.tolist())
    return tokens


def _row_ids(rows: list[Row]) -> torch.Tensor:
    """(n, longest) prompt + answer ids, each row padded with its own first token (the penalty reads a set)."""
    seqs = [row.prompt + row.tokens for row in rows]
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [s[0]] * (width - len(s)) for s in seqs])


def _failure(exc: Exception) -> Completion:
    return Completion("", "api_error", error=f"{type(exc).__name__}: {exc}")


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
