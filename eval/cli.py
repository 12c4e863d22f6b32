"""`msd-eval` (python -m eval.cli): studies over finished runs; `correlate` ties the distillation metric to the CTR metric."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ground.cli import one_line_errors

app = typer.Typer(help="Evaluation studies over finished runs.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Evaluation studies over finished runs."""  # a callback keeps `correlate` a subcommand while it is the only one


@app.command()
def correlate(
    points: Annotated[Path, typer.Option(help="JSONL, one line per student: name, f1, f1_ci95?, auc_mean, auc_std, aucs, n_seeds.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder: correlation.json, table.md, f1_auc.png.")],
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples over the points for the 95% intervals.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    title: Annotated[str, typer.Option(help="Plot title.")] = "",
) -> None:
    """Pearson and Spearman of AUC on F1 with bootstrap 95% intervals, a table and a plot (the MSD paper's Figure 4)."""
    from eval.correlate import CORRELATION_JSON, PLOT_PNG, TABLE_MD, write_report

    with one_line_errors():
        if n_boot < 0:
            raise ValueError(f"--n-boot must be >= 0, got {n_boot}")
        write_report(points, output, n_boot, seed, title)
    typer.echo((output / TABLE_MD).read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {output / CORRELATION_JSON}, {output / TABLE_MD} and {output / PLOT_PNG}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
