"""Teacher (or student) throughput, old code against new, back to back on the same prompts in one run.

Builds the tasks once (the shipped sample's first N items or users, kgen's real one-shot teacher prompt or the
student's short prompt), then runs each setting in its own process (bench/teacher_run.py) one after the other:
the old checkout's backend at batch 8 (today's setting), then this checkout's at each batch size. Each run answers
the prompts bare (`teacher.complete`) and through kgen (`generate_records`). Prints and records in
bench/results/teacher_throughput.jsonl: items/s, tokens/s, CPU seconds, load averages, status counts, how many
answers equal the first setting's, kgen's overhead over the bare backend, and the projected time of the ML-1M and
Online Retail catalogues at each rate.

    git -C /work/main archive main | tar -x -C /tmp/base      # the old code, once
    PYTHONPATH=$PWD nice -n 10 python bench/bench_teacher.py --old-checkout /tmp/base --format text --n 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from bench.common import record
from bench.teacher_prompts import GOLD, ROOT, format_settings, student_tasks_for, teacher_tasks_for

# (items, users) of the catalogues the knowledge-to-CTR studies run on (docs/ctr_data.md).
CATALOGUES = {"ml-1m": (3615, 2998), "online-retail": (3656, 4334)}  # as `ctr prepare` writes them (ML-1M: users 1-2998)


def run_setting(checkout: Path, tasks_file: Path, role: str, model: str, batch_size: int, threads: int,
                options: dict, kgen: bool, bare: bool = True) -> dict:
    """One setting in its own process on the given checkout's code; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        script = "peer_llama_cpp.py" if options.pop("engine", None) == "llama.cpp" else "teacher_run.py"
        cmd = [sys.executable, str(ROOT / "bench" / script), "--tasks", str(tasks_file), "--out", str(out),
               "--role", role, "--model", model, "--batch-size", str(batch_size), "--threads", str(threads),
               "--kgen" if kgen else "--no-kgen", "--bare" if bare else "--no-bare",
               *[f"--option={k}={json.dumps(v)}" for k, v in options.items()]]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        subprocess.run(cmd, check=True, env=env, cwd=checkout, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def as_bare(run: dict) -> dict:
    """The run's bare figures, or (a run through kgen only) its kgen figures in the same layout."""
    if "bare" in run:
        return run["bare"]
    k = run["kgen"]
    answers = [{"index": r["id"], "text": r["raw"], "status": r["status"], "prompt_tokens": r["usage"]["prompt_tokens"],
                "completion_tokens": r["usage"]["completion_tokens"]} for r in k["records"]]
    return {**k, "answers": answers}


def summary(label: str, run: dict, reference: dict | None) -> dict:
    """Rates and agreement of one setting; `reference` is the first setting's run (None for the first)."""
    bare = as_bare(run)
    answers = bare["answers"]
    n, tokens = len(answers), sum(a["completion_tokens"] for a in answers)
    row = {"setting": label, "batch_size": run["batch_size"], "options": run["options"],
           "torch_threads": run["torch_threads"], "items": n, "status": dict(Counter(a["status"] for a in answers)),
           "bare_wall_s": round(bare["wall_s"], 2), "bare_cpu_s": round(bare["cpu_s"], 1),
           "items_per_s": round(n / bare["wall_s"], 3), "tokens_per_s": round(tokens / bare["wall_s"], 2),
           "prompt_tokens_mean": round(sum(a["prompt_tokens"] for a in answers) / n),
           "completion_tokens_mean": round(tokens / n, 1), "load_avg_before": bare["load_avg"],
           "peak_rss_mb": run["peak_rss_mb"]}
    if "kgen" in run and "bare" in run:
        k = run["kgen"]
        row.update(kgen_wall_s=round(k["wall_s"], 2), kgen_items_per_s=round(n / k["wall_s"], 3),
                   kgen_status=k["metrics"]["status"], kgen_load_avg_before=k["load_avg"],
                   kgen_overhead=round(k["wall_s"] / bare["wall_s"] - 1, 3),
                   kgen_overhead_cpu=round(k["cpu_s"] / bare["cpu_s"] - 1, 3))
    if "kgen" in run and "backend_s" in run["kgen"]:  # kgen's own time within its run, whatever the load did
        k = run["kgen"]
        row.update(kgen_own_s=round(k["wall_s"] - k["backend_s"], 3),
                   kgen_own_over_backend=round((k["wall_s"] - k["backend_s"]) / k["backend_s"], 4))
    if reference is not None:
        ref = {a["index"]: a for a in as_bare(reference)["answers"]}
        same = [a["index"] for a in answers if a["text"] == ref[a["index"]]["text"]]
        row["answers_equal_to_first"] = len(same)
        row["changed_indices"] = [a["index"] for a in answers if a["index"] not in same]
        row["speedup_vs_first"] = round(as_bare(reference)["wall_s"] / bare["wall_s"], 2)
    return row


def gold_f1(runs: list[dict], rows: list[dict], level: str) -> None:
    """Add each setting's key-phrase F1 on data/gold (its kgen records) and its paired ratio to the first setting's."""
    from eval.embedder import Embedder
    from eval.f1_report import evaluate_f1, headline_figures
    from eval.paired import paired_f1_ratio, per_item_f1, rounded
    from ground import records as R
    from kgen.models import EMBEDDED_EMBEDDER

    gold, encoder, first = R.read_records(GOLD, "gold"), Embedder(EMBEDDED_EMBEDDER), None
    for run, row in zip(runs, rows):
        report = evaluate_f1(run["kgen"]["records"], gold, encoder, seed=0, level=level)
        row["gold_f1"] = headline_figures(report)
        items = per_item_f1(report["per_item"])
        if first is not None:
            row["gold_f1_ratio_to_first"] = rounded(paired_f1_ratio(items, first, n_boot=1000, seed=0))
        first = first if first is not None else items


def projections(items_per_s: float, level: str) -> dict:
    """Hours for each catalogue's items (or users) at a rate."""
    column = 0 if level == "item" else 1
    return {name: round(counts[column] / items_per_s / 3600, 2) for name, counts in CATALOGUES.items()}


def write_tasks(path: Path, role: str, level: str, n: int, answer_format: str, gold: bool) -> None:
    settings = format_settings(answer_format, role)
    tasks = (teacher_tasks_for if role == "teacher" else student_tasks_for)(n, answer_format, level, gold)
    path.write_text(json.dumps({"settings": asdict(settings), "tasks": tasks}))


def parse_setting(text: str) -> tuple[str, int, dict]:
    """'old:8' or 'new:16' or 'new:16:decoding=generate' -> (checkout kind, batch size, options)."""
    kind, batch, *opts = text.split(":")
    return kind, int(batch), {k: json.loads(v) if v[:1] in '[{"0123456789tfn' else v
                              for k, v in (o.split("=", 1) for o in opts)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--gold", action="store_true", help="Prompts of the data/gold inputs (first n); adds F1 on them.")
    p.add_argument("--role", choices=["teacher", "student"], default="teacher")
    p.add_argument("--model", default="smollm2-135m-instruct", help="Student: its folder or adapter.")
    p.add_argument("--level", choices=["item", "user"], default="item")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--old-checkout", type=Path, help="The old code (e.g. `git archive main`), for settings 'old:B'.")
    p.add_argument("--settings", nargs="+", default=["old:8", "new:8", "new:16"],
                   help="kind:batch[:name=value...] with kind old, new or llamacpp (the peer engine), run in this "
                        "order; answers are compared with the first.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kgen", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--bare", action=argparse.BooleanOptionalAction, default=True,
                   help="--no-bare: time the runs through kgen only (e.g. for F1 on gold).")
    p.add_argument("--note", default="")
    a = p.parse_args()
    checkouts = {"old": a.old_checkout, "new": ROOT, "llamacpp": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        tasks_file = Path(tmp) / "tasks.json"
        write_tasks(tasks_file, a.role, a.level, a.n, a.format, a.gold)
        runs, rows = [], []
        for text in a.settings:
            kind, batch, options = parse_setting(text)
            if kind == "llamacpp":  # the peer engine (bench/peer_llama_cpp.py): text format, one sequence at a time
                options["engine"] = "llama.cpp"
            run = run_setting(checkouts[kind], tasks_file, a.role, a.model, batch, a.threads, options, a.kgen, a.bare)
            rows.append(summary(text, run, runs[0] if runs else None))
            runs.append(run)
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["projected_hours"] = projections(row["items_per_s"], a.level)
    if a.gold and a.kgen:
        gold_f1(runs, rows, a.level)
    record("teacher_throughput", {"model": f"{a.role} {a.model} (CPU)", "role": a.role, "level": a.level,
                                  "answer_format": a.format, "n": a.n, "inputs": "gold" if a.gold else "sample",
                                  "runs": rows, "load_avg_after": os.getloadavg(), "note": a.note})


if __name__ == "__main__":
    main()
