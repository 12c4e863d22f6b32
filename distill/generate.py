"""Student generation: the short student prompt, the same runner, parser and records as the teacher."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from distill.export import adapter_base, fingerprint, is_adapter, merge_adapter, student_path
from distill.student_config import StudentConfig
from ground.errors import RecordError
from ground.files import read_lines, write_json
from kgen.generate import run_info_path
from kgen.teachers.transformers_backend import TransformersTeacher


def read_ids(path: Path) -> list[str]:
    """Ids, one per line; blank lines and '#' comments ignored."""
    lines = (line.split("#", 1)[0].strip() for _, line in read_lines(path))
    return [line for line in lines if line]


def select_inputs(inputs: list[tuple[str, str, dict]], ids: list[str] | None, limit: int | None) -> tuple[list, list[str]]:
    """Inputs restricted to the given ids (in input order) and then to the first `limit`; also the ids not found."""
    missing: list[str] = []
    if ids is not None:
        wanted = set(ids)
        found = {rid for rid, _, _ in inputs}
        missing = [i for i in ids if i not in found]
        inputs = [row for row in inputs if row[0] in wanted]
    return (inputs[:limit] if limit else inputs), missing


def student_label(model: str, path: str | Path) -> str:
    """The `model` field of student records: the name given plus a fingerprint of the weights used."""
    return f"transformers:{model}@{fingerprint(path)}" if Path(path).is_dir() else f"transformers:{model}"


class MergedAdapterStudent(TransformersTeacher):
    """The backend on an adapter's base model, with the adapter folded in when the model is loaded."""

    def __init__(self, base: str, adapter: str, batch_size: int):
        super().__init__(base, batch_size=batch_size)
        self.adapter = adapter

    def _load(self) -> None:
        super()._load()  # lazy, like the backend: a resumed run with nothing left loads nothing
        self.lm = merge_adapter(self.lm, self.adapter).eval()


def make_student(model: str, batch_size: int) -> TransformersTeacher:
    """A TransformersTeacher around the student (a full model folder, an adapter folder, a hub id or the alias)."""
    path = student_path(model)
    if is_adapter(path):
        student = MergedAdapterStudent(adapter_base(Path(path)), path, batch_size)
    else:
        student = TransformersTeacher(path, batch_size=batch_size)
    # Records name what the user asked for, plus the weights' fingerprint: a retrained student in the same
    # folder makes new request keys, so its answers are never mistaken for the old ones on resume.
    student.model = student_label(model, path)
    return student


def generate_student(config: StudentConfig, student=None) -> dict:
    """Run the student over the inputs into knowledge records; return a summary (also written beside the output)."""
    from kgen.tasks import load_inputs, student_tasks
    from kgen.teachers.base import GenerationSettings

    settings = GenerationSettings(max_new_tokens=config.max_new_tokens,
                                  temperature=config.temperature, seed=config.seed,
                                  answer_format=config.answer_format, explicit_spans=config.explicit_spans,
                                  repetition_penalty=config.repetition_penalty)
    ids = read_ids(config.ids) if config.ids else None
    inputs = load_inputs(config.level, config.input, config.items, None if ids else config.limit)
    inputs, missing = select_inputs(inputs, ids, config.limit)
    if not inputs:
        raise RecordError(f"{config.input}: no inputs to generate for" + (f" ({len(missing)} requested ids not found)" if missing else ""))
    tasks = student_tasks(config.level, inputs, config.answer_format)
    desc = f"student {config.level}"
    if config.engine == "ray":
        from kgen.ray_engine import batch_rows, generate_records_ray

        label = student_label(config.model, student_path(config.model))
        metrics = generate_records_ray(tasks, partial(make_student, config.model, config.batch_size), label,
                                       "transformers", settings, config.output, workers=config.workers, desc=desc,
                                       rows_per_batch=batch_rows("transformers", config.batch_size, 1),
                                       replace_stale=config.replace_stale)
    else:
        label, metrics = _generate_here(tasks, settings, config, student, desc)
    metrics["missing_ids"] = missing
    info = {"config": {**config.to_dict(), "model_label": label, "settings": settings.to_dict()}, "metrics": metrics}
    write_json(run_info_path(config.output), info)
    return info


def _generate_here(tasks: list[dict], settings, config: StudentConfig, student, desc: str) -> tuple[str, dict]:
    """The single-process run: (the student's label, the run's metrics)."""
    from kgen.run import generate_records

    owned = student is None  # a student passed in (tests, benchmarks) is closed by its owner
    student = student or make_student(config.model, config.batch_size)
    try:
        metrics = generate_records(tasks, student, settings, config.output, desc=desc,
                                   replace_stale=config.replace_stale)
    finally:
        if owned:
            student.close()
    return student.model, metrics
