"""Command-line flags derived from config dataclasses: each setting is declared once, on its field.

A field carries its help text (and, where it needs one, its flag spelling) in its metadata:

    top_k: int = field(default=3, metadata=flag("MSD: history items fused with the target."))

and a typer command takes every field of its config classes as a flag:

    @app.command()
    @config_flags(CTRConfig)
    def train(config: ConfigOpt = None, *, flags: dict) -> None:
        run(resolve(CTRConfig, config, flags))

A flag left out is not in `flags`, so the layering is defaults < YAML file < flags given. Lists are written
comma-separated (`--hidden 200,80`); a bool is `--name/--no-name` unless the field names its own pair.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ground.config import load_yaml
from ground.errors import ConfigError

HELP, FLAGS = "help", "flags"


def flag(help: str, *names: str) -> dict:
    """A config field's metadata: its help text and, optionally, its own flag names ('--lr', '--raw/--no-raw')."""
    return {HELP: help, FLAGS: names}


def field_default(f: Field) -> Any:
    """A field's default value (MISSING when it has none)."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _plain(hint: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False


def _element(hint: Any) -> type | None:
    """The element type of list[X] / tuple[X, ...] hints, else None."""
    if typing.get_origin(hint) in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _shown(value: Any) -> str:
    if value is MISSING:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def cli_type(hint: Any) -> Any:
    """What typer parses a field as: lists as their comma-separated text, choices as text, the rest as they are."""
    plain, _ = _plain(hint)
    if _element(plain) is not None or typing.get_origin(plain) is Literal:
        return str
    return plain if plain in (int, float, str, bool, Path) else str


def help_text(f: Field, hint: Any) -> str:
    text = f.metadata.get(HELP, "")
    plain, _ = _plain(hint)
    if typing.get_origin(plain) is Literal:
        text += f" One of: {', '.join(map(str, typing.get_args(plain)))}."
    elif _element(plain) is not None:
        text += " Comma-separated."
    return text.strip()


def flag_names(f: Field, hint: Any) -> tuple[str, ...]:
    names = tuple(f.metadata.get(FLAGS, ()))
    if names:
        return names
    dashed = f.name.replace("_", "-")
    return (f"--{dashed}/--no-{dashed}",) if _plain(hint)[0] is bool else (f"--{dashed}",)


def parameter(f: Field, hint: Any) -> inspect.Parameter:
    """The typer parameter of one config field: default None (not given), the field's default shown in --help."""
    option = typer.Option(*flag_names(f, hint), help=help_text(f, hint), show_default=_shown(field_default(f)))
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[cli_type(hint) | None, option])


def parse_value(text: Any, hint: Any, name: str) -> Any:
    """A flag's value as the field's type: comma-separated text to a list (or tuple) of its element type."""
    plain, _ = _plain(hint)
    element = _element(plain)
    if element is None or not isinstance(text, str):
        return text
    try:
        values = [element(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')} must be comma-separated {element.__name__} values, "
                          f"got {text!r}") from None
    return tuple(values) if typing.get_origin(plain) is tuple else values


def config_fields(cls: type) -> list[tuple[Field, Any]]:
    """(field, resolved type hint) of each init field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in fields(cls) if f.init]


def config_flags(*classes: type, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate a command: every field of `classes` (less `exclude` and the command's own parameters) becomes a
    flag; the command gets the flags given as `flags` (field name -> value of the field's type)."""
    def wrap(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn).parameters.values() if p.name != "flags"]
        taken = {p.name for p in own} | set(exclude)
        derived: dict[str, tuple[Field, Any]] = {}
        for cls in classes:
            for f, hint in config_fields(cls):
                if f.name not in taken:
                    derived.setdefault(f.name, (f, hint))

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in derived}
            flags = {name: parse_value(v, derived[name][1], name) for name, v in given.items() if v is not None}
            return fn(**kwargs, flags=flags)

        command.__signature__ = inspect.Signature(own + [parameter(f, hint) for f, hint in derived.values()])
        return command
    return wrap


def only(cls: type, values: dict) -> dict:
    """The entries of `values` that are fields of `cls`."""
    names = {f.name for f, _ in config_fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def resolve(cls: type, yaml_path: str | Path | None, flags: dict, **fixed: Any) -> Any:
    """A config: its defaults, then the YAML file's keys, then the flags given, then `fixed` values."""
    values = load_yaml(yaml_path, cls) if yaml_path else {}
    values.update(only(cls, flags))
    values.update(fixed)
    missing = [f.name for f, _ in config_fields(cls) if field_default(f) is MISSING and f.name not in values]
    if missing:
        raise ConfigError(f"{missing[0]} is required (--{missing[0].replace('_', '-')}, or its key in a YAML config)")
    return cls(**values)
