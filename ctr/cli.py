"""`ctr`: prepare CTR datasets from raw public data, train, tune and evaluate CTR models on them, serve them.

Every setting is a field of PrepareConfig (ctr/raw.py), CTRConfig (ctr/train_config.py), TuneConfig
(ctr/tune.py) or ServeConfig (ctr/scoring.py): its flag, default and help come from that field
(ground.flags), with defaults < YAML file (--config) < flags. docs/ctr_data.md states the data protocol.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ctr.raw import PrepareConfig
from ctr.serve_config import ServeConfig
from ctr.train_config import CTRConfig
from ctr.tune import TuneConfig
from ground.cli import one_line_errors
from ground.config import load_yaml
from ground.errors import ConfigError
from ground.flags import config_flags, only, parse_value, resolve

app = typer.Typer(help="CTR datasets and models: prepare, train (DeepFM, DIN, MSD, ELEC), tune, eval, compare, serve, warm.",
                  no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file of config keys (flags override).")]


@app.command()
@config_flags(PrepareConfig)
def prepare(config: ConfigOpt = None, *, flags: dict) -> None:
    """Raw dataset -> items.jsonl, users.jsonl, samples.parquet, card.json (split by time, train-only stats)."""
    from ctr.prepare import prepare as run_prepare

    with one_line_errors():
        card = run_prepare(resolve(PrepareConfig, config, flags), log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps({"title": card["title"], "splits": card["splits"]}, indent=2))


SeedsOpt = Annotated[str | None, typer.Option(help="Comma list: one run per seed in OUTPUT/seed-N, then mean +- std.")]


@app.command()
@config_flags(CTRConfig)
def train(config: ConfigOpt = None, seeds: SeedsOpt = None, *, flags: dict) -> None:
    """Train one CTR model to early stopping on validation AUC; writes model.pt, configs, metrics.json (with the
    slices: item train count, users unseen in train, history length) and predictions.parquet.

    Under `torchrun --nproc_per_node N -m ctr.cli train ...` it trains with DDP over N ranks (docs/ctr.md).
    """
    from ctr import distributed
    from ctr.train import train as run
    from ctr.train import train_seeds

    with one_line_errors():
        cfg = resolve(CTRConfig, config, flags)
        seed_list = parse_value(seeds, list[int], "seeds") if seeds else None
        try:
            result = train_seeds(cfg, seed_list) if seed_list else run(cfg)
            main = distributed.is_main()  # asked before the process group closes
        finally:
            distributed.close()
    if main:
        typer.echo(json.dumps(result.get("test"), indent=2))
        typer.echo(f"-> {cfg.output}")


@app.command()
@config_flags(CTRConfig, TuneConfig)
def tune(config: ConfigOpt = None, *, flags: dict) -> None:
    """Seeded random search on validation AUC (embedding width, MLP, dropout, L2, lr; MSD's own knobs), then the
    chosen config trained per seed and tested once; OUTPUT/trials.jsonl records each trial, a rerun resumes.

    Settings given as flags or YAML keys stay fixed (out of the search). Give every compared model the same
    --trials.
    """
    from ctr.tune import tune as run

    with one_line_errors():
        base = resolve(CTRConfig, config, flags)
        search = resolve(TuneConfig, None, flags)
        fixed = set(only(CTRConfig, flags)) | (set(load_yaml(config, CTRConfig)) if config else set())
        summary = run(base, search, fixed - {"data", "output", "model", "knowledge", "seed"})
    typer.echo(json.dumps({k: summary[k] for k in ("model", "trials", "chosen_trial", "val_auc_of_chosen_trial",
                                                   "best_epochs", "test")}, indent=2))


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Run folder of `ctr train`.")],
    data: Annotated[Path | None, typer.Option(help="Prepared folder (default: the one the model was trained on).")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Score a trained model on a split: AUC, GAUC, LogLoss and the slices (an ELEC run: its vanilla network alone)."""
    from ctr.data import SPLITS
    from ctr.slices import format_slices
    from ctr.train import evaluate_run

    with one_line_errors():
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        metrics = evaluate_run(model, data, split)
    typer.echo(format_slices(metrics["slices"], f"{split} slices (AUC, rows):"), err=True)
    typer.echo(json.dumps(metrics, indent=2))


@app.command()
def compare(
    base: Annotated[Path, typer.Option("--base", help="The baseline: a `ctr train` run, or a folder of seed-N runs.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="The model compared with it: a run or seed-N runs.")],
    seeds: Annotated[str | None, typer.Option(help="Only these seeds, comma-separated (default: every seed both "
                                                   "have).")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap draws over test users.")] = 1000,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the comparison here (JSON).")] = None,
) -> None:
    """Paired test-AUC deltas of MODEL over BASE on the same test rows: per seed, a 95% bootstrap interval over test
    users, a paired t-test over the seeds; also on the rows of items with <= 20 train rows."""
    from ctr.paired import compare_runs, format_comparison
    from ground.files import write_json

    with one_line_errors():
        wanted = parse_value(seeds, list[int], "seeds") if seeds else None
        result = compare_runs(base, model, n_boot=n_boot, seeds=wanted)
    typer.echo(format_comparison(result), err=True)
    if output is not None:
        write_json(output, result)
    typer.echo(json.dumps(result, indent=2))


ThreadsOpt = Annotated[int | None, typer.Option(help="torch threads (default: torch's choice).")]


@app.command()
@config_flags(ServeConfig)
def serve(threads: ThreadsOpt = None, *, flags: dict) -> None:
    """Serve POST /score: {user_id, history, candidates} -> click probabilities, vectors through LRU + Redis."""
    from ctr.serve import serve as run

    with one_line_errors():
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        run(resolve(ServeConfig, None, flags))


TopOpt = Annotated[int | None, typer.Option("--top", help="How many items, by train exposures (items.jsonl stats).")]


@app.command()
@config_flags(ServeConfig, exclude=("host", "port", "lru_size", "max_body_bytes", "redis_retry_s", "workers"))
def warm(top: TopOpt = None, *, flags: dict) -> None:  # type: ignore[assignment]
    """Pre-compute the vectors of the top-N most exposed items into Redis (what `ctr serve` reads)."""
    from ctr.scoring import warm as run

    with one_line_errors():
        # --top is required; it has a default only because ground.flags passes a command's own parameters on
        # as strings, and typer takes a string-annotated parameter without a default for an argument
        if top is None:
            raise ConfigError("--top is required: how many items to warm")
        if top < 1:
            raise ConfigError(f"--top must be >= 1, got {top}")
        config = resolve(ServeConfig, None, flags, lru_size=0)
        if config.redis is None:
            raise ConfigError("--redis is required: the Redis to fill, e.g. redis://127.0.0.1:6379/0")
        counts = run(config, top)
    typer.echo(json.dumps(counts))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
