"""The interface every teacher backend implements, and its settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from kgen.records import ConfigError

Messages = list[dict[str, str]]  # chat messages: [{"role": ..., "content": ...}]


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings; part of every request's content key."""

    max_new_tokens: int = 384
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict:
        return asdict(self)


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

    def complete(self, prompts: Sequence[Messages], settings: GenerationSettings) -> Iterator[tuple[int, Completion]]:
        """Yield (index into prompts, completion) in any order; never raise for one prompt's failure."""
        ...

    def close(self) -> None:
        """Release the model or client."""
        ...
