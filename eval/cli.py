"""`msd-eval` (python -m eval.cli): studies over finished runs; `correlate` ties the distillation metric to the CTR metric."""

from __future__ import annotations

import sys

import typer

from eval.correlate import CorrelateConfig
from ground.cli import one_line_errors
from ground.flags import config_flags, resolve

app = typer.Typer(help="Evaluation studies over finished runs.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Evaluation studies over finished runs."""  # a callback keeps `correlate` a subcommand while it is the only one


@app.command()
@config_flags(CorrelateConfig)
def correlate(*, flags: dict) -> None:
    """Pearson and Spearman of AUC on F1 with bootstrap 95% intervals, a table and a plot (the MSD paper's Figure 4)."""
    from eval.correlate import CORRELATION_JSON, PLOT_PNG, TABLE_MD, write_report

    with one_line_errors():
        c = resolve(CorrelateConfig, None, flags)
        write_report(c.points, c.output, c.n_boot, c.seed, c.title)
    typer.echo((c.output / TABLE_MD).read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {c.output / CORRELATION_JSON}, {c.output / TABLE_MD} and {c.output / PLOT_PNG}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
