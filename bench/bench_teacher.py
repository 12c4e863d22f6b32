"""Throughput of the transformers teacher backend: batch size 1 vs batched, real prompts.

Runs the embedded SmolLM2-135M-Instruct on the shipped sample's items with the
real one-shot teacher prompt, at each batch size, and records items/s and
tokens/s to bench/results/teacher_throughput.jsonl.

    .venv/bin/python -m bench.bench_teacher --n 16 --batch-sizes 1 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import record
from ground.runinfo import peak_rss_mb

from kgen.generate import GenerateConfig, generate_knowledge
from kgen.teachers.base import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]


def run(batch_size: int, n: int, max_new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "k.jsonl"
        cfg = GenerateConfig(level="item", input=ROOT / "data/sample/items.jsonl", output=out, limit=n,
                             batch_size=batch_size,
                             settings=GenerationSettings(max_new_tokens=max_new_tokens, answer_format="text"))
        start = time.perf_counter()
        m = generate_knowledge(cfg)["metrics"]
        wall = time.perf_counter() - start
    return {"batch_size": batch_size, "items": m["generated"], "status": m["status"],
            "gen_seconds": m["seconds"], "items_per_s": m["rows_per_s"], "tokens_per_s": m["tokens_per_s"],
            "prompt_tokens_mean": round(m["prompt_tokens"] / max(m["generated"], 1)),
            "completion_tokens_mean": round(m["completion_tokens"] / max(m["generated"], 1)),
            "wall_seconds_incl_load": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-new-tokens", type=int, default=256)
    a = p.parse_args()
    rows = [run(bs, a.n, a.max_new_tokens) for bs in a.batch_sizes]
    for r in rows:
        print(f"batch {r['batch_size']:>2}: {r['items_per_s']:.3f} items/s, {r['tokens_per_s']:.1f} tokens/s "
              f"({r['items']} items, {r['gen_seconds']} s)")
    record("teacher_throughput", {"model": "embedded smollm2-135m-instruct (fp32, CPU)", "n": a.n,
                                  "max_new_tokens": a.max_new_tokens, "runs": rows, "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
