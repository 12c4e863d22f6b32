"""The openai-batch teacher against the fake server's /v1/files and /v1/batches, over real loopback HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from fake_openai_server import EXPIRES, FAILS, BatchPlan, FakeOpenAIServer, Reply
from fake_teacher import task
from typer.testing import CliRunner

from kgen import run
from kgen.answer_schema import answer_schema
from kgen.cli import app
from ground.errors import ConfigError, RecordError
from ground.records import read_records
from kgen.run import generate_records
from kgen.teachers import make_teacher, parse_teacher
from kgen.teachers import openai_batch
from kgen.teachers.base import GenerationSettings, request_key
from kgen.teachers.openai_backend import OpenAITeacher, chat_request, response_format
from kgen.teachers.openai_batch import OpenAIBatchTeacher, batch_state_path, write_state

TEXT = GenerationSettings(max_new_tokens=64, temperature=0.7, top_p=0.9, seed=11, answer_format="text")
JSON = GenerationSettings(max_new_tokens=64, answer_format="json")


def batch_teacher(server: FakeOpenAIServer, out: Path) -> OpenAIBatchTeacher:
    """A batch teacher that polls every few milliseconds, so the tests stay fast."""
    return OpenAIBatchTeacher("fake-model", batch_state_path(out), base_url=server.base_url, api_key="sk-test",
                              poll_start=0.005, poll_max=0.02, max_retries=1)


def live_teacher(server: FakeOpenAIServer) -> OpenAITeacher:
    return OpenAITeacher("fake-model", base_url=server.base_url, api_key="sk-test", max_retries=0, concurrency=4)


def input_lines(server: FakeOpenAIServer, batch_number: int) -> list[dict]:
    """The request lines of the n-th batch created (0-based), as the server stored them."""
    batch = list(server.batch_api.batches.values())[batch_number]
    content = server.batch_api.files[batch["input_file_id"]][1]
    return [json.loads(line) for line in content.decode().splitlines()]


def sorted_lines(path: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("settings", [TEXT, JSON], ids=["text", "json"])
def test_submit_poll_download_gives_the_records_a_live_run_gives(tmp_path, settings):
    tasks = [task(i) for i in range(6)]
    script = {"Product Name: name-4": [Reply(finish_reason="length")]}  # truncated, in both runs
    live_out, batch_out = tmp_path / "live.jsonl", tmp_path / "batch.jsonl"
    with FakeOpenAIServer(script) as live:
        generate_records(tasks, live_teacher(live), settings, live_out)
        live_bodies = {c.content: c.body for c in live.calls}
    with FakeOpenAIServer(script) as server:
        teacher = batch_teacher(server, batch_out)
        summary = generate_records(tasks, teacher, settings, batch_out)
        lines = input_lines(server, 0)
        assert len(server.batch_api.batches) == 1 and server.batch_api.retrieves >= 3  # validating .. completed
    # Byte for byte the same records: same keys, model, status (incl. truncated / parse_error), raw text, usage.
    assert sorted_lines(batch_out) == sorted_lines(live_out)
    statuses = {r["status"] for r in read_records(batch_out, "knowledge")}
    assert "truncated" in statuses and statuses <= {"ok", "parse_error", "truncated"}
    assert summary["generated"] == 6 and summary["status"].get("truncated") == 1
    # Each line is the live request: custom_id is the record's key, body exactly what the openai backend sent.
    for line in lines:
        content = line["body"]["messages"][-1]["content"]
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        assert line["body"] == live_bodies[content]
        assert line["custom_id"] == request_key(line["body"]["messages"], "openai:fake-model", settings)
    assert ("response_format" in lines[0]["body"]) == settings.structured
    assert not batch_state_path(batch_out).exists()  # the batch is done: nothing left to resume
    assert any("batch_0001 completed" in note for note in teacher.notes)


def test_the_request_body_is_the_live_backends(tmp_path):
    messages = task(0)["messages"]
    fmt = response_format(answer_schema())
    body = chat_request("m", messages, JSON, fmt)
    assert body["max_tokens"] == 64 and body["seed"] == 0 and body["response_format"] == fmt
    assert "response_format" not in chat_request("m", messages, TEXT, None)


def test_failed_and_expired_rows_are_api_errors_then_retried_in_a_new_batch(tmp_path):
    tasks = [task(i) for i in range(6)]
    first = BatchPlan(statuses=EXPIRES.statuses, unfinished=frozenset({"Product Name: name-3"}),
                      row_errors=frozenset({"Product Name: name-1"}))
    script = {"Product Name: name-2": [Reply(500), Reply()]}  # an error body in the first batch only
    out = tmp_path / "k.jsonl"
    with FakeOpenAIServer(script, batch_plans=[first, BatchPlan()]) as server:
        generate_records(tasks, batch_teacher(server, out), JSON, out)
        rows = {r["id"]: r for r in read_records(out, "knowledge")}
        assert {i for i, r in rows.items() if r["status"] == "api_error"} == {"x1", "x2", "x3"}
        assert "server_error" in rows["x1"]["error"] and "batch_0001" in rows["x1"]["error"]
        assert rows["x2"]["error"].startswith("HTTP 500: scripted failure")
        assert rows["x3"]["error"].startswith("batch_expired:")
        assert not batch_state_path(out).exists()

        summary = generate_records(tasks, batch_teacher(server, out), JSON, out)
        retried = {line["body"]["messages"][-1]["content"] for line in input_lines(server, 1)}
        assert retried == {f"Product Name: name-{i}" for i in (1, 2, 3)}  # only the failures went again
        assert len(server.batch_api.batches) == 2 and summary["skipped_done"] == 3
    rows = read_records(out, "knowledge")
    assert sorted(r["id"] for r in rows) == [f"x{i}" for i in range(6)]  # one record per input
    assert {r["status"] for r in rows} == {"ok"}


def test_a_batch_that_failed_validation_is_recorded_and_retried(tmp_path):
    tasks = [task(i) for i in range(3)]
    out = tmp_path / "k.jsonl"
    with FakeOpenAIServer(batch_plans=[FAILS, BatchPlan()]) as server:
        generate_records(tasks, batch_teacher(server, out), TEXT, out)
        rows = read_records(out, "knowledge")
        assert {r["status"] for r in rows} == {"api_error"} and len(rows) == 3
        assert "ended failed" in rows[0]["error"] and "scripted validation failure" in rows[0]["error"]
        generate_records(tasks, batch_teacher(server, out), TEXT, out)
    assert sorted(r["id"] for r in read_records(out, "knowledge")) == ["x0", "x1", "x2"]
    assert {r["status"] for r in read_records(out, "knowledge")} == {"ok"}


def test_requests_over_the_per_batch_limit_go_in_several_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(openai_batch, "MAX_REQUESTS", 2)
    out = tmp_path / "k.jsonl"
    with FakeOpenAIServer() as server:
        generate_records([task(i) for i in range(5)], batch_teacher(server, out), JSON, out)
        assert [len(input_lines(server, n)) for n in range(3)] == [2, 2, 1]
    rows = read_records(out, "knowledge")
    assert sorted(r["id"] for r in rows) == [f"x{i}" for i in range(5)] and {r["status"] for r in rows} == {"ok"}


def test_an_uploaded_file_whose_batch_was_not_saved_is_adopted_or_created_not_uploaded_again(tmp_path):
    tasks = [task(i) for i in range(2)]
    out = tmp_path / "k.jsonl"
    with FakeOpenAIServer() as server:
        client = openai.OpenAI(api_key="sk-test", base_url=server.base_url)
        keys = [request_key(t["messages"], "openai:fake-model", JSON) for t in tasks]
        data = b"".join(line for _, line in next(openai_batch.batch_lines(
            keys, {k: [i] for i, k in enumerate(keys)}, [t["messages"] for t in tasks], "fake-model", JSON)))
        uploaded = client.files.create(file=("b.jsonl", data), purpose="batch")
        # A run killed after creating the batch but before saving its id: the file names only the upload.
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        state = openai_batch.BatchState("openai:fake-model", [openai_batch.Submitted(uploaded.id, keys)])
        write_state(batch_state_path(out), state)
        files_before = len(server.batch_api.files)
        generate_records(tasks, batch_teacher(server, out), JSON, out)
        assert len(server.batch_api.batches) == 1  # adopted, not created twice
        assert len(server.batch_api.files) == files_before + 1  # only the output file was added: no upload
    assert len(read_records(out, "knowledge")) == 2


def test_a_stored_batch_for_other_requests_is_dropped_with_a_note(tmp_path):
    out = tmp_path / "k.jsonl"
    stale = openai_batch.BatchState("openai:old", [openai_batch.Submitted("file-x", ["0" * 32], "batch_old")])
    write_state(batch_state_path(out), stale)
    with FakeOpenAIServer() as server:
        teacher = batch_teacher(server, out)
        generate_records([task(0)], teacher, JSON, out)
        assert len(server.batch_api.batches) == 1  # the old batch is never polled (the server has no such batch)
    assert any("batch_old holds none of the requests" in note for note in teacher.notes)
    assert not batch_state_path(out).exists()


def test_a_broken_state_file_is_one_line_and_kept(tmp_path):
    out = tmp_path / "k.jsonl"
    batch_state_path(out).write_text("{not json")
    with FakeOpenAIServer() as server, pytest.raises(RecordError, match=r"k.jsonl.batch.json: not a kgen batch state"):
        generate_records([task(0)], batch_teacher(server, out), JSON, out)
    assert batch_state_path(out).read_text() == "{not json"


def test_the_teacher_spec_and_its_state_path():
    assert parse_teacher("openai-batch:gpt-4o-mini") == ("openai-batch", "gpt-4o-mini")
    with pytest.raises(ConfigError, match="beside the output"):
        make_teacher("openai-batch:gpt-4o-mini")
    assert batch_state_path(Path("runs/k.jsonl")) == Path("runs/k.jsonl.batch.json")


# ---- the command line, killed after submitting -------------------------------------------------------------------


def items_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"item_id": f"i{k}", "name": f"Blue Mug {k}"}) + "\n" for k in range(n)))
    return path


def generate_args(items: Path, out: Path) -> list[str]:
    return ["generate", "-i", str(items), "-o", str(out), "--teacher", "openai-batch:fake-model",
            "--answer-format", "json", "--reference", "none"]


def submitted_batch(state: Path) -> str | None:
    """The batch id the state file names, once one is saved."""
    try:
        return json.loads(state.read_text())["batches"][0]["batch_id"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def test_cli_killed_after_submit_resumes_the_stored_batch_without_a_second(tmp_path, monkeypatch):
    items, out = items_file(tmp_path, 5), tmp_path / "k.jsonl"
    state = batch_state_path(out)
    with FakeOpenAIServer() as server:
        server.batch_api.held = True  # the batch stays in progress until the kill is done
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(Path(__file__).parents[2])}
        proc = subprocess.Popen([sys.executable, "-m", "kgen.cli", *generate_args(items, out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline and submitted_batch(state) is None and proc.poll() is None:
            time.sleep(0.05)
        assert submitted_batch(state) == "batch_0001", proc.stderr.read().decode()[-2000:] if proc.poll() else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert not out.exists() or read_records(out, "knowledge") == []
        server.batch_api.held = False

        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setattr(openai_batch, "POLL_START_S", 0.005)
        result = CliRunner().invoke(app, generate_args(items, out))
        assert result.exit_code == 0, result.output
        assert len(server.batch_api.batches) == 1  # resumed by id: no second batch
        assert sum(1 for purpose, _ in server.batch_api.files.values() if purpose == "batch") == 1  # one upload
    rows = read_records(out, "knowledge")
    assert sorted(r["id"] for r in rows) == [f"i{k}" for k in range(5)] and {r["status"] for r in rows} == {"ok"}
    assert not state.exists()
    run = json.loads((tmp_path / "k.run.json").read_text())
    assert any("resuming batch batch_0001" in note for note in run["notes"])
    assert run["metrics"]["generated"] == 5


def test_a_passing_outage_while_polling_is_waited_out(tmp_path):
    out = tmp_path / "k.jsonl"
    with FakeOpenAIServer() as server:
        server.batch_api.failing_retrieves = 3  # more than the client's own retries (1): the poll loop goes on
        generate_records([task(0), task(1)], batch_teacher(server, out), JSON, out)
        assert server.batch_api.failing_retrieves == 0 and len(server.batch_api.batches) == 1
    assert {r["status"] for r in read_records(out, "knowledge")} == {"ok"}


def test_a_stored_batch_the_server_does_not_know_stops_with_one_line_and_keeps_the_file(tmp_path):
    out = tmp_path / "k.jsonl"
    key = request_key(task(0)["messages"], "openai:fake-model", JSON)
    write_state(batch_state_path(out), openai_batch.BatchState("openai:fake-model",
                                                                [openai_batch.Submitted("file-x", [key], "batch_gone")]))
    with FakeOpenAIServer() as server, pytest.raises(ConfigError, match=r"batch_gone cannot be read \(HTTP 404"):
        generate_records([task(0)], batch_teacher(server, out), JSON, out)
    assert "batch_gone" in batch_state_path(out).read_text()  # never dropped: it may still be running, and paid for


def test_a_run_killed_while_writing_a_batchs_records_keeps_the_batch_and_finishes_it(tmp_path, monkeypatch):
    out, tasks = tmp_path / "k.jsonl", [task(i) for i in range(5)]
    real_append, appended = run.append_line, []

    def append_then_die(fh, row):  # the process dies after the second record of the batch is on disk
        if len(appended) == 2:
            raise KeyboardInterrupt
        real_append(fh, row)
        appended.append(row["id"])

    with FakeOpenAIServer() as server:
        monkeypatch.setattr(run, "append_line", append_then_die)
        with pytest.raises(KeyboardInterrupt):
            generate_records(tasks, batch_teacher(server, out), JSON, out)
        assert len(read_records(out, "knowledge")) == 2
        assert "batch_0001" in batch_state_path(out).read_text()  # not all its records are written: it stays
        monkeypatch.setattr(run, "append_line", real_append)
        summary = generate_records(tasks, batch_teacher(server, out), JSON, out)
        assert len(server.batch_api.batches) == 1 and summary["skipped_done"] == 2 and summary["generated"] == 3
    rows = read_records(out, "knowledge")
    assert sorted(r["id"] for r in rows) == [f"x{i}" for i in range(5)] and {r["status"] for r in rows} == {"ok"}
    assert not batch_state_path(out).exists()
