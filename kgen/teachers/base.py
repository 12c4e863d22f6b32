"""The interface every teacher backend implements, and its settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from ground.errors import ConfigError
from ground.flags import flag
from kgen.answer_schema import (DEFAULT_ANSWER_FORMAT, TEXT_MAX_NEW_TOKENS, AnswerFormat, answer_schema,
                                check_answer_format, default_max_new_tokens, max_answer_tokens)

Messages = list[dict[str, str]]  # chat messages: [{"role": ..., "content": ...}]


# Shown in --help: the limit each format gets when none is given (kgen.answer_schema.default_max_new_tokens).
TOKEN_LIMIT_HELP = (f"Token limit per answer (none: the answer format's own, {TEXT_MAX_NEW_TOKENS} for text; json: "
                    f"the schema's longest answer, {max_answer_tokens()}, so none is cut).")


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """Sampling settings; part of every request's content key."""

    max_new_tokens: int | None = field(default=None, metadata=flag(TOKEN_LIMIT_HELP))  # None: set from the format
    temperature: float = field(default=0.0, metadata=flag("Sampling temperature (0: greedy)."))
    top_p: float = field(default=1.0, metadata=flag("Nucleus sampling: keep the smallest token set of this mass."))
    seed: int = field(default=0, metadata=flag("Sampling seed."))
    # "json": the backend constrains the answer to kgen.answer_schema; "text": free text for kgen.parse.
    answer_format: AnswerFormat = field(default=DEFAULT_ANSWER_FORMAT, metadata=flag(
        "json: answers constrained to kgen/answer_schema.py; text: the Key Features text format."))
    # With "json": an explicit value must be a span of the input (a per-input schema); False: any short string.
    explicit_spans: bool = field(default=True, metadata=flag(
        "json: explicit values must be spans of the input.", "--explicit-spans/--free-explicit"))
    # > 1 makes tokens already in the prompt or answer less likely (transformers / vLLM semantics); 1 = off.
    # Under a schema it only reorders the choices the grammar allows (which span, which aspect), never the JSON.
    repetition_penalty: float = field(default=1.0, metadata=flag(
        "Tokens already in the prompt or answer are made less likely (1 = off; transformers and vllm teachers)."))

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)
        if self.max_new_tokens is None:
            object.__setattr__(self, "max_new_tokens", default_max_new_tokens(self.answer_format))
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def structured(self) -> bool:
        return self.answer_format == "json"

    def to_dict(self) -> dict:
        # The text format and no penalty are left out, so request keys made before those fields existed stay
        # valid (runs resume).
        settings = asdict(self)
        if not self.structured:
            del settings["answer_format"], settings["explicit_spans"]
        if self.repetition_penalty == 1.0:
            del settings["repetition_penalty"]
        return settings


@dataclass
class Completion:
    """One model answer, or the failure that stood in for it."""

    text: str
    status: Literal["ok", "truncated", "api_error"]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class Teacher(Protocol):
    """A backend: answers chat prompts, yielding each answer as soon as it is done."""

    model: str  # "backend:model", recorded on every output

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings,
                 schemas: Sequence[dict] | None = None) -> Iterator[tuple[int, Completion]]:
        """Yield (index into prompts, completion) in any order; never raise for one prompt's failure.

        With structured settings, `schemas` holds each prompt's answer schema (default: `answer_schema()` for all).
        """
        ...

    def close(self) -> None:
        """Release the model or client."""
        ...


def prompt_schema(schemas: Sequence[dict] | None, index: int) -> dict:
    """The answer schema of prompt `index`: its own when the run gave per-request schemas, else the generic one."""
    return schemas[index] if schemas else answer_schema()


def request_key(messages: list[dict], model: str, settings: GenerationSettings) -> str:
    """Content hash of one request: the same prompt, model and settings always give the same key."""
    blob = json.dumps({"messages": messages, "model": model, "settings": settings.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]

