"""`kgen generate` as a library call: validate inputs, pick references, run the teacher, write the run JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ground import records as R
from ground.config import config_dict
from ground.errors import ConfigError
from ground.files import write_json
from ground.flags import flag
from kgen.grounding import grounding_metrics
from kgen.run import generate_records
from kgen.tasks import REFERENCES
from kgen.settings import check_engine, check_level_and_limit, engine_field, items_field, level_field, workers_field
from kgen.teachers import make_teacher, parse_teacher, teacher_label
from kgen.teachers.base import GenerationSettings


@dataclass(kw_only=True)
class GenerateConfig:
    """Everything one teacher run depends on; written beside its output."""

    level: str = level_field()
    input: Path = field(metadata=flag("Input JSONL (items or users).", "--input", "-i"))
    output: Path = field(metadata=flag("Output JSONL.", "--output", "-o"))
    teacher: str | None = field(default=None, metadata=flag(
        "backend:model, e.g. openai:gpt-4o-mini, openai-batch:gpt-4o-mini (Batch API: ~half the price, results "
        "within 24 h, resumable), vllm:Qwen/Qwen2.5-7B-Instruct, transformers:<id or path>. Default: the embedded "
        "SmolLM2-135M-Instruct."))
    items: Path | None = items_field()
    limit: int | None = field(default=None, metadata=flag("Only the first N input rows."))
    # 32 rows at once: the transformers loop's best on 2 CPU cores (docs/performance.md); vLLM takes at least 64.
    batch_size: int = field(default=32, metadata=flag("Rows decoded at once (local backends)."))
    concurrency: int = field(default=16, metadata=flag("Requests in flight (openai backend)."))
    settings: GenerationSettings = field(default_factory=GenerationSettings)  # its fields are flags of their own
    pool: Path | None = field(default=None, metadata=flag("Reference pool JSONL (default: the shipped one)."))
    embedder: str | None = field(default=None, metadata=flag("Sentence-transformer for picking the one-shot example."))
    replace_stale: bool = field(default=False, metadata=flag(
        "Replace stored rows made with another prompt/model/settings."))
    reference: str = field(default="nearest", metadata=flag(
        "One-shot example: nearest (most similar pool example) or none (json answers only)."))
    drop_leaked: bool = field(default=True, metadata=flag(
        "Take phrases leaked from the one-shot example out of the key phrases (still listed under `leaked`).",
        "--drop-leaked/--keep-leaked"))
    engine: str = engine_field()  # kgen/ray_engine.py
    workers: int | None = workers_field()

    def __post_init__(self) -> None:
        check_level_and_limit(self.level, self.limit)
        if self.batch_size < 1 or self.concurrency < 1:
            raise ConfigError(f"batch_size and concurrency must be >= 1, got {self.batch_size}, {self.concurrency}")
        backend = parse_teacher(self.teacher)[0]
        check_engine(self.engine, self.workers)
        if self.engine == "ray" and backend == "openai-batch":
            raise ConfigError("the openai-batch teacher runs on the provider's batch engine; drop --engine ray")
        if self.reference not in REFERENCES:
            raise ConfigError(f"reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if self.reference == "none" and not self.settings.structured:
            raise ConfigError("reference 'none' needs answer_format 'json': the text format is taught by its example")

    def to_dict(self) -> dict:
        return config_dict(self)


def run_info_path(output: Path) -> Path:
    """Where a run writes its resolved config and metrics: beside its output."""
    output = Path(output)
    return output.with_name(output.stem + ".run.json")


def generate_knowledge(config: GenerateConfig) -> dict:
    """Run one teacher generation; bad input raises RecordError before any model is loaded."""
    from kgen.models import loading_model, resolve_embedder
    from kgen.tasks import load_inputs, teacher_tasks

    inputs = load_inputs(config.level, config.input, config.items, config.limit)
    if config.reference == "nearest":
        from sentence_transformers import SentenceTransformer  # torch: only when an example is picked

        with loading_model(config.embedder or "the embedded embedder"):
            encoder = SentenceTransformer(resolve_embedder(config.embedder), device="cpu")
    else:
        encoder = None
    tasks = teacher_tasks(config.level, inputs, encoder, config.pool, config.settings.answer_format, config.reference)
    del encoder
    make = partial(make_teacher, config.teacher, batch_size=config.batch_size, concurrency=config.concurrency,
                   output=config.output)
    desc = f"{config.level} knowledge"
    if config.engine == "ray":
        label, notes = teacher_label(config.teacher), []
        metrics = _generate_on_ray(tasks, make, config, desc)
    else:
        teacher = make()
        try:
            metrics = generate_records(tasks, teacher, config.settings, config.output, desc=desc,
                                       replace_stale=config.replace_stale, drop_leaked=config.drop_leaked)
        finally:
            teacher.close()
        # notes: e.g. the server refused the answer schema, so answers are unconstrained
        label, notes = teacher.model, getattr(teacher, "notes", [])
    metrics["quality"] = grounding_metrics(R.read_records(config.output, "knowledge"))
    info = {"config": {**config.to_dict(), "teacher": label}, "metrics": metrics}
    if notes:
        info["notes"] = notes
    write_json(run_info_path(config.output), info)
    return info


def _generate_on_ray(tasks: list[dict], make, config: GenerateConfig, desc: str) -> dict:
    """The run on Ray Data workers, each building its own teacher with `make` (kgen/ray_engine.py)."""
    from kgen.ray_engine import batch_rows, generate_records_ray

    backend = parse_teacher(config.teacher)[0]
    return generate_records_ray(tasks, make, teacher_label(config.teacher), backend, config.settings, config.output,
                                workers=config.workers, desc=desc, replace_stale=config.replace_stale,
                                drop_leaked=config.drop_leaked,
                                rows_per_batch=batch_rows(backend, config.batch_size, config.concurrency))
