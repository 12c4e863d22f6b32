"""What the command lines share: a user's mistake ends the command with one line on stderr and exit status 1.

Only the errors a user causes become one line: a bad input file or path (RecordError), a bad setting
(ConfigError, raised by a config's `__post_init__`), an optional extra not installed (MissingExtra).
Anything else, a ValueError from inside torch or our own code included, is a bug and keeps its
traceback so that it can be reported. `--debug` or MSD_DEBUG=1 shows the traceback of user errors too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from ground.errors import ConfigError, MissingExtra, RecordError

DEBUG_ENV = "MSD_DEBUG"


USER_ERRORS: tuple[type[BaseException], ...] = (RecordError, ConfigError, MissingExtra)


def debugging() -> bool:
    """True when user errors should show their traceback too (--debug, or MSD_DEBUG set to anything but 0)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def set_debug(on: bool) -> None:
    """What a command group's `--debug` flag does: the rest of the process shows every traceback."""
    if on:
        os.environ[DEBUG_ENV] = "1"


DebugOpt = typer.Option(False, "--debug", help=f"Show the traceback of every error (same as {DEBUG_ENV}=1).")


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
        if debugging():
            raise
        fail(str(exc))
