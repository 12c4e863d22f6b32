"""`kgen generate --engine ray` with 2 CPU workers against one process, on the same items.

Both runs use the embedded SmolLM2-135M-Instruct teacher (transformers, fp32,
CPU) on the first N items of the shipped sample with the real one-shot prompt,
and must write the same records. Ray's overhead is measured apart from the
model: the cluster's start-up, and the cost of one dispatched batch (an
instant teacher over 1-row batches at two sizes; the slope is the per-batch
cost, the rest is the actor pool's start). Figures go to bench/results/ray.jsonl
with the load average, since speed on a shared machine means little.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_ray --n 16 --max-new-tokens 64 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import record
from ground.runinfo import peak_rss_mb

from kgen.generate import GenerateConfig, generate_knowledge
from kgen.teachers.base import Completion, GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
ITEMS = ROOT / "data/sample/items.jsonl"


class InstantTeacher:
    """Answers at once, so a run's time is Ray's own overhead (pickled by value to the workers: defined in __main__)."""

    model = "instant:teacher"

    def complete(self, prompts, settings, schemas=None):
        for i, _ in enumerate(prompts):
            yield i, Completion("Key Features: x", "ok", 1, 1)

    def close(self) -> None:
        pass


def generate(engine: str, n: int, max_new_tokens: int, batch_size: int, workers: int, folder: Path) -> tuple[dict, Path]:
    """One kgen generate run; its metrics plus wall time (model load and, for ray, the actors' start included)."""
    out = folder / engine / "k.jsonl"
    config = GenerateConfig(level="item", input=ITEMS, output=out, limit=n, batch_size=batch_size, engine=engine,
                            workers=workers, settings=GenerationSettings(max_new_tokens=max_new_tokens,
                                                                         answer_format="text"))
    start = time.perf_counter()
    metrics = generate_knowledge(config)["metrics"]
    metrics["wall_s"] = round(time.perf_counter() - start, 2)
    metrics["items_per_s_wall"] = round(metrics["generated"] / metrics["wall_s"], 4)
    return metrics, out


def overhead(workers: int, folder: Path, sizes: tuple[int, int] = (8, 32)) -> dict:
    """Seconds per dispatched batch (slope over two sizes of 1-row batches) and the actor pool's fixed start cost."""
    from kgen.ray_engine import generate_records_ray
    from kgen.run import MESSAGES
    from kgen.teachers.base import GenerationSettings

    times = []
    for n in sizes:
        tasks = [{"id": f"x{i}", "level": "item", "input": f"n{i}", "template": "item", "reference_id": None,
                  MESSAGES: [{"role": "user", "content": f"Product Name: n{i}"}]} for i in range(n)]
        start = time.perf_counter()
        generate_records_ray(tasks, InstantTeacher, InstantTeacher.model, "transformers",
                             GenerationSettings(answer_format="text"),
                             folder / f"instant-{n}.jsonl", workers=workers, rows_per_batch=1)
        times.append(time.perf_counter() - start)
    per_batch = (times[1] - times[0]) / (sizes[1] - sizes[0])
    return {"per_batch_s": round(per_batch, 4), "pool_start_s": round(times[0] - per_batch * sizes[0], 2),
            "instant_runs_s": {str(n): round(t, 2) for n, t in zip(sizes, times)}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4, help="teacher batch size, the same in both runs")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=a.workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}})
    startup = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        local, local_out = generate("local", a.n, a.max_new_tokens, a.batch_size, a.workers, folder)
        distributed, ray_out = generate("ray", a.n, a.max_new_tokens, a.batch_size, a.workers, folder)
        same = sorted(local_out.read_text().splitlines()) == sorted(ray_out.read_text().splitlines())
        cost = overhead(a.workers, folder)
    ray.shutdown()
    for name, m in (("one process", local), (f"ray, {a.workers} workers", distributed)):
        print(f"{name:>16}: {m['items_per_s_wall']:.3f} items/s over the whole run ({m['wall_s']} s), "
              f"{m['rows_per_s']:.3f} items/s while generating ({m['seconds']} s)")
    print(f"ray start-up {startup:.1f} s, {cost['per_batch_s'] * 1000:.0f} ms per dispatched batch, "
          f"actor pool start {cost['pool_start_s']} s; records identical: {same}")
    keep = ("generated", "status", "seconds", "rows_per_s", "tokens_per_s", "wall_s", "items_per_s_wall",
            "prompt_tokens", "completion_tokens")
    record("ray", {"model": "embedded smollm2-135m-instruct (fp32, CPU)", "n": a.n, "max_new_tokens": a.max_new_tokens,
                   "teacher_batch_size": a.batch_size, "workers": a.workers,
                   "local": {k: local[k] for k in keep},
                   "ray": {**{k: distributed[k] for k in keep}, **distributed["ray"]},
                   "ray_startup_s": round(startup, 2), "overhead": cost, "records_identical": same,
                   "speedup_wall": round(local["wall_s"] / distributed["wall_s"], 3),
                   "peak_rss_mb_driver": peak_rss_mb()})


if __name__ == "__main__":
    main()
