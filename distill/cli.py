"""`distill`: SFT data, student training, student generation, export, embeddings, key-phrase F1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from distill.data import DataConfig
from distill.embed import EmbedConfig
from distill.student_config import StudentConfig
from distill.train_config import TrainConfig, resolve_config
from ground.cli import DebugOpt, one_line_errors, set_debug
from ground.flags import config_flags, flag_help, resolve

app = typer.Typer(help="Distillation: build SFT data, train the student, generate, export, embed, score.",
                  no_args_is_help=True)


@app.callback()
def main(debug: bool = DebugOpt) -> None:
    """Distillation: build SFT data, train the student, generate, export, embed, score."""
    set_debug(debug)


@app.command("build-data")
@config_flags(DataConfig)
def build_data(*, flags: dict) -> None:
    """Build the student's SFT dataset (prompt/completion, split by id) from ok knowledge records."""
    from distill.data import build_data as run

    with one_line_errors():
        config = resolve(DataConfig, None, flags)
        stats = run(config)
    typer.echo(json.dumps(stats, indent=2))
    typer.echo(f"-> {config.output}")


@app.command()
@config_flags(TrainConfig)
def train(
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of TrainConfig keys (flags override).")] = None,
    *,
    flags: dict,
) -> None:
    """Fine-tune the student with TRL SFT (loss on the answer tokens only); resumable."""
    from distill.train import train as run

    with one_line_errors():
        cfg = resolve_config(config, flags)
        metrics = run(cfg)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"-> {cfg.output}")


@app.command()
@config_flags(StudentConfig)
def generate(*, flags: dict) -> None:
    """Generate knowledge records with the student's short prompt (same parser and records as the teacher)."""
    from distill.generate import generate_student

    with one_line_errors():
        config = resolve(StudentConfig, None, flags)
        info = generate_student(config)
    metrics = info["metrics"]
    if metrics["missing_ids"]:
        typer.echo(f"warning: {len(metrics['missing_ids'])} requested ids not in {config.input}, "
                   f"e.g. {metrics['missing_ids'][0]}", err=True)
    typer.echo(json.dumps({k: v for k, v in metrics.items() if k != "missing_ids"}, indent=2))
    typer.echo(f"-> {config.output}")


@app.command()
def export(
    model: Annotated[str, typer.Option("--model", "-m", help=flag_help(StudentConfig, "model"))],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
) -> None:
    """Write a merged Hugging Face model folder (LoRA folded in) that AutoModelForCausalLM loads."""
    from distill.export import export_model

    with one_line_errors():
        config = export_model(model, output)
    typer.echo(json.dumps(config, indent=2))
    typer.echo(f"-> {output}")


@app.command()
@config_flags(EmbedConfig)
def embed(*, flags: dict) -> None:
    """Item and user vector tables as parquet (id, vector): input or knowledge text, student or sentence encoder."""
    from distill.embed import embed_tables

    with one_line_errors():
        config = resolve(EmbedConfig, None, flags)
        summary = embed_tables(config)
    for name, counts in summary["texts"].items():
        typer.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for name, n in (summary["cut_at_max_length"] or {}).items():
        if n:
            typer.echo(f"warning: {n} {name} texts are longer than --max-length {config.max_length} tokens and were "
                       "cut at the end (with --source knowledge: their knowledge first)", err=True)
    typer.echo(f"{summary['counts']} vectors of dim {summary['dim']} ({summary['encoder_kind']} encoder, "
               f"source {config.source}) -> {config.output}")


def _register_eval_f1() -> None:
    from distill.eval_f1_cli import eval_f1

    app.command("eval-f1")(eval_f1)


_register_eval_f1()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
