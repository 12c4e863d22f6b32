"""What the command lines share: a user's mistake ends the command with one line on stderr and exit status 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from kgen.records import RecordError

# Bad input files, bad option values, unreadable or unwritable paths, an optional extra not installed.
USER_ERRORS: tuple[type[BaseException], ...] = (RecordError, ValueError, OSError, ImportError)


def fail(message: str) -> NoReturn:
    """One line to stderr, exit 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn the errors a user can cause into `error: <message>` and exit 1; anything else is a bug and raises."""
    try:
        yield
    except USER_ERRORS as exc:
        fail(str(exc))
