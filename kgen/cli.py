"""`kgen`: sample inputs, generate knowledge with a teacher, re-parse stored answers."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ground import records as R
from ground.cli import DebugOpt, fail, one_line_errors, set_debug
from ground.files import check_writable_file, write_json, write_jsonl
from ground.flags import config_flags, flag_value, resolve
from kgen.generate import GenerateConfig
from kgen.sample import SampleConfig
from kgen.teachers.base import GenerationSettings

app = typer.Typer(help="Knowledge generation: sampling, teacher runs, re-parsing.", no_args_is_help=True)


@app.callback()
def main(debug: bool = DebugOpt) -> None:
    """Knowledge generation: sampling, teacher runs, re-parsing."""
    set_debug(debug)

InputOpt = Annotated[Path, typer.Option("--input", "-i", help="Input JSONL (items or users).")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output JSONL.")]


@app.command()
@config_flags(SampleConfig)
def sample(
    input: InputOpt,
    output: OutputOpt,
    level: Annotated[str, typer.Option(help="Rows of the input: item or user.")] = "item",
    *,
    flags: dict,
) -> None:
    """Stratified, importance-weighted sampling without replacement."""
    from kgen.generate import run_info_path
    from kgen.sample import check_rows, sample_rows

    if level not in R.LEVELS:
        fail(f"--level must be item or user, got {level!r}")
    with one_line_errors():
        config = resolve(SampleConfig, None, flags)
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
@config_flags(GenerateConfig, GenerationSettings)
def generate(*, flags: dict) -> None:
    """Generate knowledge records with a teacher; resumable, keyed by request content."""
    from kgen.generate import generate_knowledge

    with one_line_errors():
        config = resolve(GenerateConfig, None, flags, settings=resolve(GenerationSettings, None, flags))
        check_writable_file(config.output)
        info = generate_knowledge(config)
    typer.echo(json.dumps(info["metrics"], indent=2))


@app.command()
@config_flags(GenerateConfig, include=("drop_leaked",))
def reparse(input: InputOpt, output: OutputOpt, *, flags: dict) -> None:
    """Re-parse stored answers with the current parser; no model is called."""
    from collections import Counter

    from kgen.reference import reference_texts
    from kgen.run import reparse_record

    drop_leaked = flag_value(GenerateConfig, "drop_leaked", flags)
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
