"""Tokens per item and per user of the teacher's requests on the shipped sample, for sizing large runs.

Renders the real one-shot teacher prompts (text format, nearest reference) for
every item and user of data/sample, counts their tokens with the SmolLM2
tokenizer's chat template, and takes answer lengths from the `usage` of a
knowledge file made by a real teacher run (--answers). Appends to
bench/results/prompt_tokens.jsonl; docs/scale_out.md uses these figures.

    .venv/bin/python -m bench.bench_prompt_tokens --answers runs/main/teacher_items.jsonl
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.common import record

from ground import records as R
from kgen.run import MESSAGES

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/sample"


def summary(values: list[int]) -> dict:
    """Mean, median, 95th percentile and max of token counts."""
    values = sorted(values)
    return {"n": len(values), "mean": round(statistics.mean(values), 1), "median": statistics.median(values),
            "p95": values[int(0.95 * (len(values) - 1))], "max": values[-1]}


def prompt_tokens(level: str, encoder, tokenizer) -> dict:
    """Token counts of every rendered teacher prompt of one level."""
    from kgen.tasks import load_inputs, teacher_tasks

    inputs = load_inputs(level, SAMPLE / f"{level}s.jsonl", SAMPLE / "items.jsonl")
    tasks = teacher_tasks(level, inputs, encoder)
    counts = [len(tokenizer.apply_chat_template(t[MESSAGES], add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"]) for t in tasks]
    return summary(counts)


def main() -> None:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from kgen.models import materialize_embedded, resolve_embedder

    p = argparse.ArgumentParser()
    p.add_argument("--answers", type=Path, action="append", default=[],
                   help="knowledge JSONL of a real teacher run (repeatable); its usage gives answer lengths")
    a = p.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(materialize_embedded())
    encoder = SentenceTransformer(resolve_embedder(None), device="cpu")
    figures = {"tokenizer": "SmolLM2-135M-Instruct", "format": "text, nearest reference",
               "prompt_tokens": {level: prompt_tokens(level, encoder, tokenizer) for level in R.LEVELS}}
    answers: dict[str, list[int]] = {}
    for path in a.answers:
        for row in R.read_records(path, "knowledge"):
            if row[R.STATUS] != "api_error":
                answers.setdefault(row[R.LEVEL], []).append(row[R.USAGE]["completion_tokens"])
    figures["answer_tokens"] = {level: summary(v) for level, v in answers.items()}
    figures["answer_sources"] = [str(p) for p in a.answers]
    record("prompt_tokens", figures)


if __name__ == "__main__":
    main()
