"""One timed generation run, in its own process: bench_teacher.py starts one per setting and checkout.

Loads the model (teacher, or a student folder/adapter), warms it up, then answers the given tasks twice:
bare (`teacher.complete` on the prompts alone) and through kgen (`kgen.run.generate_records`: request keys,
parsing, grounding, one fsynced record per answer). Writes wall and CPU seconds, load averages, statuses and
every answer to --out. Runs on any checkout's code (PYTHONPATH picks it); only options that checkout knows are passed.

    PYTHONPATH=<checkout> python bench/teacher_run.py --tasks tasks.json --out run.json --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from kgen.run import MESSAGES, generate_records, request_schema
from kgen.teachers.base import GenerationSettings


def build(role: str, model: str, batch_size: int, options: dict):
    """The backend of a run; `options` are constructor settings only newer checkouts have (e.g. decoding)."""
    if role == "student":
        from distill.generate import make_student

        student = make_student(model, batch_size)
        for name, value in options.items():
            setattr(student, name, value)
        return student
    from kgen.teachers.transformers_backend import TransformersTeacher

    return TransformersTeacher(model, batch_size=batch_size, **options)


def timed(fn):
    """(result, wall s, CPU s of this process, load averages before)."""
    load = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu, load


class TimedBackend:
    """The backend with the seconds spent inside its complete() generator counted (what kgen adds is the rest)."""

    def __init__(self, teacher):
        self.teacher, self.model, self.inside = teacher, teacher.model, 0.0

    def complete(self, *args, **kwargs):
        answers = self.teacher.complete(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                item = next(answers)
            except StopIteration:
                self.inside += time.perf_counter() - start
                return
            self.inside += time.perf_counter() - start
            yield item

    def close(self) -> None:
        self.teacher.close()


def answers_of(completions: dict) -> list[dict]:
    return [{"index": i, "text": c.text, "status": c.status, "prompt_tokens": c.prompt_tokens,
             "completion_tokens": c.completion_tokens, "error": c.error} for i, c in sorted(completions.items())]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=Path, required=True, help="JSON: {settings, tasks} from bench_teacher.py")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--role", choices=["teacher", "student"], default="teacher")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--option", action="append", default=[], help="NAME=JSON backend setting, e.g. decoding=\"auto\"")
    p.add_argument("--kgen", action=argparse.BooleanOptionalAction, default=True, help="Also run through kgen.run.")
    p.add_argument("--bare", action=argparse.BooleanOptionalAction, default=True, help="Run teacher.complete alone.")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    spec = json.loads(a.tasks.read_text())
    settings, tasks = GenerationSettings(**spec["settings"]), spec["tasks"]
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in a.option)}
    teacher = build(a.role, a.model, a.batch_size, options)
    teacher._load()
    warm = GenerationSettings(**{**spec["settings"], "max_new_tokens": 4})
    list(teacher.complete([tasks[0][MESSAGES]], warm, [request_schema(tasks[0], warm)] if warm.structured else None))
    prompts = [t[MESSAGES] for t in tasks]
    schemas = [request_schema(t, settings) for t in tasks] if settings.structured else None
    out = {"torch_threads": torch.get_num_threads(), "batch_size": a.batch_size, "options": options}
    if a.bare:
        bare, wall, cpu, load = timed(lambda: dict(teacher.complete(prompts, settings, schemas)))
        out["bare"] = {"wall_s": wall, "cpu_s": cpu, "load_avg": load, "answers": answers_of(bare)}
    if a.kgen:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "k.jsonl"
            drop = a.role == "teacher"  # as `kgen generate` runs it; the student has no example to leak from
            backend = TimedBackend(teacher)
            metrics, wall, cpu, load = timed(lambda: generate_records(tasks, backend, settings, path, drop_leaked=drop))
            records = [json.loads(line) for line in path.open()]
        out["kgen"] = {"wall_s": wall, "cpu_s": cpu, "load_avg": load, "metrics": metrics, "records": records,
                       "backend_s": backend.inside}
    out["load_avg_after"] = os.getloadavg()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    a.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
