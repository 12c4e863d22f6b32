"""`python -m annotate` is the `annotate` command."""

from annotate.cli import app

app(prog_name="annotate")
