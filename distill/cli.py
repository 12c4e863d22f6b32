"""`distill`: SFT data, student training, student generation, export, embeddings, key-phrase F1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kgen.cli import EngineOpt, WorkersOpt
from ground.cli import DebugOpt, one_line_errors, set_debug

app = typer.Typer(help="Distillation: build SFT data, train the student, generate, export, embed, score.",
                  no_args_is_help=True)


@app.callback()
def main(debug: bool = DebugOpt) -> None:
    """Distillation: build SFT data, train the student, generate, export, embed, score."""
    set_debug(debug)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Trained student folder (full model or LoRA adapter), a hub id or the embedded alias.")]
OutputDirOpt = Annotated[Path, typer.Option("--output", "-o", help="Output folder.")]


def _split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


@app.command("build-data")
def build_data(
    knowledge: Annotated[list[Path], typer.Option("--knowledge", "-k", help="Knowledge JSONL (repeatable).")],
    output: OutputDirOpt,
    augment: Annotated[str, typer.Option(help="Comma list of augmentations: shuffle, dictionary (empty: none).")] = "shuffle,dictionary",
    shuffle_factor: Annotated[int, typer.Option(help="Shuffled copies per record.")] = 2,
    dictionary_factor: Annotated[int, typer.Option(help="Synonym-substituted copies per record.")] = 1,
    dictionary: Annotated[Path | None, typer.Option(help="Synonym dictionary TSV (default: prompts/synonyms.tsv).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of ids held out for validation.")] = 0.1,
    seed: int = 0,
    answer_format: Annotated[str, typer.Option(help="json: completions in the structured format `distill generate` constrains the student to; text: the Key Features text format.")] = "json",
) -> None:
    """Build the student's SFT dataset (prompt/completion, split by id) from ok knowledge records."""
    from distill.data import DEFAULT_DICTIONARY, DataConfig, build_data as run

    with one_line_errors():
        config = DataConfig(knowledge, output, tuple(_split_list(augment)), shuffle_factor, dictionary_factor,
                            dictionary or DEFAULT_DICTIONARY, val_fraction, seed, answer_format)
        stats = run(config)
    typer.echo(json.dumps(stats, indent=2))
    typer.echo(f"-> {output}")


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Dataset folder from `distill build-data`.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of TrainConfig keys (flags override).")] = None,
    student: Annotated[str | None, typer.Option(help="Student base: embedded alias (default), hub id or folder.")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--full", help="LoRA adapter or full fine-tuning (default full).")] = None,
    lora_r: int | None = None,
    lora_alpha: int | None = None,
    lora_dropout: float | None = None,
    lora_target_modules: Annotated[str | None, typer.Option(help="Comma list (default attention + MLP projections).")] = None,
    epochs: float | None = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (overrides epochs).")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", "--learning-rate")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per optimizer step and device, times --grad-accum (default 8).")] = None,
    micro_batch_size: Annotated[int | None, typer.Option(help="Examples per forward pass, a divisor of --batch-size "
                                                         "(default: 2 on CPU, the whole batch on a GPU).")] = None,
    grad_accum: int | None = None,
    max_length: int | None = None,
    save_steps: int | None = None,
    eval_steps: int | None = None,
    logging_steps: int | None = None,
    seed: int | None = None,
    gradient_checkpointing: Annotated[bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    resume: Annotated[bool | None, typer.Option("--resume/--no-resume", help="Resume from the last checkpoint in --output (default on).")] = None,
) -> None:
    """Fine-tune the student with TRL SFT (loss on the answer tokens only); resumable."""
    from distill.train import train as run
    from distill.train_config import resolve_config

    flags = {
        "data": str(data) if data else None, "output": str(output) if output else None, "student": student,
        "lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
        "lora_target_modules": _split_list(lora_target_modules) or None, "epochs": epochs, "max_steps": max_steps,
        "learning_rate": learning_rate, "batch_size": batch_size,
        "micro_batch_size": micro_batch_size, "grad_accum": grad_accum, "max_length": max_length,
        "save_steps": save_steps, "eval_steps": eval_steps, "logging_steps": logging_steps, "seed": seed,
        "gradient_checkpointing": gradient_checkpointing, "resume": resume,
    }  # None = not given, so the YAML file or the default applies
    with one_line_errors():
        cfg = resolve_config(config, flags)
        metrics = run(cfg)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"-> {cfg.output}")


