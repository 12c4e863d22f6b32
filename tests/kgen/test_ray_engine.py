"""`--engine ray` on a local 2-CPU Ray cluster: the same records as one process, retried workers, resumed drivers."""

import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import ray  # the ray extra, installed by `make test`: a missing one fails here, never skips
import torch
from fake_teacher import CrashOnceTeacher, FakeTeacher, LoggingTeacher, task
from typer.testing import CliRunner

import kgen.ray_engine as E
from ground.vectors import ITEM_TABLE, read_table
from distill.embed import EmbedConfig, embed_tables
from distill.student_config import StudentConfig
from distill.generate import generate_student
from ground.errors import ConfigError, MissingExtra
from ground.records import read_records
from ground.files import write_jsonl
from kgen.cli import app
from kgen.generate import GenerateConfig, generate_knowledge
from kgen.run import generate_records
from kgen.teachers.base import GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=6, answer_format="text")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 CPUs; workers import this checkout and the fake teachers, one thread each."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "kgen"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False,
             runtime_env={"env_vars": {**E.WORKER_ENV, "PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture
def items(tmp_path):
    path = tmp_path / "items.jsonl"
    write_jsonl(path, [{"item_id": f"i{i}", "name": f"Blue mug number {i} " + "big " * i} for i in range(10)])
    return path


def sorted_lines(path: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8").splitlines())


def run_ray(tasks, make, out, **kw):
    return E.generate_records_ray(tasks, make, "fake:teacher", "transformers", SETTINGS, out, workers=2,
                                  rows_per_batch=3, **kw)


def test_kgen_generate_records_equal_the_single_process_run_byte_for_byte(cluster, tiny_model_dir, items, tmp_path):
    runs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine / "k.jsonl"
        config = GenerateConfig(level="item", input=items, output=out, teacher=f"transformers:{tiny_model_dir}",
                                batch_size=2, settings=SETTINGS, engine=engine, workers=2)
        runs[engine] = generate_knowledge(config)["metrics"]
        assert not E.shard_dir(out).exists()  # merged and cleaned up
    assert sorted_lines(tmp_path / "ray" / "k.jsonl") == sorted_lines(tmp_path / "local" / "k.jsonl")
    assert len(sorted_lines(tmp_path / "local" / "k.jsonl")) == 10
    assert runs["ray"]["generated"] == 10 and runs["ray"]["ray"]["workers"] == 2
    assert runs["ray"]["ray"]["rows_per_batch"] == 5  # 2 batches of 5, one per worker (4 x batch_size at most)
    again = generate_knowledge(config)["metrics"]  # the ray run's config, again: everything is done
    assert again["skipped_done"] == 10 and again["generated"] == 0


def test_distill_generate_and_embed_on_ray_equal_one_process(cluster, tiny_model_dir, items, tmp_path):
    runs = {}
    threads = torch.get_num_threads()
    # The workers run torch on one thread (WORKER_ENV); a matmul's summation order depends on the thread count,
    # so the local run uses one thread too and the vectors can be compared bit for bit.
    torch.set_num_threads(1)
    try:
        for engine in ("local", "ray"):
            out = tmp_path / engine
            generate_student(StudentConfig(model=tiny_model_dir, level="item", input=items, output=out / "k.jsonl",
                                           batch_size=2, max_new_tokens=5, engine=engine, workers=2))
            embed_tables(EmbedConfig(model=tiny_model_dir, items=items, output=out / "emb", batch_size=2, engine=engine, workers=2))
            runs[engine] = (sorted_lines(out / "k.jsonl"), read_table(out / "emb" / ITEM_TABLE))
    finally:
        torch.set_num_threads(threads)
    assert runs["ray"][0] == runs["local"][0] and len(runs["local"][0]) == 10
    (ids, vectors), (ray_ids, ray_vectors) = runs["local"][1], runs["ray"][1]
    assert ray_ids == ids and np.array_equal(ray_vectors, vectors)  # the same batches, so the same bits


def test_a_killed_worker_is_retried_and_every_input_gets_one_record(cluster, tmp_path):
    tasks = [task(i) for i in range(8)]
    marker = tmp_path / "crashed"
    out = tmp_path / "k.jsonl"
    run_ray(tasks, partial(CrashOnceTeacher, str(marker)), out)
    assert marker.exists()  # a worker did die mid-run
    expected = tmp_path / "one.jsonl"
    generate_records(tasks, FakeTeacher(), SETTINGS, expected)
    assert sorted_lines(out) == sorted_lines(expected)


def test_rerun_after_an_interrupted_driver_dispatches_only_the_rest_and_duplicates_nothing(cluster, tmp_path,
                                                                                           monkeypatch):
    tasks = [task(i) for i in range(9)]
    out, log = tmp_path / "k.jsonl", tmp_path / "answered.log"
    generate_records(tasks[:3], FakeTeacher(), SETTINGS, out)  # an earlier, finished run
    monkeypatch.setattr(E, "merge_shards", _interrupt_second_call(E.merge_shards))
    with pytest.raises(KeyboardInterrupt):
        run_ray(tasks[:6], partial(FakeTeacher, fail_on={"name-4"}), out)
    monkeypatch.undo()
    shards = sorted(E.shard_dir(out).glob(E.SHARD_GLOB))
    assert shards and len(read_records(out, "knowledge")) == 3  # finished batches wait in shards
    waiting = {r["id"]: r["status"] for path in shards for r in read_records(path, "knowledge")}
    assert waiting == {"x3": "ok", "x4": "api_error", "x5": "ok"}  # a failed row is a record of its own
    # A batch retried after its shard was written leaves the same rows twice; a kill can tear the output's last line.
    (E.shard_dir(out) / "part-zz-copy.jsonl").write_bytes(shards[0].read_bytes())
    with out.open("a") as fh:
        fh.write('{"id": "x9", "lev')
    summary = run_ray(tasks, partial(LoggingTeacher, str(log)), out)
    rows = read_records(out, "knowledge")
    assert sorted(r["id"] for r in rows) == sorted(t["id"] for t in tasks)  # one record per input
    assert {r["status"] for r in rows} == {"ok"}
    assert summary["ray"]["merged_from_earlier_run"] == 3 and summary["skipped_done"] == 5
    # Only the rest was dispatched: the row that failed with api_error (a per-row record) and the unseen ones.
    assert sorted(log.read_text().split()) == ["name-4"] + [f"name-{i}" for i in range(6, 9)]


def _interrupt_second_call(merge):
    """merge_shards, except that its second call (the one after the dispatch) stops the driver as Ctrl-C would."""
    calls = []

    def wrapper(output):
        calls.append(output)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return merge(output)

    return wrapper


def test_without_ray_the_engine_says_which_extra_to_install(monkeypatch, items, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install msd-toolkit\[ray\]"):
        E.start_ray()
    result = CliRunner().invoke(app, ["generate", "-i", str(items), "-o", str(tmp_path / "k.jsonl"), "--engine", "ray"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: --engine ray needs Ray Data: pip install msd-toolkit[ray]"]
    assert not (tmp_path / "k.jsonl").exists()


def test_engine_settings_are_checked_before_any_work(items, tmp_path):
    out = tmp_path / "k.jsonl"
    with pytest.raises(ConfigError, match="openai-batch teacher runs on the provider's batch engine"):
        GenerateConfig(level="item", input=items, output=out, teacher="openai-batch:gpt-4o-mini", engine="ray")
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        StudentConfig(model="m", level="item", input=items, output=out, engine="ray", workers=0)
    with pytest.raises(ConfigError, match="engine must be one of local, ray"):
        EmbedConfig(model="m", items=items, output=tmp_path / "emb", engine="spark")
