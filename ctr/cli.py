"""`ctr`: prepare CTR datasets from raw public data (docs/ctr_data.md states the protocol)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kgen.cli_errors import one_line_errors

app = typer.Typer(help="CTR datasets and models.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """CTR datasets and models."""  # a callback keeps `ctr prepare` a subcommand while it is the only one


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
    from ctr.prepare import PrepareConfig, prepare as run_prepare

    with one_line_errors():
        try:
            fractions = tuple(float(x) for x in split.split(","))
        except ValueError:
            raise ValueError(f"--split must be three comma-separated numbers, got {split!r}") from None
        config = PrepareConfig(dataset=dataset, raw=raw, output=output, max_history=max_history,
                               split_fractions=fractions, seed=seed, ratings=ratings, max_user=max_user,  # type: ignore[arg-type]
                               click_threshold=click_threshold, negatives=negatives,
                               min_item_baskets=min_item_baskets, max_users=max_users or None)
        card = run_prepare(config, log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps({"title": card["title"], "splits": card["splits"]}, indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
