"""`kgen`: sample inputs, generate knowledge with a teacher, re-parse stored answers."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ground.files import check_writable_file, write_json, write_jsonl
from ground import records as R
from ground.cli import DebugOpt, fail, one_line_errors, set_debug

app = typer.Typer(help="Knowledge generation: sampling, teacher runs, re-parsing.", no_args_is_help=True)


@app.callback()
def main(debug: bool = DebugOpt) -> None:
    """Knowledge generation: sampling, teacher runs, re-parsing."""
    set_debug(debug)

InputOpt = Annotated[Path, typer.Option("--input", "-i", help="Input JSONL (items or users).")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output JSONL.")]
LevelOpt = Annotated[str, typer.Option(help="item or user.")]
EngineOpt = Annotated[str, typer.Option(help="local: this process; ray: Ray Data workers on the cluster named by RAY_ADDRESS, else a local one (pip install msd-toolkit[ray]).")]
WorkersOpt = Annotated[int | None, typer.Option(help="Ray workers (--engine ray); default one per GPU for vllm, else one per CPU.")]


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
    from kgen.generate import run_info_path
    from kgen.sample import SampleConfig, check_rows, sample_rows

    if level not in R.LEVELS:
        fail(f"--level must be item or user, got {level!r}")
    with one_line_errors():
        config = SampleConfig(n=n, by=by, allocation=allocation, weight=weight, seed=seed)  # type: ignore[arg-type]
        check_writable_file(output)
        numbered = R.read_numbered_records(input, "item" if level == "item" else "user")
        check_rows(R.require_rows(numbered, input), config, str(input))
        rows = [row for _, row in numbered]
        picked = sample_rows(rows, config)
        write_jsonl(output, picked)
        strata = sorted({str(r.get(R.STRATUM)) for r in picked})
        write_json(run_info_path(output), {"config": {**asdict(config), "input": str(input), "level": level},
                                             "metrics": {"population": len(rows), "picked": len(picked), "strata": len(strata)}})
    typer.echo(f"picked {len(picked)} of {len(rows)} rows across {len(strata)} strata -> {output}")


@app.command()
def generate(
    input: InputOpt,
    output: OutputOpt,
    level: LevelOpt = "item",
    teacher: Annotated[str | None, typer.Option(help="backend:model, e.g. openai:gpt-4o-mini, openai-batch:gpt-4o-mini (Batch API: ~half the price, results within 24 h, resumable), vllm:Qwen/Qwen2.5-7B-Instruct, transformers:<id or path>. Default: the embedded SmolLM2-135M-Instruct.")] = None,
    items: Annotated[Path | None, typer.Option(help="Item records, to render user histories (--level user).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N input rows.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (local backends).")] = 8,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (openai backend).")] = 16,
    max_new_tokens: Annotated[int | None, typer.Option(help="Token limit per answer (default: 320 text; json: the schema's longest answer, so none is cut).")] = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    answer_format: Annotated[str, typer.Option(help="json: answers constrained to kgen/answer_schema.py; text: the Key Features text format.")] = "json",
    explicit_spans: Annotated[bool, typer.Option("--explicit-spans/--free-explicit", help="json: explicit values must be spans of the input.")] = True,
    drop_leaked: Annotated[bool, typer.Option("--drop-leaked/--keep-leaked", help="Take phrases leaked from the one-shot example out of the key phrases (still listed under `leaked`).")] = True,
    reference: Annotated[str, typer.Option(help="One-shot example: nearest (most similar pool example) or none (json answers only).")] = "nearest",
    pool: Annotated[Path | None, typer.Option(help="Reference pool JSONL (default: the shipped one).")] = None,
    embedder: Annotated[str | None, typer.Option(help="Sentence-transformer for picking the one-shot example.")] = None,
    replace_stale: Annotated[bool, typer.Option(help="Replace stored rows made with another prompt/model/settings.")] = False,
    engine: EngineOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Generate knowledge records with a teacher; resumable, keyed by request content."""
    from kgen.answer_schema import default_max_new_tokens
    from kgen.generate import GenerateConfig, generate_knowledge
    from kgen.teachers.base import GenerationSettings

    with one_line_errors():
        check_writable_file(output)
        limit_tokens = default_max_new_tokens(answer_format) if max_new_tokens is None else max_new_tokens
        settings = GenerationSettings(limit_tokens, temperature, top_p, seed, answer_format, explicit_spans)
        config = GenerateConfig(level, input, output, teacher, items, limit, batch_size, concurrency, settings,
                                pool, embedder, replace_stale, reference, drop_leaked, engine=engine, workers=workers)
        info = generate_knowledge(config)
    typer.echo(json.dumps(info["metrics"], indent=2))


@app.command()
def reparse(
    input: InputOpt,
    output: OutputOpt,
    drop_leaked: Annotated[bool, typer.Option("--drop-leaked/--keep-leaked", help="Take leaked phrases out of the key phrases.")] = True,
) -> None:
    """Re-parse stored answers with the current parser; no model is called."""
    from collections import Counter

    from kgen.reference import reference_texts
    from kgen.run import reparse_record

    with one_line_errors():
        check_writable_file(output)
        rows = R.read_records(input, "knowledge")
        examples = reference_texts()
        out = [reparse_record(r, examples.get(r.get(R.REFERENCE_ID)), drop_leaked) for r in rows]
        write_jsonl(output, out)
    before, after = (dict(Counter(r[R.STATUS] for r in rs)) for rs in (rows, out))
    typer.echo(f"re-parsed {len(out)} records -> {output}\nstatus before {before}\nstatus after  {after}")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
