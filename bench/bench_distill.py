"""Distillation benchmarks: `distill train` time and peak memory; student vs teacher generation throughput.

(a) `distill train --lora` on SmolLM2-135M (the embedded student base) over N
    examples, run as a subprocess so its peak RSS is its own. The examples are
    the curated reference answers shipped in prompts/pool_items.jsonl (real
    teacher-format answers, ~230 tokens with the student prompt).
(b) Generation over the same sample items with the same 135M model class:
    the teacher's long one-shot prompt vs the trained student's short prompt.
    Both stop after their `Key Features:` line. The speed-up measured here is
    the prompt's alone; a real deployment also swaps a large teacher for a
    small student.

Appends one JSON line to bench/results/distill.jsonl (machine facts and the
load average included: the CPU may be shared).

    .venv/bin/python -m bench.bench_distill --train-examples 32 --gen-items 16

To time another checkout, run its bench from inside it (`python -m` finds the current folder first, for the
bench and for the `python -m distill.cli` it starts):

    cd ../old && PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.bench_distill --gen-items 0
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import record

from distill.data import DataConfig, build_data
from distill.generate import generate_student
from distill.student_config import StudentConfig
from ground.files import iter_jsonl, write_jsonl
from ground import records as R
from kgen.generate import GenerateConfig, generate_knowledge
from kgen.parse import parse_answer
from kgen.teachers.base import GenerationSettings
from prompts import PROMPTS_DIR

ROOT = Path(__file__).resolve().parents[1]
# The code on sys.path (PYTHONPATH=<checkout> picks which), not the console script of whichever checkout installed it.
DISTILL = [sys.executable, "-m", "distill.cli"]


def pool_knowledge(n: int, path: Path) -> int:
    """Write up to n knowledge records made from the curated pool answers; return how many."""
    rows = []
    for _, ex in iter_jsonl(PROMPTS_DIR / "pool_items.jsonl"):
        parsed = parse_answer(ex["answer"])
        rows.append({R.ID: ex[R.ID], R.LEVEL: "item", R.INPUT: ex[R.INPUT], R.EXPLICIT: parsed.explicit,
                     R.IMPLICIT: parsed.implicit, R.KEY_PHRASES: parsed.key_phrases, R.RAW: ex["answer"],
                     R.MODEL: "curated", R.TEMPLATE: "item", R.REFERENCE_ID: None, R.STATUS: parsed.status})
    return write_jsonl(path, rows[:n])


def run_cli(args: list[str]) -> tuple[float, float, float, list[float]]:
    """Run a `distill` command as this script's only child; return (wall s, its CPU s, its peak RSS in MiB, loss per log).

    With OMP_NUM_THREADS=1 the CPU seconds move much less with the machine's load than wall time, so two checkouts
    can be compared side by side on a shared machine.
    """
    start = time.perf_counter()
    done = subprocess.run([*DISTILL, *args], check=True, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    print(done.stdout, end="")
    # The Trainer prints each log as a dict line; read the losses from there, so that any checkout's code can be timed.
    logs = [ast.literal_eval(line.strip()) for line in done.stdout.splitlines() if line.strip().startswith("{'loss'")]
    child = resource.getrusage(resource.RUSAGE_CHILDREN)  # the only waited-for child is this one
    return (wall, round(child.ru_utime + child.ru_stime, 1), round(child.ru_maxrss / 1024, 1),
            [round(float(d["loss"]), 4) for d in logs])


def bench_train(tmp: Path, n: int, batch_size: int, epochs: float, checkpointing: bool | None) -> tuple[dict, Path]:
    """(a): figures of one `distill train --lora` run, and the run folder."""
    knowledge, sft, run = tmp / "knowledge.jsonl", tmp / "sft", tmp / "student"
    written = pool_knowledge(n, knowledge)
    build_data(DataConfig(knowledge=[knowledge], output=sft, augment=(), val_fraction=0.0))
    wall, cpu, peak, curve = run_cli(["train", "--data", str(sft), "-o", str(run), "--lora", "--epochs", str(epochs),
                          "--batch-size", str(batch_size), "--save-steps", "1000", "--no-resume", "--logging-steps", "1",
                          *checkpointing_flag(checkpointing)])
    metrics = json.loads((run / "metrics.json").read_text())
    used = json.loads((run / "train_config.json").read_text())  # the checkout's own defaults where no flag was given
    return {"examples": written, "batch_size": batch_size, "epochs": epochs,
            "gradient_checkpointing": used["gradient_checkpointing"], "lora_dropout": used["lora_dropout"],
            "max_length": used["max_length"],
            "wall_s": round(wall, 1), "cpu_s": cpu,
            "peak_rss_mb": peak, "train_runtime_s": metrics["train_runtime_s"], "tokens_per_s": metrics["tokens_per_s"],
            "train_tokens": metrics["train_tokens"], "steps": metrics["global_step"],
            "train_loss": round(metrics["train_loss"], 4), "loss_curve": curve}, run


def checkpointing_flag(checkpointing: bool | None) -> list[str]:
    """The `distill train` flag for gradient checkpointing; none when unset, so each checkout runs its default."""
    if checkpointing is None:
        return []
    return ["--gradient-checkpointing" if checkpointing else "--no-gradient-checkpointing"]


def summarise(metrics: dict, wall: float) -> dict:
    n = max(metrics["generated"], 1)
    return {"items": metrics["generated"], "status": metrics["status"], "gen_seconds": metrics["seconds"],
            "items_per_s": metrics["rows_per_s"], "tokens_per_s": metrics["tokens_per_s"],
            "prompt_tokens_mean": round(metrics["prompt_tokens"] / n), "completion_tokens_mean": round(metrics["completion_tokens"] / n),
            "wall_s_incl_load": round(wall, 1)}


def bench_generation(tmp: Path, student: Path, n: int, batch_size: int, max_new_tokens: int) -> dict:
    """(b): the same items through the teacher prompt (one-shot) and the student prompt (short)."""
    items = ROOT / "data" / "sample" / "items.jsonl"
    settings = GenerationSettings(max_new_tokens=max_new_tokens, answer_format="text")
    start = time.perf_counter()
    teacher = generate_knowledge(GenerateConfig(level="item", input=items, output=tmp / "teacher.jsonl", limit=n,
                                                batch_size=batch_size, settings=settings))["metrics"]
    teacher_wall = time.perf_counter() - start
    start = time.perf_counter()
    student_m = generate_student(StudentConfig(model=str(student), level="item", input=items,
                                               output=tmp / "student.jsonl", limit=n, batch_size=batch_size,
                                               max_new_tokens=max_new_tokens))["metrics"]
    student_wall = time.perf_counter() - start
    t, s = summarise(teacher, teacher_wall), summarise(student_m, student_wall)
    return {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "teacher": t, "student": s,
            "student_over_teacher_items_per_s": round(s["items_per_s"] / t["items_per_s"], 2) if t["items_per_s"] else None}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-examples", type=int, default=32)
    p.add_argument("--train-batch-size", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="Recompute activations (less memory, more time); default: the checkout's own default.")
    p.add_argument("--gen-items", type=int, default=16, help="0 skips the generation benchmark.")
    p.add_argument("--gen-batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--note", default="", help="Free text stored with the figures (e.g. what else ran).")
    a = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        train_figures, run = bench_train(Path(tmp), a.train_examples, a.train_batch_size, a.epochs,
                                          a.gradient_checkpointing)
        print(f"train: {train_figures['wall_s']} s wall, peak RSS {train_figures['peak_rss_mb']} MiB, "
              f"{train_figures['tokens_per_s']} tokens/s", flush=True)
        gen = bench_generation(Path(tmp), run, a.gen_items, a.gen_batch_size, a.max_new_tokens) if a.gen_items else None
    for who in ("teacher", "student") if gen else ():
        g = gen[who]
        print(f"{who}: {g['items_per_s']} items/s, {g['tokens_per_s']} tokens/s, prompt {g['prompt_tokens_mean']} "
              f"tokens, answer {g['completion_tokens_mean']} tokens, status {g['status']}")
    record("distill", {"model": "embedded smollm2-135m-instruct (fp32, CPU); student = LoRA adapter from (a)",
                       "train_lora": train_figures, "generation": gen, "load_avg_before": load_before,
                       "load_avg_after": os.getloadavg(), "note": a.note})


if __name__ == "__main__":
    main()
