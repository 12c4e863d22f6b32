"""From input files to generation tasks: validated rows, rendered inputs, chosen references, messages."""

from __future__ import annotations

from pathlib import Path

from ground.errors import RecordError
from ground.files import iter_jsonl
from ground import records as R
from kgen.inputs import input_clipped, item_input, user_input
from kgen.prompting import build_messages, student_template, teacher_template
from kgen.reference import ANSWER, TextEncoder, example_answer, load_pool, pick_examples, reference_text
from kgen.run import MESSAGES


def load_inputs(level: str, path: Path, items_path: Path | None = None, limit: int | None = None) -> list[tuple[str, str, dict]]:
    """(id, input text, row) per input row; a bad row stops with `path:line: problem` before any model call."""
    kind = "item" if level == "item" else "user"
    items_by_id = {}
    if level == "user":
        if items_path is None:
            raise ValueError("--items is needed with --level user, to render each user's history")
        items_by_id = {str(r[R.ITEM_ID]): r for r in R.read_records(items_path, "item")}
    out, first_seen = [], {}
    for lineno, row in iter_jsonl(path):
        problem = R.check_record(row, kind)
        if problem:
            raise RecordError(f"{path}:{lineno}: {problem}")
        # Two rows with one id would make two answers for one (level, id): refuse rather than pick one.
        R.check_new_key(first_seen, (level, R.record_id(row)), path, lineno)
        try:
            text = item_input(row) if level == "item" else user_input(row, items_by_id)
        except RecordError as exc:
            raise RecordError(f"{path}:{lineno}: {exc}") from None
        if input_clipped(row, items_by_id):
            row = {**row, R.INPUT_TRUNCATED: True}
        out.append((R.record_id(row), text, row))
        if limit is not None and len(out) >= limit:
            break
    return R.require_rows(out, path)


REFERENCES: tuple[str, ...] = ("nearest", "none")


def teacher_tasks(level: str, inputs: list[tuple[str, str, dict]], encoder: TextEncoder | None, pool_path: Path | None = None,
                  answer_format: str = "text", reference: str = "nearest") -> list[dict]:
    """Teacher tasks: the template of the answer format with each input's most similar pool example.

    reference "none" shows no example (zero-shot; with structured answers the schema already fixes the format).
    """
    examples = [None] * len(inputs)
    if reference == "nearest":
        examples = pick_examples([text for _, text, _ in inputs], load_pool(level, pool_path), encoder)
    template = teacher_template(level, answer_format)
    tasks = []
    for (rid, text, row), ex in zip(inputs, examples):
        example = None if ex is None else {R.INPUT: ex[R.INPUT], ANSWER: example_answer(ex, answer_format)}
        task = _task(rid, level, text, row, template, build_messages(template, text, example))
        task[R.REFERENCE_ID] = None if ex is None else ex[R.ID]
        task[R.REFERENCE_TEXT] = "" if ex is None else reference_text(ex)  # "": nothing can leak
        if row.get(R.SAMPLING_WEIGHT) is not None:
            task[R.SAMPLING_WEIGHT] = row[R.SAMPLING_WEIGHT]
        tasks.append(task)
    return tasks


def student_tasks(level: str, inputs: list[tuple[str, str, dict]], answer_format: str = "json") -> list[dict]:
    """Student tasks: the short template of the answer format, no reference example."""
    template = student_template(level, answer_format)
    return [_task(rid, level, text, row, template, build_messages(template, text)) for rid, text, row in inputs]


def _task(rid: str, level: str, text: str, row: dict, template: str, messages: list[dict]) -> dict:
    task = {R.ID: rid, R.LEVEL: level, R.INPUT: text, R.TEMPLATE: template, R.REFERENCE_ID: None, MESSAGES: messages}
    if row.get(R.INPUT_TRUNCATED):
        task[R.INPUT_TRUNCATED] = True
    return task
