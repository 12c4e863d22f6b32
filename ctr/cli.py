"""`ctr`: train and evaluate CTR models (DeepFM, DIN, MSD) on a prepared dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kgen.cli_errors import one_line_errors

app = typer.Typer(help="CTR models on prepared datasets: DeepFM and DIN baselines, MSD's knowledge integration.",
                  no_args_is_help=True)


def _ints(text: str | None) -> list[int] | None:
    return [int(part) for part in text.split(",") if part.strip()] if text else None


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Folder written by `ctr prepare`.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of CTRConfig keys (flags override).")] = None,
    model: Annotated[str | None, typer.Option(help="deepfm, din, msd (MSD on DIN) or msd-deepfm.")] = None,
    knowledge: Annotated[Path | None, typer.Option(help="`distill embed` folder (MSD without LoRA).")] = None,
    student: Annotated[str | None, typer.Option(help="Student for --lora: folder, adapter, hub id or embedded alias.")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--no-lora", help="MSD: the student runs inside the forward pass and LoRA is trained (default off: cached vectors).")] = None,
    item_fusion: Annotated[bool | None, typer.Option("--item-fusion/--no-item-fusion", help="MSD: fuse the top-k history items with the target (default on).")] = None,
    user_level: Annotated[bool | None, typer.Option("--user-level/--no-user-level", help="MSD: add the user's semantic vector (default on).")] = None,
    standardize_vectors: Annotated[bool | None, typer.Option("--standardize-vectors/--raw-vectors", help="MSD: z-score each dimension of the cached vectors (default on).")] = None,
    top_k: int | None = None,
    mask_rate: Annotated[float | None, typer.Option(help="MSD: masking probability of the most frequent history item.")] = None,
    embed_dim: int | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    batch_size: int | None = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", "--learning-rate")] = None,
    max_history: int | None = None,
    max_train_samples: Annotated[int | None, typer.Option(help="Train on the first N train rows only (a slice).")] = None,
    max_eval_samples: Annotated[int | None, typer.Option(help="Score the first N val / test rows only.")] = None,
    seed: int | None = None,
    seeds: Annotated[str | None, typer.Option(help="Comma list: one run per seed in OUTPUT/seed-N, then mean +- std.")] = None,
) -> None:
    """Train one CTR model (early stopping on validation AUC); writes model.pt, configs and metrics.json."""
    from ctr.train import train as run
    from ctr.train import train_seeds
    from ctr.train_config import resolve_config

    flags = {"data": str(data) if data else None, "output": str(output) if output else None, "model": model,
             "knowledge": str(knowledge) if knowledge else None, "student": student, "lora": lora,
             "item_fusion": item_fusion, "user_level": user_level, "standardize_vectors": standardize_vectors, "top_k": top_k, "mask_rate": mask_rate,
             "embed_dim": embed_dim, "epochs": epochs, "patience": patience, "batch_size": batch_size,
             "learning_rate": learning_rate, "max_history": max_history, "max_train_samples": max_train_samples,
             "max_eval_samples": max_eval_samples, "seed": seed}  # None = not given
    with one_line_errors():
        cfg = resolve_config(config, flags)
        result = train_seeds(cfg, _ints(seeds)) if seeds else run(cfg)
    typer.echo(json.dumps(result.get("test"), indent=2))
    typer.echo(f"-> {cfg.output}")


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder of `ctr train`.")],
    data: Annotated[Path | None, typer.Option(help="Prepared folder (default: the one the model was trained on).")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Score a trained model on a split: AUC, GAUC, LogLoss."""
    from ctr.data import SPLITS
    from ctr.train import evaluate_run

    with one_line_errors():
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        metrics = evaluate_run(model, data, split)
    typer.echo(json.dumps(metrics, indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
