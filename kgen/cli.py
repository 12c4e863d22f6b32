"""`kgen`: sample inputs, generate knowledge with a teacher, re-parse stored answers."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer

from kgen import records as R

app = typer.Typer(help="Knowledge generation: sampling, teacher runs, re-parsing.", no_args_is_help=True)

InputOpt = Annotated[Path, typer.Option("--input", "-i", help="Input JSONL (items or users).")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output JSONL.")]
LevelOpt = Annotated[str, typer.Option(help="item or user.")]


def fail(message: str) -> None:
    """One line to stderr, exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def run_info_path(output: Path) -> Path:
    """Where a run writes its resolved config and metrics: beside its output."""
    return output.with_name(output.stem + ".run.json")


def _check_level(level: str) -> None:
    if level not in R.LEVELS:
        fail(f"--level must be item or user, got {level!r}")


@app.command()
def sample(
    input: InputOpt,
    output: OutputOpt,
    n: Annotated[int, typer.Option(help="How many rows to pick.")] = 100,
    by: Annotated[str | None, typer.Option(help="Stratify by this field (e.g. category); none = one stratum.")] = None,
    allocation: Annotated[str, typer.Option(help="proportional, equal or sqrt.")] = "proportional",
    weight: Annotated[str | None, typer.Option(help="Importance weight: exposures, clicks, ctr, history_len.")] = None,
    level: LevelOpt = "item",
    seed: int = 0,
) -> None:
    """Stratified, importance-weighted sampling without replacement."""
    from kgen.sample import SampleConfig, sample_rows

    _check_level(level)
    try:
        config = SampleConfig(n=n, by=by, allocation=allocation, weight=weight, seed=seed)  # type: ignore[arg-type]
        rows = R.read_records(input, "item" if level == "item" else "user")
        picked = sample_rows(rows, config)
    except (R.RecordError, ValueError) as exc:
        fail(str(exc))
    R.write_jsonl(output, picked)
    strata = sorted({str(r.get("stratum")) for r in picked})
    R.write_json(run_info_path(output), {"config": {**asdict(config), "input": str(input), "level": level},
                                         "metrics": {"population": len(rows), "picked": len(picked), "strata": len(strata)}})
    typer.echo(f"picked {len(picked)} of {len(rows)} rows across {len(strata)} strata -> {output}")


@app.command()
def generate(
    input: InputOpt,
    output: OutputOpt,
    level: LevelOpt = "item",
    teacher: Annotated[str | None, typer.Option(help="backend:model, e.g. openai:gpt-4o-mini, vllm:Qwen/Qwen2.5-7B-Instruct, transformers:<id or path>. Default: the embedded SmolLM2-135M-Instruct.")] = None,
    items: Annotated[Path | None, typer.Option(help="Item records, to render user histories (--level user).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N input rows.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (local backends).")] = 8,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (openai backend).")] = 16,
    max_new_tokens: int = 320,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    pool: Annotated[Path | None, typer.Option(help="Reference pool JSONL (default: the shipped one).")] = None,
    embedder: Annotated[str | None, typer.Option(help="Sentence-transformer for picking the one-shot example.")] = None,
    replace_stale: Annotated[bool, typer.Option(help="Replace stored rows made with another prompt/model/settings.")] = False,
) -> None:
    """Generate knowledge records with a teacher; resumable, keyed by request content."""
    summary = generate_knowledge(
        level=level, input=input, output=output, teacher=teacher, items=items, limit=limit, batch_size=batch_size,
        concurrency=concurrency, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
        pool=pool, embedder=embedder, replace_stale=replace_stale,
    )
    typer.echo(json.dumps(summary["metrics"], indent=2))


def generate_knowledge(level: str, input: Path, output: Path, teacher: str | None = None, **opts) -> dict:
    """Library entry of `kgen generate`: validate inputs, build tasks, run, write the run JSON."""
    from sentence_transformers import SentenceTransformer

    from kgen.models import resolve_embedder
    from kgen.tasks import load_inputs, teacher_tasks
    from kgen.teachers import make_teacher, parse_teacher
    from kgen.teachers.base import GenerationSettings
    from kgen.run import generate_records

    _check_level(level)
    try:
        parse_teacher(teacher)
        settings = GenerationSettings(opts.get("max_new_tokens", 320), opts.get("temperature", 0.0),
                                      opts.get("top_p", 1.0), opts.get("seed", 0))
        inputs = load_inputs(level, input, opts.get("items"), opts.get("limit"))
        encoder = SentenceTransformer(resolve_embedder(opts.get("embedder")), device="cpu")
        tasks = teacher_tasks(level, inputs, encoder, opts.get("pool"))
        del encoder
        model = make_teacher(teacher, batch_size=opts.get("batch_size", 8), concurrency=opts.get("concurrency", 16))
        metrics = generate_records(tasks, model, settings, output, desc=f"{level} knowledge",
                                   replace_stale=opts.get("replace_stale", False))
    except (R.RecordError, ValueError, ImportError) as exc:
        fail(str(exc))
    config = {"level": level, "input": str(input), "output": str(output), "teacher": model.model,
              "settings": settings.to_dict(), **{k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}}
    info = {"config": config, "metrics": metrics}
    R.write_json(run_info_path(output), info)
    model.close()
    return info


@app.command()
def reparse(
    input: InputOpt,
    output: OutputOpt,
) -> None:
    """Re-parse stored answers with the current parser; no model is called."""
    from kgen.run import reparse_record

    try:
        rows = R.read_records(input, "knowledge")
    except R.RecordError as exc:
        fail(str(exc))
    out = [reparse_record(r) for r in rows]
    R.write_jsonl(output, out)
    before = {s: sum(r[R.STATUS] == s for r in rows) for s in R.STATUSES}
    after = {s: sum(r[R.STATUS] == s for r in out) for s in R.STATUSES}
    typer.echo(f"re-parsed {len(out)} records -> {output}\nstatus before {before}\nstatus after  {after}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
