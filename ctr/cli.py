"""`ctr`: prepare CTR datasets from raw public data, train and evaluate CTR models on them (docs/ctr_data.md states the data protocol)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ground.cli import one_line_errors
from ground.errors import ConfigError

app = typer.Typer(help="CTR datasets and models: prepare, train (DeepFM, DIN, MSD, ELEC), eval, serve, warm.",
                  no_args_is_help=True)


@app.command()
def prepare(
    dataset: Annotated[str, typer.Option(help="ml-1m, ml-100k, online-retail or sample.")],
    raw: Annotated[Path, typer.Option(help="Dataset folder (MovieLens: the folder; online-retail: the parquet file "
                                           "or its folder; sample: data/sample).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (new, empty or an earlier output).")],
    max_history: Annotated[int, typer.Option(help="Behaviour history length kept (the last N clicks).")] = 50,
    split: Annotated[str, typer.Option(help="Train/val/test fractions of the samples in time order.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of every random draw (retail users and negatives).")] = 0,
    ratings: Annotated[str | None, typer.Option(help="ml-1m: ratings file name or glob in --raw "
                                                     "(default ratings.dat*, else the one ratings*.dat*).")] = None,
    max_user: Annotated[int | None, typer.Option(help="MovieLens: keep users with id <= N "
                                                      "(ml-1m-partial: 2998, user 2999 may be cut).")] = None,
    click_threshold: Annotated[int, typer.Option(help="MovieLens: a rating >= this is a click.")] = 4,
    negatives: Annotated[int, typer.Option(help="online-retail: sampled negatives per purchase line.")] = 1,
    min_item_baskets: Annotated[int, typer.Option(help="online-retail: drop items bought in fewer baskets.")] = 10,
    max_users: Annotated[int, typer.Option(help="online-retail: customers drawn at random (0 = all).")] = 1500,
) -> None:
    """Raw dataset -> items.jsonl, users.jsonl, samples.parquet, card.json (split by time, train-only stats)."""
    from ctr.prepare import prepare as run_prepare
    from ctr.raw import PrepareConfig

    with one_line_errors():
        try:
            fractions = tuple(float(x) for x in split.split(","))
        except ValueError:
            raise ConfigError(f"--split must be three comma-separated numbers, got {split!r}") from None
        config = PrepareConfig(dataset=dataset, raw=raw, output=output, max_history=max_history,
                               split_fractions=fractions, seed=seed, ratings=ratings, max_user=max_user,  # type: ignore[arg-type]
                               click_threshold=click_threshold, negatives=negatives,
                               min_item_baskets=min_item_baskets, max_users=max_users or None)
        card = run_prepare(config, log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps({"title": card["title"], "splits": card["splits"]}, indent=2))


def _ints(text: str | None) -> list[int] | None:
    return [int(part) for part in text.split(",") if part.strip()] if text else None


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Folder written by `ctr prepare`.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of CTRConfig keys (flags override).")] = None,
    model: Annotated[str | None, typer.Option(help="deepfm, din, msd (MSD on DIN), msd-deepfm, elec (ELEC on DIN) "
                                                   "or elec-deepfm.")] = None,
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
    distill_score_weight: Annotated[float | None, typer.Option(help="ELEC: score distillation weight (0 = off).")] = None,
    distill_repr_weight: Annotated[float | None, typer.Option(help="ELEC: representation distillation weight (0 = off).")] = None,
    distill_temperature: Annotated[float | None, typer.Option(help="ELEC: score distillation temperature.")] = None,
    seed: int | None = None,
    seeds: Annotated[str | None, typer.Option(help="Comma list: one run per seed in OUTPUT/seed-N, then mean +- std.")] = None,
) -> None:
    """Train one CTR model (early stopping on validation AUC); writes model.pt, configs and metrics.json.

    Under `torchrun --nproc_per_node N -m ctr.cli train ...` it trains with DDP over N ranks (docs/ctr.md).
    """
    from ctr import distributed
    from ctr.train import train as run
    from ctr.train import train_seeds
    from ctr.train_config import resolve_config

    flags = {"data": str(data) if data else None, "output": str(output) if output else None, "model": model,
             "knowledge": str(knowledge) if knowledge else None, "student": student, "lora": lora,
             "item_fusion": item_fusion, "user_level": user_level, "standardize_vectors": standardize_vectors, "top_k": top_k, "mask_rate": mask_rate,
             "embed_dim": embed_dim, "epochs": epochs, "patience": patience, "batch_size": batch_size,
             "learning_rate": learning_rate, "max_history": max_history, "max_train_samples": max_train_samples,
             "max_eval_samples": max_eval_samples, "seed": seed, "distill_score_weight": distill_score_weight,
             "distill_repr_weight": distill_repr_weight, "distill_temperature": distill_temperature}  # None = not given
    with one_line_errors():
        cfg = resolve_config(config, flags)
        try:
            result = train_seeds(cfg, _ints(seeds)) if seeds else run(cfg)
            main = distributed.is_main()  # asked before the process group closes
        finally:
            distributed.close()
    if main:
        typer.echo(json.dumps(result.get("test"), indent=2))
        typer.echo(f"-> {cfg.output}")


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder of `ctr train`.")],
    data: Annotated[Path | None, typer.Option(help="Prepared folder (default: the one the model was trained on).")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Score a trained model on a split: AUC, GAUC, LogLoss (an ELEC run: its vanilla network alone)."""
    from ctr.data import SPLITS
    from ctr.train import evaluate_run

    with one_line_errors():
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        metrics = evaluate_run(model, data, split)
    typer.echo(json.dumps(metrics, indent=2))


