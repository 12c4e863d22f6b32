"""Resumable, failure-isolated runs: content keys, retries of failures, SIGKILL safety."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_teacher import FakeTeacher, task

from kgen.parse import parse_answer
from ground.errors import RecordError
from ground.records import read_records
from kgen.run import generate_records, reparse_record, request_key
from kgen.teachers.base import GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=64, answer_format="text")


def test_one_record_per_task_with_failures_recorded(tmp_path):
    out = tmp_path / "k.jsonl"
    summary = generate_records([task(i) for i in range(5)], FakeTeacher(fail_on={"name-2"}), SETTINGS, out)
    rows = read_records(out, "knowledge")
    assert [r["id"] for r in sorted(rows, key=lambda r: r["id"])] == [f"x{i}" for i in range(5)]
    by_id = {r["id"]: r for r in rows}
    assert by_id["x2"]["status"] == "api_error" and "500" in by_id["x2"]["error"]
    assert by_id["x0"]["key_phrases"] == ["name-0", "Gift"] and by_id["x0"]["reference_id"] == "pool-1"
    assert summary["status"] == {"ok": 4, "api_error": 1}


def test_rerun_skips_done_and_retries_failures(tmp_path):
    out = tmp_path / "k.jsonl"
    tasks = [task(i) for i in range(5)]
    generate_records(tasks, FakeTeacher(fail_on={"name-2"}), SETTINGS, out)
    again = FakeTeacher()
    summary = generate_records(tasks, again, SETTINGS, out)
    assert again.calls == 1 and summary["skipped_done"] == 4
    rows = read_records(out, "knowledge")
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)


def test_key_depends_on_content_model_and_settings():
    messages = task(0)["messages"]
    base = request_key(messages, "m", SETTINGS)
    assert base == request_key(json.loads(json.dumps(messages)), "m", SETTINGS)
    assert base != request_key(messages, "other", SETTINGS)
    assert base != request_key(messages, "m", GenerationSettings(max_new_tokens=65, answer_format="text"))
    assert base != request_key([{"role": "user", "content": "Product Name: name-1"}], "m", SETTINGS)


def test_changed_prompt_for_a_stored_id_is_refused_unless_replacing(tmp_path):
    out = tmp_path / "k.jsonl"
    generate_records([task(0)], FakeTeacher(), SETTINGS, out)
    changed = {**task(0), "messages": [{"role": "user", "content": "Product Name: other"}]}
    with pytest.raises(RecordError, match="another prompt"):
        generate_records([changed], FakeTeacher(), SETTINGS, out)
    generate_records([changed], FakeTeacher(), SETTINGS, out, replace_stale=True)
    rows = read_records(out, "knowledge")
    assert len(rows) == 1 and rows[0]["key_phrases"][0] == "other"


def test_torn_last_line_is_dropped_and_redone(tmp_path):
    out = tmp_path / "k.jsonl"
    tasks = [task(i) for i in range(3)]
    generate_records(tasks[:2], FakeTeacher(), SETTINGS, out)
    with out.open("a") as fh:
        fh.write('{"id": "x2", "level": "it')  # what a kill mid-write leaves
    generate_records(tasks, FakeTeacher(), SETTINGS, out)
    assert sorted(r["id"] for r in read_records(out, "knowledge")) == ["x0", "x1", "x2"]


def test_reparse_keeps_raw_and_updates_fields(tmp_path):
    out = tmp_path / "k.jsonl"
    generate_records([task(0)], FakeTeacher(), SETTINGS, out)
    row = read_records(out, "knowledge")[0]
    stale = {**row, "key_phrases": [], "status": "parse_error"}
    assert reparse_record(stale)["key_phrases"] == row["key_phrases"]
    assert reparse_record(stale)["status"] == "ok"


@pytest.mark.parametrize("kill_after", [0.3, 0.9])
def test_sigkill_halfway_then_rerun_gives_exactly_one_record_per_input(tmp_path, kill_after):
    out, n = tmp_path / "k.jsonl", 60
    script = Path(__file__).with_name("kill_target.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, script, str(out), str(n)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # generous: the process may start slowly on a busy machine
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < n * kill_after * 0.5):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_text().count("\n")
    assert 0 < written < n, "the kill should land halfway through the run"
    subprocess.run([sys.executable, script, str(out), str(n)], env=env, check=True, stderr=subprocess.DEVNULL)
    lines = out.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line is whole JSON
    assert sorted(ids) == sorted(f"x{i}" for i in range(n))


def test_records_mark_ungrounded_explicit_values_and_leaked_phrases(tmp_path):
    from ground.records import REFERENCE_TEXT

    out = tmp_path / "k.jsonl"
    # The fake answers "Type: <input>" and key features "<input>, Gift"; the example is about a gift mug.
    leaky = {**task(0), REFERENCE_TEXT: "Gift Mug\nKey Features: Mug, Gift"}
    clean = {**task(1), REFERENCE_TEXT: "Candle\nKey Features: Candle"}
    generate_records([leaky, clean], FakeTeacher(), SETTINGS, out)
    rows = {r["id"]: r for r in read_records(out, "knowledge")}
    assert rows["x0"]["leaked"] == ["Gift"] and rows["x1"]["leaked"] == []
    assert rows["x0"]["explicit"][0]["grounded"] is True  # "name-0" is the input itself


def test_reparse_handles_both_formats_and_redoes_the_marks(tmp_path):
    out = tmp_path / "k.jsonl"
    generate_records([task(0)], FakeTeacher(), SETTINGS, out)
    text_row = read_records(out, "knowledge")[0]
    json_raw = json.dumps({"explicit": [{"aspect": "Brand", "value": "Acme", "rationale": ""}], "implicit": [],
                           "key_features": ["Acme", "name-0"]})
    json_row = {**text_row, "raw": json_raw, "key_phrases": [], "status": "parse_error"}
    again = reparse_record(json_row, example="Acme Widget\nKey Features: Acme")
    assert again["status"] == "ok" and again["key_phrases"] == ["Acme", "name-0"]
    assert again["explicit"][0]["grounded"] is False and again["leaked"] == ["Acme"]
    assert again["raw"] == json_raw  # raw is kept as it was
    assert reparse_record({**text_row, "key_phrases": []})["key_phrases"] == ["name-0", "Gift"]
    assert reparse_record({**text_row, "leaked": ["Gift"]})["leaked"] == ["Gift"]  # no example given: mark kept


# --- an output that is not ours is never rewritten; nothing is left behind by a failure ---


def test_a_plain_text_output_is_refused_and_kept(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\nmore notes\n")
    with pytest.raises(RecordError, match=r"notes.txt:1: not a JSON line; this file is not a kgen output"):
        generate_records([task(0)], FakeTeacher(), SETTINGS, notes)
    assert notes.read_text() == "my notes\nmore notes\n"
    notes.write_text("draft without a newline")  # not a torn kgen line either: it does not start like one
    with pytest.raises(RecordError, match="not a kgen output"):
        generate_records([task(0)], FakeTeacher(), SETTINGS, notes)
    assert notes.read_text() == "draft without a newline"


def test_only_a_torn_last_line_is_dropped(tmp_path):
    out = tmp_path / "k.jsonl"
    generate_records([task(0), task(1)], FakeTeacher(), SETTINGS, out)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:25])  # killed while writing the second row
    generate_records([task(0), task(1)], FakeTeacher(), SETTINGS, out)
    assert sorted(r["id"] for r in read_records(out, "knowledge")) == ["x0", "x1"]
    out.write_text(lines[0][:25] + "\n" + lines[1])  # a broken line in the middle is no kill: refused, kept
    with pytest.raises(RecordError, match=r"k.jsonl:1: not a JSON line"):
        generate_records([task(0), task(1)], FakeTeacher(), SETTINGS, out)
    assert out.read_text() == lines[0][:25] + "\n" + lines[1]


def test_a_torn_last_line_cut_inside_a_character_is_dropped_but_a_bad_byte_is_not(tmp_path):
    out = tmp_path / "k.jsonl"
    tasks = [task(0), task(1, name="咖啡杯")]
    generate_records(tasks, FakeTeacher(), SETTINGS, out)
    first, second = out.read_bytes().splitlines(keepends=True)
    cut = second.index("咖".encode()) + 1
    out.write_bytes(first + second[:cut])  # a kill at a page boundary inside the 3-byte character
    again = FakeTeacher()
    generate_records(tasks, again, SETTINGS, out)
    assert again.calls == 1 and out.read_bytes() == first + second
    latin1 = first + second[:cut - 1] + b"Caf\xe9 torn"  # not UTF-8 inside the line: refused, kept
    out.write_bytes(latin1)
    with pytest.raises(RecordError, match=r"k.jsonl:2: not valid UTF-8 \(byte 0xe9"):
        generate_records(tasks, FakeTeacher(), SETTINGS, out)
    assert out.read_bytes() == latin1


def test_a_stored_row_without_status_names_the_line(tmp_path):
    out = tmp_path / "k.jsonl"
    generate_records([task(0)], FakeTeacher(), SETTINGS, out)
    row = json.loads(out.read_text())
    del row["status"]
    out.write_text(json.dumps(row) + "\n")
    with pytest.raises(RecordError, match=r"k.jsonl:1: missing field 'status'"):
        generate_records([task(0)], FakeTeacher(), SETTINGS, out)


class BrokenTeacher(FakeTeacher):
    """A teacher whose model cannot load."""

    def complete(self, prompts, settings, schemas=None):
        raise RecordError("/nowhere: cannot load this model")
        yield  # a generator, like the real backends


def test_no_lock_file_and_no_empty_output_left_behind(tmp_path):
    out = tmp_path / "k.jsonl"
    with pytest.raises(RecordError, match="cannot load"):
        generate_records([task(0)], BrokenTeacher(), SETTINGS, out)
    assert list(tmp_path.iterdir()) == []
    generate_records([task(0)], FakeTeacher(), SETTINGS, out)
    assert [p.name for p in tmp_path.iterdir()] == ["k.jsonl"]


def test_a_name_longer_than_the_context_is_cut_and_the_row_says_so(tmp_path):
    from kgen.inputs import MAX_NAME_CHARS
    from kgen.tasks import load_inputs, student_tasks

    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"item_id": "long", "name": "Mug " * 50_000}) + "\n"
                     + json.dumps({"item_id": "short", "name": "Mug"}) + "\n")
    out = tmp_path / "k.jsonl"
    generate_records(student_tasks("item", load_inputs("item", items)), FakeTeacher(), SETTINGS, out)
    rows = {r["id"]: r for r in read_records(out, "knowledge")}
    assert rows["long"]["input_truncated"] is True and len(rows["long"]["input"]) <= MAX_NAME_CHARS + 2
    assert "input_truncated" not in rows["short"]


def test_reparse_keeps_unknown_status():
    row = {"id": "a", "level": "item", "input": "Mug", "key_phrases": [], "raw": "Key Features: Mug", "status": "filtered"}
    assert reparse_record(row)["status"] == "filtered"


# --- durability: every answer is a whole line on disk before the next one is asked for ---


class WatchingTeacher(FakeTeacher):
    """Reads the output from outside the run before each answer: what a crash at that moment would leave."""

    def __init__(self, out: Path, **kw):
        super().__init__(**kw)
        self.out, self.seen = out, []

    def complete(self, prompts, settings, schemas=None):
        for item in super().complete(prompts, settings):
            self.seen.append(self.out.read_bytes() if self.out.exists() else b"")
            yield item
        self.seen.append(self.out.read_bytes())


def test_after_n_answers_the_file_holds_n_whole_lines(tmp_path):
    out = tmp_path / "k.jsonl"
    teacher = WatchingTeacher(out)
    generate_records([task(i) for i in range(6)], teacher, SETTINGS, out)
    for n, data in enumerate(teacher.seen):
        lines = data.decode().splitlines(keepends=True)
        assert len(lines) == n and all(line.endswith("\n") for line in lines), (n, data)
        assert [json.loads(line)["id"] for line in lines] == [f"x{i}" for i in range(n)]


def test_each_row_is_fsynced_once_after_it_is_flushed(tmp_path, monkeypatch):
    out = tmp_path / "k.jsonl"
    real_fsync, synced = os.fsync, []

    def spy(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")) == out:
            synced.append(out.read_text().count("\n"))  # whole lines on disk at each fsync
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    generate_records([task(i) for i in range(5)], FakeTeacher(), SETTINGS, out)
    assert synced == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", ["name", "咖啡杯"], ids=["ascii", "cjk"])
def test_a_kill_that_tears_a_line_loses_only_that_row(tmp_path, name):
    """A real process dies inside the write of row 7; the re-run drops only that torn line and redoes only it."""
    out, n, k = tmp_path / "k.jsonl", 12, 7
    script = Path(__file__).with_name("kill_target.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, script, str(out), str(n), "--delay", "0", "--tear-at", str(k),
                           "--name", name], env=env, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    torn = out.read_bytes()
    whole = torn.decode("utf-8", errors="replace").splitlines(keepends=True)[:k]
    assert torn.count(b"\n") == k and not torn.endswith(b"\n") and torn.rsplit(b"\n", 1)[-1].startswith(b'{"')
    if name != "name":  # the cut is inside a character: the torn file is not even valid UTF-8
        with pytest.raises(UnicodeDecodeError):
            torn.decode("utf-8")
    again = FakeTeacher()
    tasks = [task(i, name=name) for i in range(n)]
    summary = generate_records(tasks, again, GenerationSettings(answer_format="text"), out)  # the settings kill_target uses
    assert again.calls == n - k and summary["skipped_done"] == k
    lines = out.read_text().splitlines(keepends=True)
    assert lines[:k] == whole  # the rows written before the kill are kept byte for byte
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(f"x{i}" for i in range(n))


# --- the lock: a second run on the same output stops while the first holds it ---


class GatedTeacher(FakeTeacher):
    """Holds its run open (and so the output's lock) until `go` is set."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.started, self.go = threading.Event(), threading.Event()

    def complete(self, prompts, settings, schemas=None):
        self.started.set()
        assert self.go.wait(60), "the test never let the first run go on"
        yield from super().complete(prompts, settings)


def hold_output(out: Path, tasks: list[dict]) -> tuple[GatedTeacher, threading.Thread, list]:
    """A first run on `out` in a thread, stopped inside the lock; returns its teacher, thread and errors."""
    first, errors = GatedTeacher(), []

    def run() -> None:
        try:
            generate_records(tasks, first, SETTINGS, out)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert first.started.wait(60), errors
    return first, thread, errors


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    out, tasks = tmp_path / "k.jsonl", [task(i) for i in range(4)]
    generate_records(tasks[:1], FakeTeacher(), SETTINGS, out)
    before = out.read_bytes()
    first, thread, errors = hold_output(out, tasks)
    try:
        second = FakeTeacher()
        with pytest.raises(RecordError, match=r"k.jsonl: another run is writing this output"):
            generate_records(tasks, second, SETTINGS, out)
        assert second.calls == 0 and out.read_bytes() == before
    finally:
        first.go.set()
        thread.join(60)
    assert errors == [] and first.calls == 3
    rows = read_records(out, "knowledge")
    assert sorted(r["id"] for r in rows) == [f"x{i}" for i in range(4)]
    generate_records(tasks, FakeTeacher(), SETTINGS, out)  # the lock went with the first run


# --- reparse: only ok/parse_error come from the parser; what the run recorded is kept ---


def stored(raw: str, status: str, error: str | None = None) -> dict:
    """A record as a run stores it for this answer."""
    from kgen.run import knowledge_record
    from kgen.teachers.base import Completion

    return knowledge_record(task(0), "k0", "fake:teacher", Completion(raw, status, 5, 64, error=error))


def test_reparse_keeps_a_truncated_status_and_parses_what_came():
    row = stored("Type: Mug. The name says so.\nKey Features: Mug, Gi", "truncated")
    again = reparse_record({**row, "key_phrases": []})
    assert again["status"] == "truncated" and again["key_phrases"] == ["Mug", "Gi"] and "error" not in again
    cut = stored('{"explicit": [{"aspect": "Type", "val', "truncated")
    again = reparse_record(cut)
    assert again["status"] == "truncated" and again["key_phrases"] == []
    assert again["error"] == parse_answer(cut["raw"]).error and again["error"].startswith("answer is not complete JSON")


def test_reparse_keeps_an_api_error_and_its_message():
    row = stored("", "api_error", error="HTTP 503: overloaded (after 6 attempts)")
    again = reparse_record(row)
    assert again["status"] == "api_error" and again["error"] == "HTTP 503: overloaded (after 6 attempts)"
    assert again["key_phrases"] == []


def test_reparse_records_the_parsers_error_when_an_ok_row_no_longer_parses():
    raw = "I am sorry, I cannot help with that"
    row = {**stored("Key Features: Mug", "ok"), "raw": raw}  # stored by a parser that accepted it
    again = reparse_record(row)
    assert again["status"] == "parse_error" and again["key_phrases"] == []
    assert again["error"] == parse_answer(raw).error and again["error"]
