"""Resumable, failure-isolated generation runs.

Each request is keyed by its content (rendered messages + model + sampling
settings). Answers are appended to the output one fsynced line at a time, so a
run killed at any moment loses at most the rows in flight; on restart a torn
last line is dropped, failed rows (api_error) are retried, and every finished
row is skipped. The output never holds two rows for one key.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from ground.errors import RecordError
from ground.files import append_line, check_writable_file, read_lines, write_jsonl
from ground import records as R
from kgen.answer_schema import answer_schema, input_spans
from kgen.grounding import with_grounding
from kgen.inputs import input_segments
from kgen.parse import parse_answer
from kgen.teachers.base import Completion, GenerationSettings, Teacher, request_key

MESSAGES = "messages"
RETRY_STATUSES = ("api_error",)


def request_schema(task: dict, settings: GenerationSettings) -> dict | None:
    """The answer schema of one request: None for text answers; with explicit spans, built from its input."""
    if not settings.structured:
        return None
    return answer_schema(input_spans(input_segments(task[R.INPUT])) if settings.explicit_spans else None)


def knowledge_record(task: dict, key: str, model: str, completion: Completion, drop_leaked: bool = False) -> dict:
    """One knowledge record from a task and the model's answer (parsed; raw text always kept)."""
    parsed = parse_answer(completion.text) if completion.status != "api_error" else None
    status = completion.status
    if parsed is not None and parsed.status == "parse_error" and status == "ok":
        status = "parse_error"
    row = {
        R.ID: task[R.ID],
        R.LEVEL: task[R.LEVEL],
        R.INPUT: task[R.INPUT],
        R.EXPLICIT: parsed.explicit if parsed else [],
        R.IMPLICIT: parsed.implicit if parsed else [],
        R.KEY_PHRASES: parsed.key_phrases if parsed else [],
        R.RAW: completion.text,
        R.MODEL: model,
        R.TEMPLATE: task[R.TEMPLATE],
        R.REFERENCE_ID: task.get(R.REFERENCE_ID),
        R.STATUS: status,
        R.USAGE: {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
        R.REQUEST_KEY: key,
    }
    if task.get(R.SAMPLING_WEIGHT) is not None:
        row[R.SAMPLING_WEIGHT] = task[R.SAMPLING_WEIGHT]
    if task.get(R.INPUT_TRUNCATED):
        row[R.INPUT_TRUNCATED] = True
    error = completion.error or (parsed.error if parsed else None)
    if error:
        row[R.ERROR] = error
    return with_grounding(row, task.get(R.REFERENCE_TEXT), drop_leaked)


def reparse_record(row: dict, example: str | None = None, drop_leaked: bool = False) -> dict:
    """Parse a stored record's raw text again (a changed parser never needs the model).

    Only `ok` and `parse_error` come from the parser; any other status (truncated, api_error, or a
    failure kind this version does not know) was set by the run and is kept as it is. Grounding marks
    are redone; leaked phrases too when the reference example's text is given, else kept (and with
    `drop_leaked`, taken out of the key phrases again).
    """
    keep = None if row[R.STATUS] in ("ok", "parse_error") else row[R.STATUS]
    parsed = parse_answer(row[R.RAW])
    out = {**row, R.EXPLICIT: parsed.explicit, R.IMPLICIT: parsed.implicit, R.KEY_PHRASES: parsed.key_phrases}
    out.pop(R.LEAKED_DROPPED, None)  # the parse gives every key phrase back
    out[R.STATUS] = keep or parsed.status
    out.pop(R.ERROR, None)
    if parsed.error and keep != "api_error":
        out[R.ERROR] = parsed.error
    elif row.get(R.ERROR) and keep:
        out[R.ERROR] = row[R.ERROR]
    return with_grounding(out, example, drop_leaked)


def _existing_row(line: str, path: Path, lineno: int, last: bool) -> dict | None:
    """One stored row; None for a last line torn by a kill mid-write. Anything else that is not a kgen row raises."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        # append_line writes `{...}\n` at once, so a kill can only leave an unfinished `{"...` as the last line.
        if last and not line.endswith("\n") and line.startswith('{"'):
            return None
        raise RecordError(f"{path}:{lineno}: not a JSON line; this file is not a kgen output (choose another -o)") from None
    if not isinstance(row, dict) or R.REQUEST_KEY not in row:
        raise RecordError(f"{path}:{lineno}: row without '{R.REQUEST_KEY}'; this file is not a kgen output")
    problem = R.check_record(row, "knowledge")
    if problem:
        raise RecordError(f"{path}:{lineno}: {problem}")
    return row


def read_output_rows(path: Path) -> tuple[list[dict], bool]:
    """Every whole row of an output file, and whether it ends in a torn or unfinished line to rewrite."""
    if not path.exists():
        return [], False
    # A kill can cut a row anywhere, even inside a character: such a last line is read as torn, not as bad UTF-8.
    lines = [line for _, line in read_lines(path, torn_tail=True)]
    rows, torn = [], False
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _existing_row(line, path, lineno, last=lineno == len(lines))
        if row is None:
            torn = True
            continue
        rows.append(row)
    # A whole last row without its newline: the next append would join two rows on one line.
    return rows, torn or bool(lines and not lines[-1].endswith("\n"))


def _read_existing(path: Path) -> tuple[list[dict], bool]:
    """Finished rows already in the output, and whether the file needs rewriting (torn line or failures)."""
    rows, torn = read_output_rows(path)
    kept = [row for row in rows if row[R.STATUS] not in RETRY_STATUSES]  # failures are redone
    return kept, torn or len(kept) < len(rows)


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock beside the output so two runs never append to one file; the lock file goes after."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a")
    except OSError as exc:
        raise RecordError(f"{path}: cannot write here ({exc.strerror})") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecordError(f"{path}: another run is writing this output") from None
        # A run that finished between our open and our flock removed the file we hold: we lock a stale
        # inode, so another run could lock a new one. Then the lock is not ours; say so rather than race.
        if not lock_path.exists() or os.stat(lock_path).st_ino != os.fstat(lock.fileno()).st_ino:
            raise RecordError(f"{path}: another run just finished writing this output; run again")
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # unlinked while still locked, so no run can slip in between


def plan(tasks: list[dict], model: str, settings: GenerationSettings, existing: list[dict]) -> tuple[list[dict], list[str]]:
    """Tasks still to run (with their keys set), and ids whose stored row was made by a different request."""
    done = {row[R.REQUEST_KEY] for row in existing}
    stored_by_id = {(row[R.LEVEL], str(row[R.ID])): row[R.REQUEST_KEY] for row in existing}
    todo, stale = [], []
    for task in tasks:
        key = request_key(task[MESSAGES], model, settings)
        if key in done:
            continue
        if (task[R.LEVEL], str(task[R.ID])) in stored_by_id:
            stale.append(str(task[R.ID]))
        todo.append({**task, R.REQUEST_KEY: key})
    return todo, stale


def prepare_output(tasks: list[dict], model: str, settings: GenerationSettings, output: Path,
                   replace_stale: bool) -> tuple[list[dict], int]:
    """Under the output's lock: drop torn lines, failures and (when replacing) stale rows; return the tasks to run."""
    existing, dirty = _read_existing(output)
    todo, stale = plan(tasks, model, settings, existing)
    if stale and not replace_stale:
        raise RecordError(
            f"{output}: {len(stale)} ids (e.g. {stale[0]}) already have records made with another "
            "prompt, model or settings; write to a new output or pass --replace-stale"
        )
    if stale:
        stale_keys = {(t[R.LEVEL], str(t[R.ID])) for t in todo}
        existing = [r for r in existing if (r[R.LEVEL], str(r[R.ID])) not in stale_keys]
        dirty = True
    if dirty:
        write_jsonl(output, existing)  # atomic: drops torn lines, failures to retry, stale rows
    return todo, len(stale)


def generate_records(
    tasks: list[dict],
    teacher: Teacher,
    settings: GenerationSettings,
    output: Path,
    desc: str = "generate",
    replace_stale: bool = False,
    drop_leaked: bool = False,
) -> dict:
    """Run every task not already in `output`, appending one record per answer; return a summary."""
    output = check_writable_file(output)
    with locked(output):
        todo, stale = prepare_output(tasks, teacher.model, settings, output, replace_stale)
        counts = _run(todo, teacher, settings, output, desc, drop_leaked)
    return {"tasks": len(tasks), "skipped_done": len(tasks) - len(todo), "replaced_stale": stale, **counts}


def _run(todo: list[dict], teacher: Teacher, settings: GenerationSettings, output: Path, desc: str,
         drop_leaked: bool) -> dict:
    status: Counter[str] = Counter()
    tokens = prompt_tokens = 0
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=desc, unit="row", dynamic_ncols=True)
    fh = None  # opened at the first answer: a model that fails to load leaves no new, empty output behind
    try:
        prompts = [t[MESSAGES] for t in todo]
        schemas = [request_schema(t, settings) for t in todo] if settings.structured else None
        for index, completion in teacher.complete(prompts, settings, schemas):
            task = todo[index]
            row = knowledge_record(task, task[R.REQUEST_KEY], teacher.model, completion, drop_leaked)
            fh = fh or output.open("a", encoding="utf-8")
            append_line(fh, row)
            status[row[R.STATUS]] += 1
            tokens += completion.completion_tokens
            prompt_tokens += completion.prompt_tokens
            elapsed = max(time.perf_counter() - start, 1e-9)
            failures = sum(n for s, n in status.items() if s != "ok")
            bar.set_postfix(tok_s=f"{tokens / elapsed:.1f}", failures=failures, refresh=False)
            bar.update(1)
    finally:
        if fh is not None:
            fh.close()
    bar.close()
    return run_metrics(status, tokens, prompt_tokens, time.perf_counter() - start)


def run_metrics(status: Counter[str], tokens: int, prompt_tokens: int, elapsed: float) -> dict:
    """The counts and speeds of one run, as written to its run JSON."""
    done = sum(status.values())
    return {
        "generated": done,
        "status": dict(status),
        "completion_tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(done / elapsed, 3) if done else 0.0,
        "tokens_per_s": round(tokens / elapsed, 2) if done else 0.0,
    }
