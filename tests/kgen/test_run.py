"""Resumable, failure-isolated runs: content keys, retries of failures, SIGKILL safety."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_teacher import FakeTeacher, task

from kgen.records import RecordError, read_records
from kgen.run import generate_records, reparse_record, request_key
from kgen.teachers.base import GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=64)


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
    assert base != request_key(messages, "m", GenerationSettings(max_new_tokens=65))
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
    from kgen.records import REFERENCE_TEXT

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
