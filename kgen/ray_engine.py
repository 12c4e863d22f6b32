"""`--engine ray`: the same generation run spread over a Ray cluster with Ray Data.

The driver validates the inputs, renders every prompt and plans against the
output exactly as a single-process run does (content keys, stale ids, retried
failures), so only what is missing is dispatched. Ray Data maps batches of
those tasks through a pool of actors, each holding one teacher (a vLLM engine
on a GPU, a transformers model on CPUs, or an openai client). Each batch's
records go to one shard, `OUTPUT.ray-shards/part-*.jsonl`, written atomically
by the worker; Ray restarts a dead actor and retries its batch. The driver
merges the shards into the output atomically, one record per request key, at
the end and again at the start of a re-run, so a killed driver or worker loses
no finished batch and duplicates nothing.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ground.errors import ConfigError, MissingExtra, RecordError
from ground.files import atomic_writer, check_writable_file, dumps, iter_jsonl, write_jsonl
from ground import records as R
from kgen.run import (
    MESSAGES,
    knowledge_record,
    locked,
    prepare_output,
    read_output_rows,
    request_schema,
    run_metrics,
)
from kgen.teachers.base import GenerationSettings, Teacher

MISSING_RAY = "--engine ray needs Ray Data: pip install msd-toolkit[ray]"
TASK = "task"  # the one column of the dispatched dataset: a task as a JSON string (ids may be int or str)
SHARD_GLOB = "part-*.jsonl"
# Environment of the workers: one thread per CPU worker (they share the machine), nothing from a model hub.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
# Settings the backends read from the environment: a remote cluster's workers do not inherit the driver's.
FORWARDED_ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MSD_DEBUG")


def shard_dir(output: Path) -> Path:
    """Where the workers of a Ray run write their shards: beside the output."""
    return output.with_name(output.name + ".ray-shards")


def actor_resources(gpu: bool) -> dict[str, float]:
    """What one worker reserves: a GPU (a vLLM engine, a student on a GPU cluster), else a CPU."""
    return {"num_gpus": 1.0} if gpu else {"num_cpus": 1.0}


def batch_rows(backend: str, batch_size: int, concurrency: int) -> int:
    """Rows per dispatched batch (and shard): enough to keep the backend's own batching or concurrency busy."""
    if backend == "vllm":
        return 256  # vLLM schedules a whole call continuously; bigger calls keep the GPU full
    return 4 * (concurrency if backend == "openai" else batch_size)


class GenerateBatch:
    """A Ray Data actor: one teacher for its lifetime; each batch answered, written as one shard, summarised."""

    def __init__(self, make_teacher: Callable[[], Teacher], settings: GenerationSettings, shards: str,
                 drop_leaked: bool = False):
        self.teacher, self.settings, self.shards = make_teacher(), settings, Path(shards)
        self.drop_leaked = drop_leaked

    def __call__(self, batch: dict) -> dict:
        tasks = [json.loads(text) for text in batch[TASK]]
        rows: list[dict | None] = [None] * len(tasks)
        schemas = [request_schema(t, self.settings) for t in tasks] if self.settings.structured else None
        for index, completion in self.teacher.complete([t[MESSAGES] for t in tasks], self.settings, schemas):
            task = tasks[index]
            rows[index] = knowledge_record(task, task[R.REQUEST_KEY], self.teacher.model, completion, self.drop_leaked)
        missing = [t[R.ID] for t, row in zip(tasks, rows) if row is None]
        if missing:  # a backend that skipped a prompt is a bug: fail the batch rather than lose the row
            raise RuntimeError(f"{self.teacher.model} gave no answer for ids {missing[:3]}")
        write_jsonl(self.shards / f"part-{uuid.uuid4().hex}.jsonl", rows)  # atomic: the whole batch or nothing
        usage = [row[R.USAGE] for row in rows]
        return {R.STATUS: [row[R.STATUS] for row in rows],
                "prompt_tokens": [u["prompt_tokens"] for u in usage],
                "completion_tokens": [u["completion_tokens"] for u in usage]}

    def __del__(self) -> None:
        close = getattr(getattr(self, "teacher", None), "close", None)
        if close:
            close()


def _shard_rows(shards: Path) -> list[tuple[Path, list[dict]]]:
    """(shard, its records) for every finished shard; temp files of a batch cut short are not finished shards."""
    return [(path, [_shard_row(row, path, lineno) for lineno, row in iter_jsonl(path)])
            for path in sorted(shards.glob(SHARD_GLOB))]


