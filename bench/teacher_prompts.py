"""The prompts the generation benchmarks run: the shipped sample's first inputs with kgen's real prompts."""

from __future__ import annotations

from pathlib import Path

from kgen.answer_schema import default_max_new_tokens
from kgen.run import MESSAGES, request_schema
from kgen.teachers.base import GenerationSettings, Messages

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
GOLD = ROOT / "data" / "gold" / "gold.jsonl"
TEXT_MAX_NEW_TOKENS = 256  # the old benchmarks' limit for the text format


def format_settings(answer_format: str, role: str = "teacher") -> GenerationSettings:
    """The settings of a run: json as `kgen generate` / `distill generate` run it, text as the old benchmarks did."""
    if answer_format == "text":
        return GenerationSettings(max_new_tokens=TEXT_MAX_NEW_TOKENS, answer_format="text")
    penalty = 1.0
    if role == "student":
        from distill.student_config import STUDENT_REPETITION_PENALTY as penalty
    return GenerationSettings(max_new_tokens=default_max_new_tokens("json"), answer_format="json",
                              repetition_penalty=penalty)


def sample_inputs(n: int | None, level: str = "item", gold: bool = False):
    """The first n inputs of the sample at a level; with `gold`, only those data/gold has key phrases for."""
    from ground import records as R
    from kgen.tasks import load_inputs

    path = SAMPLE / ("items.jsonl" if level == "item" else "users.jsonl")
    inputs = load_inputs(level, path, SAMPLE / "items.jsonl" if level == "user" else None, None if gold else n)
    if gold:
        ids = {str(g[R.ID]) for g in R.read_records(GOLD, "gold") if g[R.LEVEL] == level}
        inputs = [row for row in inputs if row[0] in ids][:n]
    return inputs


def teacher_tasks_for(n: int | None, answer_format: str, level: str = "item", gold: bool = False) -> list[dict]:
    """The tasks `kgen generate` builds for the first n sample inputs (nearest pool example as the one-shot)."""
    from sentence_transformers import SentenceTransformer

    from kgen.models import resolve_embedder
    from kgen.tasks import teacher_tasks

    encoder = SentenceTransformer(resolve_embedder(None), device="cpu")
    return teacher_tasks(level, sample_inputs(n, level, gold), encoder, None, answer_format, "nearest")


def student_tasks_for(n: int | None, answer_format: str, level: str = "item", gold: bool = False) -> list[dict]:
    """The tasks `distill generate` builds for the first n sample inputs (the short student prompt)."""
    from kgen.tasks import student_tasks

    return student_tasks(level, sample_inputs(n, level, gold), answer_format)


def teacher_prompts(n: int, answer_format: str) -> tuple[list[Messages], GenerationSettings, list[dict] | None]:
    """(messages, settings, per-prompt schemas or None) of the teacher for the first n sample items."""
    settings = format_settings(answer_format)
    tasks = teacher_tasks_for(n, answer_format)
    schemas = [request_schema(t, settings) for t in tasks] if settings.structured else None
    return [t[MESSAGES] for t in tasks], settings, schemas