_Model = Annotated[Path, typer.Option("--model", "-m", help="Run folder of `ctr train` (MSD, DIN, DeepFM or ELEC).")]
_Student = Annotated[str | None, typer.Option(help="Student that computes missing vectors (default: the model that "
                                                   "wrote the run's knowledge tables, from its embed_config.json).")]
_Redis = Annotated[str | None, typer.Option(help="Redis URL (redis://127.0.0.1:6379/0); none: in-process cache only.")]
_Codec = Annotated[str, typer.Option(help="Stored vector format: float16, int8 (with a scale) or float32 (exact).")]


@app.command()
def serve(
    model: _Model,
    student: _Student = None,
    redis: _Redis = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: int = 8000,
    lru_size: Annotated[int, typer.Option(help="Vectors kept in process (0 = none).")] = 100_000,
    codec: _Codec = "float16",
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies are refused (413).")] = 1 << 20,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's choice).")] = None,
) -> None:
    """Serve POST /score: {user_id, history, candidates} -> click probabilities, vectors through LRU + Redis."""
    from ctr.scoring import ServeConfig
    from ctr.serve import serve as run

    with one_line_errors():
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        run(ServeConfig(model=str(model), student=student, redis=redis, host=host, port=port, lru_size=lru_size,
                        codec=codec, max_body_bytes=max_body_bytes))  # type: ignore[arg-type]


@app.command()
def warm(
    model: _Model,
    top: Annotated[int, typer.Option(help="How many items, by train exposures (items.jsonl stats).")],
    redis: Annotated[str, typer.Option(help="Redis URL to fill, e.g. redis://127.0.0.1:6379/0.")],
    student: _Student = None,
    codec: _Codec = "float16",
) -> None:
    """Pre-compute the vectors of the top-N most exposed items into Redis (what `ctr serve` reads)."""
    from ctr.scoring import ServeConfig
    from ctr.scoring import warm as run

    with one_line_errors():
        if top < 1:
            raise ConfigError(f"--top must be >= 1, got {top}")
        counts = run(ServeConfig(model=str(model), student=student, redis=redis, codec=codec, lru_size=0), top)  # type: ignore[arg-type]
    typer.echo(json.dumps(counts))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