def merge_shards(output: Path) -> int:
    """Fold finished shards into `output` atomically, keeping the first record per request key; return rows added.

    A key already in the output, or in an earlier shard (a batch retried after its shard was written), is
    skipped. Shards are removed only after the merged output is in place, so a kill in between merges
    them again next time, and they are skipped then as already present.
    """
    shards = shard_dir(output)
    found = _shard_rows(shards) if shards.is_dir() else []
    if not found:
        return 0
    seen: set[str] = set()
    added = 0
    with atomic_writer(output) as fh:
        for row in read_output_rows(output)[0]:
            seen.add(row[R.REQUEST_KEY])
            fh.write(dumps(row) + "\n")
        for _, rows in found:
            for row in rows:
                if row[R.REQUEST_KEY] not in seen:
                    seen.add(row[R.REQUEST_KEY])
                    fh.write(dumps(row) + "\n")
                    added += 1
    for path, _ in found:
        path.unlink()
    for tmp in shards.glob(".part-*.tmp"):  # a batch cut short by a kill: its rows were redone elsewhere or will be
        tmp.unlink()
    return added


def _shard_row(row: object, path: Path, lineno: int) -> dict:
    problem = R.check_record(row, "knowledge")
    if problem or R.REQUEST_KEY not in row:
        raise RecordError(f"{path}:{lineno}: {problem or 'row without a request key'}; remove this shard")
    return row


def start_ray():
    """Join the cluster named by RAY_ADDRESS (or the one already started), else start a local one."""
    try:
        import ray
    except ImportError:
        raise MissingExtra(MISSING_RAY) from None
    if not ray.is_initialized():
        env = {**WORKER_ENV, **{k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
        ray.init(runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the driver shows one bar of its own
    return ray


def default_workers(ray, gpu: bool) -> int:
    """One worker per GPU of the cluster for work that needs one, else one per CPU."""
    resources = ray.cluster_resources()
    count = resources.get("GPU", 0) if gpu else resources.get("CPU", 1)
    if count < 1:
        raise ConfigError("--engine ray with a vllm teacher needs GPUs in the Ray cluster; none found")
    return int(count)


def generate_records_ray(
    tasks: list[dict],
    make_teacher: Callable[[], Teacher],
    model: str,
    backend: str,
    settings: GenerationSettings,
    output: Path,
    *,
    workers: int | None = None,
    rows_per_batch: int = 32,  # at most; fewer when that keeps every worker busy
    desc: str = "generate",
    replace_stale: bool = False,
    drop_leaked: bool = False,
) -> dict:
    """`generate_records` over Ray Data: the same records, one per task, written through worker shards."""
    output = check_writable_file(output)
    with locked(output):
        merged_before = merge_shards(output)  # a driver killed last time left finished batches behind
        todo, stale = prepare_output(tasks, model, settings, output, replace_stale)
        start = time.perf_counter()
        ray = start_ray() if todo else None  # nothing left to do: no cluster to start or join
        startup = time.perf_counter() - start
        workers = workers or (default_workers(ray, gpu=backend == "vllm") if ray else 0)
        rows_per_batch = max(1, min(rows_per_batch, math.ceil(len(todo) / max(workers, 1))))  # a small run uses all
        try:
            counts = _dispatch(ray, todo, make_teacher, backend, settings, output, workers, rows_per_batch, desc,
                               drop_leaked)
        finally:
            merge_shards(output)  # also when stopped: the batches already finished are kept in the output
        _remove_if_empty(shard_dir(output))
    counts["ray"] = {"workers": workers, "rows_per_batch": rows_per_batch, "startup_s": round(startup, 2),
                     "merged_from_earlier_run": merged_before}
    return {"tasks": len(tasks), "skipped_done": len(tasks) - len(todo), "replaced_stale": stale, **counts}


def _dispatch(ray, todo: list[dict], make_teacher, backend: str, settings: GenerationSettings, output: Path,
              workers: int, rows_per_batch: int, desc: str, drop_leaked: bool = False) -> dict:
    """Map the to-do tasks through a pool of `workers` actors; count what comes back."""
    status: Counter[str] = Counter()
    tokens = prompt_tokens = 0
    start = time.perf_counter()
    if todo:
        shards = shard_dir(output)
        shards.mkdir(parents=True, exist_ok=True)
        items = [{TASK: json.dumps(t, ensure_ascii=False)} for t in todo]
        blocks = max(1, min(len(items), math.ceil(len(items) / rows_per_batch)))
        ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            GenerateBatch,
            fn_constructor_kwargs={"make_teacher": make_teacher, "settings": settings, "shards": str(shards),
                                   "drop_leaked": drop_leaked},
            batch_size=rows_per_batch,
            # A fixed pool; Ray Data's defaults for actor pools restart a dead actor and retry its batch.
            compute=ray.data.ActorPoolStrategy(size=workers),
            **actor_resources(gpu=backend == "vllm"),
        )
        with tqdm(total=len(todo), desc=f"{desc} (ray, {workers} workers)", unit="row", dynamic_ncols=True) as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                status.update(str(s) for s in batch[R.STATUS])
                tokens += int(batch["completion_tokens"].sum())
                prompt_tokens += int(batch["prompt_tokens"].sum())
                bar.update(len(batch[R.STATUS]))
    return run_metrics(status, tokens, prompt_tokens, time.perf_counter() - start)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