@app.command()
def generate(
    model: ModelOpt,
    input: Annotated[Path, typer.Option("--input", "-i", help="Items or users JSONL.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Knowledge JSONL (resumable).")],
    level: Annotated[str, typer.Option(help="item or user.")] = "item",
    items: Annotated[Path | None, typer.Option(help="Item records, to render user histories (--level user).")] = None,
    ids: Annotated[Path | None, typer.Option(help="Only these ids (one per line).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N inputs.")] = None,
    batch_size: int = 8,
    max_new_tokens: Annotated[int | None, typer.Option(help="Token limit (default: a whole answer of the format).")] = None,
    temperature: float = 0.0,
    seed: int = 0,
    replace_stale: Annotated[bool, typer.Option(help="Replace stored rows made by another model or prompt.")] = False,
    engine: EngineOpt = "local",
    workers: WorkersOpt = None,
    answer_format: Annotated[str, typer.Option(help="json: answers constrained to kgen/answer_schema.py (train the student with `build-data --answer-format json`); text: the Key Features text format.")] = "json",
    explicit_spans: Annotated[bool, typer.Option("--explicit-spans/--free-explicit", help="json: explicit values must be spans of the input.")] = True,
    repetition_penalty: Annotated[float | None, typer.Option(help="Tokens already in the prompt or answer are made less likely (1 = off; default 1.15 for json answers, off for text).")] = None,
) -> None:
    """Generate knowledge records with the student's short prompt (same parser and records as the teacher)."""
    from distill.generate import GenerateConfig, generate_student

    with one_line_errors():
        config = GenerateConfig(model, level, input, output, items, ids, limit, batch_size, max_new_tokens,
                                temperature, seed, replace_stale, engine=engine, workers=workers,
                                answer_format=answer_format, explicit_spans=explicit_spans,
                                repetition_penalty=repetition_penalty)
        info = generate_student(config)
    metrics = info["metrics"]
    if metrics["missing_ids"]:
        typer.echo(f"warning: {len(metrics['missing_ids'])} requested ids not in {input}, e.g. {metrics['missing_ids'][0]}", err=True)
    typer.echo(json.dumps({k: v for k, v in metrics.items() if k != "missing_ids"}, indent=2))
    typer.echo(f"-> {output}")


@app.command()
def export(
    model: ModelOpt,
    output: OutputDirOpt,
) -> None:
    """Write a merged Hugging Face model folder (LoRA folded in) that AutoModelForCausalLM loads."""
    from distill.export import export_model

    with one_line_errors():
        config = export_model(model, output)
    typer.echo(json.dumps(config, indent=2))
    typer.echo(f"-> {output}")


@app.command()
def embed(
    model: ModelOpt,
    items: Annotated[Path, typer.Option(help="Item records JSONL.")],
    output: OutputDirOpt,
    users: Annotated[Path | None, typer.Option(help="User records JSONL (histories rendered from --items).")] = None,
    batch_size: int = 16,
    max_length: Annotated[int, typer.Option(help="Tokens per input (longer inputs are truncated).")] = 256,
    max_history: Annotated[int, typer.Option(help="Most recent purchases in a user's text.")] = 20,
    engine: EngineOpt = "local",
    workers: WorkersOpt = None,
) -> None:
    """Item and user embedding tables (mean-pooled last hidden states) as parquet: id, vector."""
    from distill.embed import EmbedConfig, embed_tables

    with one_line_errors():
        summary = embed_tables(EmbedConfig(model, items, output, users, batch_size, max_length, max_history,
                                           engine=engine, workers=workers))
    typer.echo(f"{summary['counts']} vectors of dim {summary['dim']} -> {output}")


def _register_eval_f1() -> None:
    from distill.eval_f1_cli import eval_f1

    app.command("eval-f1")(eval_f1)


_register_eval_f1()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
