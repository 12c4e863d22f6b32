"""Dynamic one-shot: pick, for every input, the most similar example from the curated pool."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ground.records import ID, INPUT, LEVEL
from ground.errors import RecordError
from ground.files import iter_jsonl
from prompts import PROMPTS_DIR

POOL_FILES = {"item": "pool_items.jsonl", "user": "pool_users.jsonl"}
ANSWER = "answer"


class TextEncoder(Protocol):
    def encode(self, sentences: list[str], **kwargs: object) -> np.ndarray: ...


def load_pool(level: str, path: Path | None = None) -> list[dict]:
    """Read the reference pool of one level (default: the one shipped in prompts/)."""
    path = path or PROMPTS_DIR / POOL_FILES[level]
    pool = []
    for lineno, row in iter_jsonl(path):
        missing = [f for f in (ID, LEVEL, INPUT, ANSWER) if not isinstance(row, dict) or not row.get(f)]
        if missing:
            raise RecordError(f"{path}:{lineno}: pool example lacks {', '.join(missing)}")
        if row[LEVEL] == level:
            pool.append(row)
    if len(pool) < 2:
        raise RecordError(f"{path}: the {level} pool needs at least 2 examples, found {len(pool)}")
    return pool


def example_answer(example: dict, answer_format: str) -> str:
    """A pool example's answer as the teacher is shown it: the text as written, or its JSON form."""
    if answer_format != "json":
        return example[ANSWER]
    from kgen.answer_schema import format_json_answer, input_spans
    from kgen.inputs import input_segments
    from kgen.parse import parse_answer

    parsed = parse_answer(example[ANSWER])
    # The example shows what the schema asks for: explicit values copied from the input (others are left out).
    spans = {s.casefold() for s in input_spans(input_segments(example[INPUT]))}
    explicit = [a for a in parsed.explicit if a["value"].casefold() in spans] or parsed.explicit
    return format_json_answer(explicit, parsed.implicit)


def reference_text(example: dict) -> str:
    """The text a leaked phrase is looked for in: the example's input and its answer."""
    return f"{example[INPUT]}\n{example[ANSWER]}"


def reference_texts(pool_path: Path | None = None) -> dict[str, str]:
    """Pool id -> reference text, over the levels a pool holds (default: the shipped pools)."""
    texts = {}
    for level in POOL_FILES:
        if pool_path is not None and not any(row.get(LEVEL) == level for _, row in iter_jsonl(pool_path)):
            continue  # a pool of one's own may hold one level only
        texts.update({ex[ID]: reference_text(ex) for ex in load_pool(level, pool_path)})
    return texts


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def select_references(
    input_emb: np.ndarray, pool_emb: np.ndarray, same: np.ndarray, near_duplicate: float = 0.95
) -> np.ndarray:
    """Index of the most similar pool example per input, never the input itself or a near-duplicate.

    input_emb (N, D), pool_emb (P, D); `same` (N, P) is True where the texts are equal after
    normalisation. One matrix product scores every pair.
    """
    sim = _unit_rows(input_emb) @ _unit_rows(pool_emb).T  # (N, P)
    banned = same | (sim >= near_duplicate)
    if banned.all(axis=1).any():
        raise RecordError("every pool example is a near-duplicate of some input; grow the pool")
    return np.where(banned, -np.inf, sim).argmax(axis=1)


def pick_examples(inputs: list[str], pool: list[dict], encoder: TextEncoder, near_duplicate: float = 0.95) -> list[dict]:
    """The chosen pool example for each input (embedding the pool once, all inputs in one batch)."""
    norm = lambda s: " ".join(s.casefold().split())
    same = np.array([[norm(t) == norm(ex[INPUT]) for ex in pool] for t in inputs], dtype=bool).reshape(len(inputs), len(pool))
    pool_emb = encoder.encode([ex[INPUT] for ex in pool], convert_to_numpy=True, batch_size=64)
    input_emb = encoder.encode(inputs, convert_to_numpy=True, batch_size=64)
    return [pool[i] for i in select_references(input_emb, pool_emb, same, near_duplicate)]
