"""The interface every teacher backend implements, and its settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from kgen.answer_schema import answer_schema, check_answer_format
from ground.errors import ConfigError

Messages = list[dict[str, str]]  # chat messages: [{"role": ..., "content": ...}]


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings; part of every request's content key."""

    max_new_tokens: int = 384
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    # "json": the backend constrains the answer to kgen.answer_schema; "text": free text for kgen.parse.
    answer_format: str = "text"
    # With "json": an explicit value must be a span of the input (a per-input schema); False: any short string.
    explicit_spans: bool = True
    # > 1 makes tokens already in the prompt or answer less likely (transformers / vLLM semantics); 1 = off.
    # Under a schema it only reorders the choices the grammar allows (which span, which aspect), never the JSON.
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        check_answer_format(self.answer_format)

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

